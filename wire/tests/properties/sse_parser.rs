//! Properties of the incremental SSE parser on arbitrary input.
//!
//! Shared, as the same file, by the `sse_parser` fuzz target (`fuzz/fuzz_targets/`) and by
//! `tests/fuzz_properties.rs` (proptests, and replay of the fuzz corpus and regressions),
//! so a crash found by the fuzzer is replayed by `cargo test` with the same checks.
//!
//! Input layout: `[flags] [n] [n × u16 LE cut] [stream ...]`; a missing byte reads as 0.
//! * `flags & 1`: parse with `SseParser::with_max_line(1 + flags / 2)` instead of the
//!   default bound, so that the overflow paths are fuzzed too;
//! * each cut, modulo `stream.len() + 1`, is a point where the stream is split into chunks
//!   (empty chunks included: they must be harmless).
//!
//! Checked:
//! * chunking never changes anything: the events, `last_event_id`, `retry`, the counters and
//!   `overflowed` are those of pushing the stream whole, cut at the given points or fed one
//!   byte at a time; so is what the parser does after `finish()`;
//! * with the default bound, the result is that of a plain reference reading of the WHATWG
//!   rules over the whole stream (decode, strip the BOM, split lines, interpret);
//! * no event carries a CR, or a LF outside `data` (where LF joins lines), or a NUL in its id;
//! * frames written by `sse::write_event` / `write_comment` / `write_retry` from values
//!   derived from the input parse back to those values.

use realtime_bridge_wire::parser::DEFAULT_MAX_LINE;
use realtime_bridge_wire::sse;
use realtime_bridge_wire::{SseEvent, SseParser};

/// Everything the parser lets a caller observe.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    events: Vec<SseEvent>,
    last_event_id: Option<String>,
    retry: Option<u64>,
    comments: u64,
    overflowed: bool,
    bytes: u64,
    /// The events of a short second stream pushed after `finish()` (reconnection).
    after_finish: Vec<SseEvent>,
}

pub(crate) fn check(input: &[u8]) {
    let (flags, cuts, stream) = decode(input);
    let max_line = if flags & 1 == 1 { 1 + usize::from(flags / 2) } else { DEFAULT_MAX_LINE };

    let whole = observe(max_line, [stream]);
    let cut = observe(max_line, split(stream, &cuts));
    assert_eq!(cut, whole, "chunked at {cuts:?} differs from whole");
    if stream.len() <= 4096 {
        let bytewise = observe(max_line, stream.chunks(1));
        assert_eq!(bytewise, whole, "byte by byte differs from whole");
    }
    assert_eq!(whole.bytes, stream.len() as u64);

    for ev in whole.events.iter().chain(&whole.after_finish) {
        assert!(!ev.data.contains('\r'), "CR in data: {ev:?}");
        assert!(!ev.event.contains(['\r', '\n']), "line break in event: {ev:?}");
        assert!(!ev.event.is_empty(), "empty event type: {ev:?}");
        if let Some(id) = &ev.id {
            assert!(!id.contains(['\r', '\n', '\0']), "CR, LF or NUL in id: {ev:?}");
            assert!(!id.is_empty(), "empty id instead of None: {ev:?}");
        }
    }

    if max_line == DEFAULT_MAX_LINE {
        assert!(!whole.overflowed);
        let r = reference(stream);
        assert_eq!(whole.events, r.events, "events differ from the reference reading");
        assert_eq!(whole.last_event_id, r.last_event_id, "last event id differs from the reference");
        assert_eq!(whole.retry, r.retry, "retry differs from the reference");
        assert_eq!(whole.comments, r.comments, "comment count differs from the reference");
    }

    round_trip(stream);
}

/// Splits `input` into its parts (see the module doc).
fn decode(input: &[u8]) -> (u8, Vec<u16>, &[u8]) {
    let flags = input.first().copied().unwrap_or(0);
    let n = usize::from(input.get(1).copied().unwrap_or(0));
    let rest = input.get(2..).unwrap_or(&[]);
    let n = n.min(rest.len() / 2);
    let cuts = rest[..2 * n].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    (flags, cuts, &rest[2 * n..])
}

