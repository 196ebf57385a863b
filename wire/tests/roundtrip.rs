//! Framing (`sse`) and parsing (`parser`) must agree: whatever the server
//! writes, the SDK reads back, however the bytes are chunked on the way.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use proptest::prelude::*;
use realtime_bridge_wire::parser::parse_all;
use realtime_bridge_wire::sse::{self, write_comment, write_event, write_retry, HEARTBEAT};
use realtime_bridge_wire::{SseEvent, SseParser};

/// What SSE can carry: CRLF and lone CR both arrive as LF.
fn normalise(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

#[test]
fn design_doc_frame_round_trips() {
    let data = r#"{"id":"1734","event":"message_new","data":{"text":"hi"},"timestamp":"2026-11-25T10:00:00.123Z","userId":"42"}"#;
    let mut v = Vec::new();
    write_event(&mut v, Some("1734"), Some("message_new"), data);
    assert_eq!(v, format!("id: 1734\nevent: message_new\ndata: {data}\n\n").as_bytes());
    assert_eq!(parse_all(&v), [SseEvent { id: Some("1734".into()), event: "message_new".into(), data: data.into() }]);
}

#[test]
fn multiline_data_round_trips() {
    for (data, expected) in [
        ("a\nb", "a\nb"),
        ("a\r\nb", "a\nb"),
        ("a\rb", "a\nb"),
        ("a\r\n\r\nb", "a\n\nb"),
        ("a\n\rb", "a\n\nb"),
        ("\n", "\n"),
        ("\r", "\n"),
        ("\r\n", "\n"),
        ("x\n", "x\n"),
        ("\nx", "\nx"),
        ("", ""),
        (" leading space", " leading space"),
        (": not a comment", ": not a comment"),
        ("data: nested", "data: nested"),
    ] {
        let frame = sse::encode_event(None, Some("e"), data);
        let got = parse_all(&frame);
        assert_eq!(got.len(), 1, "{data:?}");
        assert_eq!(got[0].data, expected, "{data:?}");
        assert_eq!(got[0].event, "e");
    }
}

#[test]
fn heartbeats_and_retry_are_invisible_but_observable() {
    let mut v = Vec::new();
    write_retry(&mut v, 2500);
    v.extend_from_slice(HEARTBEAT);
    write_event(&mut v, None, None, "x");
    v.extend_from_slice(HEARTBEAT);
    let mut p = SseParser::new();
    let mut out = Vec::new();
    p.push(&v, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(p.retry(), Some(2500));
    assert_eq!(p.comments_seen(), 2);
    assert_eq!(p.bytes_seen(), v.len() as u64);
}

#[derive(Debug, Clone)]
enum Item {
    Event { id: Option<String>, event: Option<String>, data: String },
    Comment(String),
    Retry(u64),
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,12}"
}

/// Data with plenty of line breaks, multi-byte characters and SSE syntax.
fn data() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("\n".to_owned()),
                Just("\r".to_owned()),
                Just("\r\n".to_owned()),
                Just(":".to_owned()),
                Just(" ".to_owned()),
                Just("data: ".to_owned()),
                Just("\u{e9}\u{20ac}\u{1F600}".to_owned()),
                Just("\u{feff}".to_owned()),
                "[a-z{}\":,]{0,6}",
                any::<char>().prop_map(String::from),
            ],
            0..12
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        6 => (proptest::option::of(token()), proptest::option::of(token()), data())
            .prop_map(|(id, event, data)| Item::Event { id, event, data }),
        1 => data().prop_map(Item::Comment),
        1 => any::<u64>().prop_map(Item::Retry),
    ]
}

struct Encoded {
    bytes: Vec<u8>,
    events: Vec<SseEvent>,
    retry: Option<u64>,
    comments: u64,
    last_id: Option<String>,
}

