//! One SSE response body: `retry:` first, then (history mode) the catch-up from the
//! client's cursor, then the user's and the broadcast frames that pass its `events=`
//! filter, heartbeats, and an end of its own on shutdown.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use realtime_bridge_wire::cursor::Cursor;
use realtime_bridge_wire::subject::{parse_subject, Target};
use realtime_bridge_wire::{sse, subject, EventName, UserId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::frame::{Framer, SharedFrame};
use crate::history::{History, HistoryError, Stored};
use crate::hub::{Attached, Channel, StreamGuard};
use crate::metrics::{DropReason, Metrics};
use crate::ring::{Lagged, Receiver};

/// A stream's body: the chunks to write, ending when the stream ends.
pub(crate) type SseBody = BoxStream<'static, Bytes>;

/// What every stream needs besides its rings.
#[derive(Debug, Clone)]
pub(crate) struct StreamContext {
    /// `None` means every event. A short list: a linear scan beats hashing here.
    pub(crate) filter: Option<Arc<[EventName]>>,
    pub(crate) retry_ms: u64,
    /// Changes once per `--heartbeat`, at this stream's slot in the interval (`Heartbeats::subscribe`).
    pub(crate) heartbeat: watch::Receiver<()>,
    /// Cancelled on shutdown: the body ends, so graceful shutdown is not held up.
    pub(crate) shutdown: CancellationToken,
    pub(crate) metrics: Arc<Metrics>,
    /// A stream further behind its channel than this many bytes is cut off (the ring
    /// bounds the count of frames; this bounds their size).
    pub(crate) max_lag_bytes: u64,
    /// The last Unix second of the stream's life (`u64::MAX`: no end), checked at
    /// each heartbeat: a timer per stream would cost memory on every idle stream for a
    /// precision nobody needs.
    pub(crate) ends_at: u64,
    /// Why it ends then.
    pub(crate) end_reason: EndReason,
}

/// Why the bridge ends a stream with an `end` frame (its `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// The token the stream was opened with expired (`exp` plus the leeway).
    TokenExpired,
    /// `--max-stream-lifetime` passed.
    MaxLifetime,
    /// The bridge is shutting down.
    Shutdown,
}

impl EndReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TokenExpired => sse::END_TOKEN_EXPIRED,
            Self::MaxLifetime => sse::END_MAX_LIFETIME,
            Self::Shutdown => sse::END_SHUTDOWN,
        }
    }
}

/// The `end` control frame for `reason`.
fn end_frame(reason: EndReason) -> Bytes {
    let mut out = Vec::with_capacity(48);
    sse::write_end(&mut out, reason.as_str());
    Bytes::from(out)
}

/// What a client's `Last-Event-ID` (if any) asks for, before the history store is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requested {
    /// No cursor: the stream starts where the rings do.
    Fresh,
    /// Nothing to resume from (a live-mode id, or garbage): a `reset` with this reason.
    Reset(&'static str),
    /// Resume after this cursor, if the history store can honour it.
    From(Cursor),
}

fn requested(raw: Option<&str>) -> Requested {
    match raw.map(Cursor::parse) {
        None => Requested::Fresh,
        Some(Ok(from)) => Requested::From(from),
        // A live-mode id, or garbage: nothing to resume from.
        Some(Err(_)) => Requested::Reset(sse::RESET_UNKNOWN_CURSOR),
    }
}

/// Whether the history store, holding sequences `first..=last`, can resume a stream after
/// `from`; `Err` carries the `reset` reason when it cannot.
fn check_resume(from: Cursor, first: u64, last: u64) -> Result<(), &'static str> {
    if from.user > last || from.broadcast > last {
        // From another (or a re-created) history: its numbers mean nothing here.
        return Err(sse::RESET_UNKNOWN_CURSOR);
    }
    if from.min().saturating_add(1) < first {
        return Err(sse::RESET_HISTORY_EXPIRED);
    }
    Ok(())
}

