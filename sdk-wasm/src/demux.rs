//! The platform-independent half of a shared connection: who listens to what,
//! which frames go to whom, the resume cursor, and duplicate suppression.
//!
//! One [`Demux`] belongs to one HTTP stream (one url + user). Every `subscribe`
//! call sharing that stream is a listener with its own event filter; the stream
//! itself asks the bridge for the union of the filters. Bytes from the stream
//! go through the wire crate's [`SseParser`] (the one SSE parser of the project)
//! and come out as [`Frame`]s, each naming the listeners it is for.
//!
//! Nothing here touches JavaScript, so all of it is unit-tested natively; the
//! wasm glue (`web`) only moves bytes in and calls callbacks.

use realtime_bridge_wire::sse::{END, RESET};
use realtime_bridge_wire::{EventName, IdError, SseEvent, SseParser};

/// Identifies one listener (one `subscribe` call) within a [`Demux`].
pub type ListenerId = u32;

/// The event names a listener wants, sorted and without duplicates; `None` means every
/// event. (A sorted `Vec` rather than a `BTreeSet`: the B-tree's node code costs the wasm
/// build kilobytes, and filters are a handful of names.)
pub type Filter = Option<Vec<String>>;

/// Adds `name` to the sorted, duplicate-free `set` (keeps it sorted: no sort code linked).
fn insert_sorted(set: &mut Vec<String>, name: String) {
    if let Err(at) = set.binary_search(&name) {
        set.insert(at, name);
    }
}

fn has(set: &[String], name: &str) -> bool {
    set.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
}

/// The start of a control frame's data (`{"reason":"..."}`, the wire crate's
/// `write_control`); an event envelope starts with `{"id":`.
const CONTROL_DATA: &str = "{\"reason\":\"";

/// How many recent envelope ids are remembered to suppress duplicates.
///
/// Duplicates come from a resume overlapping what was already received, which is
/// at most what was in flight when the link dropped; this is far more than that.
pub const DEDUPE_CAPACITY: usize = 4096;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An event envelope (`data` is the JSON envelope).
    Event,
    /// `event: reset`: the history no longer holds the cursor (or was re-created);
    /// the app should reload its state. Addressed to every listener; the ids
    /// remembered for de-duplication are forgotten ([`Demux::admit`]).
    Reset,
    /// `event: end`: the bridge closes the stream after this frame; the client
    /// reconnects at once with its cursor. Addressed to no listener.
    End(EndReason),
}

/// The `reason` of an `end` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The token the stream was opened with expired: get a fresh one first.
    TokenExpired,
    /// The bridge's longest stream lifetime passed (the token is still good).
    MaxLifetime,
    /// The bridge is draining.
    Shutdown,
    /// A reason this SDK does not know (a newer bridge): reconnect as for `max_lifetime`.
    Other,
}

/// Longest random delay before reconnecting after `end` / `shutdown`, in ms.
///
/// Every client of a draining bridge gets its `end` in the same instant; spreading their
/// reconnections over a quarter of a second keeps them from all reaching the remaining
/// instances in the same millisecond, while staying far below any backoff delay.
pub const SHUTDOWN_JITTER_MS: f64 = 250.0;

impl EndReason {
    /// The reason of an `end` frame from its data (`{"reason":"..."}`).
    fn from_data(data: &str) -> Self {
        // Whole-string matches of the bridge's exact output: smaller in wasm than parsing.
        match data.strip_prefix(CONTROL_DATA).unwrap_or("") {
            "token_expired\"}" => Self::TokenExpired,
            "max_lifetime\"}" => Self::MaxLifetime,
            "shutdown\"}" => Self::Shutdown,
            _ => Self::Other,
        }
    }

    /// How long to wait before reconnecting, in ms, given `random` uniform in `[0, 1)`:
    /// nothing (no backoff: the bridge asked for the reconnection), except a small jitter
    /// after a `shutdown`. The backoff's attempt count is left alone.
    pub fn reconnect_delay_ms(self, random: f64) -> f64 {
        match self {
            Self::Shutdown if random.is_finite() => (SHUTDOWN_JITTER_MS * random.clamp(0.0, 1.0)).floor(),
            _ => 0.0,
        }
    }
}

/// What the bridge's frame `ev` is. Only a reserved name whose data is a
/// `{"reason":...}` object is control: the bridge never delivers a producer's event
/// under these names, and an envelope never has that shape, so neither can pass for
/// the other. (`reset` may share its block with the stream's first `id:` line, so the
/// `id:` is not part of the test.)
fn classify(ev: &SseEvent) -> FrameKind {
    if !ev.data.starts_with(CONTROL_DATA) {
        FrameKind::Event
    } else if ev.event == END {
        FrameKind::End(EndReason::from_data(&ev.data))
    } else if ev.event == RESET {
        FrameKind::Reset
    } else {
        FrameKind::Event
    }
}

/// The start of an event envelope as the bridge writes it: the `id` first.
const ENVELOPE_ID: &str = "{\"id\":\"";

