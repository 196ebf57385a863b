#!/usr/bin/env bash
# The demo, from a fresh clone: installs what is missing (scripts/setup.sh, setup-sdk.sh),
# builds what is stale (the bridge, the npm package, the React demo), starts nats-server
# (JetStream on), the bridge and the demo's page server on 127.0.0.1, and prints the URL to
# open, commands that make events appear on the page and commands that read a user's stream
# in the terminal. Ctrl-C stops everything it started.
#
# Environment (all optional):
#   NATS_PORT (4222), RB_PORT (8080), WEB_PORT (5173)  a busy default is replaced by the next
#                                   free port; a port you set yourself must be free
#   DEMO_USER (42), DEMO_PEER (7)   who the printed URL signs in as, and chats with
#   DEMO_PROFILE (release)          or debug: which build of the bridge to run
#   DEMO_DEV=1                      serve the page with Vite's dev server (hot reload) instead
#                                   of the built page: for working on examples/react-demo
#   RB_JWT_SECRET                   the bridge's HS256 secret (default: a fresh random one; at least 32 bytes);
#                                   written to $DEMO_STATE/jwt-secret for the printed commands
#   DEMO_STATE (.tmp/demo)          logs, the JetStream store and jwt-secret
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ -t 1 ]; then B=$'\033[1m' G=$'\033[32m' D=$'\033[2m' R=$'\033[0m'; else B='' G='' D='' R=''; fi
say() { printf '%s== %s%s\n' "$B" "$*" "$R"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# ---- 1. what a fresh machine lacks: nats-server, nats-py, wasm tools, Node.js, npm deps
source scripts/setup.sh
source scripts/setup-sdk.sh

DEMO_USER=${DEMO_USER:-42}
DEMO_PEER=${DEMO_PEER:-7}
PROFILE=${DEMO_PROFILE:-release}
STATE=${DEMO_STATE:-.tmp/demo}
id_re='^[A-Za-z0-9_-]{1,128}$'
[[ $DEMO_USER =~ $id_re && $DEMO_PEER =~ $id_re ]] || die "DEMO_USER and DEMO_PEER must be 1 to 128 characters of [A-Za-z0-9_-]"

# ---- 2. ports (loopback only)
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() { # NAME VAR DEFAULT
  local name=$1 var=$2 def=$3 p
  if [ -n "${!var:-}" ]; then
    p=${!var}
    [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "$var=$p is not a port number"
    if port_busy "$p"; then
      die "$name: port $p ($var) is already in use on 127.0.0.1: stop what uses it (a demo still running?) or choose another $var"
    fi
  else
    p=$def
    while port_busy "$p"; do
      p=$((p + 1))
      [ "$p" -le $((def + 50)) ] || die "$name: ports $def to $((def + 50)) are all in use on 127.0.0.1; set $var"
    done
    [ "$p" = "$def" ] || echo "demo: port $def is busy, $name will use $p (set $var to choose)"
  fi
  printf -v "$var" '%s' "$p"
}
pick_port nats-server NATS_PORT 4222
pick_port "the bridge" RB_PORT 8080
pick_port "the demo page" WEB_PORT 5173

# ---- 3. build what is stale
# stale TARGET SOURCES...: true when TARGET is missing or a source file is newer.
stale() {
  local target=$1
  shift
  [ -e "$target" ] || return 0
  [ -n "$(find "$@" -type f -newer "$target" -print -quit 2>/dev/null)" ]
}

case $PROFILE in
  release) say "building the bridge (cargo build --release)"; cargo build --release --locked -p realtime-bridge ;;
  debug) say "building the bridge (cargo build)"; cargo build --locked -p realtime-bridge ;;
  *) die "DEMO_PROFILE must be release or debug" ;;
esac
BIN=$root/target/$PROFILE/realtime-bridge
RB_CMD=target/$PROFILE/realtime-bridge # as printed: relative to the repository root