/// A resume could not start: the history store did not answer (the client retries; the
/// store's own words go to the log, not to the client).
#[derive(Debug, thiserror::Error)]
#[error("history is not reachable right now; retry shortly")]
pub(crate) struct CatchUpUnavailable(#[source] pub(crate) HistoryError);

/// How a history-mode stream begins.
pub(crate) struct HistoryStart {
    /// Where the stream stands once the prelude is written.
    cursor: Cursor,
    /// `Some(reason)`: the cursor could not be honoured; a `reset` frame goes first.
    reset: Option<&'static str>,
    catch_up: Option<CatchUp>,
}

impl std::fmt::Debug for HistoryStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStart").field("cursor", &self.cursor).field("reset", &self.reset).finish_non_exhaustive()
    }
}

/// Stored events between the client's cursor and where the rings start.
struct CatchUp {
    items: BoxStream<'static, Result<Stored, HistoryError>>,
    /// The rings hold everything after this; the catch-up serves up to it.
    until: Cursor,
    user: UserId,
    framer: Arc<Framer>,
}

impl HistoryStart {
    /// Decides how a stream starts from the client's `Last-Event-ID` (if any), and opens
    /// the catch-up read for the range the rings don't hold.
    pub(crate) async fn new(
        history: &History,
        framer: &Arc<Framer>,
        user: &UserId,
        last_event_id: Option<&str>,
        attached: &Attached,
    ) -> Result<Self, CatchUpUnavailable> {
        let live = Cursor { user: attached.user_upto, broadcast: attached.broadcast_upto };
        let fresh = |reset| Ok(Self { cursor: live, reset, catch_up: None });
        let from = match requested(last_event_id) {
            Requested::Fresh => return fresh(None),
            Requested::Reset(reason) => return fresh(Some(reason)),
            Requested::From(from) => from,
        };
        let unavailable = |e: HistoryError| {
            // The client learns what failed; JetStream's own words go to the log.
            tracing::warn!(error = %e, "cannot start a catch-up");
            CatchUpUnavailable(e)
        };
        let (first, last) = history.bounds().await.map_err(unavailable)?;
        if let Err(reason) = check_resume(from, first, last) {
            return fresh(Some(reason));
        }
        // Always the user's and the broadcast subjects whole, filtered here like the live
        // flow: JetStream checks a consumer's filter subjects pairwise, so handing it one per
        // requested name would let a long `events=` list cost the NATS server O(n²).
        let filters = vec![subject::user_wildcard(user), subject::BROADCAST_WILDCARD.to_owned()];
        let to = live.user.max(live.broadcast);
        let items = history.read(filters, from.min() + 1, to).await.map_err(unavailable)?;
        Ok(Self {
            cursor: from,
            reset: None,
            catch_up: Some(CatchUp { items, until: live, user: user.clone(), framer: Arc::clone(framer) }),
        })
    }
}

enum Mode {
    /// Core NATS: frames carry their own `id:` line.
    Live,
    /// JetStream: each frame is preceded by this stream's cursor, counted in the
    /// incarnation `epoch` of the history (see `Frame::epoch`).
    History { cursor: Cursor, catch_up: Option<CatchUp>, epoch: u64 },
}

/// State of one open stream, moved through `futures::stream::unfold`.
struct StreamState {
    user_rx: Receiver<SharedFrame>,
    broadcast_rx: Receiver<SharedFrame>,
    user_channel: Arc<Channel>,
    broadcast_channel: Arc<Channel>,
    ctx: StreamContext,
    mode: Mode,
    /// Chunks to send before anything else (prelude, second half of a frame).
    pending: VecDeque<Bytes>,
    /// The `end` frame went out: the next poll ends the body.
    ended: bool,
    /// Released when the body is dropped, whatever the reason (client gone, shutdown, cut).
    _guard: StreamGuard,
}

