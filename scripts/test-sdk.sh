#!/usr/bin/env bash
# Builds the SDK package and runs every SDK test: Rust unit tests of sdk-wasm (native),
# ESLint on the package's sources, the npm build (wasm-pack + wasm-opt + tsc, prints the
# gzipped .wasm size), type tests (also a consumer under moduleResolution node, node16 and
# bundler), Node tests and React hook tests against a real bridge and nats-server, the
# CommonJS build under Jest + jsdom and plain require(), a Next.js App Router app (next build,
# next start), and the browser end-to-end tests in headless Chromium (a React page; tabs of one
# browser sharing one stream; a strict Content-Security-Policy, with the .wasm embedded and by
# URL). Each runner ends with a
# "N passed, N failed" line, and fails when it ran fewer tests than expected: a runner that
# found no test (or lost a file) passes on its own. The expected counts are the tests in the
# files today; raise them with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-sdk.sh

results="$PWD/npm/test-results"
mkdir -p "$results"

# Fails (after printing why) unless `pass` is at least `want` and nothing failed.
expect_count() {
  local name=$1 pass=$2 fail=$3 want=$4
  if [ "$fail" != 0 ] || [ "$pass" -lt "$want" ]; then
    echo "$name: expected at least $want tests to pass and none to fail; got $pass passed, $fail failed" >&2
    return 1
  fi
}

echo "== sdk: cargo test -p realtime-bridge-sdk (native: backoff and its retry: floor, routing, dedupe over two open streams, cursor, chunking)"
set +e
cargo test -p realtime-bridge-sdk --locked 2>&1 | tee "$results/sdk-rust.log"
rc=${PIPESTATUS[0]}
set -e
# One "test result:" line per test binary (unit tests, doc-tests): add them up.
read -r rust_pass rust_fail < <(awk '/^test result:/{for(i=1;i<=NF;i++){if($(i+1)~/^passed/)p+=$i; if($(i+1)~/^failed/)f+=$i}} END{print p+0, f+0}' "$results/sdk-rust.log")
echo "sdk-rust: $rust_pass passed, $rust_fail failed"
[ "$rc" = 0 ]
expect_count sdk-rust "$rust_pass" "$rust_fail" 25

echo "== sdk: lint (ESLint: typescript-eslint, React hooks rules; npm/eslint.config.mjs; no warning allowed)"
(cd npm && npm run --silent lint)
echo "sdk-lint: 1 passed, 0 failed"

echo "== sdk: build the npm package (wasm-pack --mode no-install, wasm-opt -Oz from binaryen@132, tsc)"
(cd npm && node scripts/build.mjs)

echo "== sdk: type-check (package sources; the original system's examples, generic hooks and the event registry against the .d.ts; consumers under moduleResolution node, node16, bundler)"
# Each run counts only if tsc (the package's own, not whatever npx would fetch) passed and its
# program held the file it exists for.
typecheck() {
  local project=$1 must_list=$2 out
  if ! out=$(cd npm && node_modules/.bin/tsc -p "$project" --noEmit --listFiles); then
    printf '%s\n' "$out" | grep -v '^/' >&2
    return 1
  fi
  printf '%s\n' "$out" | grep -q "/npm/$must_list\$" || { echo "tsc -p $project did not check $must_list" >&2; return 1; }
}
types_pass=0
types_fail=0
# test/types/registry*: apps that register their events (`RealtimeEvents`), each its own program
# since a registration is global; test/tsconfigs/tsconfig.registry.*: one under each resolution.
for check in "tsconfig.json src/index.ts" "test/types/tsconfig.json test/types/seed-usage.tsx" "test/types/tsconfig.json test/types/errors.tsx" \
  "test/types/tsconfig.json test/types/generics.tsx" "test/types/registry/tsconfig.json test/types/registry/registry.tsx" \
  "test/types/registry-react/tsconfig.json test/types/registry-react/registry-react.tsx" \
  "test/types/registry-testing/tsconfig.json test/types/registry-testing/registry-testing.tsx" \
  "test/types/tsconfig.json test/types/server.ts" "test/types/registry-server/tsconfig.json test/types/registry-server/registry-server.ts" \
  "test/tsconfigs/tsconfig.node.json dist/testing.d.ts" "test/tsconfigs/tsconfig.node16.json dist/testing.d.cts" \
  "test/tsconfigs/tsconfig.bundler.json dist/testing.d.ts" "test/tsconfigs/tsconfig.registry.node.json dist/types.d.ts" \
  "test/tsconfigs/tsconfig.registry.node16.json dist/types.d.cts" "test/tsconfigs/tsconfig.registry.bundler.json dist/types.d.ts"; do
  # shellcheck disable=SC2086 # two words: project, file
  if typecheck $check; then types_pass=$((types_pass + 1)); else types_fail=$((types_fail + 1)); fi
