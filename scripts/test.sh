#!/usr/bin/env bash
# Runs every test of the project. Installs what is missing first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check and clippy (warnings are errors)"
# Both must run: a missing component is installed, and if that fails, so does the test.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "(installing the $component component)"
    rustup component add "$component"
  fi
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (wire crate, bridge server: unit, router, end-to-end, process, history, chaos; SDK native units)"
cargo test --workspace --locked

# Memory per idle stream, against a budget: the benchmarks' figures (BENCHMARKS.md) say what a
# stream costs, this notices when that grows. Debug build, 2,000 streams, one user each;
# measured 11.4-11.7 KB (live) and 13.3-14.7 KB (history) on 2 cores; budgets about 40% above.
echo "== idle memory per stream, debug build, 2,000 streams (fails over budget)"
./target/debug/realtime-bridge-bench --history off idle --streams 2000 --settle 1 --max-bytes-per-stream 16384 | tail -1
./target/debug/realtime-bridge-bench --history on idle --streams 2000 --settle 1 --max-bytes-per-stream 20480 | tail -1

# A few seconds per target on top of the proptests and replays cargo test just ran; the
# first run also installs cargo-fuzz and builds the targets (about 3 minutes on 2 cores).
fuzz_seconds=${FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" = 0 ]; then
  echo "== fuzzing: skipped (FUZZ_SECONDS=0)"
else
  echo "== fuzzing: every cargo-fuzz target for $fuzz_seconds s (scripts/fuzz.sh; FUZZ_SECONDS=0 skips it, FUZZ_SECONDS=600 is a long run)"
  bash scripts/fuzz.sh --seconds "$fuzz_seconds"
fi

echo "== Python producer package (python/): real nats-server and bridge, flood (scripts/test-python.sh)"
bash scripts/test-python.sh

echo "== SDK (sdk-wasm + npm package): build, Rust/Node/hook/browser tests"
bash scripts/test-sdk.sh

echo "== demo: React demo + the four example producers in headless Chromium (scripts/test-demo.sh)"
bash scripts/test-demo.sh

echo "== docs: the READMEs' shell blocks against scripts/demo.sh, their TypeScript against the package (scripts/test-docs.sh)"
bash scripts/test-docs.sh
