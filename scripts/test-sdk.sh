#!/usr/bin/env bash
# Builds the SDK package and runs every SDK test: Rust unit tests of sdk-wasm (native),
# the npm build (wasm-pack + wasm-opt + tsc, prints the gzipped .wasm size), type tests,
# Node tests and React hook tests against a real bridge and nats-server, and the browser
# end-to-end test in headless Chromium. Each runner ends with a "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-sdk.sh

results="$PWD/npm/test-results"
mkdir -p "$results"

echo "== sdk: cargo test -p realtime-bridge-sdk (native: backoff, routing, dedupe, cursor, chunking)"
cargo test -p realtime-bridge-sdk --locked

echo "== sdk: build the npm package (wasm-pack --mode no-install, wasm-opt -Oz from binaryen@132, tsc)"
(cd npm && node scripts/build.mjs)

echo "== sdk: type-check (package sources; the original system's examples against the .d.ts)"
(cd npm && npx tsc -p tsconfig.json --noEmit && npx tsc -p test/types/tsconfig.json)
echo "sdk-types: 2 passed, 0 failed"

echo "== sdk: bridge binary for the integration tests"
cargo build -p realtime-bridge --locked

# node --test prints TAP ("# pass N", "# fail N"); echo the plain closing line too.
node_test() {
  local name=$1; shift
  local log="$results/$name.tap"
  set +e
  node --test --test-concurrency=1 --test-reporter=tap "$@" | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local pass fail
  pass=$(awk '/^# pass /{print $3}' "$log" | tail -1)
  fail=$(awk '/^# fail /{print $3}' "$log" | tail -1)
  echo "$name: ${pass:-0} passed, ${fail:-0} failed"
  return "$rc"
}

echo "== sdk: Node tests (real bridge + nats-server)"
(cd npm && node_test sdk-node test/node/)

echo "== sdk: React hook tests (React Testing Library; real bridge + in-memory testing provider)"
(
  cd npm
  set +e
  npx vitest run --config vitest.config.mjs --reporter=default --reporter=json --outputFile.json=test-results/vitest.json
  rc=$?
  set -e
  node -e 'const r=require("./test-results/vitest.json"); console.log(`sdk-hooks: ${r.numPassedTests} passed, ${r.numFailedTests} failed`)'
  exit $rc
)

echo "== sdk: browser e2e (Vite build of a React page using the package, headless Chromium) and node app.mjs"
(
  cd npm/test/e2e
  npx vite build
  node_test sdk-e2e e2e.test.mjs node-app.test.mjs
)
echo "== sdk: screenshot in npm/test-results/e2e-browser.png"

echo "== sdk: browser benchmark smoke run (SDK vs native EventSource, 10,000 events; figures in BENCHMARKS.md)"
node npm/test/bench/run.mjs --quick
