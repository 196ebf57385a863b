//! Turns one NATS message into the SSE frame every interested stream receives.
//!
//! Framing happens once per message, not once per stream: the resulting `Bytes` are
//! shared (reference-counted) by every stream that wants the event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use realtime_bridge_wire::{sse, EventName, UserId};

use crate::metrics::DropReason;

/// One framed event, ready to be written to any stream.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Kept beside the bytes so a stream's `events=` filter is a string compare,
    /// with no subject parsing per stream.
    pub(crate) event: EventName,
    /// JetStream sequence in history mode (the envelope id); 0 in live mode.
    pub(crate) seq: u64,
    /// Live mode: the whole frame (`id:`, `event:`, `data:` lines and the blank line).
    /// History mode: the same without the `id:` line, which carries each stream's own
    /// resume cursor and is written by the stream just before these bytes.
    pub(crate) bytes: Bytes,
    /// Bytes pushed on its channel up to and including this frame (set when pushed), so a
    /// stream can tell how many bytes it lags behind without any per-stream accounting.
    pub(crate) end_offset: u64,
    /// History mode: the incarnation of the stream `seq` belongs to (`History::epoch`, set
    /// when pushed). A stream drops frames of an older one: their sequences mean nothing now.
    pub(crate) epoch: u64,
    /// History mode: not an event but the channel saying it starts again at sequence 0 in
    /// `epoch` (the history was re-created); streams answer with `reset`.
    pub(crate) restart: bool,
}

impl Frame {
    /// The marker a channel pushes when it starts again in a re-created history.
    pub(crate) fn restart() -> Self {
        Frame {
            event: EventName::parse(sse::RESET).unwrap_or_else(|_| unreachable!("a valid name")),
            seq: 0,
            bytes: Bytes::new(),
            end_offset: 0,
            epoch: 0,
            restart: true,
        }
    }
}

pub(crate) type SharedFrame = Arc<Frame>;

/// Builds envelopes and frames; validates payloads on the way.
#[derive(Debug)]
pub(crate) struct Framer {
    /// `--max-event-bytes`: larger payloads are skipped, never delivered.
    max_event_bytes: usize,
    /// Live-mode ids are `<boot>-<n>`: unique across restarts (the boot prefix is random),
    /// so a client that dedupes by id never mistakes a new event for one it has seen.
    boot: String,
    next: AtomicU64,
}

impl Framer {
    pub(crate) fn new(max_event_bytes: usize) -> Self {
        Self { max_event_bytes, boot: boot_prefix(), next: AtomicU64::new(1) }
    }

    /// Checks the event may be delivered: not a control frame's name, a payload that is one
    /// JSON value within the size limit.
    pub(crate) fn check(&self, event: &EventName, payload: &[u8]) -> Result<(), DropReason> {
        if event.is_reserved() {
            return Err(DropReason::ReservedEvent);
        }
        self.validate(payload)
    }

    /// Checks the payload is one JSON value within the size limit.
    pub(crate) fn validate(&self, payload: &[u8]) -> Result<(), DropReason> {
        if payload.len() > self.max_event_bytes {
            return Err(DropReason::TooLarge);
        }
        // IgnoredAny checks syntax without building a value, but skips string contents
        // unchecked: UTF-8 is checked first, on the whole payload.
        let text = std::str::from_utf8(payload).map_err(|_| DropReason::InvalidJson)?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|_| DropReason::InvalidJson)?;
        Ok(())
    }

    /// Frames a live (core NATS) message. `user` is `None` for broadcasts.
    pub(crate) fn frame_live(
        &self,
        event: EventName,
        user: Option<&UserId>,
        payload: &[u8],
    ) -> Result<Frame, DropReason> {
        self.check(&event, payload)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.boot);
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        Ok(build(Some(&id), &id, 0, event, user, payload, &ts))
    }

    /// Frames an event stored in JetStream at `seq` (history mode): the envelope id is the
    /// sequence, the timestamp when JetStream stored it, and the `id:` line is left out.
    pub(crate) fn frame_stored(
        &self,
        seq: u64,
        event: EventName,
        user: Option<&UserId>,
        payload: &[u8],
        stored_at: SystemTime,
    ) -> Result<Frame, DropReason> {
        self.check(&event, payload)?;
        let ts = humantime::format_rfc3339_millis(stored_at).to_string();
        Ok(build(None, &seq.to_string(), seq, event, user, payload, &ts))
    }
}

/// Writes the envelope and its SSE frame. `payload` must be valid JSON (checked by the caller).
/// `cursor` is the `id:` line's value, if the frame carries one.
pub(crate) fn build(
    cursor: Option<&str>,
    id: &str,
    seq: u64,
    event: EventName,
    user: Option<&UserId>,
    payload: &[u8],
    timestamp: &str,
) -> Frame {
    // The envelope is written by hand: id, event, user id and timestamp come from the
    // token alphabet or RFC 3339, so none needs JSON escaping, and the payload is
    // embedded as the producer sent it (already validated) instead of being re-encoded.
    let payload = std::str::from_utf8(payload).unwrap_or("null");
    let payload = escape_line_separators(payload);
    let payload = payload.as_ref();
    let mut env = String::with_capacity(payload.len() + 96 + id.len() + event.as_str().len());
    env.push_str("{\"id\":\"");
    env.push_str(id);
    env.push_str("\",\"event\":\"");
    env.push_str(event.as_str());
    env.push_str("\",\"data\":");
    env.push_str(payload);
    env.push_str(",\"timestamp\":\"");
    env.push_str(timestamp);
    env.push('"');
    if let Some(u) = user {
        env.push_str(",\"userId\":\"");
        env.push_str(u.as_str());
        env.push('"');
    }
    env.push('}');
    let mut out = Vec::with_capacity(env.len() + 32 + cursor.map_or(0, str::len) + event.as_str().len());
    sse::write_event(&mut out, cursor, Some(event.as_str()), &env);
    Frame { event, seq, bytes: Bytes::from(out), end_offset: 0, epoch: 0, restart: false }
}

