#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test the SDK (sdk-wasm/ + npm/).
# Idempotent: checks first, installs only what is missing. Can be sourced (exports PATH)
# or run. Nothing here downloads a prebuilt binary at build time: the wasm tools are
# compiled by cargo, wasm-opt comes from npm binaryen@132 (never Debian's binaryen 108),
# Chromium from Debian.
set -euo pipefail

sdk_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WASM_PACK_VERSION=0.15.1

sdk_log() { printf '\033[1m[setup-sdk]\033[0m %s\n' "$*" >&2; }

# Check-only mode comes from `scripts/setup.sh --check`, which defines need/have and sources
# this file; run on its own, this script installs.
SETUP_CHECK=${SETUP_CHECK:-0}
if ! declare -F need >/dev/null; then
  need() { shift; "$@"; }
  have() { return 0; }
fi

case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) export PATH="$HOME/.cargo/bin:$PATH" ;; esac

command -v cargo >/dev/null || { sdk_log "cargo is missing: install Rust from https://rustup.rs"; exit 1; }

# nats-server (and the rest of the bridge's test needs) come from the project's setup script.
if [ "$SETUP_CHECK" = 0 ] && ! command -v nats-server >/dev/null 2>&1; then
  sdk_log "nats-server missing: running scripts/setup.sh"
  # shellcheck source=/dev/null
  source "$sdk_root/scripts/setup.sh"
fi

# 1. Rust target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  [ "$SETUP_CHECK" = 1 ] || sdk_log "rustup target add wasm32-unknown-unknown"
  need "wasm32-unknown-unknown" rustup target add wasm32-unknown-unknown
else
  have "wasm32-unknown-unknown" "(rust target)"
fi

# 2. wasm-pack, pinned.
if [ "$(wasm-pack --version 2>/dev/null || true)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  [ "$SETUP_CHECK" = 1 ] || sdk_log "cargo install wasm-pack $WASM_PACK_VERSION (a few minutes)"
  need "wasm-pack $WASM_PACK_VERSION" cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
else
  have "wasm-pack" "$WASM_PACK_VERSION"
fi

# 3. wasm-bindgen-cli at exactly the wasm-bindgen version of Cargo.lock (wasm-pack
#    --mode no-install uses it from PATH). Not --locked: its own lock file pins crates
#    that no longer build with this toolchain.
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$sdk_root/Cargo.lock")
if [ -z "$wbg_version" ]; then
  sdk_log "no wasm-bindgen in Cargo.lock"; exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  [ "$SETUP_CHECK" = 1 ] || sdk_log "cargo install wasm-bindgen-cli $wbg_version (a few minutes)"
  need "wasm-bindgen-cli $wbg_version" cargo install wasm-bindgen-cli --version "$wbg_version" --force
else
  have "wasm-bindgen-cli" "$wbg_version"
fi

# 4. Node.js 20+ and npm (the package's engines field: the tests run on 20, nothing older).
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  [ "$SETUP_CHECK" = 1 ] || sdk_log "installing nodejs and npm (Debian)"
  need "Node.js >= 20 and npm" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null"
  hash -r
else
  have "Node.js and npm" "$(node --version)"
fi
if [ "$SETUP_CHECK" = 0 ] && [ "$(node_major)" -lt 20 ]; then
  sdk_log "Node.js 20 or newer is needed; found $(node --version 2>/dev/null || echo none)"
  exit 1
fi

# 5. npm dependencies, from the lock files (binaryen@132's wasm-opt, typescript, vitest,
#    testing-library, nats.js; the e2e app's vite, plugin-react, playwright-core; the
#    packaging test projects: Jest + jsdom, Next.js, and the TypeScript consumer's link).
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    [ "$SETUP_CHECK" = 1 ] || sdk_log "npm ci in ${dir#"$sdk_root"/}"
    need "npm packages of ${dir#"$sdk_root"/}" sh -c "cd '$dir' && npm ci --no-audit --no-fund --loglevel=error"
  else
    have "npm packages of ${dir#"$sdk_root"/}" "(from package-lock.json)"
  fi
}
npm_ci "$sdk_root/npm"
npm_ci "$sdk_root/npm/test/e2e"
npm_ci "$sdk_root/npm/test/jest-app"
npm_ci "$sdk_root/npm/test/next-app"
npm_ci "$sdk_root/npm/test/tsconfigs"

# 6. Chromium for the browser test (Debian's; never a test tool's own browser download).
if [ ! -x /usr/lib/chromium/chromium ] && [ ! -x /usr/bin/chromium ]; then
  [ "$SETUP_CHECK" = 1 ] || sdk_log "apt-get install chromium chromium-driver"
  need "Chromium (Debian)" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null"
else
  have "Chromium" "(Debian)"
fi
