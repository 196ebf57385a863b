//! Properties of the resume cursor (`realtime_bridge_wire::cursor`) on arbitrary input.
//!
//! Shared by the `cursor` fuzz target and `tests/fuzz_properties.rs` (see `sse_parser.rs`).
//!
//! Input: the text a client sends as `Last-Event-ID` (bytes that are not UTF-8 are tried
//! as-is through a lossy decoding); its first 16 bytes, when there are that many, are also
//! read as two `u64`.
//!
//! Checked:
//! * `Cursor::parse` never panics, and accepts exactly what a plain reading of the grammar
//!   accepts: `<1 to 20 ASCII digits>:<1 to 20 ASCII digits>`, each at most `u64::MAX`;
//! * anything accepted round-trips through `write_id_line` (and `Display`), and through the
//!   SSE parser as the stream's last event id; any pair of `u64` does too.

use realtime_bridge_wire::cursor::Cursor;
use realtime_bridge_wire::SseParser;

pub(crate) fn check(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    check_text(&text);
    if let Some(head) = input.get(..16) {
        let (u, b) = head.split_at(8);
        let c = Cursor {
            user: u64::from_le_bytes(u.try_into().unwrap()),
            broadcast: u64::from_le_bytes(b.try_into().unwrap()),
        };
        round_trip(c);
    }
}

fn check_text(s: &str) {
    let got = Cursor::parse(s).ok();
    assert_eq!(got, reference(s), "Cursor::parse({s:?}) disagrees with the grammar");
    if let Some(c) = got {
        round_trip(c);
        // The canonical form is the input without leading zeros.
        let canonical = |d: &str| {
            let t = d.trim_start_matches('0');
            if t.is_empty() {
                "0".to_owned()
            } else {
                t.to_owned()
            }
        };
        let (u, b) = s.split_once(':').unwrap();
        assert_eq!(c.to_string(), format!("{}:{}", canonical(u), canonical(b)));
    }
}

/// The grammar read the plain way.
fn reference(s: &str) -> Option<Cursor> {
    fn seq(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() || digits.len() > 20 {
            return None;
        }
        let mut v: u128 = 0; // 20 digits cannot overflow a u128
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u128::from(d - b'0');
        }
        u64::try_from(v).ok()
    }
    let bytes = s.as_bytes();
    let colon = bytes.iter().position(|&b| b == b':')?;
    Some(Cursor { user: seq(&bytes[..colon])?, broadcast: seq(&bytes[colon + 1..])? })
}

fn round_trip(c: Cursor) {
    let mut line = Vec::new();
    c.write_id_line(&mut line);
    assert_eq!(line, format!("id: {}:{}\n", c.user, c.broadcast).as_bytes());
    let value = std::str::from_utf8(&line[4..line.len() - 1]).unwrap();
    assert_eq!(Cursor::parse(value), Ok(c), "{value:?} did not parse back");
    assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
    assert_eq!(c.min(), c.user.min(c.broadcast));

    // As the server sends it: the id line of a frame, which the client sends back.
    let mut frame = line;
    frame.extend_from_slice(b"data: x\n\n");
    let mut p = SseParser::new();
    let mut events = Vec::new();
    p.push(&frame, &mut events);
    assert_eq!(events.len(), 1);
    let id = p.last_event_id().unwrap();
    assert_eq!(Cursor::parse(id), Ok(c), "{id:?} did not parse back from the stream");
}
