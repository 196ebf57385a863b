//! Server-Sent-Events framing (the encoding side).
//!
//! Every function appends to a caller-owned `Vec<u8>` so the server can reuse
//! one buffer per connection and batch several frames into one write.
//! Only `\n` is emitted as line terminator: it is the shortest and every
//! conforming parser (including [`crate::parser`]) accepts it.

/// A heartbeat: one comment line plus the blank line ending the block.
///
/// Sent periodically so proxies keep the connection open and the client can
/// detect a dead stream (see [`SseParser::comments_seen`](crate::SseParser::comments_seen)).
/// Identical to `write_comment(out, "hb")`.
pub const HEARTBEAT: &[u8] = b": hb\n\n";

/// Control frame: the stream is over; the client reconnects at once with its cursor.
pub const END: &str = "end";
/// Control frame: the client's cursor could not be honoured; it reloads its state.
pub const RESET: &str = "reset";

/// `end` reason: the bridge is shutting down.
pub const END_SHUTDOWN: &str = "shutdown";
/// `end` reason: the token the stream was opened with expired.
pub const END_TOKEN_EXPIRED: &str = "token_expired";
/// `end` reason: the stream reached the bridge's maximum stream lifetime.
pub const END_MAX_LIFETIME: &str = "max_lifetime";
/// `reset` reason: the `Last-Event-ID` is not a cursor of this history.
pub const RESET_UNKNOWN_CURSOR: &str = "unknown_cursor";
/// `reset` reason: the history no longer holds the events after the cursor.
pub const RESET_HISTORY_EXPIRED: &str = "history_expired";
/// `reset` reason: the history was re-created; positions start again from nothing.
pub const RESET_HISTORY_RECREATED: &str = "history_recreated";

/// Writes the [`END`] control frame with `reason` (see [`write_control`]).
///
/// ```
/// use realtime_bridge_wire::sse;
/// let mut v = Vec::new();
/// sse::write_end(&mut v, sse::END_SHUTDOWN);
/// assert_eq!(v, b"event: end\ndata: {\"reason\":\"shutdown\"}\n\n");
/// ```
pub fn write_end(out: &mut Vec<u8>, reason: &str) {
    write_control(out, END, reason);
}

/// Writes the [`RESET`] control frame with `reason` (see [`write_control`]).
///
/// ```
/// use realtime_bridge_wire::sse;
/// let mut v = Vec::new();
/// sse::write_reset(&mut v, sse::RESET_HISTORY_EXPIRED);
/// assert_eq!(v, b"event: reset\ndata: {\"reason\":\"history_expired\"}\n\n");
/// ```
pub fn write_reset(out: &mut Vec<u8>, reason: &str) {
    write_control(out, RESET, reason);
}

/// Writes a control frame: `event: <name>` with data `{"reason":"<reason>"}` and no `id:`
/// line, so the client's resume cursor stays where the last event left it.
///
/// `name` is [`END`] or [`RESET`]; `reason` a fixed token the caller chose (written
/// verbatim, like the names: never pass client input).
///
/// ```
/// use realtime_bridge_wire::sse;
/// let mut v = Vec::new();
/// sse::write_control(&mut v, sse::END, "shutdown");
/// assert_eq!(v, b"event: end\ndata: {\"reason\":\"shutdown\"}\n\n");
/// ```
pub fn write_control(out: &mut Vec<u8>, name: &str, reason: &str) {
    debug_assert!(reason.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "reason must be a plain token");
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: {\"reason\":\"");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\"}\n\n");
}

/// Writes `retry: <ms>\n\n`, telling the client how long to wait before
/// reconnecting.
///
/// ```
/// let mut v = Vec::new();
/// realtime_bridge_wire::sse::write_retry(&mut v, 3000);
/// assert_eq!(v, b"retry: 3000\n\n");
/// ```
pub fn write_retry(out: &mut Vec<u8>, ms: u64) {
    out.extend_from_slice(b"retry: ");
    push_u64(out, ms);
    out.extend_from_slice(b"\n\n");
}

