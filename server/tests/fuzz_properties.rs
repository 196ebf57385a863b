//! The properties of the fuzz targets `head` and `token` (`fuzz/`), as ordinary tests: the
//! checks themselves live in `tests/properties/` and are compiled into the fuzz targets
//! too. Here they run
//! * on every file of `fuzz/regressions/<target>/` (inputs that once failed) and of
//!   `fuzz/corpus/<target>/` (the seeds), so a fixed bug stays fixed without the fuzzer;
//! * as proptests on generated inputs, `PROPTEST_CASES` cases each (default 256):
//!   `scripts/fuzz.sh` raises it for a long run where cargo-fuzz is not available.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "properties/head.rs"]
mod head;
#[path = "../../fuzz/replay.rs"]
mod replay;
#[path = "properties/token.rs"]
mod token;

use proptest::prelude::*;
use replay::{cases, replay};

#[test]
fn fuzz_files_replay() {
    assert!(replay(env!("CARGO_MANIFEST_DIR"), "head", head::check) > 0, "no seed found for head");
    assert!(replay(env!("CARGO_MANIFEST_DIR"), "token", token::check) > 0, "no seed found for token");
}

/// Request heads, mostly near-valid: the pieces a stream request is made of, and others.
fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => Just(&b"GET /v1/users/42/events HTTP/1.1\r\n"[..]),
        1 => Just(&b"GET /v1/users/42/events?events=a,b HTTP/1.0\n"[..]),
        1 => Just(&b"POST /v1/publish HTTP/1.1\r\n"[..]),
        1 => Just(&b"GET /v1/users/"[..]),
        1 => Just(&b"/events"[..]),
        1 => Just(&b" HTTP/1.1"[..]),
        4 => Just(&b"\r\n"[..]),
        2 => Just(&b"\n"[..]),
        2 => Just(&b"Host: a\r\n"[..]),
        1 => Just(&b"Last-Event-ID: 3:4\r\n"[..]),
        1 => Just(&b"Content-Length: 0\r\n"[..]),
        1 => Just(&b"Content-Length: 3\r\n"[..]),
        1 => Just(&b"Transfer-Encoding: chunked\r\n"[..]),
        1 => Just(&b"Upgrade: websocket\r\n"[..]),
        1 => Just(&b"#"[..]),
        1 => Just(&b"?"[..]),
        1 => Just(&b": "[..]),
    ]
    .prop_map(<[u8]>::to_vec);
    proptest::collection::vec(prop_oneof![6 => piece, 1 => proptest::collection::vec(any::<u8>(), 1..4)], 0..12)
        .prop_map(|parts| parts.concat())
}

/// Token lookups: fields (see `properties/token.rs`) rich in what the rules look for.
fn token_input() -> impl Strategy<Value = Vec<u8>> {
    let value = proptest::collection::vec(
        prop_oneof![
            2 => "[A-Za-z0-9._-]{0,6}",
            1 => Just("Bearer ".to_owned()),
            1 => Just("bearer".to_owned()),
            1 => Just("BEARER  ".to_owned()),
            1 => Just("rb_token=".to_owned()),
            1 => Just("; ".to_owned()),
            1 => Just(" ".to_owned()),
            1 => Just("\t".to_owned()),
            1 => Just("\u{e9}".to_owned()),
            1 => any::<char>().prop_map(String::from),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat());
    let field = (prop_oneof![Just('A'), Just('C'), Just('Q'), Just('X')], value)
        .prop_map(|(kind, value)| format!("{kind}:{value}"));
    (any::<bool>(), proptest::collection::vec(field, 0..5)).prop_map(|(hqc, fields)| {
        let mut v = vec![u8::from(hqc)];
        v.extend_from_slice(fields.join("\n").as_bytes());
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn head_properties(
        cuts in proptest::collection::vec(any::<u16>(), 0..12),
        pad in prop_oneof![8 => Just(0u8), 1 => 0xF0u8..=0xFF, 1 => any::<u8>()],
        bytes in head_bytes(),
    ) {
        head::check(&head::encode(&cuts, pad, &bytes));
    }

    #[test]
    fn head_arbitrary_input(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        head::check(&input);
    }

    #[test]
    fn token_properties(input in token_input()) {
        token::check(&input);
    }

    #[test]
    fn token_arbitrary_input(input in proptest::collection::vec(any::<u8>(), 0..128)) {
        token::check(&input);
    }
}
