//! `head`: the properties are in `server/tests/properties/head.rs` (input layout there too),
//! shared with `cargo test`, which replays `fuzz/regressions/head/` through them.

#![no_main]
#![allow(clippy::unwrap_used)] // a failing unwrap is a finding

#[path = "../../server/tests/properties/head.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