done
echo "sdk-types: $types_pass passed, $types_fail failed"
expect_count sdk-types "$types_pass" "$types_fail" 15

echo "== sdk: bridge binary for the integration tests"
cargo build -p realtime-bridge --locked

# node --test prints TAP ("# pass N", "# fail N"); echo the plain closing line too. It exits 0
# having run no test at all, hence the expected count (`want`). Bounded: each test by
# --test-timeout, the whole run by `timeout` (a stream left open keeps a test file alive).
node_test() {
  local name=$1 want=$2; shift 2
  local log="$results/$name.tap"
  set +e
  timeout 1800 node --test --test-concurrency=1 --test-timeout=300000 --test-reporter=tap "$@" | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  local pass fail
  pass=$(awk '/^# pass /{print $3}' "$log" | tail -1)
  fail=$(awk '/^# fail /{print $3}' "$log" | tail -1)
  echo "$name: ${pass:-0} passed, ${fail:-0} failed"
  [ "$rc" = 0 ] || return "$rc"
  expect_count "$name" "${pass:-0}" "${fail:-0}" "$want"
}

echo "== sdk: Node tests (real bridge + nats-server; fixture server; behaviour suite; offline/online/visibility, retry: floor, make-before-break; .wasm size; realtime-bridge/server: flood, retries, presence, modes, packaging)"
(cd npm && node_test sdk-node 87 test/node/)

echo "== sdk: React hook tests (React Testing Library; real bridge + in-memory testing provider)"
(
  cd npm
  rm -f test-results/vitest.json # never read a previous run's counts
  set +e
  node_modules/.bin/vitest run --config vitest.config.mjs --reporter=default --reporter=json --outputFile.json=test-results/vitest.json
  rc=$?
  set -e
  read -r pass fail < <(node -e 'const r=require("./test-results/vitest.json"); console.log(r.numPassedTests, r.numFailedTests)')
  echo "sdk-hooks: $pass passed, $fail failed"
  [ "$rc" = 0 ] || exit "$rc"
  expect_count sdk-hooks "$pass" "$fail" 15
)

echo "== sdk: CommonJS (require condition): plain Node require()/import of every entry point, Jest + jsdom with realtime-bridge/testing"
(
  cd npm/test/jest-app
  node_test sdk-cjs 4 require.test.mjs
  rm -f "$results/jest.json"
  set +e
  node_modules/.bin/jest --ci --json --outputFile="$results/jest.json"
  rc=$?
  set -e
  read -r pass fail < <(node -e 'const r=require(process.argv[1]); console.log(r.numPassedTests, r.numFailedTests)' "$results/jest.json")
  echo "sdk-jest: $pass passed, $fail failed"
  [ "$rc" = 0 ] || exit "$rc"
  expect_count sdk-jest "$pass" "$fail" 2
)

echo "== sdk: Next.js App Router (next build; next start on 127.0.0.1, the page's server-rendered hooks)"
(cd npm/test/next-app && NEXT_TELEMETRY_DISABLED=1 node_test sdk-next 3 next.test.mjs)

echo "== sdk: browser e2e (Vite builds of React pages using the package: .wasm embedded, and by URL under a strict CSP; headless Chromium), node app.mjs, tabs sharing one stream"
(
  cd npm/test/e2e
  npx vite build
  npx vite build --config vite.url.config.mjs
  node_test sdk-e2e 25 e2e.test.mjs node-app.test.mjs tabs.test.mjs csp.test.mjs worker.test.mjs
  echo "== sdk: what the package adds to a Vite page bundle (gzip -9)"
  node sizes.mjs
)
echo "== sdk: screenshot in npm/test-results/e2e-browser.png"

echo "== sdk: browser benchmark smoke run (SDK vs native EventSource, 10,000 events; figures in BENCHMARKS.md)"
node npm/test/bench/run.mjs --quick
echo "== sdk: paced benchmark smoke run (4,000 events at 2,000/s through each reader, every event checked; sink write times)"
node npm/test/bench/run.mjs --paced 2000 --quick --chunk-times --readers native,sdk,sdk-direct,sdk-page,fetch-pipe,fetch-worker,fetch-worker-bytes
