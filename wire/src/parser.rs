//! Incremental Server-Sent-Events parser (the decoding side).
//!
//! Implements the WHATWG HTML "Server-sent events" interpretation rules
//! (§9.2.6 "Interpreting an event stream") over arbitrary byte chunks, as
//! they come off a `fetch` body or a socket: a frame, a UTF-8 character or a
//! CRLF pair may be split across chunks anywhere.
//!
//! Spec points worth knowing:
//! * one leading UTF-8 BOM is stripped at stream start;
//! * lines end at CRLF, LF or CR (a CR at the end of one chunk followed by LF
//!   at the start of the next is one line end);
//! * text is decoded as UTF-8 with invalid sequences replaced by U+FFFD;
//! * an event is only dispatched by a blank line: at end of stream an
//!   incomplete event is discarded ([`SseParser::finish`]);
//! * the last event id persists from event to event until an `id` field
//!   changes it.
//!
//! It runs in the browser (WASM SDK) at high event rates, so it scans with a
//! word-at-a-time search for line ends, decodes each line at most once, and
//! only copies bytes when a line straddles two chunks.

use std::borrow::Cow;
use std::mem;

/// Default bound on one line, and on the data of one event: 16 MiB.
///
/// Large enough for any sane payload, small enough that a hostile or broken
/// stream cannot make the client buffer without limit.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
/// `bom` state once the stream start has been dealt with.
const BOM_DONE: u8 = 3;
/// A line buffer bigger than this is released after use rather than kept.
const KEEP_LINE_CAPACITY: usize = 1024 * 1024;

/// One dispatched event, as an `EventSource` would deliver it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SseEvent {
    /// The stream's last event id at dispatch time (it persists across
    /// events until an `id` field changes it); `None` if never set or reset
    /// by an empty `id` field (the spec's empty string, which means "no
    /// `Last-Event-ID`").
    pub id: Option<String>,
    /// The event type: the last `event` field of the block, or `"message"`.
    pub event: String,
    /// The `data` fields joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed it byte chunks, collect [`SseEvent`]s.
