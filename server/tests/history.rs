//! History mode (docs/protocol.md §5), end to end with a real nats-server
//! (JetStream, file store) and real bridge processes: resume with `Last-Event-ID` on the same
//! bridge, on one restarted after SIGKILL and on another instance; the seam between catch-up
//! and live; filtered resume; `reset`; slow clients; NATS restarts and a cut NATS link;
//! `--history on|auto|off`; `POST /v1/publish` with JetStream acks; `Nats-Msg-Id` duplicates.
//!
//! Streams are read with the small spec-following SSE reader below (not the crate's parser):
//! it reports `id:`-only blocks (a stream's opening cursor, the end of a catch-up) and keeps
//! the last event ID the way the EventSource spec does (set at each blank line, so a frame
//! cut in half by a dropped connection does not count).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use common::*;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// History mode with one NATS subscription per connected user (the default is the shared
/// dispatch): the tests that exercise gap filling run in both.
const PER_USER: &[&str] = &["--subscribe", "per-user"];

// ---------------------------------------------------------------------------------------
// SSE reader

/// One dispatched SSE event.
#[derive(Debug, Clone)]
struct Ev {
    /// The last event ID once this event was dispatched (the resume cursor).
    cursor: String,
    event: String,
    data: String,
    env: Value,
}

impl Ev {
    /// The envelope id as a stream sequence.
    fn seq(&self) -> u64 {
        self.env["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("envelope id is not a stream sequence: {}", self.data))
    }

    fn is_broadcast(&self) -> bool {
        self.env.get("userId").is_none()
    }
}

#[derive(Debug, Clone)]
enum Item {
    Event(Ev),
    /// A block with an `id:` line and no data: sets the cursor without an event.
    IdOnly(String),
    /// The server ended the stream (or the connection broke).
    End,
}

struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
    id_field: Option<String>,
    event: String,
    data: String,
    last_id: String,
    queue: VecDeque<Item>,
    ended: bool,
}

async fn stream_request_within(
    base: &str,
    user: &str,
    query: &str,
    last_id: Option<&str>,
    within: Duration,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{base}/v1/users/{user}/events{query}")).bearer_auth(token(user));
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    tokio::time::timeout(within, req.send()).await.expect("stream response in time").unwrap()
}

impl Sse {
    async fn open(base: &str, user: &str, query: &str, last_id: Option<&str>) -> Self {
        Self::open_within(base, user, query, last_id, WAIT).await
    }

    async fn open_within(base: &str, user: &str, query: &str, last_id: Option<&str>, within: Duration) -> Self {
        let resp = stream_request_within(base, user, query, last_id, within).await;
        let status = resp.status();
        assert_eq!(status, 200, "stream refused: {}", resp.text().await.unwrap_or_default());
        Self {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
            id_field: None,
            event: String::new(),
            data: String::new(),
            last_id: String::new(),
            queue: VecDeque::new(),
            ended: false,
        }
    }

    /// The next item, or `None` if nothing arrives within `d`.
    async fn next_within(&mut self, d: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(i) = self.queue.pop_front() {
                return Some(i);
            }
            if self.ended {
                return Some(Item::End);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None | Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => self.feed(&chunk),
            }
        }
    }

    async fn next(&mut self) -> Item {
        self.next_within(WAIT).await.expect("an SSE item before the timeout")
    }

    async fn expect_event(&mut self) -> Ev {
        match self.next().await {
            Item::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    async fn expect_id_only(&mut self) -> String {
        match self.next().await {
            Item::IdOnly(c) => c,
            other => panic!("expected an id:-only block, got {other:?}"),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).expect("the stream is UTF-8");
            self.line(&line);
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" if !value.contains('\0') => self.id_field = Some(value.to_owned()),
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let had_id = self.id_field.is_some();
        if let Some(id) = self.id_field.take() {
            self.last_id = id;
        }
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            if had_id {
                self.queue.push_back(Item::IdOnly(self.last_id.clone()));
            }
            return;
        }
        data.pop();
        let env: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"));
        let event = if event.is_empty() { "message".to_owned() } else { event };
        self.queue.push_back(Item::Event(Ev { cursor: self.last_id.clone(), event, data, env }));
    }
}

fn parse_cursor(s: &str) -> (u64, u64) {
    let (u, b) = s.split_once(':').unwrap_or_else(|| panic!("cursor {s:?} is not <user>:<broadcast>"));
    (u.parse().unwrap_or_else(|_| panic!("cursor {s:?}")), b.parse().unwrap_or_else(|_| panic!("cursor {s:?}")))
}

/// A reader that behaves like a client: when the server ends the stream it reconnects at once
/// with its last event ID. Keeps every event, the `id:`-only blocks and the `reset` frames.
struct Session {
    base: String,
    user: String,
    query: String,
    sse: Sse,
    got: Vec<Ev>,
    /// Index into `got` where each connection started.
    conn_starts: Vec<usize>,
    /// `(got.len() at the time, cursor)` of every `id:`-only block.
    markers: Vec<(usize, String)>,
    resets: Vec<Ev>,
}

impl Session {
    async fn open(base: &str, user: &str, query: &str, last_id: Option<&str>) -> Self {
        let sse = Sse::open(base, user, query, last_id).await;
        Self {
            base: base.to_owned(),
            user: user.to_owned(),
            query: query.to_owned(),
            sse,
            got: Vec::new(),
            conn_starts: vec![0],
            markers: Vec::new(),
            resets: Vec::new(),
        }
    }

    /// A session around a stream opened already.
    fn wrap(base: impl Into<String>, user: &str, sse: Sse) -> Self {
        Self {
            base: base.into(),
            user: user.to_owned(),
            query: String::new(),
            sse,
            got: Vec::new(),
            conn_starts: vec![0],
            markers: Vec::new(),
            resets: Vec::new(),
        }
    }

    fn reconnects(&self) -> usize {
        self.conn_starts.len() - 1
    }

    fn seqs(&self) -> BTreeSet<u64> {
        self.got.iter().map(Ev::seq).collect()
    }

    /// Reads until `done(self)`, failing after `timeout`.
    async fn read_until(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.sse.next_within(left).await {
                None => panic!(
                    "timed out after {timeout:?} waiting for {what}: {} events on {} connection(s), last cursor {:?}",
                    self.got.len(),
                    self.conn_starts.len(),
                    self.sse.last_id
                ),
                Some(Item::Event(e)) if e.event == "reset" => self.resets.push(e),
                Some(Item::Event(e)) => self.got.push(e),
                Some(Item::IdOnly(c)) => self.markers.push((self.got.len(), c)),
                Some(Item::End) => {
                    let last = self.sse.last_id.clone();
                    assert!(!last.is_empty(), "the stream ended before giving a cursor");
                    self.sse = Sse::open(&self.base, &self.user, &self.query, Some(&last)).await;
                    self.conn_starts.push(self.got.len());
                }
            }
        }
    }

    /// Reads until every sequence in `want` has been seen.
    async fn read_all(&mut self, what: &str, timeout: Duration, want: &[Pub]) {
        let want: BTreeSet<u64> = want.iter().map(|p| p.seq).collect();
        self.read_until(what, timeout, |s| {
            let seen = s.seqs();
            want.iter().all(|q| seen.contains(q))
        })
        .await;
    }

    /// Nothing more is delivered before two sentinels published now, one for the user and a
    /// broadcast: a duplicate or a stray still on its way would show up before them (each
    /// ring is delivered in stored order). The sentinels are taken out of `got` again. Named
    /// after the first event the session's `events=` filter wants.
    /// Reads for `d`, keeping `id:`-only blocks; an event meanwhile fails the test.
    async fn drain_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.sse.next_within(left).await {
                None | Some(Item::End) => return,
                Some(Item::IdOnly(c)) => self.markers.push((self.got.len(), c)),
                Some(Item::Event(e)) => panic!("unexpected event: {} {}", e.event, e.data),
            }
        }
    }

    async fn expect_only_sentinels(&mut self, js: &jetstream::Context) {
        let event = self
            .query
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("events="))
            .and_then(|list| list.split(',').next())
            .unwrap_or("sentinel")
            .to_owned();
        let user = js_pub(js, &format!("user.{}.{event}", self.user), r#"{"sentinel":"user"}"#.into()).await;
        let broadcast = js_pub(js, &format!("broadcast.{event}"), r#"{"sentinel":"broadcast"}"#.into()).await;
        let before = self.got.len();
        self.read_all("the sentinels", WAIT, &[user.clone(), broadcast.clone()]).await;
        // Another session of the same test may have sent sentinels of its own: those pass too.
        let strays: Vec<&Ev> = self.got[before..].iter().filter(|e| e.env["data"].get("sentinel").is_none()).collect();
        assert!(strays.is_empty(), "events delivered after the expected ones: {strays:?}");
        self.got.truncate(before);
    }
}

// ---------------------------------------------------------------------------------------
// Publishing and checking

/// One event stored in JetStream, as its publisher knows it from the ack.
#[derive(Debug, Clone)]
struct Pub {
    seq: u64,
    subject: String,
    payload: String,
}

