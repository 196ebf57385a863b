#!/usr/bin/env bash
# The READMEs' test (scripts/test-docs.mjs): runs the shell blocks of README.md,
# examples/README.md and npm/README.md against scripts/demo.sh on free loopback ports (debug
# build of the bridge), compares what they print with the output the README shows, and
# type-checks every TypeScript snippet against the built package. Mark a block that must not
# run with an info string such as ```sh no-run. Ends with "docs: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-sdk.sh

echo "== docs: the bridge (debug) and the npm package"
cargo build --locked -p realtime-bridge
# demo.sh builds the package too, but the TypeScript snippets are checked before it starts.
if [ ! -f npm/dist/react.d.ts ] || [ -n "$(find sdk-wasm/src wire/src npm/src npm/scripts npm/package.json -newer npm/dist/react.d.ts -print -quit)" ]; then
  (cd npm && node scripts/build.mjs)
fi

echo "== docs: README blocks"
DEMO_PROFILE=debug node scripts/test-docs.mjs