/// The envelope id read straight from `data` when it has the bridge's shape: `{"id":"` then
/// the id (a sequence number: no escape, no quote) and `",` or `"}`. That is the value
/// `JSON.parse(data).id` gives, found without a call out of WebAssembly and a string copy
/// back per event; anything else (`None`) is left to the parsed object.
pub fn envelope_id(data: &str) -> Option<&str> {
    let rest = data.strip_prefix(ENVELOPE_ID)?;
    let end = rest.bytes().position(|b| b == b'"' || b == b'\\')?;
    // `get`, not slicing or `split_at`: no panic path (its message formatting costs the wasm
    // build kilobytes), though `end` is an ASCII byte's index, so a char boundary.
    let after = rest.as_bytes().get(end..end + 2)?;
    (after == b"\"," || after == b"\"}").then(|| rest.get(..end)).flatten()
}

/// One parsed SSE event and the listeners it must be delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub kind: FrameKind,
    /// The SSE event type (the envelope's `event`).
    pub event: String,
    /// The `data` field: the JSON envelope, to be parsed by the JS engine.
    pub data: String,
    /// Listeners whose filter accepts the event, in subscription order.
    pub targets: Vec<ListenerId>,
}

/// Validates and normalises an event filter given by the caller.
///
/// `None` (all events) stays `None`; an empty list is an error, as is any name
/// that is not a valid token (`[A-Za-z0-9_-]{1,128}`).
pub fn parse_filter<I, S>(names: Option<I>) -> Result<Filter, (String, IdError)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let Some(names) = names else { return Ok(None) };
    let mut set = Vec::new();
    for n in names {
        let n = n.as_ref();
        let name = EventName::parse(n).map_err(|e| (n.to_owned(), e))?;
        insert_sorted(&mut set, name.into_string());
    }
    if set.is_empty() {
        return Err((String::new(), IdError::Empty));
    }
    Ok(Some(set))
}

/// Whether a stream requested with filter `have` carries every event `want` needs.
fn covers(have: &Filter, want: &Filter) -> bool {
    match (have, want) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(h), Some(w)) => w.iter().all(|n| has(h, n)),
    }
}

fn accepts(filter: &Filter, event: &str) -> bool {
    filter.as_ref().is_none_or(|f| has(f, event))
}

/// Slots of the [`Dedupe`] index: a power of two, twice the capacity (load at most 1/2).
const DEDUPE_SLOTS: usize = 2 * DEDUPE_CAPACITY;
/// An empty [`Dedupe`] index slot.
const FREE: u32 = u32::MAX;

/// FNV-1a: the ids come from the bridge, and a few lines of hashing link far less code
/// than std's `HashSet` (SipHash, random keys) or a `BTreeSet`.
fn fnv1a(id: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in id.as_bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize
}

/// Remembers the last [`DEDUPE_CAPACITY`] envelope ids delivered: a ring of the ids in
/// arrival order (the oldest is overwritten) and an open-addressing hash index into it
/// (linear probing; a removal shifts the following entries back, so there are no
/// tombstones and a lookup stops at the first free slot).
#[derive(Debug, Default)]
struct Dedupe {
    ring: Vec<String>,
    /// Where the next id goes once the ring is full: its oldest entry.
    oldest: usize,
    /// [`DEDUPE_SLOTS`] ring positions or [`FREE`]; allocated on first use.
    index: Vec<u32>,
}

impl Dedupe {
    fn forget(&mut self) {
        *self = Dedupe::default();
    }

    /// `Ok(slot)` holding `id`, or `Err(slot)`: the free slot where it would go.
    fn find(&self, id: &str) -> Result<usize, usize> {
        let mut i = fnv1a(id) % DEDUPE_SLOTS;
        loop {
            match self.index[i] {
                FREE => return Err(i),
                at if self.ring[at as usize] == id => return Ok(i),
                _ => i = (i + 1) % DEDUPE_SLOTS,
            }
        }
    }

    /// Frees `slot`, moving back the entries after it that probing would no longer reach.
    fn remove(&mut self, mut slot: usize) {
        let mut next = slot;
        loop {
            next = (next + 1) % DEDUPE_SLOTS;
            let at = self.index[next];
            if at == FREE {
                break;
            }
            let home = fnv1a(&self.ring[at as usize]) % DEDUPE_SLOTS;
            // The entry stays if its home is cyclically within (slot, next].
            let stays = if slot <= next { slot < home && home <= next } else { slot < home || home <= next };
            if !stays {
                self.index[slot] = at;
                slot = next;
            }
        }
        self.index[slot] = FREE;
    }

    fn first_time(&mut self, id: &str) -> bool {
        if self.index.is_empty() {
            self.index = vec![FREE; DEDUPE_SLOTS];
        }
        let Err(mut slot) = self.find(id) else { return false };
        let at = if self.ring.len() < DEDUPE_CAPACITY {
            self.ring.push(id.to_owned());
            self.ring.len() - 1
        } else {
            let at = self.oldest;
            if let Ok(old) = self.find(&self.ring[at]) {
                self.remove(old);
            }
            // The removal may have moved entries: look for the free slot again.
            if let Err(free) = self.find(id) {
                slot = free;
            }
            self.ring[at].clear();
            self.ring[at].push_str(id);
            self.oldest = (at + 1) % DEDUPE_CAPACITY;
            at
        };
        self.index[slot] = at as u32;
        true
    }
}

