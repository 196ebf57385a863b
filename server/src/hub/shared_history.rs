//! History mode, shared dispatch (the default in history mode): one subscription to every
//! message the history store re-publishes (`rt.>`), on a thread of its own, feeds the
//! broadcast channel and the channel of every user with a stream here.
//!
//! The store numbers what it keeps 1, 2, 3... and re-publishes each message once, in that
//! order, so this subscription must see every sequence: the next message is `upto + 1`, and
//! a jump means something was lost on the way (NATS reconnected, the client dropped messages
//! it could not buffer, interest had not reached the store yet). The jump is filled with one
//! read of the store before going on. One position, checked once for the process, is then
//! every channel's: a user who connects starts at it, with no subscription or round trip of
//! its own, so a reconnect storm costs NATS nothing, and an idle user costs its ring and its
//! slot only. The price: every bridge receives every user's events (framed only for users
//! connected to it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use realtime_bridge_wire::subject::{self, parse_subject, Target};
use realtime_bridge_wire::EventName;
use tokio::sync::watch;
use tokio::time::Instant;

use super::channel::Position;
use super::gap_fill::{self, Step, SyncState, ToEnd, VERIFY_AFTER};
use super::Hub;
use crate::history::{republished_meta, History, Stored};
use crate::metrics::DropReason;

impl Hub {
    /// The shared history dispatch: every re-published message, in stored order, gaps filled.
    pub(super) async fn run_shared_history(self: Arc<Self>, position: Arc<Position>, ready: watch::Sender<bool>) {
        let Some(history) = self.history.as_ref() else { return };
        let Some((mut sub, first)) = Box::pin(self.subscribe(subject::republish_destination())).await else {
            return;
        };
        // Everything stored up to `base` is history for streams to read; everything after
        // it comes through the subscription (the round trip proved it active).
        let mut last = first.last;
        let base = loop {
            if let Some(last) = last {
                break last;
            }
            tracing::warn!("subscription not confirmed or history stream state unreadable; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            last = Box::pin(self.confirm()).await.last;
        };
        {
            let mut upto = position.lock();
            *upto = base;
            position.set_epoch(history.epoch());
        }
        let _ = ready.send(true);
        let mut connections = self.connections.clone();
        connections.mark_unchanged();
        // See `run_history`: the first message over a new connection may come before the
        // `Connected` callback bumps `connections`.
        let stats = self.client.statistics();
        let connects = || stats.connects.load(std::sync::atomic::Ordering::Acquire);
        let mut sync = SyncState::new(connects());
        let verify = tokio::time::sleep(VERIFY_AFTER);
        tokio::pin!(verify);
        // A loss at the end of a flow shows no jump until the next message: when nothing came
        // for a whole period, ask the store where it ends.
        let mut confirm = tokio::time::interval(history.confirm_every());
        confirm.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        confirm.reset();
        let mut quiet = true;
        loop {
            tokio::select! {
                msg = sub.next() => {
                    let Some(msg) = msg else { break };
                    self.metrics.events_received.inc();
                    quiet = false;
                    let Some((seq, time, stored_subject)) = republished_meta(&msg) else {
                        self.drop_event(DropReason::InvalidSubject, &msg.subject);
                        continue;
                    };
                    if sync.first_over_new_connection(connects()) {
                        let ok = Box::pin(self.fill_all_to_end(history, &position)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            verify.as_mut().reset(at);
                        }
                    }
                    if self.follow_all(&position, history.epoch()) {
                        sync.lost();
                    }
                    let upto = *position.lock();
                    match gap_fill::step(seq, upto, history.known_to_hold(seq), sync.is_synced(), true) {
                        Step::Duplicate => continue,
                        Step::Check => match Box::pin(history.holds(seq)).await {
                            Ok(true) => {}
                            Ok(false) => {
                                self.drop_event(DropReason::Forged, &msg.subject);
                                continue;
                            }
                            Err(e) => {
                                // Cannot tell now: hold it back; if it is real, the next
                                // fill reads it from the store.
                                tracing::debug!(error = %e, "cannot check a re-published sequence; filling from history instead");
                                verify.as_mut().reset(sync.unsure(Instant::now()));
                                continue;
                            }
                        },
                        Step::FillFirst { .. } | Step::Push => {}
                    }
                    if let Step::FillFirst { from, to } = gap_fill::step(seq, upto, true, sync.is_synced(), true) {
                        // Order and completeness beat latency: if the store cannot be read now,
                        // this message waits too (it is stored; the next fill reads it).
                        let ok = Box::pin(self.fill_all(history, &position, from, to)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            verify.as_mut().reset(at);
                            continue;
                        }
                    }
                    self.dispatch_stored(&position, seq, stored_subject, &msg.payload, time);
                }
                _ = confirm.tick() => {
                    if std::mem::replace(&mut quiet, true) {
                        let last = Box::pin(self.confirm()).await.last;
                        sync.confirmed(Box::pin(self.fill_all_to_last(history, &position, last)).await);
                    }
                }
                () = &mut verify, if !sync.is_synced() => {
                    // No message came to prove the subscription active: a round trip does,
                    // before the store's end is read.
                    let last = Box::pin(self.confirm()).await.last;
                    let ok = Box::pin(self.fill_all_to_last(history, &position, last)).await;
                    if let Some(at) = sync.filled(ok, Instant::now()) {
                        verify.as_mut().reset(at);
                    }
                }
                r = connections.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let fill = sync.reconnected(connects());
                    // What was stored while NATS was away never reached the subscription.
                    let last = Box::pin(self.confirm()).await.last;
                    if let Err(e) = Box::pin(history.ensure()).await {
                        tracing::error!(error = %e, "cannot re-apply the history stream after reconnecting");
                    }
                    if fill {
                        let ok = Box::pin(self.fill_all_to_last(history, &position, last)).await;
                        if let Some(at) = sync.filled(ok, Instant::now()) {
                            verify.as_mut().reset(at);
                        }
                    }
                }
            }
        }
    }

