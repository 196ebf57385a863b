#!/usr/bin/env bash
# Runs every test of the project. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check and clippy (warnings are errors)"
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all --check; else echo "(rustfmt not installed: skipped)"; fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "(clippy not installed: skipped)"
fi

echo "== cargo test (wire crate, bridge server: unit, router, end-to-end, process, history, chaos; SDK native units)"
cargo test --workspace --locked

echo "== SDK (sdk-wasm + npm package): build, Rust/Node/hook/browser tests"
bash scripts/test-sdk.sh

echo "== demo: React demo + the four example producers in headless Chromium (scripts/test-demo.sh)"
bash scripts/test-demo.sh