impl Pub {
    fn event(&self) -> &str {
        self.subject.rsplit('.').next().unwrap()
    }

    /// `Some(user)` for `user.<id>.<event>`, `None` for broadcasts.
    fn user(&self) -> Option<&str> {
        self.subject.strip_prefix("user.").and_then(|r| r.split('.').next())
    }

    /// Whether `user`'s stream with this `events=` filter should get it.
    fn for_user(&self, user: &str, filter: Option<&[&str]>) -> bool {
        let mine = self.user().is_none_or(|u| u == user);
        mine && filter.is_none_or(|f| f.contains(&self.event()))
    }
}

/// What a stream opened fresh should get: the user's events and broadcasts after the
/// cursor its `id:`-only opening block gave it (a bridge still busy with a burst may start a
/// fresh stream a little behind what was already acknowledged; that is no loss).
fn expected_after(pubs: &[Pub], user: &str, cursor: &str) -> Vec<Pub> {
    let (cu, cb) = parse_cursor(cursor);
    pubs.iter()
        .filter(|p| p.for_user(user, None) && p.seq > if p.user().is_some() { cu } else { cb })
        .cloned()
        .collect()
}

fn expected_for(pubs: &[Pub], user: &str, filter: Option<&[&str]>) -> Vec<Pub> {
    pubs.iter().filter(|p| p.for_user(user, filter)).cloned().collect()
}

async fn js_pub(js: &jetstream::Context, subject: &str, payload: String) -> Pub {
    let ack = tokio::time::timeout(WAIT, async {
        js.publish(subject.to_owned(), Bytes::from(payload.clone())).await.unwrap().await.unwrap()
    })
    .await
    .expect("JetStream acknowledged in time");
    assert!(!ack.duplicate, "{subject} {payload} taken for a duplicate");
    Pub { seq: ack.sequence, subject: subject.to_owned(), payload }
}

/// Publishes everything (pipelined), returning what JetStream acknowledged, in order.
async fn js_pub_all(js: &jetstream::Context, items: Vec<(String, String)>) -> Vec<Pub> {
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(256) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (subject, payload) in chunk {
            acks.push(js.publish(subject.clone(), Bytes::from(payload.clone())).await.unwrap());
        }
        for ((subject, payload), ack) in chunk.iter().zip(acks) {
            let ack = tokio::time::timeout(WAIT, ack).await.expect("JetStream acknowledged in time").unwrap();
            assert!(!ack.duplicate);
            out.push(Pub { seq: ack.sequence, subject: subject.clone(), payload: payload.clone() });
        }
    }
    out
}

/// Publishes with a `Nats-Msg-Id`, retrying (same id, so no duplicate is stored) until
/// JetStream acknowledges: for publishing across a NATS restart.
async fn js_pub_retrying(js: &jetstream::Context, subject: &str, payload: String, msg_id: &str) -> Pub {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", msg_id);
        let attempt = tokio::time::timeout(Duration::from_secs(3), async {
            js.publish_with_headers(subject.to_owned(), h, Bytes::from(payload.clone())).await?.await
        })
        .await;
        if let Ok(Ok(ack)) = attempt {
            return Pub { seq: ack.sequence, subject: subject.to_owned(), payload };
        }
        assert!(Instant::now() < deadline, "JetStream did not take {subject} {msg_id} within 30s: {attempt:?}");
        tokio::time::sleep(Duration::from_millis(50)).await; // retry pacing, not synchronisation
    }
}

/// `n` events: mostly `user.<user>.*`, every third a broadcast, every fifth for another user.
fn mixed(user: &str, n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let subject = if i % 3 == 2 {
                format!("broadcast.{}", if i % 2 == 0 { "news" } else { "alert" })
            } else if i % 5 == 4 {
                format!("user.{user}-other.msg")
            } else {
                format!("user.{user}.{}", if i % 2 == 0 { "msg" } else { "note" })
            };
            (subject, format!(r#"{{"tag":"{tag}","n":{i}}}"#))
        })
        .collect()
}

async fn stream_state(js: &jetstream::Context, name: &str) -> jetstream::stream::State {
    let mut s = js.get_stream(name).await.unwrap();
    s.info().await.unwrap().state.clone()
}

/// Checks what `user`'s stream(s) delivered against what was published for it: every expected
/// event exactly once and nothing else, envelopes that match the publish, user events and
/// broadcasts each in ascending stored order, and each event's cursor naming its own sequence.
fn assert_no_reset(what: &str, sess: &Session) {
    assert!(sess.resets.is_empty(), "{what}: a reconnect was answered with reset: {:?}", sess.resets);
}

fn assert_exactly_once(what: &str, user: &str, got: &[Ev], expected: &[Pub]) {
    let want: BTreeMap<u64, &Pub> = expected.iter().map(|p| (p.seq, p)).collect();
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let (mut last_user, mut last_bc) = (0u64, 0u64);
    for e in got {
        let seq = e.seq();
        *count.entry(seq).or_default() += 1;
        match want.get(&seq) {
            None => problems.push(format!("unexpected event {seq}: {} {}", e.event, e.data)),
            Some(p) => {
                let payload: Value = serde_json::from_str(&p.payload).unwrap();
                if e.event != p.event() || e.env["event"] != p.event() || e.env["data"] != payload {
                    problems.push(format!("event {seq} does not match its publish {p:?}: {} {}", e.event, e.data));
                }
                match p.user() {
                    Some(_) if e.env["userId"] != user => {
                        problems.push(format!("event {seq} has userId {}", e.env["userId"]))
                    }
                    None if !e.is_broadcast() => problems.push(format!("broadcast {seq} has a userId")),
                    _ => {}
                }
            }
        }
        let (cu, cb) = parse_cursor(&e.cursor);
        let (last, pos) = if e.is_broadcast() { (&mut last_bc, cb) } else { (&mut last_user, cu) };
        if seq <= *last {
            problems.push(format!(
                "out of order: {} {seq} after {}",
                if e.is_broadcast() { "broadcast" } else { "user event" },
                *last
            ));
        }
        *last = seq;
        if pos != seq {
            problems.push(format!("cursor {} of event {seq} does not name it", e.cursor));
        }
    }
    let dups: Vec<u64> = count.iter().filter(|(_, n)| **n > 1).map(|(s, _)| *s).collect();
    let missing: Vec<u64> = want.keys().filter(|s| !count.contains_key(s)).copied().collect();
    assert!(
        problems.is_empty() && dups.is_empty() && missing.is_empty(),
        "{what}: {} delivered, {} expected; missing {} {:?}; duplicated {} {:?}; problems {:?}",
        got.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(20)],
        dups.len(),
        &dups[..dups.len().min(20)],
        &problems[..problems.len().min(20)]
    );
}

fn seqs_of(evs: &[Ev]) -> Vec<u64> {
    evs.iter().map(Ev::seq).collect()
}

/// The next `n` events (`id:`-only blocks in between only move the cursor).
async fn read_n(sse: &mut Sse, n: usize) -> Vec<Ev> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match sse.next().await {
            Item::Event(e) => out.push(e),
            Item::IdOnly(_) => {}
            Item::End => panic!("the stream ended after {} of {n} events", out.len()),
        }
    }
    out
}

async fn wait_no_streams(base: &str) {
    eventually("the bridge to release the dropped stream", WAIT, || async {
        (metric(base, "realtime_bridge_open_streams").await == 0.0).then_some(())
    })
    .await;
}