/// Listener registry, router, cursor and de-duplication of one shared stream.
#[derive(Debug)]
pub struct Demux {
    parser: SseParser,
    listeners: Vec<(ListenerId, Filter)>,
    next_id: ListenerId,
    /// The filter of the request in flight or last made; `None` before the first one.
    requested: Option<Filter>,
    /// The resume cursor: the last SSE `id:` seen, or the caller's initial one.
    cursor: Option<String>,
    /// The parser's last event id as last observed, to notice when it changes.
    observed: Option<String>,
    dedupe: Dedupe,
    scratch: Vec<SseEvent>,
    /// The current stream sent `end`: whatever follows it is ignored until [`Demux::end_stream`].
    ended: bool,
    /// The parser of the stream being replaced, while both are open ([`Demux::hand_over`]).
    old: Option<SseParser>,
}

impl Demux {
    /// A demux with no listener, resuming from `cursor` if given.
    pub fn new(cursor: Option<String>) -> Self {
        Demux {
            parser: SseParser::new(),
            listeners: Vec::new(),
            next_id: 1,
            requested: None,
            cursor: cursor.filter(|c| !c.is_empty()),
            observed: None,
            dedupe: Dedupe::default(),
            scratch: Vec::new(),
            ended: false,
            old: None,
        }
    }

