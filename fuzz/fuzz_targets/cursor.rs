//! `cursor`: the properties are in `wire/tests/properties/cursor.rs` (input layout there too),
//! shared with `cargo test`, which replays `fuzz/regressions/cursor/` through them.

#![no_main]
#![allow(clippy::unwrap_used)] // a failing unwrap is a finding

#[path = "../../wire/tests/properties/cursor.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
