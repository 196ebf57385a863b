//! `sse_parser`: the properties are in `wire/tests/properties/sse_parser.rs` (input layout there too),
//! shared with `cargo test`, which replays `fuzz/regressions/sse_parser/` through them.

#![no_main]
#![allow(clippy::unwrap_used)] // a failing unwrap is a finding

#[path = "../../wire/tests/properties/sse_parser.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