/// Builds the body stream. `history` is `None` in live mode.
pub(crate) fn build(attached: Attached, ctx: StreamContext, history: Option<HistoryStart>) -> SseBody {
    let mut prelude = Vec::with_capacity(64);
    sse::write_retry(&mut prelude, ctx.retry_ms);
    let mode = match history {
        None => Mode::Live,
        Some(h) => {
            // The client holds a cursor from the first bytes on: where the rings begin for a
            // fresh stream (or after a reset), its own while its catch-up runs.
            match h.reset {
                Some(reason) => {
                    ctx.metrics.stream_reset(reason);
                    h.cursor.write_id_line(&mut prelude);
                    sse::write_reset(&mut prelude, reason);
                }
                // An `id:`-only block sets Last-Event-ID without dispatching an event, so even
                // a stream that never gets an event can resume without a gap.
                None => h.cursor.write_id_block(&mut prelude),
            }
            Mode::History { cursor: h.cursor, catch_up: h.catch_up, epoch: attached.epoch }
        }
    };
    let state = StreamState {
        user_rx: attached.user_rx,
        broadcast_rx: attached.broadcast_rx,
        user_channel: attached.user_channel,
        broadcast_channel: attached.broadcast_channel,
        ctx,
        mode,
        pending: VecDeque::from([Bytes::from(prelude)]),
        ended: false,
        _guard: attached.guard,
    };
    futures::stream::unfold(state, |mut st| async move {
        let chunk = st.next().await?;
        Some((chunk, st))
    })
    .boxed()
}

/// The `id: u:b` line that goes before a frame's shared bytes, or (`block`) an `id:`-only
/// block that moves the client's Last-Event-ID without an event.
fn id_chunk(cursor: &Cursor, block: bool) -> Bytes {
    let mut id = Vec::with_capacity(32);
    if block {
        cursor.write_id_block(&mut id);
    } else {
        cursor.write_id_line(&mut id);
    }
    Bytes::from(id)
}

/// Which ring a frame came from.
#[derive(Clone, Copy)]
enum Ring {
    User,
    Broadcast,
}