/// Waits until the bridge's live position has reached `seq`, so that a stream opened from now
/// on starts after it. With the shared dispatch (the default in history mode) the bridge
/// follows the history store a moment behind (longer in a debug build on a loaded machine),
/// and a fresh stream starts where the bridge is, not where the store is.
async fn live_position_reaches(base: &str, seq: u64) {
    eventually(&format!("the bridge's live position to reach {seq}"), WAIT, || async {
        let mut probe = Sse::open(base, "position-probe", "", None).await;
        let (u, b) = parse_cursor(&probe.expect_id_only().await);
        (u.min(b) >= seq).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 1-3: resume on the same bridge, after SIGKILL, on another instance

/// Resumes `user` from `cursor` (the `Last-Event-ID` header, or already in `query`) and reads
/// until every event of `expected` the client had not `seen` has come. Checks the catch-up:
/// it starts by handing the client its own cursor back, is in stored order, holds for each
/// kind a prefix of what was missed (the ring brings the rest, if any), and its end marker
/// covers it. Returns the session, still open, with everything the resumed stream delivered.
async fn resume_checked(
    what: &str,
    base: &str,
    user: &str,
    query: &str,
    cursor: &str,
    expected: &[Pub],
    seen: &[Ev],
) -> Session {
    // So that the catch-up, not the ring, brings what was missed (the bridge may lag the store).
    if let Some(last) = expected.iter().map(|p| p.seq).max() {
        live_position_reaches(base, last).await;
    }
    let header = (!query.contains("lastEventId=")).then_some(cursor);
    let mut sess = Session::open(base, user, query, header).await;
    sess.read_until(&format!("{what}: the end of the catch-up"), WAIT, |s| s.markers.len() >= 2).await;
    assert_eq!(
        sess.markers[0],
        (0, cursor.to_owned()),
        "{what}: a resumed stream first hands the client its own cursor back"
    );
    assert!(sess.resets.is_empty(), "{what}: resume refused: {:?}", sess.resets);
    let (end_at, end) = sess.markers[1].clone();
    let seen: BTreeSet<u64> = seen.iter().map(Ev::seq).collect();
    let mut missed: Vec<&Pub> = expected.iter().filter(|p| !seen.contains(&p.seq)).collect();
    missed.sort_by_key(|p| p.seq);
    let catch_up = &sess.got[..end_at].to_vec();
    assert!(!catch_up.is_empty(), "{what}: empty catch-up although {} events were missed", missed.len());
    assert!(
        seqs_of(catch_up).windows(2).all(|w| w[0] < w[1]),
        "{what}: catch-up not in stored order: {:?}",
        seqs_of(catch_up)
    );
    let (eu, eb) = parse_cursor(&end);
    for broadcast in [false, true] {
        let want: Vec<u64> = missed.iter().filter(|p| p.user().is_none() == broadcast).map(|p| p.seq).collect();
        let got: Vec<u64> = catch_up.iter().filter(|e| e.is_broadcast() == broadcast).map(Ev::seq).collect();
        assert!(
            got.len() <= want.len() && got == want[..got.len()],
            "{what}: catch-up {} from {cursor} must be the missed ones in order: got {got:?}, missed {want:?}",
            if broadcast { "broadcasts" } else { "user events" }
        );
        let pos = if broadcast { eb } else { eu };
        assert!(got.last().is_none_or(|s| *s <= pos), "{what}: end-of-catch-up cursor {end} is behind {got:?}");
    }
    let rest: Vec<Pub> = missed.iter().filter(|p| !sess.seqs().contains(&p.seq)).map(|p| (*p).clone()).collect();
    sess.read_all(&format!("{what}: the missed events"), WAIT, &rest).await;
    assert_eq!(sess.reconnects(), 0, "{what}: the resumed stream ended");
    println!("{what}: resumed from {cursor}: {} missed, {} in the catch-up", missed.len(), catch_up.len());
    sess
}

/// Publishes `items`, reads the `user`'s share on `sess`, then checks nothing more comes.
async fn live_after(
    js: &jetstream::Context,
    sess: &mut Session,
    user: &str,
    filter: Option<&[&str]>,
    items: Vec<(String, String)>,
) -> Vec<Pub> {
    let live = js_pub_all(js, items).await;
    sess.read_all("live events after the catch-up", WAIT, &expected_for(&live, user, filter)).await;
    sess.expect_only_sentinels(js).await;
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_the_same_bridge_gets_exactly_the_missed_events_then_live() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "alice";

    let mut s = Sse::open(&base, user, "", None).await;
    parse_cursor(&s.expect_id_only().await);
    let mut pubs = js_pub_all(&js, mixed(user, 30, "before")).await;
    let first = read_n(&mut s, 10).await;
    let cursor = first.last().unwrap().cursor.clone();
    drop(s);
    wait_no_streams(&base).await;
    pubs.extend(js_pub_all(&js, mixed(user, 30, "away")).await);

    let mut r = resume_checked("same bridge", &base, user, "", &cursor, &expected_for(&pubs, user, None), &first).await;
    pubs.extend(live_after(&js, &mut r, user, None, mixed(user, 9, "live")).await);
    let all: Vec<Ev> = first.into_iter().chain(r.got).collect();
    assert_exactly_once("resume on the same bridge", user, &all, &expected_for(&pubs, user, None));
}

/// The same while another tab of the user stays open: the resumed stream joins a channel
/// that is already running (and the other tab gets everything once, too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_next_to_an_open_tab_of_the_same_user_gets_exactly_the_missed_events() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "anna";

    let mut tab = Session::open(&base, user, "", None).await;
    let mut s = Sse::open(&base, user, "", None).await;
    s.expect_id_only().await;
    let mut pubs = js_pub_all(&js, mixed(user, 30, "before")).await;
    let first = read_n(&mut s, 10).await;
    let cursor = first.last().unwrap().cursor.clone();
    drop(s);
    eventually("one stream left", WAIT, || async {
        (metric(&base, "realtime_bridge_open_streams").await == 1.0).then_some(())
    })
    .await;
    pubs.extend(js_pub_all(&js, mixed(user, 30, "away")).await);

    let mut r =
        resume_checked("next to a tab", &base, user, "", &cursor, &expected_for(&pubs, user, None), &first).await;
    pubs.extend(live_after(&js, &mut r, user, None, mixed(user, 9, "live")).await);
    let all: Vec<Ev> = first.into_iter().chain(r.got).collect();
    let expected = expected_for(&pubs, user, None);
    assert_exactly_once("resume next to an open tab", user, &all, &expected);
    tab.read_all("the other tab", WAIT, &expected).await;
    tab.expect_only_sentinels(&js).await;
    assert_eq!(tab.markers[0], (0, "0:0".to_owned()), "a fresh stream on an empty history opens at 0:0");
    assert_exactly_once("the other tab", user, &tab.got, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_a_bridge_restarted_after_sigkill_loses_and_repeats_nothing() {
    let nats = NatsServer::start();
    let mut a = BridgeProcess::start(&nats.url(), &[]);
    let js = jetstream::new(nats.client().await);
    let user = "bob";

    let mut s = Sse::open(&a.base(), user, "", None).await;
    s.expect_id_only().await;
    let mut pubs = js_pub_all(&js, mixed(user, 30, "before")).await;
    let first = read_n(&mut s, 8).await;
    let cursor = first.last().unwrap().cursor.clone();

    a.signal("KILL");
    a.wait_exit_async(WAIT).await.expect("the bridge dies on SIGKILL");
    drop(s);
    // Published while no bridge runs at all.
    pubs.extend(js_pub_all(&js, mixed(user, 30, "dead")).await);

    let b = BridgeProcess::start(&nats.url(), &[]);
    let mut r =
        resume_checked("after SIGKILL", &b.base(), user, "", &cursor, &expected_for(&pubs, user, None), &first).await;
    pubs.extend(live_after(&js, &mut r, user, None, mixed(user, 9, "live")).await);
    let all: Vec<Ev> = first.into_iter().chain(r.got).collect();
    assert_exactly_once("resume after SIGKILL", user, &all, &expected_for(&pubs, user, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_instance_and_back_loses_and_repeats_nothing() {
    let nats = NatsServer::start();
    // One of each dispatch: a cursor from either is good on the other.
    let a = BridgeProcess::start(&nats.url(), &[]);
    let b = BridgeProcess::start(&nats.url(), PER_USER);
    let js = jetstream::new(nats.client().await);
    let user = "carol";
    let mut pubs = Vec::new();
    let mut all = Vec::new();

    let mut s = Sse::open(&a.base(), user, "", None).await;
    s.expect_id_only().await;
    pubs.extend(js_pub_all(&js, mixed(user, 30, "on-a")).await);
    all.extend(read_n(&mut s, 8).await);
    drop(s);

    // A -> B -> A -> B, each time with events published while the client was away, and
    // leaving with events published but not read yet.
    for (hop, base) in [(1, b.base()), (2, a.base()), (3, b.base())] {
        pubs.extend(js_pub_all(&js, mixed(user, 30, &format!("away{hop}"))).await);
        let cursor = all.last().map(|e: &Ev| e.cursor.clone()).unwrap();
        let what = format!("hop {hop} to {base}");
        let mut r = resume_checked(&what, &base, user, "", &cursor, &expected_for(&pubs, user, None), &all).await;
        pubs.extend(live_after(&js, &mut r, user, None, mixed(user, 9, &format!("live{hop}"))).await);
        all.extend(std::mem::take(&mut r.got));
        pubs.extend(js_pub_all(&js, mixed(user, 12, &format!("unread{hop}"))).await);
        r.read_until("two more", WAIT, |s| s.got.len() >= 2).await;
        all.extend(r.got.drain(..2));
    }
    let cursor = all.last().unwrap().cursor.clone();
    let expected = expected_for(&pubs, user, None);
    let r = resume_checked("back to A", &a.base(), user, "", &cursor, &expected, &all).await;
    all.extend(r.got);
    assert_exactly_once("resume across instances", user, &all, &expected);
}

// ---------------------------------------------------------------------------------------
// 4: the seam between catch-up and live

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seam_publishing_during_a_long_catch_up_loses_and_repeats_nothing() {
    seam(false).await;
}

/// The same with another tab of the user open, so the resumed stream joins a running channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seam_next_to_an_open_tab_loses_and_repeats_nothing() {
    seam(true).await;
}

async fn seam(with_tab: bool) {
    let started = Instant::now();
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "seam";

    let mut s = Sse::open(&base, user, "", None).await;
    let cursor = s.expect_id_only().await;
    drop(s);
    wait_no_streams(&base).await;

    // 3000 stored events to catch up on (2000 of them this user's or broadcasts).
    let mut pubs = js_pub_all(&js, mixed(user, 3000, "stored")).await;
    let mut tab = None;
    if with_tab {
        let mut t = Session::open(&base, user, "", None).await;
        t.read_until("the tab's opening cursor", WAIT, |s| !s.markers.is_empty()).await;
        tab = Some(t);
    }

    // A publisher that keeps going through the whole catch-up, paced well under the ring
    // size (1024) so the stream has no reason to be cut while it catches up.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Pub>>> = Arc::default();
    let publisher = {
        let (js, stop, log) = (js.clone(), Arc::clone(&stop), Arc::clone(&log));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let subject = if i % 4 == 3 { "broadcast.tick".to_owned() } else { format!("user.{user}.tick") };
                let p = js_pub(&js, &subject, format!(r#"{{"tag":"during","n":{i}}}"#)).await;
                log.lock().unwrap().push(p);
                i += 1;
            }
        })
    };
    eventually("the publisher to be running", WAIT, || async { (log.lock().unwrap().len() >= 20).then_some(()) }).await;
    // So that the catch-up has events published during it to read, not only the ring.
    let twentieth = log.lock().unwrap()[19].seq;
    live_position_reaches(&base, twentieth).await;

    let mut sess = Session::open(&base, user, "", Some(&cursor)).await;
    sess.read_until("the end of the catch-up", Duration::from_secs(30), |s| s.markers.len() >= 2).await;
    assert_eq!(sess.markers[0], (0, cursor.clone()), "a resumed stream starts at the client's own cursor");
    let at_marker = log.lock().unwrap().len();
    eventually("more publishing after the catch-up", WAIT, || async {
        (log.lock().unwrap().len() >= at_marker + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(WAIT, publisher).await.expect("publisher stops").unwrap();
    let during = log.lock().unwrap().clone();
    pubs.extend(during.iter().cloned());
    let expected = expected_for(&pubs, user, None);
    sess.read_all("every event", Duration::from_secs(30), &expected).await;
    sess.expect_only_sentinels(&js).await;

    let (marker_at, _) = sess.markers[1];
    let catch_up = &sess.got[..marker_at];
    assert!(seqs_of(catch_up).windows(2).all(|w| w[0] < w[1]), "the catch-up must be in stored order");
    let during_seqs: BTreeSet<u64> = during.iter().map(|p| p.seq).collect();
    let in_catch_up = catch_up.iter().filter(|e| during_seqs.contains(&e.seq())).count();
    let after = sess.got[marker_at..].iter().filter(|e| during_seqs.contains(&e.seq())).count();
    println!(
        "seam (tab: {with_tab}): {} stored + {} published during; catch-up {} events ({} of them published during it), \
         {} live after; {} reconnect(s); {:?}",
        3000,
        during.len(),
        catch_up.len(),
        in_catch_up,
        after,
        sess.reconnects(),
        started.elapsed()
    );
    assert!(
        in_catch_up > 0 && after > 0,
        "publishing did not straddle the seam ({in_catch_up} in the catch-up, {after} after)"
    );
    assert_no_reset("seam", &sess);
    assert_exactly_once("seam", user, &sess.got, &expected);
    if let Some(tab) = &mut tab {
        assert_eq!(tab.markers[0].0, 0, "a fresh stream opens with its cursor");
        let want = expected_after(&pubs, user, &tab.markers[0].1.clone());
        tab.read_all("the other tab", WAIT, &want).await;
        tab.expect_only_sentinels(&js).await;
        assert_exactly_once("the other tab", user, &tab.got, &want);
    }
}

// ---------------------------------------------------------------------------------------
// 5: filtered resume

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_resume_gets_only_the_wanted_events_after_the_cursor_then_live() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "dave";
    let filter: &[&str] = &["a"];
    let batch = |tag: &str, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let subject = match i % 5 {
                    0 => format!("user.{user}.a"),
                    1 => format!("user.{user}.b"),
                    2 => "broadcast.a".to_owned(),
                    3 => "broadcast.b".to_owned(),
                    _ => "user.someone-else.a".to_owned(),
                };
                (subject, format!(r#"{{"tag":"{tag}","n":{i}}}"#))
            })
            .collect()
    };

    let mut s = Sse::open(&base, user, "?events=a", None).await;
    s.expect_id_only().await;
    let mut pubs = js_pub_all(&js, batch("before", 40)).await;
    let first = read_n(&mut s, 5).await;
    assert!(first.iter().all(|e| e.event == "a"));
    let cursor = first.last().unwrap().cursor.clone();
    drop(s);
    pubs.extend(js_pub_all(&js, batch("away", 40)).await);
    let expected = expected_for(&pubs, user, Some(filter));

    // The query form of the cursor this time.
    let query = format!("?events=a&lastEventId={cursor}");
    let mut r = resume_checked("filtered", &base, user, &query, &cursor, &expected, &first).await;
    assert!(r.got.iter().all(|e| e.event == "a"));
    pubs.extend(live_after(&js, &mut r, user, Some(filter), batch("live", 10)).await);
    let all: Vec<Ev> = first.into_iter().chain(r.got).collect();
    assert_exactly_once("filtered resume", user, &all, &expected_for(&pubs, user, Some(filter)));
}

// ---------------------------------------------------------------------------------------
// 6: reset

async fn expect_reset(sse: &mut Sse, reason: &str) -> (u64, u64) {
    let e = sse.expect_event().await;
    assert_eq!(e.event, "reset", "first frame must be the reset, got {} {}", e.event, e.data);
    assert_eq!(e.env, serde_json::json!({ "reason": reason }), "reset data");
    parse_cursor(&e.cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_older_than_history_gets_reset_history_expired_then_live() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &["--history-max-age", "1s", "--stream-name", "SHORT"]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "erin";

    let mut s = Sse::open(&base, user, "", None).await;
    s.expect_id_only().await;
    let mut pubs = Vec::new();
    for i in 0..3 {
        pubs.push(js_pub(&js, &format!("user.{user}.msg"), format!(r#"{{"n":{i}}}"#)).await);
    }
    let seen = read_n(&mut s, 3).await;
    let cursor = seen.last().unwrap().cursor.clone();
    drop(s);
    // Missed, then expired.
    for i in 3..6 {
        pubs.push(js_pub(&js, &format!("user.{user}.msg"), format!(r#"{{"n":{i}}}"#)).await);
    }
    pubs.push(js_pub(&js, "broadcast.news", "6".into()).await);
    let last = pubs.last().unwrap().seq;
    eventually("the events to expire from history", Duration::from_secs(20), || async {
        let st = stream_state(&js, "SHORT").await;
        (st.messages == 0 && st.first_sequence > last).then_some(())
    })
    .await;

    let mut r = Sse::open(&base, user, "", Some(&cursor)).await;
    let (u, b) = expect_reset(&mut r, "history_expired").await;
    assert!(u >= last && b >= last, "the reset's cursor {u}:{b} must be a fresh one (last stored {last})");
    let live = js_pub(&js, &format!("user.{user}.msg"), r#"{"n":"live"}"#.into()).await;
    let e = r.expect_event().await;
    assert_eq!(e.seq(), live.seq);
    assert_eq!(parse_cursor(&e.cursor).0, live.seq);
    let live_b = js_pub(&js, "broadcast.news", r#""live""#.into()).await;
    let e = r.expect_event().await;
    assert_eq!((e.seq(), e.event.as_str()), (live_b.seq, "news"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_or_foreign_cursor_gets_reset_unknown_cursor_then_live() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "frank";
    let mut last = 0;
    for i in 0..3 {
        last = js_pub(&js, &format!("user.{user}.msg"), format!("{i}")).await.seq;
    }
    // A reset starts the stream where the bridge is: past these three once it has them.
    live_position_reaches(&base, last).await;
    let mut streams = Vec::new();
    for bad in ["abc-1", "hDqsVFvX-1", "999999:1", "1:999999", "7", ""] {
        let mut s = Sse::open(&base, user, "", Some(bad)).await;
        if bad.is_empty() {
            // An empty Last-Event-ID is what a browser sends before it has an id: a fresh start, or a reset.
            match s.next().await {
                Item::IdOnly(_) => {}
                Item::Event(e) if e.event == "reset" => {}
                other => panic!("empty Last-Event-ID: {other:?}"),
            }
        } else {
            expect_reset(&mut s, "unknown_cursor").await;
        }
        streams.push((bad.to_owned(), s));
    }
    let mut q = Sse::open(&base, user, "?lastEventId=abc-1", None).await;
    expect_reset(&mut q, "unknown_cursor").await;
    streams.push(("?lastEventId=abc-1".into(), q));

    let live = js_pub(&js, &format!("user.{user}.msg"), r#""live""#.into()).await;
    for (bad, s) in &mut streams {
        let e = s.expect_event().await;
        assert_eq!(e.seq(), live.seq, "after the reset for {bad:?} the live event comes");
    }
}

/// Found while writing the reset test: a stream's cursor only moves when an event of that
/// kind is delivered. With no broadcasts at all, every cursor keeps the broadcast position
/// the bridge started with; a user without events keeps the position their stream opened
/// at. Once history has expired past that, a client that stayed connected all along, saw
/// everything, and comes back a moment later is told `history_expired` and must reload.
/// A connected client's last event ID (its `id:` lines, events and `id:`-only blocks alike)
/// has to stay inside the history window, so here the clients stay connected for several
/// heartbeats and more than twice `--history-max-age` before they reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_client_back_after_a_moment_is_not_reset_when_older_history_expired() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(
        &nats.url(),
        &["--history-max-age", "2s", "--stream-name", "SHORT2", "--heartbeat", "500ms"],
    );
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    // "steady" gets events and no broadcast is ever sent; "quiet" gets nothing at all.
    let mut steady = Session::open(&base, "steady", "", None).await;
    let mut quiet = Session::open(&base, "quiet", "", None).await;
    let started = Instant::now();
    let mut pubs = Vec::new();
    loop {
        pubs.push(js_pub(&js, "user.steady.tick", format!("{}", pubs.len())).await);
        let n = pubs.len();
        steady.read_until("the latest tick", WAIT, |s| s.got.len() == n).await;
        if started.elapsed() > Duration::from_secs(5) && stream_state(&js, "SHORT2").await.first_sequence > 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "history did not expire within 30s");
        tokio::time::sleep(Duration::from_millis(100)).await; // traffic pacing, not synchronisation
    }
    // Whatever the quiet stream sent meanwhile (heartbeats, id:-only blocks) has been read.
    quiet.drain_for(Duration::from_millis(1200)).await;
    assert_eq!(steady.reconnects() + quiet.reconnects(), 0);
    let first = stream_state(&js, "SHORT2").await.first_sequence;

    // Both back at once, having missed nothing: no reset, an empty catch-up, then live.
    let mut problems = Vec::new();
    let mut resumed = Vec::new();
    for (user, sess) in [("steady", steady), ("quiet", quiet)] {
        let cursor = sess.sse.last_id.clone();
        drop(sess);
        let mut r = Sse::open(&base, user, "", Some(&cursor)).await;
        match r.next().await {
            Item::IdOnly(_) => {}
            Item::Event(e) => problems.push(format!(
                "{user}: connected until a moment ago with last event ID {cursor} (history now starts at {first}), \
                 got {} {} instead of an empty catch-up",
                e.event, e.data
            )),
            Item::End => problems.push(format!("{user}: stream ended")),
        }
        resumed.push((user, r));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (user, r) in &mut resumed {
        let live = js_pub(&js, &format!("user.{user}.tick"), r#""live""#.into()).await;
        loop {
            match r.next().await {
                Item::IdOnly(_) => {}
                Item::Event(e) => {
                    assert_eq!(e.seq(), live.seq);
                    break;
                }
                Item::End => panic!("stream ended"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7: slow clients are cut off and catch up from history

async fn slow_bridge(nats: &NatsServer, heartbeat: Duration) -> InProcessBridge {
    let mut c = test_config(&nats.url());
    c.history.mode = realtime_bridge::config::HistoryMode::Auto;
    c.queue_len = 16;
    c.heartbeat = heartbeat; // stall limit: max(3 heartbeats, 1 s)
    let bridge = InProcessBridge::start(c).await;
    wait_status(&format!("{}/readyz", bridge.base()), 200, WAIT).await;
    bridge
}

/// 500 events of 32 KiB: far more than socket buffers and a 16-frame ring hold.
fn big_events(user: &str) -> Vec<(String, String)> {
    let pad = "x".repeat(32 * 1024);
    (0..500).map(|i| (format!("user.{user}.big"), format!(r#"{{"n":{i},"pad":"{pad}"}}"#))).collect()
}

/// Reads what the cut-off connection still delivers, then resumes with its last cursor.
async fn finish_after_cut(
    js: &jetstream::Context,
    base: &str,
    user: &str,
    mut old: Sse,
    mut first: Vec<Ev>,
    expected: &[Pub],
) {
    loop {
        match old.next_within(WAIT).await.expect("the cut-off stream ends") {
            Item::Event(e) => first.push(e),
            Item::IdOnly(_) => {}
            Item::End => break,
        }
    }
    assert!(
        first.len() < expected.len(),
        "the client was not cut off before the end ({} of {})",
        first.len(),
        expected.len()
    );
    let cursor = old.last_id.clone();
    let mut sess = Session::open(base, user, "", Some(&cursor)).await;
    let seen: BTreeSet<u64> = first.iter().map(Ev::seq).collect();
    let rest: Vec<Pub> = expected.iter().filter(|p| !seen.contains(&p.seq)).cloned().collect();
    sess.read_all("the missed events", Duration::from_secs(30), &rest).await;
    sess.expect_only_sentinels(js).await;
    println!("cut after {} events; resumed from {cursor}, got {} more", first.len(), sess.got.len());
    assert_no_reset("slow client", &sess);
    first.extend(sess.got);
    assert_exactly_once("slow client", user, &first, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_cut_off_as_slow_client_and_catches_up_from_history() {
    let nats = NatsServer::start();
    // A stall limit of 6 s: the ring must overflow first however slowly a loaded machine
    // feeds it (the stalled reader has its own test).
    let bridge = slow_bridge(&nats, Duration::from_secs(2)).await;
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "slowpoke";

    let mut s = Sse::open(&base, user, "", None).await;
    s.expect_id_only().await;
    let pubs = js_pub_all(&js, big_events(user)).await;
    // Read a little at a time: enough progress that the write never stalls, far too slow for the ring.
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_or_zero(&base, "realtime_bridge_streams_cut_total{reason=\"slow_client\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the slow reader was never cut off");
        match s.next_within(Duration::from_millis(20)).await {
            Some(Item::Event(e)) => first.push(e),
            Some(Item::End) => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // simulated slow reader, not synchronisation
    }
    assert!(metric_or_zero(&base, "realtime_bridge_streams_cut_total{reason=\"slow_client\"}").await >= 1.0);
    finish_after_cut(&js, &base, user, s, first, &pubs).await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_cut_off_and_catches_up_from_history() {
    let nats = NatsServer::start();
    let bridge = slow_bridge(&nats, Duration::from_millis(300)).await;
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "stalled";

    let mut s = Sse::open(&base, user, "", None).await;
    s.expect_id_only().await;
    let pubs = js_pub_all(&js, big_events(user)).await;
    // Read nothing until the bridge has cut the connection.
    eventually("the stalled stream to be cut off", Duration::from_secs(30), || async {
        let cut = metric_or_zero(&base, "realtime_bridge_streams_cut_total{reason=\"write_stalled\"}").await
            + metric_or_zero(&base, "realtime_bridge_streams_cut_total{reason=\"slow_client\"}").await;
        (cut >= 1.0).then_some(())
    })
    .await;
    finish_after_cut(&js, &base, user, s, Vec::new(), &pubs).await;
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// 8: NATS restarted, NATS link cut

/// Publishes `user`/broadcast events with message ids, retrying, until stopped.
fn spawn_retrying_publisher(
    js: jetstream::Context,
    user: &'static str,
    tag: &'static str,
) -> (Arc<AtomicBool>, Arc<Mutex<Vec<Pub>>>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Pub>>> = Arc::default();
    let task = {
        let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let subject = if i % 3 == 2 { "broadcast.news".to_owned() } else { format!("user.{user}.msg") };
                let p = js_pub_retrying(&js, &subject, format!(r#"{{"tag":"{tag}","n":{i}}}"#), &format!("{tag}-{i}"))
                    .await;
                log.lock().unwrap().push(p);
                i += 1;
            }
        })
    };
    (stop, log, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_readyz_follows_and_no_event_is_lost_or_repeated() {
    nats_restart_readyz_follows_and_no_event_is_lost_or_repeated_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_readyz_follows_and_no_event_is_lost_or_repeated_per_user() {
    nats_restart_readyz_follows_and_no_event_is_lost_or_repeated_in(PER_USER).await;
}

async fn nats_restart_readyz_follows_and_no_event_is_lost_or_repeated_in(mode: &[&str]) {
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), mode);
    let base = bridge.base();
    let ready = format!("{base}/readyz");
    let user = "rita";
    let js = jetstream::new(nats.client().await);

    let mut sess = Session::open(&base, user, "", None).await;
    let mut pubs = js_pub_all(&js, mixed(user, 30, "before")).await;
    sess.read_all("events before the restart", WAIT, &expected_for(&pubs, user, None)).await;

    tokio::task::block_in_place(|| nats.stop());
    wait_status(&ready, 503, WAIT).await;
    tokio::task::block_in_place(|| nats.restart());
    // Publish from the first moment NATS is back, most likely before the bridge reconnects.
    let js2 = jetstream::new(nats.client().await);
    let (stop, log, task) = spawn_retrying_publisher(js2.clone(), "rita", "after");
    wait_status(&ready, 200, Duration::from_secs(20)).await;
    let at_ready = log.lock().unwrap().len();
    eventually("publishing after ready", Duration::from_secs(20), || async {
        (log.lock().unwrap().len() >= at_ready + 60).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(40), task).await.expect("publisher stops").unwrap();
    let after = log.lock().unwrap().clone();
    println!("NATS restart: {} published before ready, {} in all after the restart", at_ready, after.len());
    pubs.extend(after);
    let expected = expected_for(&pubs, user, None);
    sess.read_all("every event across the NATS restart", Duration::from_secs(30), &expected).await;
    sess.expect_only_sentinels(&js).await;
    println!(
        "NATS restart: stream reconnected {} time(s); bridge log: {} gap fill(s), {} history warning(s)",
        sess.reconnects(),
        bridge.logs().matches("filled a gap from history").count(),
        bridge
            .logs()
            .lines()
            .filter(|l| l.contains("\"WARN\"") && (l.contains("history") || l.contains("gap")))
            .count()
    );
    assert_no_reset("NATS restart", &sess);
    assert_exactly_once("NATS restart", user, &sess.got, &expected);
}

/// docs/protocol.md §5.8: NATS comes back without its store (no persistent volume). The
/// bridge re-creates the stream, whose sequences start again at 1, below every position it
/// held. An open stream gets `reset` (`history_recreated`) and then the new history's events,
/// once each; it used to take them for duplicates and stay silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_get_reset_then_the_new_history_when_nats_loses_its_store() {
    open_streams_get_reset_then_the_new_history_when_nats_loses_its_store_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_get_reset_then_the_new_history_when_nats_loses_its_store_per_user() {
    open_streams_get_reset_then_the_new_history_when_nats_loses_its_store_in(PER_USER).await;
}

async fn open_streams_get_reset_then_the_new_history_when_nats_loses_its_store_in(mode: &[&str]) {
    let mut nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), mode);
    let base = bridge.base();
    let user = "wanda";
    let js = jetstream::new(nats.client().await);

    let mut open = Sse::open(&base, user, "", None).await;
    open.expect_id_only().await;
    let mut tab = Sse::open(&base, user, "?events=msg", None).await;
    tab.expect_id_only().await;
    // Broadcasts too, so that both of the bridge's positions are well ahead of the new stream.
    let items = (0..60)
        .map(|i| match i % 6 {
            5 => ("broadcast.news".to_owned(), format!(r#"{{"b":{i}}}"#)),
            _ => (format!("user.{user}.msg"), format!(r#"{{"n":{i}}}"#)),
        })
        .collect();
    let before = js_pub_all(&js, items).await;
    let seen = read_n(&mut open, 60).await;
    assert_eq!(seen.iter().map(Ev::seq).max(), before.last().map(|p| p.seq));
    read_n(&mut tab, 50).await;
    let old_cursor = seen.last().unwrap().cursor.clone();

    tokio::task::block_in_place(|| nats.restart_empty());
    // Publish as soon as the bridge has re-created the stream (until then JetStream refuses).
    let js = jetstream::new(nats.client().await);
    let mut after = Vec::new();
    for i in 0..5 {
        let subject = format!("user.{user}.msg");
        after.push(js_pub_retrying(&js, &subject, format!(r#"{{"n":"after-{i}"}}"#), &format!("after-{i}")).await);
    }
    after.push(js_pub(&js, "broadcast.news", r#""after""#.into()).await);
    assert!(after[0].seq <= 5, "the store was wiped, sequences start again; first is {}", after[0].seq);

    for (name, sse, filter) in [("open stream", &mut open, None), ("filtered tab", &mut tab, Some(&["msg"][..]))] {
        let reset = loop {
            match sse.next().await {
                Item::Event(e) => break e,
                Item::IdOnly(_) => {}
                Item::End => panic!("{name}: the stream ended instead of a reset"),
            }
        };
        assert_eq!(reset.event, "reset", "{name}: the first frame after the wipe must be a reset, got {reset:?}");
        assert_eq!(reset.env, serde_json::json!({ "reason": "history_recreated" }), "{name}");
        assert_eq!(parse_cursor(&reset.cursor), (0, 0), "{name}: the cursor starts again");
        let expected = expected_for(&after, user, filter);
        let got = read_n(sse, expected.len()).await;
        assert_exactly_once(name, user, &got, &expected);
        // The sentinel: nothing else came in between or after.
        let last = js_pub(&js, &format!("user.{user}.msg"), r#"{"n":"sentinel"}"#.into()).await;
        let next = read_n(sse, 1).await;
        assert_eq!(next[0].seq(), last.seq, "{name}: the sentinel is the next event");
        after.push(last);
    }
    // The new cursors resume in the new numbering; an old one is reset.
    let mut again = Sse::open(&base, user, "", Some(&format!("{}:0", after[0].seq))).await;
    let first = read_n(&mut again, 1).await;
    assert_eq!(first[0].seq(), after[1].seq, "a resume in the new numbering starts right after its cursor");
    let mut old = Sse::open(&base, user, "", Some(&old_cursor)).await;
    expect_reset(&mut old, "unknown_cursor").await;
    assert_eq!(metric_or_zero(&base, r#"realtime_bridge_streams_reset_total{reason="history_recreated"}"#).await, 2.0);
    assert!(bridge.logs().contains("history stream was re-created"), "the bridge says why");
}

/// A nats-server whose account may hold at most two JetStream consumers: with two taken by
/// the test, every history read of the bridge fails (deterministically, where a chaos run
/// reaches that path only by chance).
const TWO_CONSUMERS_CONF: &str = r#"
jetstream {
  store_dir: "replaced by the harness"
}
accounts {
  APP {
    jetstream { max_consumers: 2 }
    users: [ { user: app, password: app } ]
  }
}
no_auth_user: app
"#;

/// docs/protocol.md §5.8: when the history cannot be read to fill a gap (here: the account's
/// consumer limit is taken), the channel holds back what comes after the gap instead of
/// delivering around it, and retries; once reads work again the open stream gets every
/// event once, in order, without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gap_fill_holds_events_back_and_delivers_them_in_order_once_history_reads_again() {
    a_failed_gap_fill_holds_events_back_and_delivers_them_in_order_once_history_reads_again_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gap_fill_holds_events_back_and_delivers_them_in_order_once_history_reads_again_per_user() {
    a_failed_gap_fill_holds_events_back_and_delivers_them_in_order_once_history_reads_again_in(PER_USER).await;
}

async fn a_failed_gap_fill_holds_events_back_and_delivers_them_in_order_once_history_reads_again_in(mode: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("two-consumers.conf");
    std::fs::write(&conf, TWO_CONSUMERS_CONF).unwrap();
    let nats = NatsServer::start_with_config(&conf, &[]);
    let proxy = CutProxy::start(nats.port).await;
    let bridge = BridgeProcess::start(&proxy.url(), mode);
    let base = bridge.base();
    let ready = format!("{base}/readyz");
    wait_status(&ready, 200, WAIT).await;
    let js = jetstream::new(nats.client().await);
    let user = "gap";

    let mut sess = Session::open(&base, user, "", None).await;
    sess.read_until("the opening cursor", WAIT, |s| !s.markers.is_empty()).await;
    let mut pubs = js_pub_all(&js, mixed(user, 6, "before")).await;
    sess.read_all("events before the cut", WAIT, &expected_for(&pubs, user, None)).await;

    // Take every consumer the account may have (a read of the bridge's may still hold a
    // slot for a moment: it deletes its consumer once done).
    let stream = js.get_stream("REALTIME").await.unwrap();
    for name in ["held-1", "held-2"] {
        eventually(&format!("consumer {name} to be created"), WAIT, || {
            let stream = stream.clone();
            let config = jetstream::consumer::pull::Config { durable_name: Some(name.into()), ..Default::default() };
            async move { stream.create_consumer(config).await.ok().map(|_| ()) }
        })
        .await;
    }

    // A gap: stored while the bridge is away.
    proxy.cut();
    wait_status(&ready, 503, WAIT).await;
    pubs.extend(js_pub_all(&js, mixed(user, 12, "gap")).await);
    proxy.restore();
    wait_status(&ready, 200, Duration::from_secs(20)).await;
    pubs.extend(js_pub_all(&js, mixed(user, 6, "after")).await);
    eventually("the bridge to fail filling the gap", WAIT, || {
        let failed = bridge.logs().contains("reading history to fill a gap failed");
        async move { failed.then_some(()) }
    })
    .await;

    // Reads work again: the retry fills the gap, then everything held back follows.
    stream.delete_consumer("held-1").await.unwrap();
    let expected = expected_for(&pubs, user, None);
    sess.read_all("every event once the gap is filled", Duration::from_secs(20), &expected).await;
    assert_eq!(sess.reconnects(), 0, "the stream stayed open");
    assert_no_reset("failed gap fill", &sess);
    assert_exactly_once("failed gap fill", user, &sess.got, &expected);
    sess.expect_only_sentinels(&js).await;
    assert!(metric_or_zero(&base, "realtime_bridge_replayed_events_total").await >= 1.0);
}

/// A TCP proxy whose link can be cut (every connection closed, new ones refused) and restored.
struct CutProxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, up_rx) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    drop(down);
                    continue;
                }
                let mut cut = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut upstream) => {}
                        _ = cut.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_while_the_bridge_was_cut_from_nats_reach_the_open_stream() {
    events_stored_while_the_bridge_was_cut_from_nats_reach_the_open_stream_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_while_the_bridge_was_cut_from_nats_reach_the_open_stream_per_user() {
    events_stored_while_the_bridge_was_cut_from_nats_reach_the_open_stream_in(PER_USER).await;
}

async fn events_stored_while_the_bridge_was_cut_from_nats_reach_the_open_stream_in(mode: &[&str]) {
    let nats = NatsServer::start();
    let proxy = CutProxy::start(nats.port).await;
    let bridge = BridgeProcess::start(&proxy.url(), mode);
    let base = bridge.base();
    let ready = format!("{base}/readyz");
    let user = "gina";
    let js = jetstream::new(nats.client().await); // producers talk to NATS directly

    let mut sess = Session::open(&base, user, "", None).await;
    let mut pubs = js_pub_all(&js, mixed(user, 15, "before")).await;
    sess.read_all("events before the cut", WAIT, &expected_for(&pubs, user, None)).await;

    proxy.cut();
    wait_status(&ready, 503, WAIT).await;
    // NATS is up and stores these; the bridge is not there to see them republished.
    pubs.extend(js_pub_all(&js, mixed(user, 30, "cut")).await);
    // And a publisher that keeps going through the reconnection.
    let (stop, log, task) = spawn_retrying_publisher(js.clone(), "gina", "around");
    eventually("the publisher to be running", WAIT, || async { (log.lock().unwrap().len() >= 10).then_some(()) }).await;
    proxy.restore();
    wait_status(&ready, 200, Duration::from_secs(20)).await;
    let at_ready = log.lock().unwrap().len();
    eventually("publishing after ready", Duration::from_secs(20), || async {
        (log.lock().unwrap().len() >= at_ready + 60).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(40), task).await.expect("publisher stops").unwrap();
    pubs.extend(log.lock().unwrap().iter().cloned());
    let expected = expected_for(&pubs, user, None);
    sess.read_all("every event across the cut", Duration::from_secs(30), &expected).await;
    sess.expect_only_sentinels(&js).await;
    println!(
        "NATS link cut: {} stored during the cut, {} around the restore; bridge log: {} gap fill(s)",
        30,
        log.lock().unwrap().len(),
        bridge.logs().matches("filled a gap from history").count()
    );
    assert_eq!(sess.reconnects(), 0, "the open stream itself must get the gap filled (it was ended instead)");
    assert_no_reset("NATS link cut", &sess);
    assert_exactly_once("NATS link cut", user, &sess.got, &expected);
}

/// The same with many users, each with an open stream, and traffic for all of them going on
/// while the link comes back: every channel must fill its own gap before going on live
/// (a channel that pushes a fresh live event first would skip the gap for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_each_fill_their_gap_after_a_nats_link_cut() {
    many_channels_each_fill_their_gap_after_a_nats_link_cut_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_each_fill_their_gap_after_a_nats_link_cut_per_user() {
    many_channels_each_fill_their_gap_after_a_nats_link_cut_in(PER_USER).await;
}

async fn many_channels_each_fill_their_gap_after_a_nats_link_cut_in(mode: &[&str]) {
    const USERS: usize = 40;
    let nats = NatsServer::start();
    let proxy = CutProxy::start(nats.port).await;
    let bridge = BridgeProcess::start(&proxy.url(), mode);
    let base = bridge.base();
    let ready = format!("{base}/readyz");
    let js = jetstream::new(nats.client().await);
    let users: Vec<String> = (0..USERS).map(|i| format!("m{i}")).collect();
    let mut sessions = Vec::new();
    for u in &users {
        let mut s = Session::open(&base, u, "", None).await;
        s.read_until("the opening cursor", WAIT, |s| !s.markers.is_empty()).await;
        sessions.push(s);
    }
    let round = |tag: String| -> Vec<(String, String)> {
        users.iter().map(|u| (format!("user.{u}.msg"), format!(r#"{{"tag":"{tag}"}}"#))).collect()
    };
    let mut pubs = js_pub_all(&js, round("before".into())).await;

    proxy.cut();
    wait_status(&ready, 503, WAIT).await;
    for r in 0..5 {
        pubs.extend(js_pub_all(&js, round(format!("cut{r}"))).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Pub>>> = Arc::default();
    let publisher = {
        let (js, stop, log, users) = (js.clone(), Arc::clone(&stop), Arc::clone(&log), users.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut r = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let items =
                    users.iter().map(|u| (format!("user.{u}.msg"), format!(r#"{{"tag":"around{r}"}}"#))).collect();
                let p = js_pub_all(&js, items).await;
                log.lock().unwrap().extend(p);
                r += 1;
            }
        })
    };
    eventually("the publisher to be running", WAIT, || async {
        (log.lock().unwrap().len() >= 2 * USERS).then_some(())
    })
    .await;
    proxy.restore();
    wait_status(&ready, 200, Duration::from_secs(20)).await;
    let at_ready = log.lock().unwrap().len();
    eventually("publishing after ready", Duration::from_secs(20), || async {
        (log.lock().unwrap().len() >= at_ready + 20 * USERS).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(WAIT, publisher).await.expect("publisher stops").unwrap();
    pubs.extend(log.lock().unwrap().iter().cloned());

    let mut failures = Vec::new();
    let deadline = Instant::now() + WAIT;
    for (u, s) in users.iter().zip(&mut sessions) {
        let expected = expected_for(&pubs, u, None);
        let want: BTreeSet<u64> = expected.iter().map(|p| p.seq).collect();
        while !want.iter().all(|q| s.seqs().contains(q)) {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
            match s.sse.next_within(left).await {
                None => break,
                Some(Item::Event(e)) => s.got.push(e),
                Some(Item::End) => break,
                _ => {}
            }
        }
        let seen = s.seqs();
        let missing: Vec<u64> = want.iter().filter(|q| !seen.contains(q)).copied().collect();
        if !missing.is_empty() || s.got.len() != seen.len() {
            failures.push(format!("{u}: {} of {} delivered, missing {missing:?}", s.got.len(), want.len()));
        } else {
            assert_exactly_once(u, u, &s.got, &expected);
        }
    }
    println!(
        "{USERS} users across a NATS link cut: {} events, {} gap fill(s) logged, {} user(s) with losses",
        pubs.len(),
        bridge.logs().matches("filled a gap from history").count(),
        failures.len()
    );
    // What the bridge did for them: a fill that starts far past the user's last event
    // before the cut means a live event was pushed first and the gap was skipped.
    let logs = bridge.logs();
    let fills: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("filled a gap from history"))
        .filter(|l| failures.iter().any(|f| l.contains(&format!("\"user.{}.*\"", f.split(':').next().unwrap()))))
        .collect();
    failures.extend(fills.iter().map(|l| format!("  bridge log: {l}")));
    assert!(failures.is_empty(), "events lost across the NATS link cut:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 9: --history on|auto|off

fn assert_live_id(e: &Ev) {
    let id = e.env["id"].as_str().unwrap();
    let (boot, n) = id.split_once('-').unwrap_or_else(|| panic!("live-mode id {id:?}"));
    assert!(
        boot.len() == 8 && boot.bytes().all(|b| b.is_ascii_alphanumeric()) && n.parse::<u64>().is_ok(),
        "live-mode id {id:?}"
    );
    assert_eq!(e.cursor, id, "in live mode the SSE id is the envelope id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_on_without_jetstream_refuses_to_start_with_a_clear_message() {
    let plain = NatsServer::start_plain();
    let url = plain.url();
    let ran = tokio::task::block_in_place(|| {
        run_bin(
            &["serve", "--listen", "127.0.0.1:0", "--nats-url", &url, "--jwt-secret", SECRET, "--history", "on"],
            &[("RUST_LOG", "info")],
        )
    });
    assert!(!ran.status.success(), "must exit non-zero; stderr:\n{}", ran.stderr);
    let last = ran.stderr.lines().find(|l| l.starts_with("realtime-bridge: ")).unwrap_or_default();
    assert!(
        last.contains("JetStream") && last.contains("--history"),
        "stderr must say in one line that JetStream is missing: {last:?}\n{}",
        ran.stderr
    );
    println!("--history on without JetStream: {:?} after {:?}: {last}", ran.code(), ran.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_auto_without_jetstream_runs_live() {
    let plain = NatsServer::start_plain();
    let bridge = BridgeProcess::start(&plain.url(), &["--history", "auto"]);
    let client = async_nats::connect(plain.url()).await.unwrap();
    let mut s = Sse::open(&bridge.base(), "hal", "", None).await;
    publish(&client, "user.hal.msg", r#"{"n":1}"#).await;
    let e = match s.next().await {
        Item::Event(e) => e,
        other => panic!("live mode sends no id:-only block; got {other:?}"),
    };
    assert_live_id(&e);
    wait_status(&format!("{}/readyz", bridge.base()), 200, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_off_with_jetstream_runs_live_and_creates_no_stream() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &["--history", "off"]);
    let client = nats.client().await;
    let mut s = Sse::open(&bridge.base(), "ivy", "", None).await;
    publish(&client, "user.ivy.msg", r#"{"n":1}"#).await;
    let e = match s.next().await {
        Item::Event(e) => e,
        other => panic!("live mode sends no id:-only block; got {other:?}"),
    };
    assert_live_id(&e);
    let js = jetstream::new(client);
    assert!(js.get_stream("REALTIME").await.is_err(), "--history off must not create the history stream");
}

// ---------------------------------------------------------------------------------------
// 10-11: POST /v1/publish with acks; Nats-Msg-Id duplicates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_answers_after_jetstream_stored_it_and_msg_id_dedupes() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let user = "jill";
    let mut s = Sse::open(&base, user, "", None).await;
    s.expect_id_only().await;

    let before = stream_state(&js, "REALTIME").await.last_sequence;
    let (status, body) = post_publish_status(
        &base,
        &publisher_token(),
        &serde_json::json!({"users": [user], "event": "paid", "data": {"n": 1}}),
    )
    .await;
    assert_eq!((status, body), (202, serde_json::json!({"published": 1})));
    // 202 means stored: no waiting.
    let after = stream_state(&js, "REALTIME").await.last_sequence;
    assert_eq!(after, before + 1, "202 came before JetStream stored the event");
    let e = s.expect_event().await;
    assert_eq!((e.event.as_str(), e.seq(), e.env["data"].clone()), ("paid", after, serde_json::json!({"n": 1})));
    assert_eq!(parse_cursor(&e.cursor).0, after);

    // The same msgId twice: stored once, delivered once.
    let body = serde_json::json!({"users": [user], "event": "paid", "data": {"n": 2}, "msgId": "order-2"});
    assert_eq!(post_publish_status(&base, &publisher_token(), &body).await.0, 202);
    assert_eq!(post_publish_status(&base, &publisher_token(), &body).await.0, 202);
    assert_eq!(stream_state(&js, "REALTIME").await.last_sequence, after + 1, "a repeated msgId was stored twice");
    // Several users with one msgId: one per subject, still once each on repeat.
    let body = serde_json::json!({"users": [user, "kim"], "event": "paid", "data": {"n": 3}, "msgId": "order-3"});
    assert_eq!(post_publish_status(&base, &publisher_token(), &body).await, (202, serde_json::json!({"published": 2})));
    assert_eq!(post_publish_status(&base, &publisher_token(), &body).await.0, 202);
    assert_eq!(stream_state(&js, "REALTIME").await.last_sequence, after + 3);
    let (status, _) = post_publish_status(
        &base,
        &publisher_token(),
        &serde_json::json!({"broadcast": true, "event": "news", "data": "b", "msgId": "b-1"}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(stream_state(&js, "REALTIME").await.last_sequence, after + 4);

    let got = read_n(&mut s, 3).await;
    assert_eq!(
        got.iter().map(|e| (e.seq(), e.env["data"].clone())).collect::<Vec<_>>(),
        vec![
            (after + 1, serde_json::json!({"n": 2})),
            (after + 2, serde_json::json!({"n": 3})),
            (after + 4, serde_json::json!("b")),
        ]
    );
    let mut sess = Session::wrap(base, user, s);
    sess.expect_only_sentinels(&js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_nats_msg_id_published_twice_is_delivered_once() {
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), &[]);
    let base = bridge.base();
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let user = "lou";
    let mut s = Sse::open(&base, user, "", None).await;
    let cursor = s.expect_id_only().await;

    // A plain NATS producer (core publish with the header), twice.
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "tx-1");
    for _ in 0..2 {
        client.publish_with_headers(format!("user.{user}.paid"), h.clone(), r#"{"tx":1}"#.into()).await.unwrap();
    }
    client.flush().await.unwrap();
    // A JetStream producer repeating it is told it is a duplicate of the same sequence.
    let first = js_pub(&js, &format!("user.{user}.before"), "0".into()).await;
    let mut h2 = async_nats::HeaderMap::new();
    h2.insert("Nats-Msg-Id", "tx-2");
    let a = js
        .publish_with_headers(format!("user.{user}.paid"), h2.clone(), r#"{"tx":2}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let b =
        js.publish_with_headers(format!("user.{user}.paid"), h2, r#"{"tx":2}"#.into()).await.unwrap().await.unwrap();
    assert!(!a.duplicate && b.duplicate && a.sequence == b.sequence);
    let marker = js_pub(&js, &format!("user.{user}.marker"), "1".into()).await;

    let got = read_n(&mut s, 4).await;
    let seen: Vec<(String, Value)> = got.iter().map(|e| (e.event.clone(), e.env["data"].clone())).collect();
    assert_eq!(
        seen,
        vec![
            ("paid".to_owned(), serde_json::json!({"tx": 1})),
            ("before".to_owned(), serde_json::json!(0)),
            ("paid".to_owned(), serde_json::json!({"tx": 2})),
            ("marker".to_owned(), serde_json::json!(1)),
        ]
    );
    assert_eq!(got[1].seq(), first.seq);
    assert_eq!(got[3].seq(), marker.seq);
    // And a resume from before them replays each once.
    let expected: Vec<Pub> = got
        .iter()
        .map(|e| Pub { seq: e.seq(), subject: format!("user.{user}.{}", e.event), payload: e.env["data"].to_string() })
        .collect();
    let r = resume_checked("resume over duplicates", &base, user, "", &cursor, &expected, &[]).await;
    assert_eq!(seqs_of(&r.got), seqs_of(&got));
    // Nothing more on the first stream either (a late duplicate would come before these).
    let mut sess = Session::wrap(base.clone(), user, s);
    sess.expect_only_sentinels(&js).await;
}

// ---------------------------------------------------------------------------------------
// 12: a reconnect storm

/// Many users open their streams at the same moment while events keep being stored for them
/// (a bridge restart, or a load balancer moving everyone at once). A new user's subscription
/// must be confirmed, and the history store's end read, before its stream may promise "no
/// gap"; the bridge does that once for all the channels waiting together. Every stream
/// opens on the first try (no 503), and each gets every event of its user stored after its
/// opening cursor, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_new_users_all_open_and_each_gets_everything_after_its_cursor() {
    a_storm_of_new_users_all_open_and_each_gets_everything_after_its_cursor_in(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_new_users_all_open_and_each_gets_everything_after_its_cursor_per_user() {
    a_storm_of_new_users_all_open_and_each_gets_everything_after_its_cursor_in(PER_USER).await;
}

async fn a_storm_of_new_users_all_open_and_each_gets_everything_after_its_cursor_in(mode: &[&str]) {
    const USERS: usize = 200;
    const STORM_WAIT: Duration = Duration::from_secs(30);
    let nats = NatsServer::start();
    let bridge = BridgeProcess::start(&nats.url(), mode);
    let base = bridge.base();
    let js = jetstream::new(nats.client().await);
    let users: Vec<String> = (0..USERS).map(|i| format!("storm-{i}")).collect();

    // Events for every user, stored all through the storm.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (js, users, stop) = (js.clone(), users.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut pubs = Vec::new();
            let mut round = 0;
            // Paced (load, not synchronisation): a round for every user each 50 ms, 4,000
            // acknowledged publishes a second (the test binary runs its tests in parallel).
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let items =
                    users.iter().map(|u| (format!("user.{u}.tick"), format!(r#"{{"round":{round}}}"#))).collect();
                pubs.extend(js_pub_all(&js, items).await);
                round += 1;
            }
            pubs
        })
    };
    let batches_before = metric(&base, "realtime_bridge_subscription_confirmation_batches_total").await;
    let opened = futures::future::join_all(users.iter().map(|u| {
        let base = base.clone();
        async move {
            // A storm on a loaded 2-core machine: the bridge may take seconds, and must not refuse.
            let mut s = Sse::open_within(&base, u, "", None, STORM_WAIT).await;
            let cursor = match s.next_within(STORM_WAIT).await {
                Some(Item::IdOnly(cursor)) => cursor,
                other => panic!("{u}: expected the opening cursor, got {other:?}"),
            };
            (s, cursor)
        }
    }))
    .await;
    let batches = metric(&base, "realtime_bridge_subscription_confirmation_batches_total").await - batches_before;
    stop.store(true, Ordering::Relaxed);
    let mut pubs =
        tokio::time::timeout(Duration::from_secs(60), publisher).await.expect("the publisher stops").unwrap();
    // One more per user after the storm, so no stream can end on an event it never got.
    pubs.extend(js_pub_all(&js, users.iter().map(|u| (format!("user.{u}.last"), "{}".to_owned())).collect()).await);
    let mut delivered = 0;
    for (user, (mut s, cursor)) in users.iter().zip(opened) {
        let expected = expected_after(&pubs, user, &cursor);
        // Until everything expected came, or nothing came for a while: then the check below
        // says what is missing, rather than a bare timeout.
        let mut got = Vec::with_capacity(expected.len());
        while got.len() < expected.len() {
            match s.next_within(STORM_WAIT).await {
                Some(Item::Event(e)) => got.push(e),
                Some(Item::IdOnly(_)) => {}
                Some(Item::End) | None => break,
            }
        }
        delivered += got.len();
        assert_exactly_once(&format!("storm, {user}"), user, &got, &expected);
    }
    println!(
        "{USERS} streams opened at once: {batches} confirmation batches; {} events stored, {delivered} delivered after the cursors",
        pubs.len()
    );
}
