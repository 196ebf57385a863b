//! History mode: one channel's task. It pushes every re-published message in stored
//! order and, when it cannot be sure nothing is missing (its subscription is new, NATS
//! reconnected, a sequence could not be checked), reads the missing range from the history
//! store first, so streams see no gap and no duplicate. What to do at each turn is decided
//! by the pure functions of `gap_fill.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::channel::{Channel, Kind, Position};
use super::gap_fill::{self, Step, SyncState, ToEnd, VERIFY_AFTER};
use super::Hub;
use crate::history::{republished_meta, History, Stored};
use crate::metrics::DropReason;

impl Hub {
    /// History mode: push every message in stored order, filling gaps from the history store.
    pub(super) async fn run_history(self: Arc<Self>, kind: Kind, channel: Arc<Channel>, ready: watch::Sender<bool>) {
        // Borrowed, not cloned: a `History` is ~1 KB, and this future lives once per user.
        let Some(history) = self.history.as_ref() else { return };
        // Boxed (here and below): rare, large awaits would otherwise stay part of the task.
        let Some((mut sub, first)) = Box::pin(self.subscribe(kind.live_subject(true))).await else { return };
        let subject = kind.stored_subject();
        // Everything stored up to `base` is history for streams to read; everything after
        // it is this channel's to push, in order, with no gap.
        // `last` is only known once NATS confirmed the subscription (a batch's round trip).
        let mut last = first.last;
        let base = loop {
            if let Some(last) = last {
                break last;
            }
            tracing::warn!(subject, "subscription not confirmed or history stream state unreadable; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            last = Box::pin(self.confirm()).await.last;
        };
        channel.start_at(base, history.epoch());
        let _ = ready.send(true);
        let mut connections = self.connections.clone();
        connections.mark_unchanged();
        // async-nats counts a (re)connection before it resubscribes, so the first message
        // over a new connection is recognised here even before the `Connected` callback
        // (another task) bumps `connections`; otherwise `upto` could jump over the gap.
        let stats = self.client.statistics();
        let connects = || stats.connects.load(std::sync::atomic::Ordering::Acquire);
        // Whether `upto` is known to be gap-free right up to the live flow.
        let mut sync = SyncState::new(connects());
        let verify = tokio::time::sleep(VERIFY_AFTER);
        tokio::pin!(verify);
        // Without events of its own a channel's position would stay where it started, and so
        // would its streams' cursors: once history expires past it, a client that missed
        // nothing would get `history_expired`. Confirm the position now and then (this also
        // retries a fill that failed).
        let mut confirm = tokio::time::interval(history.confirm_every());
        confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        confirm.reset();
        loop {
            tokio::select! {
                msg = sub.next() => {
                    let Some(msg) = msg else { break };
                    self.metrics.events_received.inc();
                    let Some((seq, time, stored_subject)) = republished_meta(&msg) else {
                        self.drop_event(DropReason::InvalidSubject, &msg.subject);
                        continue;
                    };
                    if sync.first_over_new_connection(connects()) {
                        let ok = Box::pin(self.fill_to_end(history, &kind, &channel)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            verify.as_mut().reset(at);
                        }
                    }
                    if channel.follow(history.epoch()) {
                        sync.lost();
                    }
                    let upto = *channel.lock();
                    match gap_fill::step(seq, upto, history.known_to_hold(seq), sync.is_synced(), false) {
                        Step::Duplicate => continue,
                        Step::Check => match Box::pin(history.holds(seq)).await {
                            Ok(true) => {}
                            Ok(false) => {
                                self.drop_event(DropReason::Forged, &msg.subject);
                                continue;
                            }
                            Err(e) => {
                                // Cannot tell now: hold it back. If it is real, the next fill
                                // reads it from the history store itself.
                                tracing::debug!(error = %e, "cannot check a re-published sequence; filling from history instead");
                                verify.as_mut().reset(sync.unsure(Instant::now()));
                                continue;
                            }
                        },
                        Step::FillFirst { .. } | Step::Push => {}
                    }
                    // Known to be stored now.
                    if let Step::FillFirst { from, to } = gap_fill::step(seq, upto, true, sync.is_synced(), false) {
                        // First message since (re)subscribing: send what was missed before it.
                        // If history cannot be read now, hold this one back too (it is stored,
                        // and the next fill reads it): order and completeness beat latency.
                        let ok = Box::pin(self.fill(history, &kind, &channel, from, to)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            // Try again soon even if no further event comes to trigger it.
                            verify.as_mut().reset(at);
                            continue;
                        }
                    }
                    self.push_stored(&kind, &channel, seq, stored_subject, &msg.payload, time);
                }
                _ = confirm.tick() => {
                    // Batched: channels opened together by a storm are all due together.
                    let last = Box::pin(self.confirm()).await.last;
                    sync.confirmed(Box::pin(self.fill_to_last(history, &kind, &channel, last)).await);
                }
                () = &mut verify, if !sync.is_synced() => {
                    // No message came to prove the subscription active: a batched round trip
                    // does, before the store's end is read (else what is stored until NATS
                    // gets to the subscription would be skipped).
                    let last = Box::pin(self.confirm()).await.last;
                    let ok = Box::pin(self.fill_to_last(history, &kind, &channel, last)).await;
                    if let Some(at) = sync.filled(ok, Instant::now()) {
                        verify.as_mut().reset(at);
                    }
                }
                r = connections.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let fill = sync.reconnected(connects());
                    // NATS came back: what was stored while we were away never reached us.
                    // Every channel notices at once: one batched round trip and read for all.
                    let last = Box::pin(self.confirm()).await.last;
                    if matches!(kind, Kind::Broadcast) {
                        // Once per process (the broadcast channel lives as long as it does).
                        if let Err(e) = Box::pin(history.ensure()).await {
                            tracing::error!(error = %e, "cannot re-apply the history stream after reconnecting");
                        }
                    }
                    if fill {
                        let ok = Box::pin(self.fill_to_last(history, &kind, &channel, last)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            verify.as_mut().reset(at);
                        }
                    }
                }
            }
        }
    }