impl StreamState {
    /// The next chunk to write, or `None` to end the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        if let Some(chunk) = self.next_replayed().await {
            return chunk;
        }
        loop {
            let (ring, got) = if let Some(ring) = self.older_of_both() {
                // Both rings hold a frame: the older one first, so the stream follows the
                // stored order (exactly, with the shared dispatch, which pushes in that order).
                let got = match ring {
                    Ring::User => self.user_rx.recv().await,
                    Ring::Broadcast => self.broadcast_rx.recv().await,
                };
                (ring, got)
            } else {
                // Unbiased on purpose: a busy user ring must not starve the broadcast ring.
                tokio::select! {
                    () = self.ctx.shutdown.cancelled() => return Some(self.end(EndReason::Shutdown)),
                    r = self.user_rx.recv() => (Ring::User, r),
                    r = self.broadcast_rx.recv() => (Ring::Broadcast, r),
                    r = self.ctx.heartbeat.changed() => {
                        r.ok()?;
                        if crate::auth::unix_now() > self.ctx.ends_at {
                            let reason = self.ctx.end_reason;
                            self.ctx.metrics.stream_cut(reason.as_str());
                            return Some(self.end(reason));
                        }
                        return Some(self.heartbeat());
                    }
                }
            };
            match got {
                Ok(frame) => {
                    let (channel, rx) = match ring {
                        Ring::User => (&self.user_channel, &self.user_rx),
                        Ring::Broadcast => (&self.broadcast_channel, &self.broadcast_rx),
                    };
                    if channel.lag_bytes(&frame) > self.ctx.max_lag_bytes {
                        let missed = rx.len();
                        self.ctx.metrics.dropped(DropReason::SlowClient, missed);
                        self.ctx.metrics.stream_cut("slow_client");
                        tracing::info!(missed, "stream cut off: client too slow (bytes behind)");
                        return None;
                    }
                    if let Some(chunk) = self.accept(ring, &frame) {
                        return Some(chunk);
                    }
                }
                Err(Lagged(missed)) => {
                    // This client reads slower than events arrive: cut it off rather than
                    // buffer without bound. It reconnects (and, with history, catches up).
                    self.ctx.metrics.dropped(DropReason::SlowClient, missed);
                    self.ctx.metrics.stream_cut("slow_client");
                    tracing::info!(missed, "stream cut off: client too slow");
                    return None;
                }
            }
        }
    }

    /// History mode, both rings holding a frame: the ring whose next frame is older (a
    /// re-created history's frames after the old one's, its restart marker first).
    fn older_of_both(&self) -> Option<Ring> {
        // Shutdown and heartbeats are looked at by the select, reached as soon as a ring is empty.
        if !matches!(self.mode, Mode::History { .. }) || self.ctx.shutdown.is_cancelled() {
            return None;
        }
        let key = |f: &SharedFrame| (f.epoch, if f.restart { 0 } else { f.seq });
        let user = self.user_rx.peek(key)?;
        let broadcast = self.broadcast_rx.peek(key)?;
        Some(if user <= broadcast { Ring::User } else { Ring::Broadcast })
    }

    /// The last frame: the client reconnects at once (with a fresh token if `reason` says so).
    fn end(&mut self, reason: EndReason) -> Bytes {
        self.ended = true;
        end_frame(reason)
    }

    /// Decides whether a live frame goes out, and in history mode moves the cursor.
    fn accept(&mut self, ring: Ring, frame: &SharedFrame) -> Option<Bytes> {
        let wanted = self.wants(&frame.event);
        match &mut self.mode {
            Mode::Live => {
                if !wanted {
                    return None;
                }
                self.ctx.metrics.events_delivered.inc();
                Some(frame.bytes.clone())
            }
            Mode::History { cursor, epoch, .. } => {
                let mut restarted = None;
                match incarnation(*epoch, frame.epoch) {
                    // From a history that is gone: its sequence would poison the cursor.
                    Incarnation::Older => return None,
                    Incarnation::Same => {}
                    Incarnation::Newer => {
                        // The history was re-created: positions start again from nothing, and
                        // the client learns that events may be missing (what it held is gone).
                        *epoch = frame.epoch;
                        *cursor = Cursor { user: 0, broadcast: 0 };
                        let mut out = Vec::with_capacity(64);
                        cursor.write_id_line(&mut out);
                        sse::write_reset(&mut out, sse::RESET_HISTORY_RECREATED);
                        restarted = Some(Bytes::from(out));
                        self.ctx.metrics.stream_reset(sse::RESET_HISTORY_RECREATED);
                    }
                }
                if frame.restart {
                    // This ring starts again at 0 (already so if the other ring's marker came first).
                    match ring {
                        Ring::User => cursor.user = 0,
                        Ring::Broadcast => cursor.broadcast = 0,
                    }
                    return restarted;
                }
                if let Some(reset) = restarted {
                    // An event of the new history before its marker (not how channels push,
                    // but cheap to get right): the reset goes first, then the event as usual.
                    if let Some(id) = self.accept(ring, frame) {
                        self.pending.push_front(id);
                    }
                    return Some(reset);
                }
                let pos = match ring {
                    Ring::User => &mut cursor.user,
                    Ring::Broadcast => &mut cursor.broadcast,
                };
                // Filtered-out events move the cursor too: this stream has dealt with them.
                if !advance(pos, frame.seq) {
                    // Already sent by the catch-up.
                    return None;
                }
                if !wanted {
                    return None;
                }
                // The other kind may have moved on without events (its channel confirmed a
                // later position): carry that too, so a busy user's cursor never lags behind
                // quiet broadcasts (and falls out of history) or the other way round.
                let (other_channel, other_rx, other_pos) = match ring {
                    Ring::User => (&self.broadcast_channel, &self.broadcast_rx, &mut cursor.broadcast),
                    Ring::Broadcast => (&self.user_channel, &self.user_rx, &mut cursor.user),
                };
                if let Some(p) = other_channel.position_if_drained(other_rx, *epoch) {
                    *other_pos = (*other_pos).max(p);
                }
                self.pending.push_back(frame.bytes.clone());
                self.ctx.metrics.events_delivered.inc();
                Some(id_chunk(cursor, false))
            }
        }
    }

    /// During the catch-up: `Some(Some(chunk))` to send, `Some(None)` to end the stream
    /// (the catch-up failed: resuming later beats a gap), `None` once it is over.
    /// Events the stream's `events=` filter leaves out are read too (the catch-up reads
    /// the user's and the broadcast subjects whole) and move the cursor without a frame.
    async fn next_replayed(&mut self) -> Option<Option<Bytes>> {
        let Mode::History { cursor, catch_up, .. } = &mut self.mode else { return None };
        loop {
            let cu = catch_up.as_mut()?;
            let item = tokio::select! {
                () = self.ctx.shutdown.cancelled() => None,
                item = cu.items.next() => Some(item),
            };
            let Some(item) = item else {
                self.ended = true;
                return Some(Some(end_frame(EndReason::Shutdown)));
            };
            let stored = match item {
                None => {
                    // Everything up to where the rings start has been sent: tell the client
                    // (an `id:`-only block), so a reconnect now need not read it again.
                    cursor.user = cursor.user.max(cu.until.user);
                    cursor.broadcast = cursor.broadcast.max(cu.until.broadcast);
                    *catch_up = None;
                    return Some(Some(id_chunk(cursor, true)));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "catch-up from history failed; ending the stream so the client resumes");
                    self.ctx.metrics.stream_cut("history_error");
                    return Some(None);
                }
                Some(Ok(s)) => s,
            };
            let (pos, until, event, user) = match parse_subject(&stored.subject) {
                Some(Target::User { user, event }) if user == cu.user.as_str() => {
                    (&mut cursor.user, cu.until.user, event, Some(&cu.user))
                }
                Some(Target::Broadcast { event }) => (&mut cursor.broadcast, cu.until.broadcast, event, None),
                _ => continue,
            };
            if stored.seq > until || !advance(pos, stored.seq) {
                continue;
            }
            let Ok(event) = EventName::parse(event) else { continue };
            if !wants(self.ctx.filter.as_deref(), &event) {
                continue;
            }
            let frame = match cu.framer.frame_stored(stored.seq, event, user, &stored.payload, stored.time) {
                Ok(f) => f,
                Err(reason) => {
                    self.ctx.metrics.dropped(reason, 1);
                    continue;
                }
            };
            self.pending.push_back(frame.bytes.clone());
            self.ctx.metrics.replayed_events.inc();
            self.ctx.metrics.events_delivered.inc();
            return Some(Some(id_chunk(cursor, false)));
        }
    }

    /// The heartbeat comment, plus an `id:`-only block when the cursor moved on without
    /// events (the channels confirmed a later position and this stream has taken all they pushed).
    fn heartbeat(&mut self) -> Bytes {
        let Mode::History { cursor, catch_up: None, epoch } = &mut self.mode else {
            return Bytes::from_static(sse::HEARTBEAT);
        };
        let before = *cursor;
        if let Some(u) = self.user_channel.position_if_drained(&self.user_rx, *epoch) {
            cursor.user = cursor.user.max(u);
        }
        if let Some(b) = self.broadcast_channel.position_if_drained(&self.broadcast_rx, *epoch) {
            cursor.broadcast = cursor.broadcast.max(b);
        }
        if *cursor != before {
            self.pending.push_back(id_chunk(cursor, true));
        }
        Bytes::from_static(sse::HEARTBEAT)
    }

    fn wants(&self, event: &EventName) -> bool {
        wants(self.ctx.filter.as_deref(), event)
    }
}

