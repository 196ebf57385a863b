//! Properties of `conn::HeadReader` (who serves a connection, decided from its first bytes)
//! on arbitrary input.
//!
//! Shared, as the same file, by the `head` fuzz target (`fuzz/fuzz_targets/`) and by
//! `tests/fuzz_properties.rs` (proptests, and replay of the fuzz corpus and regressions).
//!
//! Input layout: `[n] [pad] [n × u16 LE cut] [bytes ...]`; a missing byte reads as 0.
//! * `pad` from 0xF0 up: one `x-pad` header line of `15 KiB + 128 × (pad - 0xF0)` bytes is
//!   put after the first line of `bytes`, so heads reach either side of the 16 KiB cap,
//!   which short fuzz inputs would not (below 0xF0: none, which keeps most runs fast);
//! * each cut, modulo the length, ends a read: the reader sees the bytes up to there.
//!
//! Checked:
//! * the decision is the one taken on all the bytes at once (`advance` on the whole buffer,
//!   or `at_eof` when it wants more), however the bytes were split into reads, one byte per
//!   read included, except that a head whose end lies past the cap may go to hyper (`Other`)
//!   when a read leaves the reader at the cap before the end arrives;
//! * a `Head::Stream` request is a `GET` of `/v1/users/…/events` with no body or protocol
//!   switch announced (`Transfer-Encoding`, `Upgrade`, a `Content-Length` other than 0).

use axum::http::{header, Method};
use realtime_bridge::conn::{Head, HeadReader};

/// `MAX_HEAD` in `conn.rs`.
const MAX_HEAD: usize = 16 * 1024;

/// What a decision amounts to, comparable.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Stream { method: String, uri: String, version: String, headers: Vec<(String, Vec<u8>)> },
    Other,
    Closed,
}

pub(crate) fn check(input: &[u8]) {
    let (cuts, bytes) = decode(input);

    let once = decision(&HeadReader::default().advance(&bytes).unwrap_or_else(|| HeadReader::at_eof(&bytes)));
    // Past the cap, a reader fed in reads gives up (hyper serves the connection) while one
    // given everything at once may see the end of the head.
    let end_past_cap = head_end(&bytes).is_some_and(|end| end > MAX_HEAD);

    let mut cut_points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (bytes.len() + 1)).collect();
    cut_points.push(bytes.len());
    let split = feed(&bytes, &cut_points);
    let bytewise = if bytes.len() <= 2048 { Some(feed(&bytes, &(1..=bytes.len()).collect::<Vec<_>>())) } else { None };
    for (how, d) in [("in reads", Some(split)), ("byte by byte", bytewise)] {
        let Some(d) = d else { continue };
        if end_past_cap && d == Decision::Other {
            continue;
        }
        assert_eq!(d, once, "{how}: the decision differs from the one taken on the whole input");
    }
}

/// Splits `input` into its parts (see the module doc) and inserts the padding.
fn decode(input: &[u8]) -> (Vec<u16>, Vec<u8>) {
    let n = usize::from(input.first().copied().unwrap_or(0));
    let pad = match input.get(1).copied().unwrap_or(0) {
        p @ 0xF0.. => 15 * 1024 + 128 * usize::from(p - 0xF0),
        _ => 0,
    };
    let rest = input.get(2..).unwrap_or(&[]);
    let n = n.min(rest.len() / 2);
    let cuts = rest[..2 * n].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    let raw = &rest[2 * n..];
    let at = raw.iter().position(|&b| b == b'\n').map_or(raw.len(), |i| i + 1);
    let mut bytes = Vec::with_capacity(raw.len() + pad);
    bytes.extend_from_slice(&raw[..at]);
    if pad > 0 {
        bytes.extend_from_slice(b"x-pad: ");
        bytes.resize(bytes.len() + pad - b"x-pad: \r\n".len(), b'a');
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(&raw[at..]);
    (cuts, bytes)
}

/// The inverse of [`decode`] (before padding), for generators and seeds.
#[allow(dead_code)] // used by the tests, not by the fuzz target
pub(crate) fn encode(cuts: &[u16], pad: u8, bytes: &[u8]) -> Vec<u8> {
    let cuts = &cuts[..cuts.len().min(255)];
    let mut v = vec![cuts.len() as u8, pad];
    for c in cuts {
        v.extend_from_slice(&c.to_le_bytes());
    }
    v.extend_from_slice(bytes);
    v
}

/// Feeds `bytes` as reads ending at `points` (the connection closes after the last one),
/// as `conn::read_head` does; reads are never empty (an empty read is the end).
fn feed(bytes: &[u8], points: &[usize]) -> Decision {
    let mut points = points.to_vec();
    points.sort_unstable();
    points.dedup();
    let mut reader = HeadReader::default();
    for &p in points.iter().filter(|&&p| p > 0) {
        if let Some(head) = reader.advance(&bytes[..p]) {
            return decision(&head);
        }
    }
    decision(&HeadReader::at_eof(bytes))
}

/// Just past the first blank line (LF LF or LF CR LF, as httparse reads heads), if any.
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| match &bytes[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Checks a decision's invariants and makes it comparable.
fn decision(head: &Head) -> Decision {
    match head {
        Head::Stream(req) => {
            assert_eq!(req.method(), Method::GET, "a stream request must be a GET");
            let path = req.uri().path();
            assert!(
                path.starts_with("/v1/users/") && path.ends_with("/events"),
                "a stream request for {path:?} (uri {})",
                req.uri()
            );
            for name in [header::TRANSFER_ENCODING, header::UPGRADE] {
                assert!(!req.headers().contains_key(&name), "a stream request with {name}");
            }
            for v in req.headers().get_all(header::CONTENT_LENGTH) {
                assert_eq!(v, "0", "a stream request with a body");
            }
            Decision::Stream {
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                version: format!("{:?}", req.version()),
                headers: req.headers().iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
            }
        }
        Head::Other => Decision::Other,
        Head::Closed => Decision::Closed,
    }
}