fn encode(items: &[Item], bom: bool) -> Encoded {
    let mut bytes = Vec::new();
    if bom {
        bytes.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut events = Vec::new();
    let mut retry = None;
    let mut comments = 0;
    let mut last_id: Option<String> = None;
    for item in items {
        match item {
            Item::Event { id, event, data } => {
                write_event(&mut bytes, id.as_deref(), event.as_deref(), data);
                if id.is_some() {
                    last_id.clone_from(id);
                }
                events.push(SseEvent {
                    id: last_id.clone(),
                    event: event.clone().unwrap_or_else(|| "message".to_owned()),
                    data: normalise(data),
                });
            }
            Item::Comment(text) => {
                write_comment(&mut bytes, text);
                comments += normalise(text).split('\n').count() as u64;
            }
            Item::Retry(ms) => {
                write_retry(&mut bytes, *ms);
                retry = Some(*ms);
            }
        }
    }
    Encoded { bytes, events, retry, comments, last_id }
}

fn feed(chunks: impl IntoIterator<Item = impl AsRef<[u8]>>) -> (SseParser, Vec<SseEvent>) {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.push(c.as_ref(), &mut out);
    }
    (p, out)
}

/// Cuts `bytes` at the given (sorted, deduplicated) positions.
fn split_at_points<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&bytes[start..p]); // may be empty: empty chunks must be harmless
        start = p;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// `default` cases, or `PROPTEST_CASES` for a long run (`scripts/fuzz.sh --proptest`).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn encode_then_parse_any_chunking(
        items in proptest::collection::vec(item(), 0..12),
        bom in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let enc = encode(&items, bom);

        let (whole, expected_whole) = feed([&enc.bytes]);
        prop_assert_eq!(&expected_whole, &enc.events);
        prop_assert_eq!(whole.retry(), enc.retry);
        prop_assert_eq!(whole.comments_seen(), enc.comments);
        prop_assert_eq!(whole.last_event_id(), enc.last_id.as_deref());
        prop_assert!(!whole.overflowed());

        let (p, got) = feed(split_at_points(&enc.bytes, &cuts));
        prop_assert_eq!(&got, &expected_whole);
        prop_assert_eq!(p.retry(), whole.retry());
        prop_assert_eq!(p.comments_seen(), whole.comments_seen());
        prop_assert_eq!(p.last_event_id(), whole.last_event_id());
        prop_assert_eq!(p.bytes_seen(), enc.bytes.len() as u64);

        let (p, got) = feed(enc.bytes.chunks(1));
        prop_assert_eq!(&got, &expected_whole);
        prop_assert_eq!(p.comments_seen(), whole.comments_seen());
    }

    /// The same with the stream rewritten to CRLF or CR-only line endings
    /// (what other servers or proxies may send), cut between every CR and LF.
    #[test]
    fn other_line_endings_any_chunking(
        items in proptest::collection::vec(item(), 0..8),
        crlf in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let enc = encode(&items, false);
        // The writer only emits LF, and data never contains a raw CR or LF.
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\r" };
        let mut bytes = Vec::with_capacity(enc.bytes.len() * 2);
        for &b in &enc.bytes {
            if b == b'\n' { bytes.extend_from_slice(eol) } else { bytes.push(b) }
        }
        let (_, whole) = feed([&bytes]);
        prop_assert_eq!(&whole, &enc.events);
        let (_, got) = feed(split_at_points(&bytes, &cuts));
        prop_assert_eq!(&got, &enc.events);
        // Every CR LF pair split in two.
        let pieces: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\r').collect();
        let (_, got) = feed(pieces);
        prop_assert_eq!(&got, &enc.events);
    }

    /// Arbitrary bytes never panic and chunking never changes the result.
    #[test]
    fn arbitrary_bytes_chunking_invariant(
        bytes in proptest::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                1 => Just(b'\n'),
                1 => Just(b'\r'),
                1 => Just(b':'),
                1 => Just(b' '),
            ],
            0..200
        ),
        prefix in prop_oneof![Just(&b""[..]), Just(&b"data"[..]), Just(&b"id"[..]), Just(&b"\xEF\xBB"[..])],
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut stream = prefix.to_vec();
        stream.extend_from_slice(&bytes);
        let (whole, expected) = feed([&stream]);
        let (p, got) = feed(split_at_points(&stream, &cuts));
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(p.retry(), whole.retry());
        prop_assert_eq!(p.last_event_id(), whole.last_event_id());
        prop_assert_eq!(p.comments_seen(), whole.comments_seen());
        let (_, got) = feed(stream.chunks(1));
        prop_assert_eq!(&got, &expected);
    }
}
