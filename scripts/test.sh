#!/usr/bin/env bash
# Runs every test of the project. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check and clippy (warnings are errors)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (wire crate, bridge server: unit, router, end-to-end, process, history, chaos; SDK native units)"
cargo test --workspace --locked

echo "== SDK (sdk-wasm + npm package): build, Rust/Node/hook/browser tests"
bash scripts/test-sdk.sh
