#!/usr/bin/env bash
# Realtime Bridge example producer in shell.
#
#   ./producer.sh [NATS_URL] [USER_ID]        # or NATS_URL=... USER_ID=... ./producer.sh
#
# Publishes with `nats pub` when the nats CLI is installed, else with `realtime-bridge send`
# (found as $RB_BIN, on PATH, or in this repository's target/release or target/debug).
# PUBLISHER=nats or PUBLISHER=realtime-bridge forces one. One scenario for USER_ID:
# "shell-script is typing…" for TYPING_MS (1500 ms), a chat message, a completed DEBIT of
# 19.99 on account acc-<USER_ID>, and a notification. Exit code 69 when NATS is not reachable.
set -euo pipefail

NATS_URL=${1:-${NATS_URL:-nats://127.0.0.1:4222}}
USER_ID=${2:-${USER_ID:-42}}
TYPING_MS=${3:-${TYPING_MS:-1500}}
ME=shell-script
CONVERSATION=demo

[[ $USER_ID =~ ^[A-Za-z0-9_-]{1,128}$ ]] || { echo "producer.sh: USER_ID must be 1 to 128 characters of [A-Za-z0-9_-]" >&2; exit 64; }
[[ $TYPING_MS =~ ^[0-9]+$ ]] || { echo "producer.sh: TYPING_MS must be a number of milliseconds" >&2; exit 64; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
publisher=${PUBLISHER:-}
if [ -z "$publisher" ]; then
  if command -v nats >/dev/null 2>&1; then publisher=nats; else publisher=realtime-bridge; fi
fi
label="nats pub"
if [ "$publisher" = realtime-bridge ]; then
  label="realtime-bridge send"
  RB_BIN=${RB_BIN:-$(command -v realtime-bridge || true)}
  for b in "$repo/target/release/realtime-bridge" "$repo/target/debug/realtime-bridge"; do
    [ -n "$RB_BIN" ] && break
    [ -x "$b" ] && RB_BIN=$b
  done
  [ -n "$RB_BIN" ] || { echo "producer.sh: neither the nats CLI nor realtime-bridge found (cargo build --release -p realtime-bridge)" >&2; exit 69; }
fi

# publish SUBJECT_USER EVENT JSON [MSG_ID]
publish() {
  local user=$1 event=$2 json=$3 msg_id=${4:-} err rc=0
  if [ "$publisher" = nats ]; then
    err=$(nats pub --server "$NATS_URL" ${msg_id:+--header "Nats-Msg-Id:$msg_id"} "user.$user.$event" "$json" 2>&1 >/dev/null) || rc=$?
    if [ "$rc" != 0 ]; then
      echo "NATS not reachable at $NATS_URL: is nats-server running? (nats pub: ${err//$'\n'/ })" >&2
      exit 69
    fi
  else
    # Prints "NATS not reachable at URL: is nats-server running? (...)" and exits 69 itself.
    "$RB_BIN" send --nats-url "$NATS_URL" --user "$user" --event "$event" ${msg_id:+--msg-id "$msg_id"} "$json" >/dev/null || exit $?
  fi
}

now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
id() { echo "$1-sh-$(date +%s%N)-$$"; }

publish "$USER_ID" typing_start "{\"conversationId\":\"$CONVERSATION\",\"userId\":\"$ME\"}"
echo "typing_start          → user.$USER_ID.typing_start ($ME is typing for $TYPING_MS ms, via $label)"
sleep "$(awk "BEGIN { print $TYPING_MS / 1000 }")"

msg=$(id msg)
publish "$USER_ID" message_new "{\"id\":\"$msg\",\"conversationId\":\"$CONVERSATION\",\"senderId\":\"$ME\",\"recipientId\":\"$USER_ID\",\"content\":\"Hello from the shell (via $label)\",\"createdAt\":\"$(now)\"}" "$msg"
publish "$USER_ID" typing_stop "{\"conversationId\":\"$CONVERSATION\",\"userId\":\"$ME\"}"
echo "message_new           → user.$USER_ID.message_new"

publish "$USER_ID" transaction_completed "{\"transactionId\":\"$(id tx)\",\"accountId\":\"acc-$USER_ID\",\"userId\":\"$USER_ID\",\"amount\":19.99,\"type\":\"DEBIT\",\"status\":\"COMPLETED\",\"completedAt\":\"$(now)\"}"
echo "transaction_completed → DEBIT 19.99 on acc-$USER_ID"

publish "$USER_ID" notification "{\"id\":\"$(id notif)\",\"type\":\"info\",\"title\":\"Subscription renewed\",\"message\":\"Shell script debited 19.99 € (music subscription)\",\"read\":false,\"createdAt\":\"$(now)\"}"
echo "notification          → user.$USER_ID.notification"
