#!/usr/bin/env bash
# The Python producer package (python/, import realtime_bridge): installs it from the repo
# (again only when the installed copy differs from python/src), type-checks it with
# mypy --strict when mypy is installed, then runs python/tests against real nats-server and
# bridge processes: input codes, modes, acknowledged publishing and its retries, presence over
# two bridges, core mode, close, and the flood (FLOOD_EVENTS, default 20000, prints its figures).
# The bridge binary is RB_BIN, else target/debug/realtime-bridge (scripts/test.sh builds it
# before). Ends with "python: N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

expected_tests=25
export RB_BIN=${RB_BIN:-$PWD/target/debug/realtime-bridge}
if [ ! -x "$RB_BIN" ]; then
  echo "test-python: no bridge binary at $RB_BIN (cargo build -p realtime-bridge, or set RB_BIN)" >&2
  exit 1
fi

echo "== python: install the package (python3 -m pip install ./python)"
if python3 python/installed_is_current.py; then
  echo "realtime-bridge $(python3 -c 'import realtime_bridge; print(realtime_bridge.__version__)') already installed from this source"
else
  pip_install ./python
  python3 python/installed_is_current.py || { echo "test-python: the installed realtime_bridge is not python/src" >&2; exit 1; }
fi

# The package ships py.typed: its annotations are part of what it promises.
if ! python3 -m mypy --version >/dev/null 2>&1 && [ "${SKIP_MYPY:-0}" != 1 ]; then
  echo "== python: installing mypy (pip install mypy; SKIP_MYPY=1 skips the type check)"
  pip_install mypy
fi
if python3 -m mypy --version >/dev/null 2>&1; then
  echo "== python: mypy --strict on the package"
  # Not `cmd && echo`: under set -e a failure on the left of && would not stop the script.
  if ! (cd python && python3 -m mypy --strict --no-error-summary src); then
    echo "test-python: mypy --strict found type errors (above)" >&2
    exit 1
  fi
  echo "mypy: no issues"
else
  echo "== python: mypy not installed, type check skipped (python3 -m pip install mypy)"
fi

echo "== python: unittest (python/tests, real nats-server and bridge processes)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# -u: the flood's figures appear as they are measured. The tests bound their own waits; this
# bounds the whole run.
timeout --kill-after=10 900 env PYTHONUNBUFFERED=1 python3 -m unittest discover -s python/tests -v 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$log" | tail -1)
failures=$(sed -n 's/^FAILED (.*failures=\([0-9]*\).*/\1/p' "$log" | tail -1)
errors=$(sed -n 's/^FAILED (.*errors=\([0-9]*\).*/\1/p' "$log" | tail -1)
failed=$(( ${failures:-0} + ${errors:-0} ))
[ "$rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1 # killed by the timeout, or crashed
passed=$(( ${ran:-0} - failed ))
[ "$passed" -ge 0 ] || passed=0
echo "python: $passed passed, $failed failed"
if [ "$rc" != 0 ]; then exit "$rc"; fi
if [ "$passed" -lt "$expected_tests" ]; then
  echo "test-python: expected at least $expected_tests tests, ran $passed" >&2
  exit 1
fi
