//! The examples of the WHATWG HTML "Server-sent events" section (§9.2.5 /
//! §9.2.6), plus the interpretation rules one by one. Every stream is parsed
//! whole, byte by byte, and with CRLF / CR line endings, which must all agree.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use realtime_bridge_wire::{SseEvent, SseParser};

fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
    SseEvent { id: id.map(str::to_owned), event: event.to_owned(), data: data.to_owned() }
}

/// Parses `stream` whole and byte by byte; both must agree.
fn parse(stream: &[u8]) -> (SseParser, Vec<SseEvent>) {
    let mut whole = SseParser::new();
    let mut out = Vec::new();
    whole.push(stream, &mut out);

    let mut bytewise = SseParser::new();
    let mut out2 = Vec::new();
    for b in stream {
        bytewise.push(std::slice::from_ref(b), &mut out2);
    }
    assert_eq!(out, out2, "byte-by-byte parse differs for {stream:?}");
    assert_eq!(whole.retry(), bytewise.retry());
    assert_eq!(whole.last_event_id(), bytewise.last_event_id());
    assert_eq!(whole.comments_seen(), bytewise.comments_seen());
    (whole, out)
}

/// Checks `text` (written with LF) also with CRLF and CR-only line endings.
fn check_all_eols(text: &str, expected: &[SseEvent]) {
    for eol in ["\n", "\r\n", "\r"] {
        let stream = text.replace('\n', eol);
        let (_, out) = parse(stream.as_bytes());
        assert_eq!(out, expected, "line ending {eol:?}");
    }
}

#[test]
fn stock_ticker_multiline_data() {
    check_all_eols("data: YHOO\ndata: +2\ndata: 10\n\n", &[ev(None, "message", "YHOO\n+2\n10")]);
}

#[test]
fn test_stream_with_ids() {
    // "Note that the last still has to end with a blank line" — here it does.
    let text = ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
    check_all_eols(
        text,
        &[
            ev(Some("1"), "message", "first event"),
            // `id` with no value resets the last event id.
            ev(None, "message", "second event"),
            ev(None, "message", " third event"),
        ],
    );
    let (p, _) = parse(text.as_bytes());
    assert_eq!(p.comments_seen(), 1);
    assert_eq!(p.last_event_id(), None);

    // Without the final blank line the last event is not dispatched.
    let (_, out) = parse(text.trim_end_matches('\n').as_bytes());
    assert_eq!(out.len(), 2);
}

#[test]
fn empty_data_fields() {
    // "The first block fires events with the data set to the empty string, as
    // would the last block if it was followed by a blank line. The middle
    // block fires an event with the data set to a single newline character."
    check_all_eols("data\n\ndata\ndata\n\ndata:", &[ev(None, "message", ""), ev(None, "message", "\n")]);
}

#[test]
fn optional_space_after_colon() {
    check_all_eols("data:test\n\ndata: test\n\n", &[ev(None, "message", "test"), ev(None, "message", "test")]);
    // Only one space is removed.
    check_all_eols("data:  x \n\n", &[ev(None, "message", " x ")]);
}

#[test]
fn spec_intro_examples() {
    check_all_eols(
        "data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n",
        &[
            ev(None, "message", "This is the first message."),
            ev(None, "message", "This is the second message, it\nhas two lines."),
            ev(None, "message", "This is the third message."),
        ],
    );
    check_all_eols(
        "event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        &[ev(None, "add", "73857293"), ev(None, "remove", "2153"), ev(None, "add", "113411")],
    );
}

#[test]
fn comments_are_ignored_and_counted() {
    let (p, out) = parse(b": hello\n:\n: hb\n\ndata: x\n: inside an event\ndata: y\n\n");
    assert_eq!(out, [ev(None, "message", "x\ny")]);
    assert_eq!(p.comments_seen(), 4);
    // A colon-led line is a comment even if it looks like a field.
    let (_, out) = parse(b":data: x\n\n");
    assert!(out.is_empty());
}

#[test]
fn retry_field() {
    let (p, _) = parse(b"retry: 5000\n\n");
    assert_eq!(p.retry(), Some(5000));
    let (p, _) = parse(b"retry:7\n");
    assert_eq!(p.retry(), Some(7), "retry applies as soon as its line ends");
    for invalid in [
        &b"retry: \n\n"[..],
        b"retry\n\n",
        b"retry: +5\n\n",
        b"retry: -5\n\n",
        b"retry: 5s\n\n",
        b"retry: 1.5\n\n",
        b"retry:  5\n\n",
        b"retry: 99999999999999999999999\n\n",
    ] {
        let (p, _) = parse(invalid);
        assert_eq!(p.retry(), None, "{:?}", String::from_utf8_lossy(invalid));
    }
    // An invalid value leaves the previous valid one in place.
    let (p, _) = parse(b"retry: 10\nretry: x\n\n");
    assert_eq!(p.retry(), Some(10));
    // A retry-only block dispatches nothing.
    let (_, out) = parse(b"retry: 10\n\n");
    assert!(out.is_empty());
}

