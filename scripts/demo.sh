#!/usr/bin/env bash
# Starts NATS (JetStream on) and the bridge, and prints how to watch a user's stream and
# make an event appear in it. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

NATS_PORT=${NATS_PORT:-4222}
LISTEN=${RB_LISTEN:-127.0.0.1:8080}
DEMO_USER=${DEMO_USER:-42}
STATE=.tmp/demo
mkdir -p "$STATE"

echo "== building the bridge (release)"
cargo build --release --locked -p realtime-bridge
BIN=target/release/realtime-bridge

# A fresh secret per run, kept out of the repository; override with RB_JWT_SECRET.
export RB_JWT_SECRET=${RB_JWT_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "== stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

echo "== starting nats-server on 127.0.0.1:$NATS_PORT (JetStream, store in $STATE/nats)"
nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats" >"$STATE/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  (echo > "/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "nats-server failed to start (port $NATS_PORT in use?):"; cat "$STATE/nats.log"; exit 1; }
  sleep 0.1
done

echo "== starting the bridge on http://$LISTEN"
"$BIN" serve --listen "$LISTEN" --nats-url "nats://127.0.0.1:$NATS_PORT" --cors-origin http://localhost:5173 &
pids+=($!)
for _ in $(seq 1 50); do
  curl -fsS "http://$LISTEN/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "the bridge failed to start"; exit 1; }
  sleep 0.1
done

TOKEN=$("$BIN" token --user "$DEMO_USER" --ttl 12h)
cat <<MSG

Realtime Bridge is running.
  NATS    nats://127.0.0.1:$NATS_PORT
  bridge  http://$LISTEN

Watch user $DEMO_USER's stream (in another terminal):
  curl -N -H 'Authorization: Bearer $TOKEN' http://$LISTEN/v1/users/$DEMO_USER/events
or
  RB_JWT_SECRET=$RB_JWT_SECRET $BIN listen --url http://$LISTEN --user $DEMO_USER

Make an event appear:
  $BIN send --nats-url nats://127.0.0.1:$NATS_PORT --user $DEMO_USER --event message_new '{"text":"hello"}'

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
