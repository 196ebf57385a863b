//! The properties of the fuzz targets `sse_parser`, `cursor` and `ids` (`fuzz/`), as
//! ordinary tests: the checks themselves live in `tests/properties/` and are compiled into
//! the fuzz targets too. Here they run
//! * on every file of `fuzz/regressions/<target>/` (inputs that once failed) and of
//!   `fuzz/corpus/<target>/` (the seeds), so a fixed bug stays fixed without the fuzzer;
//! * as proptests on generated inputs, `PROPTEST_CASES` cases each (default 256):
//!   `scripts/fuzz.sh` raises it for a long run where cargo-fuzz is not available.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "properties/cursor.rs"]
mod cursor;
#[path = "properties/ids.rs"]
mod ids;
#[path = "../../fuzz/replay.rs"]
mod replay;
#[path = "properties/sse_parser.rs"]
mod sse_parser;

use proptest::prelude::*;
use replay::{cases, replay};

#[test]
fn fuzz_files_replay() {
    assert!(replay(env!("CARGO_MANIFEST_DIR"), "sse_parser", sse_parser::check) > 0, "no seed found for sse_parser");
    assert!(replay(env!("CARGO_MANIFEST_DIR"), "cursor", cursor::check) > 0, "no seed found for cursor");
    assert!(replay(env!("CARGO_MANIFEST_DIR"), "ids", ids::check) > 0, "no seed found for ids");
}

/// Bytes rich in what SSE gives meaning to.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 1..4),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => Just(b":".to_vec()),
            1 => Just(b" ".to_vec()),
            1 => Just(b"\0".to_vec()),
            1 => Just(b"\xEF\xBB\xBF".to_vec()),
            1 => Just("\u{e9}\u{1F600}".as_bytes().to_vec()),
            2 => Just(b"data".to_vec()),
            1 => Just(b"event".to_vec()),
            1 => Just(b"id".to_vec()),
            1 => Just(b"retry".to_vec()),
            1 => "[0-9]{1,21}".prop_map(String::into_bytes),
        ],
        0..48,
    )
    .prop_map(|parts| parts.concat())
}

/// Text rich in what tokens, lists and subjects give meaning to.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                4 => "[A-Za-z0-9_-]{1,8}",
                1 => "[A-Za-z0-9_-]{120,130}",
                1 => Just(".".to_owned()),
                1 => Just(",".to_owned()),
                1 => Just("user.".to_owned()),
                1 => Just("broadcast.".to_owned()),
                1 => Just("rt.".to_owned()),
                1 => Just("*".to_owned()),
                1 => Just(">".to_owned()),
                1 => any::<char>().prop_map(String::from),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn sse_parser_properties(
        flags in prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
        cuts in proptest::collection::vec(any::<u16>(), 0..16),
        stream in sse_bytes(),
    ) {
        sse_parser::check(&sse_parser::encode(flags, &cuts, &stream));
    }

    #[test]
    fn sse_parser_arbitrary_input(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        sse_parser::check(&input);
    }

    #[test]
    fn cursor_properties(
        text in prop_oneof![
            "[0-9]{0,22}:[0-9]{0,22}",
            "[0-9:+ -]{0,12}",
            any::<String>(),
        ],
        pair in any::<(u64, u64)>(),
    ) {
        cursor::check(text.as_bytes());
        let mut bytes = pair.0.to_le_bytes().to_vec();
        bytes.extend_from_slice(&pair.1.to_le_bytes());
        cursor::check(&bytes);
    }

    #[test]
    fn ids_properties(text in id_text()) {
        ids::check(text.as_bytes());
    }

    #[test]
    fn ids_arbitrary_input(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        ids::check(&input);
    }
}