#[test]
fn bom_is_stripped_once() {
    let (_, out) = parse(b"\xEF\xBB\xBFdata: x\n\n");
    assert_eq!(out, [ev(None, "message", "x")]);
    // Only one: a second BOM makes the first line's name "\u{feff}data".
    let (_, out) = parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n");
    assert!(out.is_empty());
    // Only at stream start.
    let (_, out) = parse(b"data: x\n\n\xEF\xBB\xBFdata: y\n\n");
    assert_eq!(out, [ev(None, "message", "x")]);
}

#[test]
fn mixed_line_endings() {
    let (_, out) = parse(b"data: a\rdata: b\r\ndata: c\n\r\n\rdata: d\r\r");
    assert_eq!(out, [ev(None, "message", "a\nb\nc"), ev(None, "message", "d")]);
    // LF CR is two line ends, i.e. a blank line.
    let (_, out) = parse(b"data: a\n\rdata: b\n\n");
    assert_eq!(out, [ev(None, "message", "a"), ev(None, "message", "b")]);
}

#[test]
fn id_field_rules() {
    // NUL in id: the field is ignored.
    let (p, out) = parse(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n");
    assert_eq!(out, [ev(Some("1"), "message", "a"), ev(Some("1"), "message", "b")]);
    assert_eq!(p.last_event_id(), Some("1"));
    // The id persists across events until changed.
    let (_, out) = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\nid:\ndata: d\n\n");
    assert_eq!(
        out,
        [
            ev(Some("7"), "message", "a"),
            ev(Some("7"), "message", "b"),
            ev(Some("8"), "message", "c"),
            ev(None, "message", "d"),
        ]
    );
    // An id in a block without data still updates the last event id.
    let (p, out) = parse(b"id: 9\n\ndata: x\n\n");
    assert_eq!(out, [ev(Some("9"), "message", "x")]);
    assert_eq!(p.last_event_id(), Some("9"));
    // The last id field of a block wins; a space inside is kept.
    let (_, out) = parse(b"id: 1\nid: a b\ndata: x\n\n");
    assert_eq!(out[0].id.as_deref(), Some("a b"));
}

#[test]
fn empty_blocks_are_not_dispatched() {
    let (_, out) = parse(b"\n\n\n");
    assert!(out.is_empty());
    // An event type without data is dropped and does not leak into the next event.
    let (_, out) = parse(b"event: add\n\ndata: x\n\n");
    assert_eq!(out, [ev(None, "message", "x")]);
    // An empty event field means "message".
    let (_, out) = parse(b"event:\ndata: x\n\n");
    assert_eq!(out, [ev(None, "message", "x")]);
}

#[test]
fn no_trailing_blank_line_means_no_event() {
    for stream in [&b"data: x"[..], b"data: x\n", b"data: x\r\n", b"event: e\ndata: x\n"] {
        let (mut p, out) = parse(stream);
        assert!(out.is_empty(), "{stream:?}");
        p.finish();
        let mut out = Vec::new();
        p.push(b"\n", &mut out);
        assert!(out.is_empty(), "finish() must discard the incomplete event");
    }
    // A lone CR at the end is a complete line end: dispatch happens at once.
    let (_, out) = parse(b"data: x\r\r");
    assert_eq!(out, [ev(None, "message", "x")]);
}

#[test]
fn field_parsing_details() {
    // Unknown fields, including near-misses, are ignored.
    let (_, out) = parse(b"foo: bar\nData: x\ndata : y\ndata: z\nDATA\n\n");
    assert_eq!(out, [ev(None, "message", "z")]);
    // Only the first colon separates name and value.
    let (_, out) = parse(b"data: a:b: c\n\n");
    assert_eq!(out, [ev(None, "message", "a:b: c")]);
    // The last event field wins.
    let (_, out) = parse(b"event: a\nevent: b\ndata: x\n\n");
    assert_eq!(out, [ev(None, "b", "x")]);
    // Non-ASCII and NUL in data are carried as is.
    let (_, out) = parse("data: h\u{e9}\0\u{1F600}\n\n".as_bytes());
    assert_eq!(out, [ev(None, "message", "h\u{e9}\0\u{1F600}")]);
}