/// Writes `: <line>\n` for each line of `text` (split on CRLF, CR or LF), then
/// a blank line.
///
/// Comments are ignored by clients; they serve as heartbeats or as a human
/// readable note (e.g. at stream start). Splitting makes any `text` safe: it
/// can never turn into a field. The trailing blank line is harmless per spec
/// (a block without data dispatches nothing) and flushes proxies that buffer
/// until an event boundary.
///
/// ```
/// let mut v = Vec::new();
/// realtime_bridge_wire::sse::write_comment(&mut v, "hello\nworld");
/// assert_eq!(v, b": hello\n: world\n\n");
/// ```
pub fn write_comment(out: &mut Vec<u8>, text: &str) {
    for_each_line(text.as_bytes(), |line| {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        out.push(b'\n');
    });
    out.push(b'\n');
}

/// Writes one complete event:
/// `id: <id>\n` (if any), `event: <event>\n` (if any), one `data: <line>\n`
/// per line of `data` (split on CRLF, CR or LF; an empty `data` gives one
/// empty `data: ` line), then the blank line that dispatches it.
///
/// `id` and `event` are written verbatim, so callers must pass validated
/// tokens (e.g. [`EventName::as_str`](crate::EventName::as_str)): a CR or LF
/// in them would inject fields, a NUL in `id` would make clients ignore it.
/// This is checked with `debug_assert!` only, to keep the hot path free.
///
/// A client parsing the result gets `data` back with every CRLF / CR turned
/// into LF (SSE cannot carry a bare CR).
///
/// ```
/// let mut v = Vec::new();
/// realtime_bridge_wire::sse::write_event(&mut v, Some("7"), Some("typing"), "a\nb");
/// assert_eq!(v, b"id: 7\nevent: typing\ndata: a\ndata: b\n\n");
/// ```
pub fn write_event(out: &mut Vec<u8>, id: Option<&str>, event: Option<&str>, data: &str) {
    out.reserve(encoded_len_hint(id.map_or(0, str::len), event.map_or(0, str::len), data.len()));
    if let Some(id) = id {
        debug_assert!(
            !id.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)),
            "SSE id must not contain CR, LF or NUL: {id:?}"
        );
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(event) = event {
        debug_assert!(
            !event.bytes().any(|b| matches!(b, b'\r' | b'\n')),
            "SSE event name must not contain CR or LF: {event:?}"
        );
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for_each_line(data.as_bytes(), |line| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    });
    out.push(b'\n');
}

/// Convenience wrapper around [`write_event`] returning a fresh buffer.
///
/// ```
/// let v = realtime_bridge_wire::sse::encode_event(None, None, "x");
/// assert_eq!(v, b"data: x\n\n");
/// ```
pub fn encode_event(id: Option<&str>, event: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_event(&mut out, id, event, data);
    out
}

/// Size of the frame [`write_event`] produces, for pre-sizing buffers.
///
/// Exact when `data` has no line break and both `id` and `event` are
/// present; pass 0 for an absent field (the hint then over-counts by that
/// field's prefix, at most 11 bytes). Each line break in `data` adds
/// `"data: ".len()` = 6 bytes (a CRLF adds 5), which the hint does not count.
///
/// ```
/// use realtime_bridge_wire::sse::{encode_event, encoded_len_hint};
/// assert_eq!(encoded_len_hint(4, 11, 5), encode_event(Some("1734"), Some("message_new"), "hello").len());
/// ```
pub const fn encoded_len_hint(id_len: usize, event_len: usize, data_len: usize) -> usize {
    // "id: " + id + "\n" + "event: " + event + "\n" + "data: " + data + "\n" + "\n"
    (4 + id_len + 1) + (7 + event_len + 1) + (6 + data_len + 1) + 1
}