if stale npm/dist/react.js sdk-wasm/src sdk-wasm/Cargo.toml wire/src wire/Cargo.toml npm/src/*.ts npm/src/*.tsx npm/scripts npm/package.json npm/tsconfig.json; then
  say "building the npm package (npm/: wasm-pack, wasm-opt, tsc)"
  (cd npm && node scripts/build.mjs)
fi

demo=examples/react-demo
if [ ! -f "$demo/node_modules/.package-lock.json" ] || [ "$demo/package-lock.json" -nt "$demo/node_modules/.package-lock.json" ]; then
  say "npm ci in $demo"
  (cd "$demo" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${DEMO_DEV:-0}" != 1 ] && stale "$demo/dist/index.html" "$demo/src" "$demo/index.html" "$demo/vite.config.ts" "$demo/package-lock.json" npm/dist; then
  say "building the demo page (vite build)"
  (cd "$demo" && npx vite build --logLevel warn)
fi

# ---- 4. start nats-server, the bridge, the page server
mkdir -p "$STATE"
# 32 random bytes as 64 hex digits: the bridge refuses HS256 secrets under 32 bytes.
export RB_JWT_SECRET=${RB_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
# Also in a file (owner-only) so that the printed token, listen and curl commands work as
# pasted without the secret going through the terminal or the shell history.
SECRET_FILE=$STATE/jwt-secret
(umask 077 && printf '%s\n' "$RB_JWT_SECRET" >"$SECRET_FILE")
NATS_URL=nats://127.0.0.1:$NATS_PORT
RB_URL=http://127.0.0.1:$RB_PORT
WEB_URL=http://127.0.0.1:$WEB_PORT

pids=()
names=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # Finish stopping whatever happens to the output (`demo.sh | tee log`: tee dies on Ctrl-C too).
  set +e
  trap '' PIPE
  if [ "${#pids[@]}" -gt 0 ]; then
    echo
    say "stopping"
    local i p
    # One at a time, in reverse start order: the page server, then the bridge (it ends its
    # streams and drains NATS, so NATS must still be up), and NATS only once the bridge is gone.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      p=${pids[i]}
      kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
      # Up to 5 s each (the bridge's --shutdown-grace is 3 s), then KILL.
      for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL -- "-$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    echo "stopped: ${names[*]}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

start() { # NAME LOG COMMAND...
  local name=$1 log=$2
  shift 2
  # Job control for this launch only: the child gets its own process group (stopping the
  # group stops whatever it started too), while the script's own foreground commands stay in
  # the terminal's group, so Ctrl-C always reaches this script.
  set -m
  "$@" </dev/null >"$log" 2>&1 &
  pids+=("$!")
  set +m
  names+=("$name")
}
# wait_up NAME LOG TRIES CHECK...: runs CHECK every 0.1 s until it succeeds; stops if NAME died.
wait_up() {
  local name=$1 log=$2 tries=$3 pid=${pids[${#pids[@]} - 1]}
  shift 3
  for _ in $(seq 1 "$tries"); do
    "$@" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $name exited at start-up; the end of $log:" >&2
      tail -n 15 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "demo: $name did not come up; the end of $log:" >&2
  tail -n 15 "$log" >&2
  exit 1
}

say "starting nats-server on $NATS_URL (JetStream, store in $STATE/nats)"
start nats-server "$STATE/nats.log" nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats"
wait_up nats-server "$STATE/nats.log" 100 port_busy "$NATS_PORT"

say "starting the bridge on $RB_URL"
start realtime-bridge "$STATE/bridge.log" "$BIN" serve --listen "127.0.0.1:$RB_PORT" --nats-url "$NATS_URL" \
  --cors-origin "$WEB_URL" --cors-origin "http://localhost:$WEB_PORT" --shutdown-grace 3s
wait_up "the bridge" "$STATE/bridge.log" 200 curl -fs -o /dev/null "$RB_URL/readyz"

if [ "${DEMO_DEV:-0}" = 1 ]; then
  say "starting the demo page with Vite's dev server (hot reload) on $WEB_URL"
  start "demo server" "$STATE/web.log" env RB_URL="$RB_URL" NATS_URL="$NATS_URL" \
    "$root/$demo/node_modules/.bin/vite" "$root/$demo" --host 127.0.0.1 --port "$WEB_PORT" --strictPort
else
  say "starting the demo page server on $WEB_URL"
  start "demo server" "$STATE/web.log" env HOST=127.0.0.1 PORT="$WEB_PORT" RB_URL="$RB_URL" NATS_URL="$NATS_URL" \
    node "$demo/server/server.mjs"
fi
wait_up "the demo server" "$STATE/web.log" 100 curl -fs -o /dev/null "$WEB_URL/api/config"

cat <<MSG

${B}Realtime Bridge demo is running.${R}

  Open ${G}$WEB_URL/?user=$DEMO_USER&peer=$DEMO_PEER${R}   (signed in as $DEMO_USER; open ?user=$DEMO_PEER&peer=$DEMO_USER in another tab to chat)

  Make an event appear (in another terminal, from $root):
    ${G}examples/producers/shell/producer.sh $NATS_URL $DEMO_USER${R}
    ${G}$RB_CMD send --nats-url $NATS_URL --user $DEMO_USER --event message_new '{"text":"hi"}'${R}

  Read user $DEMO_USER's stream in a terminal (the bridge's secret is in $SECRET_FILE):
    ${G}$RB_CMD listen --url $RB_URL --user $DEMO_USER --jwt-secret-file $SECRET_FILE${R}
    ${G}TOKEN=\$($RB_CMD token --user $DEMO_USER --jwt-secret-file $SECRET_FILE)${R}
    ${G}curl -N -H "Authorization: Bearer \$TOKEN" '$RB_URL/v1/users/$DEMO_USER/events?events=message_new,typing_start'${R}

  ${D}NATS    $NATS_URL (JetStream)       log $STATE/nats.log
  bridge  $RB_URL                    log $STATE/bridge.log
  page    $WEB_URL                    log $STATE/web.log
  Producers in Rust, Node/TypeScript, Python and Go: examples/README.md${R}

Ctrl-C stops everything.
MSG

# Runs until Ctrl-C, or until one of them stops on its own.
set +e
wait -n "${pids[@]}"
rc=$?
set -e
for i in "${!pids[@]}"; do
  kill -0 "${pids[i]}" 2>/dev/null || echo "demo: ${names[i]} stopped (exit $rc); see $STATE/" >&2
done
exit 1
