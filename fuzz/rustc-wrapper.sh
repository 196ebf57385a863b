#!/usr/bin/env bash
# RUSTC_WRAPPER for fuzz builds (set by scripts/fuzz.sh): coverage instrumentation for the
# code under test only. cargo-fuzz gives its sanitizer-coverage flags to every crate, and
# compiling the server's two hundred dependencies with them costs a third of a fresh
# build, while their coverage would only steer the fuzzer into code no target tests.
# Everything else (debug assertions, a sanitizer if one was asked for) is left as it is.
rustc=$1
shift
instrument=0
prev=
for a in "$@"; do
  if [ "$prev" = --crate-name ]; then
    case "$a" in
      # Ours (libraries and fuzz targets), and the parsers the `head` target goes through.
      realtime_bridge | realtime_bridge_wire | sse_parser | cursor | ids | head | token | httparse | http)
        instrument=1 ;;
    esac
    break
  fi
  prev=$a
done
# A wrapper already configured (e.g. a compiler cache) still runs.
next=(${FUZZ_NEXT_RUSTC_WRAPPER:+"$FUZZ_NEXT_RUSTC_WRAPPER"})
if [ "$instrument" = 1 ]; then
  exec "${next[@]}" "$rustc" "$@"
fi
args=()
for a in "$@"; do
  case "$a" in
    -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
    *) args+=("$a") ;;
  esac
done
exec "${next[@]}" "$rustc" "${args[@]}"