/// Calls `f` with each line of `s`, lines being separated by CRLF, CR or LF.
/// An empty input, or a trailing separator, yields a final empty line.
#[inline]
fn for_each_line(s: &[u8], mut f: impl FnMut(&[u8])) {
    let mut rest = s;
    loop {
        match crate::parser::find_eol(rest) {
            None => {
                f(rest);
                return;
            }
            Some(i) => {
                f(&rest[..i]);
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
}

/// Appends the decimal digits of `n` without going through `fmt`: it is on the hot path
/// (every history-mode frame's cursor) and `fmt` costs kilobytes in the WASM SDK.
///
/// ```
/// let mut out = b"id: ".to_vec();
/// realtime_bridge_wire::sse::push_u64(&mut out, 1734);
/// assert_eq!(out, b"id: 1734");
/// ```
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn design_doc_example() {
        let data = r#"{"id":"1734","event":"message_new","data":{"text":"hi"},"timestamp":"2026-11-25T10:00:00.123Z","userId":"42"}"#;
        let mut v = Vec::new();
        write_event(&mut v, Some("1734"), Some("message_new"), data);
        assert_eq!(s(&v), format!("id: 1734\nevent: message_new\ndata: {data}\n\n"));
        assert_eq!(v.len(), encoded_len_hint(4, 11, data.len()));
    }

    #[test]
    fn event_variants() {
        assert_eq!(s(&encode_event(None, None, "")), "data: \n\n");
        assert_eq!(s(&encode_event(Some("1"), None, "x")), "id: 1\ndata: x\n\n");
        assert_eq!(s(&encode_event(None, Some("e"), "x")), "event: e\ndata: x\n\n");
        assert_eq!(s(&encode_event(None, None, "a\r\nb\rc\nd")), "data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(s(&encode_event(None, None, "a\n")), "data: a\ndata: \n\n");
        assert_eq!(s(&encode_event(None, None, "\r\n")), "data: \ndata: \n\n");
        assert_eq!(s(&encode_event(None, None, "\n\r")), "data: \ndata: \ndata: \n\n");
        assert_eq!(s(&encode_event(None, None, "é:\0")), "data: é:\0\n\n");
        // Appends, never clears.
        let mut v = b"x".to_vec();
        write_event(&mut v, None, None, "y");
        assert_eq!(s(&v), "xdata: y\n\n");
    }

    #[test]
    fn comments_and_retry() {
        let mut v = Vec::new();
        write_comment(&mut v, "hb");
        assert_eq!(v, HEARTBEAT);
        let mut v = Vec::new();
        write_comment(&mut v, "");
        assert_eq!(s(&v), ": \n\n");
        let mut v = Vec::new();
        write_comment(&mut v, "a\r\nb\rc");
        assert_eq!(s(&v), ": a\n: b\n: c\n\n");
        for (ms, text) in [(0, "0"), (7, "7"), (3000, "3000"), (u64::MAX, "18446744073709551615")] {
            let mut v = Vec::new();
            write_retry(&mut v, ms);
            assert_eq!(s(&v), format!("retry: {text}\n\n"));
        }
    }

    #[test]
    fn control_frames() {
        for reason in [END_SHUTDOWN, END_TOKEN_EXPIRED, END_MAX_LIFETIME] {
            let mut v = Vec::new();
            write_end(&mut v, reason);
            assert_eq!(s(&v), format!("event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n"));
        }
        for reason in [RESET_UNKNOWN_CURSOR, RESET_HISTORY_EXPIRED, RESET_HISTORY_RECREATED] {
            let mut v = Vec::new();
            write_reset(&mut v, reason);
            assert_eq!(s(&v), format!("event: reset\ndata: {{\"reason\":\"{reason}\"}}\n\n"));
        }
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "must not contain")]
    fn id_with_newline_is_a_bug() {
        write_event(&mut Vec::new(), Some("1\ndata: x"), None, "");
    }
}