    /// Fills up to the history store's last sequence; false if history could not be read.
    ///
    /// Callers box this and `fill`: a history read is a large future that runs rarely, and
    /// inline it would be part of every channel task's state (one per connected user).
    async fn fill_to_end(&self, history: &History, kind: &Kind, channel: &Channel) -> bool {
        match history.bounds().await {
            Ok((_, last)) => self.fill_to_last(history, kind, channel, Some(last)).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history stream's state");
                false
            }
        }
    }

    /// Fills up to `last`, the history store's last sequence as read after this channel's
    /// subscription was confirmed (a batch); `None` (it could not be read) is a failed fill.
    async fn fill_to_last(&self, history: &History, kind: &Kind, channel: &Channel, last: Option<u64>) -> bool {
        match last {
            Some(last) => {
                // `bounds` noticed a re-created history store if there is one: start again in it.
                channel.follow(history.epoch());
                let upto = *channel.lock();
                let (from, to) = match gap_fill::to_end(upto, last) {
                    ToEnd::Read { from, to } => (from, to),
                    ToEnd::Backwards => {
                        history.went_backwards(channel.epoch(), last);
                        channel.follow(history.epoch());
                        (*channel.lock() + 1, last)
                    }
                };
                self.fill(history, kind, channel, from, to).await
            }
            None => false,
        }
    }

    /// Pushes the stored events of this channel in `from..=to` that it has not pushed yet.
    /// Returns false if history could not be read (nothing past what was pushed is assumed).
    async fn fill(&self, history: &History, kind: &Kind, channel: &Channel, from: u64, to: u64) -> bool {
        let push = |s: &Stored| self.push_stored(kind, channel, s.seq, &s.subject, &s.payload, s.time);
        self.fill_range(history, vec![kind.stored_subject()], channel.position(), from, to, push).await
    }

    /// Reads the stored events matching `filters` in `from..=to` and hands each to `push`
    /// (true when it was new); once the whole range is read, `position` is at least `to`.
    /// Returns false if history could not be read (nothing past what was pushed is assumed).
    /// Both history feeds fill this way.
    pub(super) async fn fill_range(
        &self,
        history: &History,
        filters: Vec<String>,
        position: &Position,
        from: u64,
        to: u64,
        mut push: impl FnMut(&Stored) -> bool,
    ) -> bool {
        if from > to {
            return true;
        }
        let mut pushed = 0u64;
        let mut complete = true;
        match history.read(filters.clone(), from, to).await {
            Ok(mut stored) => {
                while let Some(item) = stored.next().await {
                    match item {
                        Ok(s) => pushed += u64::from(push(&s)),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading history to fill a gap failed");
                            complete = false;
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading history to fill a gap failed");
                complete = false;
            }
        }
        if complete {
            // Every event up to `to` that the store still holds has been pushed.
            let mut upto = position.lock();
            *upto = (*upto).max(to);
        }
        if pushed > 0 {
            self.metrics.replayed_events.inc_by(pushed);
            tracing::info!(?filters, pushed, from, to, "filled a gap from history");
        }
        complete
    }

    /// Frames a stored event and pushes it if it is past `upto`. Returns whether it was new.
    fn push_stored(
        &self,
        kind: &Kind,
        channel: &Channel,
        seq: u64,
        subject: &str,
        payload: &[u8],
        time: SystemTime,
    ) -> bool {
        let mut upto = channel.lock();
        if seq <= *upto {
            return false;
        }
        // Even an event that is skipped moves `upto`: it has been dealt with.
        *upto = seq;
        let Some(event) = kind.event_of(subject) else {
            drop(upto);
            self.drop_event(DropReason::InvalidSubject, subject);
            return true;
        };
        match self.framer.frame_stored(seq, event, kind.user(), payload, time) {
            Ok(frame) => channel.push(frame),
            Err(reason) => {
                drop(upto);
                self.drop_event(reason, subject);
            }
        }
        true
    }
}