/// JSON allows U+2028, U+2029 (and U+0085) raw inside strings, but some clients split lines
/// on them (Python's `str.splitlines`, older JavaScript `eval`), which would let a payload
/// forge SSE fields there. They can only occur inside strings (JSON whitespace is ASCII), so
/// writing them as `\u` escapes keeps the JSON equal and the frame one line per `data:`.
fn escape_line_separators(json: &str) -> std::borrow::Cow<'_, str> {
    // Their UTF-8 encodings start with 0xC2 or 0xE2: a cheap byte test first.
    if !json.bytes().any(|b| b == 0xC2 || b == 0xE2) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 12);
    for c in json.chars() {
        match c {
            '\u{85}' => out.push_str("\\u0085"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn boot_prefix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..8).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn envelope_matches_design_example() {
        let f = build(
            Some("1734"),
            "1734",
            1734,
            EventName::parse("message_new").unwrap(),
            Some(&UserId::parse("42").unwrap()),
            br#"{"text":"hi"}"#,
            "2026-11-25T10:00:00.123Z",
        );
        assert_eq!(
            std::str::from_utf8(&f.bytes).unwrap(),
            "id: 1734\nevent: message_new\ndata: {\"id\":\"1734\",\"event\":\"message_new\",\"data\":{\"text\":\"hi\"},\"timestamp\":\"2026-11-25T10:00:00.123Z\",\"userId\":\"42\"}\n\n"
        );
    }

    #[test]
    fn pretty_printed_payload_stays_one_event_and_valid_json() {
        let framer = Framer::new(1024);
        let f =
            framer.frame_live(EventName::parse("e").unwrap(), None, b"{\n  \"a\": 1,\r\n  \"b\": [1,\r2]\n}").unwrap();
        let mut p = realtime_bridge_wire::SseParser::new();
        let mut out = Vec::new();
        p.push(&f.bytes, &mut out);
        assert_eq!(out.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&out[0].data).unwrap();
        assert_eq!(v["data"]["b"][1], 2);
        assert!(v.get("userId").is_none());
    }

    #[test]
    fn bad_payloads_are_refused_with_reason() {
        let framer = Framer::new(8);
        let e = || EventName::parse("e").unwrap();
        assert_eq!(framer.frame_live(e(), None, b"not json").unwrap_err(), DropReason::InvalidJson);
        assert_eq!(framer.frame_live(e(), None, b"{} {}").unwrap_err(), DropReason::InvalidJson);
        assert_eq!(framer.frame_live(e(), None, b"[1,2,3,4,5]").unwrap_err(), DropReason::TooLarge);
        assert_eq!(framer.frame_live(e(), None, b"\"\xff\"").unwrap_err(), DropReason::InvalidJson);
        assert!(framer.frame_live(e(), None, b"[1,2]").is_ok());
    }

    #[test]
    fn line_separators_are_escaped_and_json_unchanged() {
        let framer = Framer::new(1024);
        let raw = "{\"t\":\"a\u{2028}event: x\u{2029}b\u{85}c\u{e9}\"}";
        let f = framer.frame_live(EventName::parse("e").unwrap(), None, raw.as_bytes()).unwrap();
        let text = std::str::from_utf8(&f.bytes).unwrap();
        assert!(!text.contains(['\u{2028}', '\u{2029}', '\u{85}']), "{text:?}");
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["data"]["t"], "a\u{2028}event: x\u{2029}b\u{85}c\u{e9}");
    }

    #[test]
    fn reserved_names_are_refused() {
        let framer = Framer::new(64);
        for name in ["end", "reset"] {
            let e = EventName::parse(name).unwrap();
            assert_eq!(framer.frame_live(e, None, b"1").unwrap_err(), DropReason::ReservedEvent);
        }
        assert!(framer.frame_live(EventName::parse("ended").unwrap(), None, b"1").is_ok());
    }

    #[test]
    fn live_ids_are_unique_and_increasing() {
        let framer = Framer::new(64);
        // The same event twice: only the ids may tell the two frames apart.
        let a = framer.frame_live(EventName::parse("e").unwrap(), None, b"1").unwrap();
        let b = framer.frame_live(EventName::parse("e").unwrap(), None, b"1").unwrap();
        let id_of = |f: &Frame| {
            let text = std::str::from_utf8(&f.bytes).unwrap().to_owned();
            let id = text.lines().next().and_then(|l| l.strip_prefix("id: ")).unwrap().to_owned();
            let env: serde_json::Value =
                serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
            assert_eq!(env["id"], id.as_str(), "the envelope id is the SSE id");
            id
        };
        assert_eq!(id_of(&a), format!("{}-1", framer.boot));
        assert_eq!(id_of(&b), format!("{}-2", framer.boot));
    }
}