/// The inverse of [`decode`], for generators and seeds.
#[allow(dead_code)] // used by the tests, not by the fuzz target
pub(crate) fn encode(flags: u8, cuts: &[u16], stream: &[u8]) -> Vec<u8> {
    let cuts = &cuts[..cuts.len().min(255)];
    let mut v = vec![flags, cuts.len() as u8];
    for c in cuts {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v.extend_from_slice(stream);
    v
}

fn split<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&bytes[start..p]); // a repeated point gives an empty chunk
        start = p;
    }
    chunks.push(&bytes[start..]);
    chunks
}

fn observe<'a>(max_line: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Observed {
    let mut p = SseParser::with_max_line(max_line);
    let mut events = Vec::new();
    for c in chunks {
        p.push(c, &mut events);
    }
    let (last_event_id, retry, comments, overflowed, bytes) =
        (p.last_event_id().map(str::to_owned), p.retry(), p.comments_seen(), p.overflowed(), p.bytes_seen());
    // A new connection: the incomplete event is gone, the id persists, a BOM is stripped.
    p.finish();
    let mut after_finish = Vec::new();
    p.push(b"\xEF\xBB\xBFdata: z\n\n", &mut after_finish);
    if max_line >= b"data: z".len() {
        assert_eq!(after_finish.len(), 1, "the stream after finish() lost its event");
        assert_eq!(after_finish[0].id.as_deref(), last_event_id.as_deref(), "finish() lost the last event id");
    }
    Observed { events, last_event_id, retry, comments, overflowed, bytes, after_finish }
}

/// What the WHATWG "interpreting an event stream" rules give for the whole stream, read
/// the plain way: decode it all, then split it into lines, then interpret each line.
struct Reference {
    events: Vec<SseEvent>,
    last_event_id: Option<String>,
    retry: Option<u64>,
    comments: u64,
}

fn reference(stream: &[u8]) -> Reference {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);

    // Lines end at CRLF, LF or CR; what follows the last line end is incomplete.
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
            }
            '\n' => lines.push(std::mem::take(&mut line)),
            c => line.push(c),
        }
    }

    let mut r = Reference { events: Vec::new(), last_event_id: None, retry: None, comments: 0 };
    let (mut data, mut event_type, mut id_buffer) = (String::new(), String::new(), None::<String>);
    for line in &lines {
        if line.is_empty() {
            r.last_event_id.clone_from(&id_buffer);
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            let event = if event_type.is_empty() { "message".to_owned() } else { std::mem::take(&mut event_type) };
            r.events.push(SseEvent { id: r.last_event_id.clone(), event, data: std::mem::take(&mut data) });
            continue;
        }
        if line.starts_with(':') {
            r.comments += 1;
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match name {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Too large for the u64 the parser reports: ignored, like any invalid value.
                if let Ok(ms) = value.parse() {
                    r.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    r
}

const TOKEN_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A token (what the server puts in `id:` and `event:`) made of `bytes`, `None` if empty.
fn token(bytes: &[u8]) -> Option<String> {
    let t: String = bytes.iter().map(|&b| char::from(TOKEN_ALPHABET[usize::from(b % 64)])).collect();
    Some(t).filter(|t| !t.is_empty())
}

/// Writes a retry, a comment and an event made from `bytes`, and reads them back.
fn round_trip(bytes: &[u8]) {
    let id = token(&bytes[..bytes.len().min(8)]);
    let event = token(bytes.get(8..bytes.len().min(16)).unwrap_or(&[]));
    let text = String::from_utf8_lossy(bytes);
    let retry = bytes.iter().fold(0u64, |acc, &b| acc.rotate_left(8) ^ u64::from(b));

    let mut frame = Vec::new();
    sse::write_retry(&mut frame, retry);
    sse::write_comment(&mut frame, &text);
    sse::write_event(&mut frame, id.as_deref(), event.as_deref(), &text);

    let mut p = SseParser::new();
    let mut events = Vec::new();
    p.push(&frame, &mut events);
    // SSE cannot carry a bare CR: CRLF and CR arrive as LF.
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    let expected = SseEvent { id: id.clone(), event: event.unwrap_or_else(|| "message".to_owned()), data: normalised };
    assert_eq!(events, [expected], "frame {frame:?} did not read back");
    assert_eq!(p.retry(), Some(retry));
    assert_eq!(p.last_event_id(), id.as_deref());
    assert_eq!(p.comments_seen(), text.replace("\r\n", "\n").split(['\r', '\n']).count() as u64);
}
