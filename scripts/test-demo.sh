#!/usr/bin/env bash
# The demo's test: builds the example producers, type-checks the demo page and the Node
# producer, then runs examples/react-demo/test/demo.test.mjs: scripts/demo.sh on free loopback
# ports (debug build of the bridge), headless Chromium (Debian's, playwright-core) on the page
# as user 42, each of the five producers once (Rust, Node/TypeScript, Python, shell, Go), and
# Ctrl-C at the end. Screenshots in examples/react-demo/test-results/. Ends with
# "demo: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/setup.sh
source scripts/setup-sdk.sh

ci_if_needed() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

echo "== demo: the bridge (debug) and the Rust example producer"
if grep -q '"examples/producers/rust"' Cargo.toml; then
  # A workspace member: built with the bridge, it reuses the bridge's compiled dependencies.
  cargo build --locked -p realtime-bridge -p realtime-bridge-producer-example
  export RUST_PRODUCER="$root/target/debug/producer"
else
  # Standalone (its own Cargo.lock): its own dependency build, kept under target/examples.
  cargo build --locked -p realtime-bridge
  CARGO_TARGET_DIR="$root/target/examples" cargo build --locked --manifest-path examples/producers/rust/Cargo.toml
  export RUST_PRODUCER="$root/target/examples/debug/producer"
fi

echo "== demo: the Go example producer (gofmt, go vet, go build; GOPATH mode on Debian's sources, offline)"
go_env=(env GO111MODULE=off GOPATH="$RB_GOPATH" GOPROXY=off GOFLAGS=-buildvcs=false GOCACHE="$root/target/examples/go-cache")
unformatted=$(gofmt -l examples/producers/go)
[ -z "$unformatted" ] || { echo "gofmt: not formatted: $unformatted" >&2; exit 1; }
(cd examples/producers/go && "${go_env[@]}" go vet . && "${go_env[@]}" go build -o "$root/target/examples/go-producer" .)
export GO_PRODUCER="$root/target/examples/go-producer"
# Its tests: real nats-server and bridge (modes, one stored copy of a retried send, input
# errors, presence).
go_log=$root/target/examples/go-test.log
if ! (cd examples/producers/go && RB_BIN="$root/target/debug/realtime-bridge" "${go_env[@]}" go test -count=1 -v . >"$go_log" 2>&1); then
  cat "$go_log"
  echo "demo-go: $(grep -c '^--- PASS' "$go_log") passed, $(grep -c '^--- FAIL' "$go_log") failed (go test)"
  exit 1
fi
echo "demo-go: $(grep -c '^--- PASS' "$go_log") passed, 0 failed (go test; gofmt and go vet clean)"

echo "== demo: npm dependencies of the Node producer and the demo page"
ci_if_needed examples/producers/node
ci_if_needed examples/react-demo

echo "== demo: static checks (tsc on the page and the Node producer, python and shell syntax)"
python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])" examples/producers/python/producer.py
bash -n examples/producers/shell/producer.sh
# The page and the Node producer (realtime-bridge/server) import the built package, npm/dist.
if [ -f npm/dist/react.d.ts ] && [ -f npm/dist/server.d.ts ]; then
  (cd examples/producers/node && npx tsc --noEmit)
  (cd examples/react-demo && npx tsc --noEmit)
  echo "demo-static: 4 passed, 0 failed"
else
  echo "demo-static: 2 passed, 0 failed (the page and the Node producer are type-checked once npm/dist exists: demo.sh builds it)"
fi

echo "== demo: scripts/demo.sh + headless Chromium + the five producers"
results=examples/react-demo/test-results
mkdir -p "$results"
export DEMO_PROFILE=debug SCREENSHOTS="$root/$results"
set +e
node --test --test-concurrency=1 --test-reporter=tap examples/react-demo/test/ | tee "$results/demo.tap"
rc=${PIPESTATUS[0]}
set -e
pass=$(awk '/^# pass /{print $3}' "$results/demo.tap" | tail -1)
fail=$(awk '/^# fail /{print $3}' "$results/demo.tap" | tail -1)
echo "== demo: screenshots in $results/"
echo "demo: ${pass:-0} passed, ${fail:-0} failed"
exit "$rc"