/// Whether a stream with `filter` (`None`: every event) delivers `event`.
fn wants(filter: Option<&[EventName]>, event: &EventName) -> bool {
    filter.is_none_or(|f| f.contains(event))
}

/// How a frame's history incarnation compares with the stream's (`Frame::epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incarnation {
    /// From a history store that is gone.
    Older,
    Same,
    /// The history store was re-created: the stream starts again in it, behind a `reset`.
    Newer,
}

fn incarnation(stream: u64, frame: u64) -> Incarnation {
    match frame.cmp(&stream) {
        std::cmp::Ordering::Less => Incarnation::Older,
        std::cmp::Ordering::Equal => Incarnation::Same,
        std::cmp::Ordering::Greater => Incarnation::Newer,
    }
}

/// Moves a cursor position `pos` on to `seq` if `seq` is past it. Returns whether it did:
/// false means the stream has dealt with `seq` already.
fn advance(pos: &mut u64, seq: u64) -> bool {
    if seq <= *pos {
        return false;
    }
    *pos = seq;
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn last_event_ids() {
        assert_eq!(requested(None), Requested::Fresh);
        assert_eq!(requested(Some("3:4")), Requested::From(Cursor { user: 3, broadcast: 4 }));
        for other in ["", "hDqsVFvX-1", "3", "3:4:5", "-1:2"] {
            assert_eq!(requested(Some(other)), Requested::Reset("unknown_cursor"), "{other:?}");
        }
    }

    #[test]
    fn resumes() {
        let c = |user, broadcast| Cursor { user, broadcast };
        // The history store holds 10..=20.
        assert_eq!(check_resume(c(9, 9), 10, 20), Ok(()), "right before the first: nothing missing");
        assert_eq!(check_resume(c(15, 20), 10, 20), Ok(()));
        assert_eq!(check_resume(c(0, 0), 1, 20), Ok(()));
        assert_eq!(check_resume(c(0, 0), 0, 0), Ok(()), "an empty store");
        assert_eq!(check_resume(c(8, 15), 10, 20), Err("history_expired"));
        assert_eq!(check_resume(c(15, 8), 10, 20), Err("history_expired"));
        assert_eq!(check_resume(c(21, 15), 10, 20), Err("unknown_cursor"));
        assert_eq!(check_resume(c(15, 21), 10, 20), Err("unknown_cursor"));
        assert_eq!(check_resume(c(21, 1), 10, 20), Err("unknown_cursor"), "another history first");
        assert_eq!(check_resume(c(u64::MAX, u64::MAX), 0, u64::MAX), Ok(()));
    }

    #[test]
    fn positions() {
        assert_eq!(incarnation(1, 0), Incarnation::Older);
        assert_eq!(incarnation(1, 1), Incarnation::Same);
        assert_eq!(incarnation(1, 2), Incarnation::Newer);
        let mut pos = 5;
        assert!(!advance(&mut pos, 5));
        assert!(!advance(&mut pos, 3));
        assert_eq!(pos, 5);
        assert!(advance(&mut pos, 9));
        assert_eq!(pos, 9);
    }

    #[test]
    fn end_frames() {
        for (reason, text) in [
            (EndReason::Shutdown, "shutdown"),
            (EndReason::TokenExpired, "token_expired"),
            (EndReason::MaxLifetime, "max_lifetime"),
        ] {
            assert_eq!(reason.as_str(), text);
            let frame = end_frame(reason);
            assert_eq!(&frame[..], format!("event: end\ndata: {{\"reason\":\"{text}\"}}\n\n").as_bytes());
        }
        let mut block = id_chunk(&Cursor { user: 1, broadcast: 2 }, true).to_vec();
        assert_eq!(block, b"id: 1:2\n\n");
        block = id_chunk(&Cursor { user: 1, broadcast: 2 }, false).to_vec();
        assert_eq!(block, b"id: 1:2\n");
    }
}