    /// Adds a listener. The flag is true when the stream already requested (or
    /// being requested) does not carry all of the new listener's events, i.e.
    /// the connection must be made again with the grown union.
    pub fn add(&mut self, filter: Filter) -> (ListenerId, bool) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let reconnect = match &self.requested {
            Some(have) => !covers(have, &filter),
            None => false,
        };
        self.listeners.push((id, filter));
        (id, reconnect)
    }

    /// Removes a listener; true if it was there. (The union shrinking never
    /// forces a reconnection: routing drops what nobody wants.)
    pub fn remove(&mut self, id: ListenerId) -> bool {
        let before = self.listeners.len();
        self.listeners.retain(|(l, _)| *l != id);
        self.listeners.len() != before
    }

    /// Number of listeners.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.listeners.len()
    }

    /// No listener left.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The union of every listener's filter (`None`: all events).
    fn union(&self) -> Filter {
        let mut all = Vec::new();
        for (_, f) in &self.listeners {
            match f {
                None => return None,
                Some(names) => {
                    for n in names {
                        insert_sorted(&mut all, n.clone());
                    }
                }
            }
        }
        Some(all)
    }

    /// Records that a request is being made now and returns the value of its
    /// `events` query parameter (`None`: no parameter, all events).
    pub fn begin_request(&mut self) -> Option<String> {
        let union = self.union();
        let query = union.as_ref().map(|set| {
            let mut q = String::new();
            for (i, name) in set.iter().enumerate() {
                if i > 0 {
                    q.push(',');
                }
                q.push_str(name);
            }
            q
        });
        self.requested = Some(union);
        query
    }

    /// Make-before-break: the current stream becomes the old one (still read, through
    /// [`Demux::push`] with `old`), and the next request starts a stream with a parser of its
    /// own (the cursor stays until that stream sends an `id:`). A previous old stream is
    /// forgotten.
    pub fn hand_over(&mut self) {
        self.old = Some(std::mem::take(&mut self.parser));
        self.observed = None;
        self.ended = false;
    }

    /// The old stream was closed: its bytes are ignored from now on.
    pub fn close_old(&mut self) {
        self.old = None;
    }

    /// Feeds bytes of the current stream (`old`: of the stream being replaced); appends the
    /// frames they complete.
    ///
    /// An `end` frame comes out with no target (it is for the connection, not the
    /// listeners), and anything after it on the same stream is ignored: the bridge
    /// sends nothing more, and the next connection resumes from the cursor as it was.
    ///
    /// The old stream's frames go to their listeners (de-duplicated with the new stream's by
    /// [`Demux::admit`]) but never move the cursor: it may be ahead of the new stream, whose
    /// wider filter still has events to catch up before it; and its `end` is ignored (it is
    /// being closed anyway).
    pub fn push(&mut self, chunk: &[u8], old: bool, out: &mut Vec<Frame>) {
        if self.ended && !old {
            return;
        }
        let mut events = std::mem::take(&mut self.scratch);
        match (old, self.old.as_mut()) {
            (false, _) => self.parser.push(chunk, &mut events),
            (true, Some(p)) => p.push(chunk, &mut events),
            (true, None) => {}
        }
        for ev in events.drain(..) {
            if self.ended && !old {
                continue;
            }
            // The cursor moves with every dispatched frame, delivered or not:
            // the bridge sent it, so a resume must start after it.
            if !old && ev.id != self.observed {
                self.observed.clone_from(&ev.id);
                self.cursor.clone_from(&ev.id);
            }
            let kind = classify(&ev);
            if let FrameKind::End(_) = kind {
                if !old {
                    self.ended = true;
                    out.push(Frame { kind, event: ev.event, data: ev.data, targets: Vec::new() });
                }
                continue;
            }
            let targets: Vec<ListenerId> = self
                .listeners
                .iter()
                .filter(|(_, f)| kind == FrameKind::Reset || accepts(f, &ev.event))
                .map(|(id, _)| *id)
                .collect();
            if !targets.is_empty() {
                out.push(Frame { kind, event: ev.event, data: ev.data, targets });
            }
        }
        self.scratch = events;
        if self.ended || old {
            return;
        }
        // A block that only sets `id:` (no data) still moves the cursor; until the
        // bridge sends an id at all, the caller's initial cursor is kept.
        let now = self.parser.last_event_id();
        if now != self.observed.as_deref() {
            self.observed = now.map(str::to_owned);
            self.cursor.clone_from(&self.observed);
        }
    }

    /// The current stream ended (closed, aborted or failed): an unfinished
    /// frame is dropped; the cursor is kept for the next connection.
    pub fn end_stream(&mut self) {
        self.parser.finish();
        self.ended = false;
    }

    /// The resume cursor to send as `Last-Event-ID`.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The last `retry:` the bridge asked for, in milliseconds (the floor of the backoff:
    /// docs/protocol.md §6.2); 0 before any.
    pub fn server_retry_ms(&self) -> f64 {
        self.parser.retry().map_or(0.0, |ms| ms as f64)
    }

    /// True the first time an envelope id is seen, false for a duplicate ([`Demux::admit`]
    /// for an event with an id, without the frame).
    #[cfg(test)]
    fn first_delivery(&mut self, envelope_id: &str) -> bool {
        self.dedupe.first_time(envelope_id)
    }

    /// Whether a frame from [`Demux::push`] goes to its targets. Called for each frame in
    /// the order they came, since a `reset` changes the answer for the frames after it:
    ///
    /// * an event is delivered the first time its envelope id is seen (no id: always);
    /// * a `reset` is delivered, and the remembered ids are forgotten: after it the stream
    ///   starts again from the live position, and when the history was re-created
    ///   (`history_recreated`) the sequences, so the envelope ids, start again at 1. Ids
    ///   seen before the reset would otherwise hide the new events;
    /// * an `end` never reaches a listener.
    pub fn admit(&mut self, kind: FrameKind, envelope_id: Option<&str>) -> bool {
        match kind {
            FrameKind::Event => envelope_id.is_none_or(|id| self.dedupe.first_time(id)),
            FrameKind::Reset => {
                self.dedupe.forget();
                true
            }
            FrameKind::End(_) => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter(names: &[&str]) -> Filter {
        parse_filter(Some(names)).unwrap()
    }

    fn envelope(id: &str, event: &str) -> String {
        let mut s = String::from("{\"id\":\"");
        s.push_str(id);
        s.push_str("\",\"event\":\"");
        s.push_str(event);
        s.push_str("\",\"data\":{},\"timestamp\":\"2026-11-25T10:00:00.000Z\",\"userId\":\"42\"}");
        s
    }

    fn encode(id: &str, event: &str) -> Vec<u8> {
        realtime_bridge_wire::sse::encode_event(Some(id), Some(event), &envelope(id, event))
    }

    fn push_all(d: &mut Demux, bytes: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        d.push(bytes, false, &mut out);
        out
    }

    #[test]
    fn envelope_id_reads_the_bridge_shape_only() {
        assert_eq!(envelope_id(&envelope("1734", "a")), Some("1734"));
        assert_eq!(envelope_id("{\"id\":\"7\"}"), Some("7"));
        assert_eq!(envelope_id("{\"id\":\"\",\"event\":\"a\"}"), Some(""));
        // Anything else is left to JSON.parse: escapes, another key order, spacing, no end.
        for other in [
            "{\"id\":\"a\\\"b\",\"event\":\"a\"}",
            "{\"id\":\"a\\u0041\",\"event\":\"a\"}",
            "{\"event\":\"a\",\"id\":\"1\"}",
            "{ \"id\":\"1\",\"event\":\"a\"}",
            "{\"id\":1,\"event\":\"a\"}",
            "{\"id\":\"1\" ,\"event\":\"a\"}",
            "{\"id\":\"1",
            "",
        ] {
            assert_eq!(envelope_id(other), None, "{other}");
        }
    }

    #[test]
    fn parse_filter_validates() {
        assert_eq!(parse_filter::<Vec<&str>, &str>(None).unwrap(), None);
        assert_eq!(filter(&["b", "a", "b"]), Some(["a", "b"].iter().map(|s| s.to_string()).collect()));
        assert!(parse_filter(Some(Vec::<&str>::new())).is_err());
        for bad in ["", "a.b", "*", ">", "a b", &"x".repeat(129)] {
            let err = parse_filter(Some([bad])).unwrap_err();
            assert_eq!(err.0, bad);
        }
    }

    #[test]
    fn union_and_query() {
        let mut d = Demux::new(None);
        assert_eq!(d.begin_request(), Some(String::new()));
        let (a, r) = d.add(filter(&["typing_start", "message_new"]));
        assert!(r, "the earlier request (no listener) carried nothing");
        assert_eq!(d.begin_request().as_deref(), Some("message_new,typing_start"));
        let (_, r) = d.add(filter(&["message_new"]));
        assert!(!r);
        assert_eq!(d.begin_request().as_deref(), Some("message_new,typing_start"));
        // Growing the union needs a new request, shrinking does not.
        let (c, r) = d.add(filter(&["message_read"]));
        assert!(r);
        assert_eq!(d.begin_request().as_deref(), Some("message_new,message_read,typing_start"));
        assert!(d.remove(c));
        assert!(!d.remove(c));
        assert_eq!(d.begin_request().as_deref(), Some("message_new,typing_start"));
        // A listener for everything makes the union "all".
        let (all, r) = d.add(None);
        assert!(r);
        assert_eq!(d.begin_request(), None);
        let (_, r) = d.add(filter(&["anything"]));
        assert!(!r);
        assert!(d.remove(all) && d.remove(a));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn no_reconnect_before_first_request() {
        let mut d = Demux::new(None);
        assert!(!d.add(filter(&["a"])).1);
        assert!(!d.add(None).1);
    }

    #[test]
    fn routes_each_frame_to_matching_listeners_only() {
        let mut d = Demux::new(None);
        let (msgs, _) = d.add(filter(&["message_new"]));
        let (typing, _) = d.add(filter(&["typing_start", "message_new"]));
        let (all, _) = d.add(None);
        let mut bytes = b"retry: 2000\n\n: hb\n\n".to_vec();
        bytes.extend(encode("a-1", "message_new"));
        bytes.extend(encode("a-2", "typing_start"));
        bytes.extend(encode("a-3", "system_alert"));
        let out = push_all(&mut d, &bytes);
        let routed: Vec<(&str, Vec<ListenerId>)> = out.iter().map(|f| (f.event.as_str(), f.targets.clone())).collect();
        assert_eq!(
            routed,
            [
                ("message_new", vec![msgs, typing, all]),
                ("typing_start", vec![typing, all]),
                ("system_alert", vec![all]),
            ]
        );
        assert_eq!(out[0].data, envelope("a-1", "message_new"));
        assert_eq!(d.server_retry_ms(), 2000.0);
        // Nobody wants it: no frame, but the cursor still moves.
        assert!(d.remove(all));
        assert!(push_all(&mut d, &encode("a-4", "system_alert")).is_empty());
        assert_eq!(d.cursor(), Some("a-4"));
    }

    #[test]
    fn reset_goes_to_everyone() {
        let mut d = Demux::new(Some("17".into()));
        let (a, _) = d.add(filter(&["x"]));
        let (b, _) = d.add(filter(&["y"]));
        let out = push_all(&mut d, b"event: reset\ndata: {\"reason\":\"history_expired\"}\n\n");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, FrameKind::Reset);
        assert_eq!(out[0].targets, [a, b]);
    }

    fn control(name: &str, reason: &str) -> Vec<u8> {
        let mut v = Vec::new();
        realtime_bridge_wire::sse::write_control(&mut v, name, reason);
        v
    }

    #[test]
    fn end_goes_to_nobody_and_closes_the_stream() {
        let mut d = Demux::new(None);
        let (all, _) = d.add(None);
        let mut bytes = encode("1", "a");
        bytes.extend(control(END, "token_expired"));
        // Nothing follows an `end`; if something did, it would not count.
        bytes.extend(encode("2", "a"));
        bytes.extend(b"id: 3\n\n");
        let out = push_all(&mut d, &bytes);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].kind, out[0].targets.clone()), (FrameKind::Event, vec![all]));
        assert_eq!(out[1].kind, FrameKind::End(EndReason::TokenExpired));
        assert!(out[1].targets.is_empty(), "never handed to a callback");
        assert_eq!(d.cursor(), Some("1"), "`end` has no id: the cursor stays on the last event");
        assert!(push_all(&mut d, &encode("4", "a")).is_empty());
        assert_eq!(d.cursor(), Some("1"));
        // The next connection is read normally, from that cursor.
        d.end_stream();
        let out = push_all(&mut d, &encode("2", "a"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, FrameKind::Event);
        assert_eq!(d.cursor(), Some("2"));
    }

    #[test]
    fn end_split_across_chunks() {
        let mut d = Demux::new(Some("7".into()));
        d.add(filter(&["x"]));
        let bytes = control(END, "shutdown");
        let (head, tail) = bytes.split_at(9);
        assert!(push_all(&mut d, head).is_empty());
        let out = push_all(&mut d, tail);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, FrameKind::End(EndReason::Shutdown));
        assert_eq!(d.cursor(), Some("7"));
    }

    #[test]
    fn only_control_frames_are_control() {
        let mut d = Demux::new(None);
        let (all, _) = d.add(None);
        let kind = |d: &mut Demux, bytes: &[u8]| push_all(d, bytes).iter().map(|f| f.kind).collect::<Vec<_>>();
        for (reason, want) in [
            ("token_expired", EndReason::TokenExpired),
            ("max_lifetime", EndReason::MaxLifetime),
            ("shutdown", EndReason::Shutdown),
            ("something_new", EndReason::Other),
        ] {
            assert_eq!(kind(&mut d, &control(END, reason)), [FrameKind::End(want)]);
            d.end_stream();
        }
        // Event envelopes under the reserved names (the bridge drops them; if one came
        // through anyway) are plain events, delivered like any other.
        let out = push_all(&mut d, &[encode("9", END), encode("10", RESET)].concat());
        assert_eq!(
            out.iter().map(|f| (f.kind, f.targets.clone())).collect::<Vec<_>>(),
            [(FrameKind::Event, vec![all]), (FrameKind::Event, vec![all])]
        );
        // A reason body under another name is an event too.
        assert_eq!(kind(&mut d, b"event: other\ndata: {\"reason\":\"shutdown\"}\n\n"), [FrameKind::Event]);
        // `reset` shares its block with the stream's first cursor in history mode.
        let mut prelude = b"retry: 2000\n\nid: 5:3\n".to_vec();
        prelude.extend(control(RESET, "history_expired"));
        assert_eq!(kind(&mut d, &prelude), [FrameKind::Reset]);
        assert_eq!(d.cursor(), Some("5:3"));
    }

    #[test]
    fn reconnect_after_end_without_backoff() {
        for r in [EndReason::TokenExpired, EndReason::MaxLifetime, EndReason::Other] {
            assert_eq!(r.reconnect_delay_ms(0.99), 0.0);
        }
        let s = EndReason::Shutdown;
        assert_eq!(s.reconnect_delay_ms(0.0), 0.0);
        assert_eq!(s.reconnect_delay_ms(0.5), 125.0);
        assert!(s.reconnect_delay_ms(0.999_999) < SHUTDOWN_JITTER_MS);
        assert_eq!(s.reconnect_delay_ms(7.0), SHUTDOWN_JITTER_MS);
        assert_eq!(s.reconnect_delay_ms(f64::NAN), 0.0);
    }

    #[test]
    fn cursor_tracking() {
        let mut d = Demux::new(Some("100".into()));
        d.add(None);
        assert_eq!(d.cursor(), Some("100"));
        // Heartbeats and retry do not move it.
        push_all(&mut d, b"retry: 10\n\n: hb\n\n");
        assert_eq!(d.cursor(), Some("100"));
        // Partial frame: not yet.
        push_all(&mut d, b"id: 101\nevent: a\ndata: {}\n");
        assert_eq!(d.cursor(), Some("100"));
        push_all(&mut d, b"\n");
        assert_eq!(d.cursor(), Some("101"));
        // An unfinished frame at the end of a stream is dropped; the cursor stays.
        push_all(&mut d, b"id: 102\nevent: a\ndata: {}\n");
        d.end_stream();
        assert_eq!(d.cursor(), Some("101"));
        // The next connection continues from there; an id-only block moves it.
        push_all(&mut d, b"retry: 5\n\nid: 1734:1690\n\n");
        assert_eq!(d.cursor(), Some("1734:1690"));
        // An empty initial cursor is no cursor.
        assert_eq!(Demux::new(Some(String::new())).cursor(), None);
    }

    #[test]
    fn dedupe_is_bounded_and_exact() {
        let mut d = Demux::new(None);
        assert!(d.first_delivery("1"));
        assert!(!d.first_delivery("1"));
        for i in 2..=DEDUPE_CAPACITY {
            assert!(d.first_delivery(&i.to_string()));
        }
        assert!(!d.first_delivery("1"));
        assert!(!d.first_delivery(&DEDUPE_CAPACITY.to_string()));
        // One more evicts the oldest.
        assert!(d.first_delivery("new"));
        assert!(d.first_delivery("1"));
    }

    /// The hash index agrees with a plain model (std's set + queue) across many evictions,
    /// with ids drawn from a range wider than the capacity so that some come back after
    /// being evicted and others while still remembered.
    #[test]
    fn dedupe_matches_a_model() {
        let mut d = Dedupe::default();
        let mut set = std::collections::HashSet::new();
        let mut order = std::collections::VecDeque::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 6_000).to_string();
            let expected = if set.contains(&id) {
                false
            } else {
                if order.len() == DEDUPE_CAPACITY {
                    set.remove(&order.pop_front().unwrap());
                }
                set.insert(id.clone());
                order.push_back(id.clone());
                true
            };
            assert_eq!(d.first_time(&id), expected, "step {step}, id {id}");
            if step == 25_000 {
                d.forget();
                set.clear();
                order.clear();
            }
        }
    }

    #[test]
    fn replay_after_reconnect_is_deduplicated() {
        let mut d = Demux::new(None);
        let (l, _) = d.add(None);
        let mut delivered = Vec::new();
        let mut deliver = |d: &mut Demux, bytes: &[u8]| {
            for f in push_all(d, bytes) {
                let id = f.data.split('"').nth(3).unwrap().to_owned();
                if d.first_delivery(&id) {
                    assert_eq!(f.targets, [l]);
                    delivered.push(id);
                }
            }
        };
        let mut first = encode("1", "a");
        first.extend(encode("2", "a"));
        first.extend(b"id: 3\nevent: a\ndata: {\"id\":\"3\"");
        deliver(&mut d, &first);
        d.end_stream();
        assert_eq!(d.cursor(), Some("2"));
        // The server replays from an older point (overlap), then new events.
        let mut second = encode("1", "a");
        second.extend(encode("2", "a"));
        second.extend(encode("3", "a"));
        second.extend(encode("4", "a"));
        deliver(&mut d, &second);
        assert_eq!(delivered, ["1", "2", "3", "4"]);
    }

    #[test]
    fn two_open_streams_deliver_each_id_once() {
        let mut d = Demux::new(None);
        let (a, _) = d.add(filter(&["a"]));
        d.begin_request();
        // The old stream is mid-frame when the grown request is made.
        let mut old1 = encode("1", "a");
        old1.extend(b"id: 2\nevent: a\n");
        let ids = std::cell::RefCell::new(Vec::new());
        let take = |d: &mut Demux, bytes: &[u8], old: bool| {
            let mut out = Vec::new();
            d.push(bytes, old, &mut out);
            for f in out {
                let id = f.data.split('"').nth(3).unwrap().to_owned();
                if d.admit(f.kind, Some(&id)) {
                    ids.borrow_mut().push((id, f.targets));
                }
            }
        };
        take(&mut d, &old1, false);
        let (b, grow) = d.add(filter(&["b"]));
        assert!(grow);
        d.hand_over();
        assert_eq!(d.begin_request().as_deref(), Some("a,b"));
        take(&mut d, &encode("1", "a"), false);
        // The rest of the old stream's frame (its own parser kept the first half).
        take(&mut d, &[b"data: ".as_slice(), envelope("2", "a").as_bytes(), b"\n\n"].concat(), true);
        take(&mut d, &encode("2", "a"), false);
        take(&mut d, &encode("3", "b"), false);
        take(&mut d, &encode("4", "a"), false);
        take(&mut d, &encode("4", "a"), true);
        // An `end` on the old stream does not end the new one.
        take(&mut d, &control("end", "shutdown"), true);
        take(&mut d, &encode("5", "a"), false);
        assert_eq!(d.cursor(), Some("5"), "the cursor follows the new stream only");
        let want: Vec<(String, Vec<ListenerId>)> =
            [("1", vec![a]), ("2", vec![a]), ("3", vec![b]), ("4", vec![a]), ("5", vec![a])]
                .iter()
                .map(|(i, t)| ((*i).to_owned(), t.clone()))
                .collect();
        assert_eq!(*ids.borrow(), want);
        d.close_old();
        take(&mut d, &encode("6", "a"), true);
        assert_eq!(ids.borrow().len(), 5, "a closed old stream delivers nothing");
    }

    /// What the wasm glue hands to callbacks for `bytes`: (kind, envelope id) per admitted
    /// frame, in order (the glue reads the id from the parsed JSON; here from the text).
    fn admitted(d: &mut Demux, bytes: &[u8]) -> Vec<(FrameKind, Option<String>)> {
        let mut out = Vec::new();
        for f in push_all(d, bytes) {
            let id = (f.kind == FrameKind::Event).then(|| f.data.split('"').nth(3).unwrap().to_owned());
            if d.admit(f.kind, id.as_deref()) {
                out.push((f.kind, id));
            }
        }
        out
    }

    #[test]
    fn reset_forgets_delivered_ids() {
        let ev = |id: &str| (FrameKind::Event, Some(id.to_owned()));
        for reason in ["history_recreated", "unknown_cursor", "history_expired", "something_new"] {
            let mut d = Demux::new(None);
            d.add(None);
            // First connection: sequences 1..3, and a replayed 2 in the same chunk.
            let mut first = encode("1", "a");
            first.extend(encode("2", "a"));
            first.extend(encode("2", "a"));
            first.extend(encode("3", "a"));
            assert_eq!(admitted(&mut d, &first), [ev("1"), ev("2"), ev("3")]);
            d.end_stream();
            // The history was re-created (or the cursor could not be used): the next stream
            // opens with `reset` in the block of its first `id:`, and numbering restarts at 1.
            // In one chunk: the duplicate before the reset is still dropped, the ids after it
            // are new events, and a duplicate after it is dropped again.
            let mut second = encode("3", "a");
            second.extend(b"retry: 2000\n\nid: 0:0\n");
            second.extend(control(RESET, reason));
            second.extend(encode("1", "a"));
            second.extend(encode("2", "a"));
            second.extend(encode("1", "a"));
            second.extend(encode("4", "a"));
            assert_eq!(
                admitted(&mut d, &second),
                [(FrameKind::Reset, None), ev("1"), ev("2"), ev("4")],
                "reason {reason}"
            );
        }
        // A reset in the middle of a stream (not only at its start) forgets too.
        let mut d = Demux::new(None);
        d.add(filter(&["a"]));
        let mut bytes = encode("7", "a");
        bytes.extend(control(RESET, "history_recreated"));
        bytes.extend(encode("7", "a"));
        assert_eq!(admitted(&mut d, &bytes), [ev("7"), (FrameKind::Reset, None), ev("7")]);
        // `end` is never admitted, and does not forget.
        assert!(!d.admit(FrameKind::End(EndReason::Shutdown), None));
        assert!(!d.admit(FrameKind::Event, Some("7")));
        // An event without an envelope id cannot be checked: delivered.
        assert!(d.admit(FrameKind::Event, None));
    }

    /// One SSE frame of a generated stream.
    #[derive(Debug, Clone)]
    enum Item {
        Event { id: String, event: String },
        Comment,
        Retry(u32),
    }

    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            6 => ("[a-z0-9]{1,4}", prop::sample::select(vec!["message_new", "typing_start", "notification", "x"]))
                .prop_map(|(id, event)| Item::Event { id, event: event.to_owned() }),
            1 => Just(Item::Comment),
            1 => (0u32..100_000).prop_map(Item::Retry),
        ]
    }

    fn render(items: &[Item], eol: &str) -> Vec<u8> {
        let mut s = String::new();
        for it in items {
            match it {
                Item::Event { id, event } => {
                    // Multi-line data and a non-ASCII payload, as real JSON may be pretty-printed.
                    s.push_str("id: ");
                    s.push_str(id);
                    s.push_str(eol);
                    s.push_str("event: ");
                    s.push_str(event);
                    s.push_str(eol);
                    s.push_str("data: {\"id\":\"");
                    s.push_str(id);
                    s.push_str("\",");
                    s.push_str(eol);
                    s.push_str("data: \"text\":\"h\u{e9}llo \u{1F600}\"}");
                    s.push_str(eol);
                    s.push_str(eol);
                }
                Item::Comment => {
                    s.push_str(": hb");
                    s.push_str(eol);
                    s.push_str(eol);
                }
                Item::Retry(ms) => {
                    s.push_str("retry: ");
                    s.push_str(&ms.to_string());
                    s.push_str(eol);
                    s.push_str(eol);
                }
            }
        }
        s.into_bytes()
    }

    /// What the SDK layer hands to callbacks: (listener, envelope id) in order, after dedupe.
    fn run(filters: &[Filter], chunks: &[&[u8]]) -> (Vec<(ListenerId, String)>, Option<String>) {
        let mut d = Demux::new(None);
        for f in filters {
            d.add(f.clone());
        }
        let mut calls = Vec::new();
        for c in chunks {
            for f in push_all(&mut d, c) {
                let id = f.data.split('"').nth(3).unwrap().to_owned();
                if d.first_delivery(&id) {
                    calls.extend(f.targets.iter().map(|t| (*t, id.clone())));
                }
            }
        }
        (calls, d.cursor().map(str::to_owned))
    }

    fn filter_strategy() -> impl Strategy<Value = Filter> {
        prop_oneof![
            1 => Just(None),
            3 => prop::sample::subsequence(vec!["message_new", "typing_start", "notification", "x"], 1..=3)
                .prop_map(|v| parse_filter(Some(v)).unwrap()),
        ]
    }

    proptest! {
        /// Any split of a valid stream into chunks gives the same deliveries and cursor
        /// as the whole stream at once, and the deliveries follow the filters and dedupe.
        #[test]
        fn any_chunking_routes_the_same(
            items in prop::collection::vec(item(), 0..24),
            filters in prop::collection::vec(filter_strategy(), 1..4),
            eol in prop::sample::select(vec!["\n", "\r\n", "\r"]),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let bytes = render(&items, eol);
            // With a CR line end, the stream's last CR is only known to end a line once
            // more bytes (or the next frame) arrive; append a comment so both runs agree.
            let mut bytes = bytes;
            bytes.extend_from_slice(b":\n");
            let (whole, whole_cursor) = run(&filters, &[&bytes]);

            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&bytes[start..p]);
                start = p;
            }
            chunks.push(&bytes[start..]);
            let (split, split_cursor) = run(&filters, &chunks);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(&split_cursor, &whole_cursor);

            // Model: every first occurrence of an id, to each listener whose filter has its event.
            let mut seen = std::collections::HashSet::new();
            let mut expected = Vec::new();
            let mut last_id = None;
            for it in &items {
                if let Item::Event { id, event } = it {
                    last_id = Some(id.clone());
                    let wanted: Vec<ListenerId> = filters
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| accepts(f, event))
                        .map(|(i, _)| i as ListenerId + 1)
                        .collect();
                    // A frame nobody wants is never looked at, so it does not count as seen.
                    if !wanted.is_empty() && seen.insert(id.clone()) {
                        expected.extend(wanted.into_iter().map(|l| (l, id.clone())));
                    }
                }
            }
            prop_assert_eq!(whole, expected);
            prop_assert_eq!(whole_cursor, last_id);
        }
    }
}
