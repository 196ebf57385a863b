#!/usr/bin/env bash
# Fuzzes the wire format (SSE parser, cursor, ids and subjects) and the bridge's front door
# (who serves a connection, where the token is taken from) with cargo-fuzz: the targets in
# fuzz/fuzz_targets/, whose properties live in {wire,server}/tests/properties/.
#
#   scripts/fuzz.sh                       every target for $FUZZ_SECONDS (default 10) seconds
#   scripts/fuzz.sh --seconds 600         a long run (optimized build)
#   scripts/fuzz.sh --target head         one target (repeat, or comma-separate, for more)
#   scripts/fuzz.sh --sanitizer address   with AddressSanitizer (needs the nightly toolchain)
#   scripts/fuzz.sh --proptest            the same properties as proptests, no cargo-fuzz
#
# Each target starts from its seeds (fuzz/corpus/<target>/) and from the inputs that once
# failed (fuzz/regressions/<target>/); what it learns is kept in fuzz/target/corpus/.
# Exits non-zero if a target fails, naming the input that made it fail. Installs
# cargo-fuzz if it is missing; if that cannot be done, it runs the proptests instead, with
# many cases, and says so, rather than failing.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(sse_parser cursor ids head token)

seconds=${FUZZ_SECONDS:-10}
sanitizer=${FUZZ_SANITIZER:-none}
build=""   # dev or release; chosen from the length of the run unless given
mode=fuzz
targets=()

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?}; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --target) IFS=, read -r -a more <<<"${2:?}"; targets+=("${more[@]}"); shift 2 ;;
    --target=*) IFS=, read -r -a more <<<"${1#*=}"; targets+=("${more[@]}"); shift ;;
    --sanitizer) sanitizer=${2:?}; shift 2 ;;
    --sanitizer=*) sanitizer=${1#*=}; shift ;;
    --dev) build=dev; shift ;;
    --release) build=release; shift ;;
    --proptest) mode=proptest; shift ;;
    -h|--help) usage 0 ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) log "--seconds wants a whole number of seconds"; exit 2 ;; esac
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { log "no such target: $t (there are: ${ALL_TARGETS[*]})"; exit 2; }
done
# A short run gains more from a build that is quick to make (unoptimized dependencies, see
# fuzz/Cargo.toml) than from faster executions; a long one the other way round.
[ -n "$build" ] || { if [ "$seconds" -ge 120 ]; then build=release; else build=dev; fi; }

# The proptest companions: the same checks, on generated inputs, and on the files of
# fuzz/corpus/ and fuzz/regressions/; as many cases as make it last about as long as the
# fuzzing would have (some 40 ms per case for all the properties together, debug build).
run_proptests() {
  local cases=$((seconds * 60))
  [ "$cases" -ge 256 ] || cases=256
  log "proptests instead of cargo-fuzz: PROPTEST_CASES=$cases"
  PROPTEST_CASES=$cases cargo test --locked -p realtime-bridge-wire \
    --test fuzz_properties --test roundtrip --test cross_check
  PROPTEST_CASES=$cases cargo test --locked -p realtime-bridge --test fuzz_properties
}

if [ "$mode" = proptest ]; then
  run_proptests
  exit 0
fi

# cargo-fuzz with `--sanitizer none` builds on the stable toolchain; a sanitizer needs
# nightly (-Zsanitizer).
toolchain=()  # the default toolchain
if [ "$sanitizer" != none ]; then
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "installing the nightly toolchain (minimal profile) for --sanitizer $sanitizer"
    if ! timeout 600 rustup toolchain install nightly --profile minimal >&2; then
      log "FALLBACK: no nightly toolchain here; fuzzing without a sanitizer"
      sanitizer=none
    fi
  fi
  [ "$sanitizer" = none ] || toolchain=(+nightly)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  # A debug build: cargo-fuzz only drives cargo and libFuzzer, and it installs in a third
  # of the time of an optimized one.
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked --debug)"
  if ! cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --debug >&2; then
    log "FALLBACK: cargo-fuzz could not be installed; running the proptests instead"
    run_proptests
    exit 0
  fi
fi

# Coverage instrumentation for the code under test only (see fuzz/rustc-wrapper.sh).
export FUZZ_NEXT_RUSTC_WRAPPER=${RUSTC_WRAPPER:-}
export RUSTC_WRAPPER="$PWD/fuzz/rustc-wrapper.sh"

build_flag=(--dev)
[ "$build" = release ] && build_flag=(--release)
log "building ${targets[*]} (cargo fuzz build, $build, sanitizer $sanitizer)"
if [ ${#targets[@]} = ${#ALL_TARGETS[@]} ]; then
  cargo ${toolchain[@]+"${toolchain[@]}"} fuzz build "${build_flag[@]}" -s "$sanitizer" >&2
else
  for t in "${targets[@]}"; do
    cargo ${toolchain[@]+"${toolchain[@]}"} fuzz build "${build_flag[@]}" -s "$sanitizer" "$t" >&2
  done
fi

host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$build" = dev ]; then bin_dir="fuzz/target/$host/debug"; else bin_dir="fuzz/target/$host/release"; fi
logs=fuzz/target/logs
mkdir -p "$logs"

# One target: runs its binary (built above) for $seconds; the status goes to $logs/<t>.rc.
run_target() {
  local t=$1 work="fuzz/target/corpus/$1" artifacts="fuzz/artifacts/$1/"
  mkdir -p "$work" "$artifacts" "fuzz/regressions/$t"
  # The first directory receives what the run learns; the seeds and regressions are read.
  local rc=0
  RUST_BACKTRACE=1 "$bin_dir/$t" "$work" "fuzz/corpus/$t" "fuzz/regressions/$t" \
    -artifact_prefix="$artifacts" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$t.rc"
}

log "running each target for $seconds s, two at a time (logs in $logs/)"
touch "$logs/started"
started=$(date +%s)
# Two lanes for the two cores: each runs every other target in turn.
for lane in 0 1; do
  (
    i=0
    for t in "${targets[@]}"; do
      if [ $((i % 2)) = "$lane" ]; then run_target "$t"; fi
      i=$((i + 1))
    done
  ) &
done
wait

failed=()
for t in "${targets[@]}"; do
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$logs/$t.log" | tail -n 1)
  if [ "$rc" = 0 ]; then
    log "ok     $t: ${runs:-?}"
  else
    failed+=("$t")
    log "FAILED $t (exit $rc); the end of $logs/$t.log:"
    tail -n 40 "$logs/$t.log" >&2
    find "fuzz/artifacts/$t" -type f -newer "$logs/started" | while read -r f; do
      log "  failing input: $f"
      log "    replay:      $bin_dir/$t $f"
      log "    keep it:     cp $f fuzz/regressions/$t/<what-it-shows>   (cargo test replays it)"
    done
  fi
done
log "fuzzing took $(($(date +%s) - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  log "failed targets: ${failed[*]}"
  exit 1
fi