///
/// ```
/// use realtime_bridge_wire::SseParser;
///
/// let mut parser = SseParser::new();
/// let mut events = Vec::new();
/// parser.push(b"id: 7\nevent: typing\ndata: a\r", &mut events);
/// assert!(events.is_empty()); // no blank line yet
/// parser.push(b"\ndata: b\n\n", &mut events);
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].id.as_deref(), Some("7"));
/// assert_eq!(events[0].event, "typing");
/// assert_eq!(events[0].data, "a\nb");
/// ```
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Start of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The spec's data buffer.
    data: String,
    /// The spec's event type buffer.
    event_type: String,
    /// The spec's last event ID buffer (updated by `id` fields).
    id_buffer: Option<String>,
    /// The spec's last event ID string (updated at each blank line).
    last_event_id: Option<String>,
    retry: Option<u64>,
    /// BOM bytes matched so far at stream start, or `BOM_DONE`.
    bom: u8,
    /// The previous chunk ended with CR: a LF starting the next one belongs to it.
    pending_cr: bool,
    /// Dropping the rest of an over-long line.
    discarding: bool,
    /// The current event lost a line or data to the size bound: don't dispatch it.
    poisoned: bool,
    overflowed: bool,
    max_line: usize,
    bytes_seen: u64,
    comments_seen: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser for a new stream, with the [`DEFAULT_MAX_LINE`] bound.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A parser that refuses lines (and per-event data) longer than `bytes`.
    ///
    /// An over-long line is dropped, the event it belongs to is not
    /// dispatched, and [`overflowed`](Self::overflowed) becomes true; parsing
    /// resumes at the next line.
    ///
    /// ```
    /// use realtime_bridge_wire::SseParser;
    /// let mut p = SseParser::with_max_line(8);
    /// let mut out = Vec::new();
    /// p.push(b"data: far too long\n\ndata: ok\n\n", &mut out);
    /// assert!(p.overflowed());
    /// assert_eq!(out.len(), 1);
    /// assert_eq!(out[0].data, "ok");
    /// ```
    pub fn with_max_line(bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            id_buffer: None,
            last_event_id: None,
            retry: None,
            bom: 0,
            pending_cr: false,
            discarding: false,
            poisoned: false,
            overflowed: false,
            max_line: bytes,
            bytes_seen: 0,
            comments_seen: 0,
        }
    }

    /// Parses `chunk` and appends every event it completes to `out`.
    ///
    /// Chunks may be split anywhere (inside a line, a UTF-8 character or a
    /// CRLF pair); the result is the same as pushing the whole stream at once.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.bytes_seen += chunk.len() as u64;
        let mut rest = chunk;
        if self.bom != BOM_DONE {
            rest = self.skip_bom(rest);
        }
        if self.pending_cr {
            match rest.first() {
                None => return,
                Some(&b) => {
                    self.pending_cr = false;
                    if b == b'\n' {
                        rest = &rest[1..];
                    }
                }
            }
        }
        while let Some(i) = find_eol(rest) {
            self.end_line(&rest[..i], out);
            let mut next = i + 1;
            if rest[i] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            rest = &rest[next..];
        }
        self.append_partial(rest);
    }

    /// Ends the current stream (connection closed).
    ///
    /// Per spec an incomplete event at end of stream is discarded, never
    /// dispatched. The parser is then ready for the next connection's stream
    /// (a BOM is stripped again); like `EventSource` across reconnections,
    /// it keeps [`last_event_id`](Self::last_event_id), [`retry`](Self::retry)
    /// and the counters.
    pub fn finish(&mut self) {
        self.line.clear();
        if self.line.capacity() > KEEP_LINE_CAPACITY {
            self.line = Vec::new();
        }
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.bom = 0;
        self.pending_cr = false;
        self.discarding = false;
        self.poisoned = false;
    }

    /// The last valid `retry:` value (milliseconds), if any: what the client
    /// should wait before reconnecting.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event id as of the last completed block, i.e. what to send
    /// as `Last-Event-ID` when reconnecting. `None` if never set or reset.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Total bytes pushed so far (BOM included), e.g. for a watchdog that
    /// notices a stalled stream.
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Number of comment lines seen so far; heartbeats are comments, so this
    /// lets a watchdog tell a quiet-but-alive stream from a dead one.
    pub fn comments_seen(&self) -> u64 {
        self.comments_seen
    }

    /// Whether a line or an event's data ever exceeded the size bound and
    /// was dropped (see [`with_max_line`](Self::with_max_line)).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The size bound given to [`with_max_line`](Self::with_max_line).
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Consumes a leading BOM, possibly split across chunks.
    fn skip_bom<'a>(&mut self, mut rest: &'a [u8]) -> &'a [u8] {
        while self.bom < BOM_DONE {
            let Some(&b) = rest.first() else {
                return rest;
            };
            let matched = usize::from(self.bom);
            if b == BOM[matched] {
                self.bom += 1;
                rest = &rest[1..];
            } else {
                // Not a BOM after all: the bytes taken so far are content
                // (neither is CR nor LF, so they just start the first line).
                self.bom = BOM_DONE;
                self.line.extend_from_slice(&BOM[..matched]);
            }
        }
        rest
    }

    /// `tail` is the part of a line found in the current chunk; the line
    /// itself ends here.
    fn end_line(&mut self, tail: &[u8], out: &mut Vec<SseEvent>) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        if self.line.is_empty() {
            // Fast path: the whole line is in this chunk, no copy.
            if tail.len() > self.max_line {
                self.overflow();
            } else {
                self.process_line(tail, out);
            }
            return;
        }
        if self.line.len() + tail.len() > self.max_line {
            self.overflow();
            self.line.clear();
            return;
        }
        let mut line = mem::take(&mut self.line);
        line.extend_from_slice(tail);
        self.process_line(&line, out);
        line.clear();
        if line.capacity() <= KEEP_LINE_CAPACITY {
            self.line = line;
        }
    }

    /// Keeps the unterminated end of a chunk for the next push.
    fn append_partial(&mut self, rest: &[u8]) {
        if rest.is_empty() || self.discarding {
            return;
        }
        if self.line.len() + rest.len() > self.max_line {
            self.overflow();
            self.discarding = true;
            self.line = Vec::new();
            return;
        }
        self.line.extend_from_slice(rest);
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.poisoned = true;
        self.data.clear();
    }

    /// Interprets one complete line (without its terminator).
    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        let Some(&first) = line.first() else {
            self.dispatch(out);
            return;
        };
        if first == b':' {
            self.comments_seen += 1;
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let v = &line[colon + 1..];
                (&line[..colon], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        // Comparing raw bytes is equivalent to comparing decoded names: an
        // invalid sequence decodes to U+FFFD, which is in none of them.
        match name {
            b"data" => {
                if self.poisoned {
                    return;
                }
                if self.data.len() + value.len() + 1 > self.max_line {
                    self.overflow();
                    return;
                }
                // Reserve for the value and the LF at once (one allocation).
                self.data.reserve(value.len() + 1);
                push_lossy(&mut self.data, value);
                self.data.push('\n');
            }
            b"event" => {
                self.event_type.clear();
                push_lossy(&mut self.event_type, value);
            }
            b"id" => {
                if value.contains(&0) {
                    // Spec: an id containing NUL is ignored.
                } else if value.is_empty() {
                    self.id_buffer = None;
                } else {
                    let id = self.id_buffer.get_or_insert_with(String::new);
                    id.clear();
                    push_lossy(id, value);
                }
            }
            b"retry" => {
                if let Some(ms) = parse_digits(value) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// The blank-line step of the spec ("dispatch the event").
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if self.poisoned {
            self.poisoned = false;
            self.data.clear();
            self.event_type.clear();
            return;
        }
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        if self.data.ends_with('\n') {
            self.data.pop();
        }
        let event = if self.event_type.is_empty() { String::from("message") } else { mem::take(&mut self.event_type) };
        out.push(SseEvent { id: self.last_event_id.clone(), event, data: mem::take(&mut self.data) });
    }
}

/// Parses a complete stream in one go (then [`SseParser::finish`]es it), for
/// tests, benchmarks and one-shot bodies.
///
/// ```
/// let ev = realtime_bridge_wire::parser::parse_all(b"data: YHOO\ndata: +2\ndata: 10\n\n");
/// assert_eq!(ev[0].data, "YHOO\n+2\n10");
/// ```
pub fn parse_all(stream: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    parser.push(stream, &mut out);
    parser.finish();
    out
}

/// Appends `bytes` decoded as UTF-8, invalid sequences replaced by U+FFFD.
///
/// Decoding per line (or per field value) gives the same text as decoding the
/// whole stream: lines and values are cut at ASCII bytes, which never occur
/// inside a multi-byte sequence and always end an invalid one.
#[inline]
fn push_lossy(dst: &mut String, bytes: &[u8]) {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => dst.push_str(s),
        Cow::Owned(s) => dst.push_str(&s),
    }
}

/// `Some(n)` if `v` is one or more ASCII digits whose value fits in a `u64`.
fn parse_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Index of the first `\r` or `\n` in `hay`.
///
/// Looks at eight bytes at a time (SWAR) so long JSON data lines are scanned
/// quickly without SIMD intrinsics or `unsafe`, on every target.
#[inline]
pub(crate) fn find_eol(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    const CR: u64 = LO * b'\r' as u64;

    let mut words = hay.chunks_exact(8);
    let mut base = 0;
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let x = v ^ LF;
        let y = v ^ CR;
        // Classic "has a zero byte": the lowest flagged byte is always a real
        // zero (false positives only appear above a real one).
        let found = ((x.wrapping_sub(LO) & !x) | (y.wrapping_sub(LO) & !y)) & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words.remainder().iter().position(|&b| b == b'\n' || b == b'\r').map(|i| base + i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (SseParser, Vec<SseEvent>) {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        (p, out)
    }

    fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
        SseEvent { id: id.map(str::to_owned), event: event.to_owned(), data: data.to_owned() }
    }

    #[test]
    fn find_eol_basic() {
        assert_eq!(find_eol(b""), None);
        assert_eq!(find_eol(b"abc"), None);
        assert_eq!(find_eol(b"\n"), Some(0));
        assert_eq!(find_eol(b"abcdefgh\r"), Some(8));
        assert_eq!(find_eol(b"abcdefg\n\r"), Some(7));
        assert_eq!(find_eol(b"a\x0b\x0c\x0e\x8a\x8d\xff\x00\x01\x09\x0a"), Some(10));
    }

    proptest! {
        #[test]
        fn find_eol_matches_naive(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let naive = v.iter().position(|&b| b == b'\n' || b == b'\r');
            prop_assert_eq!(find_eol(&v), naive);
        }

        #[test]
        fn find_eol_sparse(pos in 0usize..40, len in 0usize..40, cr in any::<bool>()) {
            let mut v = vec![b'x'; len];
            if pos < len {
                v[pos] = if cr { b'\r' } else { b'\n' };
            }
            prop_assert_eq!(find_eol(&v), (pos < len).then_some(pos));
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let (_, out) = parse_chunks(&[b"data: a\r", b"\n", b"\r", b"\n"]);
        assert_eq!(out, [ev(None, "message", "a")]);
        // CR then LF in separate chunks with empty chunks in between.
        let (_, out) = parse_chunks(&[b"data: a\r", b"", b"", b"\ndata: b\n\n"]);
        assert_eq!(out, [ev(None, "message", "a\nb")]);
        // CR CR is two line ends: the event is dispatched at the second CR.
        let (_, out) = parse_chunks(&[b"data: a\r", b"\r"]);
        assert_eq!(out, [ev(None, "message", "a")]);
    }

    #[test]
    fn bom_is_stripped_once_even_when_split() {
        let (_, out) = parse_chunks(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]);
        assert_eq!(out, [ev(None, "message", "x")]);
        // A second BOM is content: the line becomes an unknown field.
        let (_, out) = parse_chunks(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n"]);
        assert_eq!(out, [ev(None, "message", "y")]);
        // A BOM prefix that is not a BOM is kept as content (and decoded lossily).
        let (_, out) = parse_chunks(&[b"\xEF\xBB", b"data: x\n\n"]);
        assert!(out.is_empty());
        let (_, out) = parse_chunks(&[b"\xEF\xBB", b":data: x\n\n"]);
        assert!(out.is_empty());
        let (p, _) = parse_chunks(&[b"\xEF", b":c\n"]);
        assert_eq!(p.comments_seen(), 0); // the line was "\xEF:c", a field
    }

    #[test]
    fn utf8_split_across_chunks() {
        let s = "data: h\u{e9}\u{20ac}\u{1F600}\n\n".as_bytes();
        for cut in 0..s.len() {
            let (_, out) = parse_chunks(&[&s[..cut], &s[cut..]]);
            assert_eq!(out, [ev(None, "message", "h\u{e9}\u{20ac}\u{1F600}")], "cut {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (_, out) = parse_chunks(&[b"data: a\xFFb\xE2\x82\nevent: \xC3\n\n"]);
        assert_eq!(out, [ev(None, "\u{FFFD}", "a\u{FFFD}b\u{FFFD}")]);
    }

    #[test]
    fn overflow_drops_line_and_event_then_recovers() {
        for chunks in [
            vec![&b"data: 0123456789\n\ndata: ok\n\n"[..]],
            vec![&b"data: 01"[..], b"23456789\n\ndata: ok\n\n"],
            vec![&b"data: 01"[..], b"234", b"56789", b"\n", b"\ndata: ok\n\n"],
        ] {
            let mut p = SseParser::with_max_line(10);
            let mut out = Vec::new();
            for c in chunks {
                p.push(c, &mut out);
            }
            assert!(p.overflowed());
            assert_eq!(out, [ev(None, "message", "ok")]);
        }
        // Data accumulated over many short lines is bounded too.
        let mut p = SseParser::with_max_line(10);
        let mut out = Vec::new();
        p.push(b"data: 1234\ndata: 5678\ndata: 9\n\ndata: ok\n\n", &mut out);
        assert!(p.overflowed());
        assert_eq!(out, [ev(None, "message", "ok")]);
        // At the limit exactly: fine.
        let mut p = SseParser::with_max_line(10);
        let mut out = Vec::new();
        p.push(b"data: 1234\n\n", &mut out);
        assert!(!p.overflowed());
        assert_eq!(p.max_line(), 10);
        assert_eq!(out, [ev(None, "message", "1234")]);
    }

    #[test]
    fn finish_discards_incomplete_event_and_keeps_last_id() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.push(b"id: 1\ndata: a\n\nid: 2\ndata: partial\n", &mut out);
        p.finish();
        assert_eq!(p.last_event_id(), Some("1"));
        // Next connection: BOM stripped again, id persists.
        p.push(b"\xEF\xBB\xBFdata: b\n\n", &mut out);
        assert_eq!(out, [ev(Some("1"), "message", "a"), ev(Some("1"), "message", "b")]);
        // A pending CR does not leak into the next stream.
        p.push(b"data: c\r", &mut out);
        p.finish();
        p.push(b"\n\ndata: d\n\n", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].data, "d");
    }

    #[test]
    fn last_event_id_updates_at_blank_line_only() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.push(b"id: 5\n", &mut out);
        assert_eq!(p.last_event_id(), None);
        p.push(b"\n", &mut out);
        assert!(out.is_empty());
        assert_eq!(p.last_event_id(), Some("5"));
        p.push(b"id\n\n", &mut out);
        assert_eq!(p.last_event_id(), None);
    }

    #[test]
    fn counters() {
        let chunks: [&[u8]; 2] = [b": hb\n\n: a\n", b": b\n\nretry: 10\n\n"];
        let (p, out) = parse_chunks(&chunks);
        assert!(out.is_empty());
        assert_eq!(p.comments_seen(), 3);
        assert_eq!(p.bytes_seen(), (chunks[0].len() + chunks[1].len()) as u64);
        assert_eq!(p.retry(), Some(10));
    }

    #[test]
    fn retry_digits() {
        assert_eq!(parse_digits(b"0"), Some(0));
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_digits(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+5", b"-5", b" 5", b"5 ", b"1e3", b"1.5", b"\xd9\xa5"] {
            assert_eq!(parse_digits(bad), None, "{bad:?}");
        }
    }
}