    /// Follows a re-created history store: the shared position starts again at 0 in the new
    /// numbering and every channel's streams get a restart marker. Returns whether it did.
    fn follow_all(&self, position: &Position, epoch: u64) -> bool {
        if position.epoch() == epoch {
            return false;
        }
        let mut upto = position.lock();
        position.set_epoch(epoch);
        *upto = 0;
        self.broadcasts.push_restart();
        // Lock order: position, then users (nobody takes them the other way round).
        for slot in self.users.lock().unwrap_or_else(|p| p.into_inner()).values() {
            slot.channel.push_restart();
        }
        true
    }

    async fn fill_all_to_end(&self, history: &History, position: &Position) -> bool {
        match history.bounds().await {
            Ok((_, last)) => self.fill_all_to_last(history, position, Some(last)).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history stream's state");
                false
            }
        }
    }

    /// Fills up to `last`, the store's last sequence read after a round trip; `None` (it could
    /// not be read) is a failed fill.
    async fn fill_all_to_last(&self, history: &History, position: &Position, last: Option<u64>) -> bool {
        let Some(last) = last else { return false };
        // `bounds` noticed a re-created store if there is one: start again in it.
        self.follow_all(position, history.epoch());
        let upto = *position.lock();
        let (from, to) = match gap_fill::to_end(upto, last) {
            ToEnd::Read { from, to } => (from, to),
            ToEnd::Backwards => {
                history.went_backwards(position.epoch(), last);
                self.follow_all(position, history.epoch());
                (*position.lock() + 1, last)
            }
        };
        self.fill_all(history, position, from, to).await
    }

    /// Dispatches every stored message in `from..=to` not dispatched yet, users' and
    /// broadcasts alike (one read with no filter: the store holds exactly what the
    /// subscription should have received). False if the store could not be read.
    async fn fill_all(&self, history: &History, position: &Position, from: u64, to: u64) -> bool {
        let push = |s: &Stored| self.dispatch_stored(position, s.seq, &s.subject, &s.payload, s.time);
        self.fill_range(history, Vec::new(), position, from, to, push).await
    }

    /// Moves the shared position to `seq` and pushes the event to the channel it is for, if
    /// that channel exists here; framed only then. Returns whether `seq` was new.
    fn dispatch_stored(&self, position: &Position, seq: u64, subject: &str, payload: &[u8], time: SystemTime) -> bool {
        let mut upto = position.lock();
        if seq <= *upto {
            return false;
        }
        // Even an event that is skipped moves the position: it has been dealt with.
        *upto = seq;
        // The lookup happens under the position lock: a stream attaching now either started
        // before this (and its channel, found here, gets the event) or starts after it.
        let (channel, event) = match parse_subject(subject) {
            Some(Target::User { user, event }) => {
                // Users with no stream here are the common case: one map lookup, nothing else.
                let Some(channel) = self.channel_of(user) else { return true };
                (channel, event)
            }
            Some(Target::Broadcast { event }) => (Arc::clone(&self.broadcasts), event),
            None => {
                drop(upto);
                self.drop_event(DropReason::InvalidSubject, subject);
                return true;
            }
        };
        let Ok(event) = EventName::parse(event) else {
            drop(upto);
            self.drop_event(DropReason::InvalidSubject, subject);
            return true;
        };
        match self.framer.frame_stored(seq, event, channel.user(), payload, time) {
            Ok(frame) => channel.push(frame),
            Err(reason) => {
                drop(upto);
                self.drop_event(reason, subject);
            }
        }
        true
    }
}
