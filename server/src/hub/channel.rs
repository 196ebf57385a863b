//! One channel: the ring every stream of a user (or of the whole process, for broadcasts)
//! reads, how far it is complete in history mode, and whose events it carries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use realtime_bridge_wire::subject;
use realtime_bridge_wire::{EventName, UserId};
use tokio::sync::watch;

use crate::frame::{Frame, SharedFrame};
use crate::ring::{Receiver, Ring};

/// History mode: how far a channel is complete, in which incarnation of the history store.
/// A channel fed by its own subscription has its own; with the shared dispatch every channel
/// shares the dispatcher's, which sees every stored message in order.
#[derive(Debug, Default)]
pub(super) struct Position {
    /// Every event of the channel with a sequence up to this one has been pushed (or was
    /// stored before the channel existed). Pushes and new receivers take this lock, so a
    /// stream's ring position and its catch-up bound always agree.
    upto: Mutex<u64>,
    /// The incarnation of the history store `upto` counts in (`History::epoch`). Changed
    /// with `upto` locked; every frame pushed carries it.
    epoch: AtomicU64,
}

impl Position {
    pub(super) fn lock(&self) -> MutexGuard<'_, u64> {
        self.upto.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Sets the incarnation; the caller holds `upto` locked.
    pub(super) fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }
}

/// One ring and how far it is complete.
#[derive(Debug)]
pub(crate) struct Channel {
    ring: Arc<Ring<SharedFrame>>,
    /// History mode: how far the ring is complete (see [`Position`]).
    position: Arc<Position>,
    /// Becomes true once the subscription is confirmed and `upto` is set.
    ready: watch::Receiver<bool>,
    /// Bytes pushed so far; with each frame's `end_offset` it gives a stream's lag in bytes.
    pushed_bytes: AtomicU64,
    /// Shared dispatch: whose channel this is (the envelope names the user).
    user: Option<UserId>,
}

impl Channel {
    pub(super) fn new(queue_len: usize) -> (Arc<Self>, watch::Sender<bool>) {
        let (ready_tx, ready) = watch::channel(false);
        (Self::with_ready(queue_len, ready, None, Arc::default()), ready_tx)
    }

    /// A channel whose readiness another task reports, and whose position it may share
    /// (the shared dispatch).
    pub(super) fn with_ready(
        queue_len: usize,
        ready: watch::Receiver<bool>,
        user: Option<UserId>,
        position: Arc<Position>,
    ) -> Arc<Self> {
        Arc::new(Self { ring: Ring::new(queue_len), position, ready, pushed_bytes: AtomicU64::new(0), user })
    }

    /// Shared dispatch: the user whose channel this is.
    pub(super) fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// Hands a frame to every receiver. Called by the channel's own task only (in history
    /// mode with `upto` locked), so offsets grow in push order.
    pub(super) fn push(&self, mut frame: Frame) {
        let len = u64::try_from(frame.bytes.len()).unwrap_or(u64::MAX);
        frame.end_offset = self.pushed_bytes.fetch_add(len, Ordering::Relaxed).saturating_add(len);
        frame.epoch = self.position.epoch();
        // No receiver is not an error: nobody is connected.
        self.ring.send(Arc::new(frame));
    }

    /// How many bytes were pushed after `frame`: how far behind a stream that just got it is.
    pub(crate) fn lag_bytes(&self, frame: &Frame) -> u64 {
        self.pushed_bytes.load(Ordering::Relaxed).saturating_sub(frame.end_offset)
    }

    /// How far `rx` is known complete: the channel's position if `rx` has taken every frame
    /// pushed so far (pushes take the same lock), else `None`.
    /// `epoch` is the stream's: a position counted in another incarnation of the history
    /// means nothing to it.
    pub(crate) fn position_if_drained(&self, rx: &Receiver<SharedFrame>, epoch: u64) -> Option<u64> {
        let upto = self.lock();
        (rx.is_empty() && self.position.epoch() == epoch).then_some(*upto)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, u64> {
        self.position.lock()
    }

    /// How far the channel is complete (its own position, or the shared dispatch's).
    pub(super) fn position(&self) -> &Position {
        &self.position
    }

    /// The incarnation of the history store `upto` counts in.
    pub(super) fn epoch(&self) -> u64 {
        self.position.epoch()
    }

    /// History mode: the channel starts complete up to `base`, in incarnation `epoch`.
    pub(super) fn start_at(&self, base: u64, epoch: u64) {
        let mut upto = self.lock();
        *upto = base;
        self.position.set_epoch(epoch);
    }

    /// A receiver positioned at the next push, the sequence everything before it covers,
    /// and the history incarnation that sequence belongs to.
    pub(super) fn subscribe(&self) -> (Receiver<SharedFrame>, u64, u64) {
        let upto = self.lock();
        (self.ring.subscribe(), *upto, self.position.epoch())
    }

    /// Follows a re-created history (`epoch` is `History::epoch`): the position counted in
    /// the old numbering is dropped, and streams are told by a restart marker. Returns
    /// whether it did (the channel must then read the new history store from its beginning).
    pub(super) fn follow(&self, epoch: u64) -> bool {
        // Called for every history message: the common case must not take the lock. Only
        // the channel's own task changes `epoch`, and it is that task calling.
        if self.position.epoch() == epoch {
            return false;
        }
        let mut upto = self.lock();
        self.position.set_epoch(epoch);
        *upto = 0;
        self.push(Frame::restart());
        true
    }

    /// Shared dispatch: tells this channel's streams the history store was re-created (the
    /// dispatcher changed the shared position, and holds it locked).
    pub(super) fn push_restart(&self) {
        self.push(Frame::restart());
    }

    /// Waits at most `wait` for the channel to be ready (at once if it is).
    pub(super) async fn wait_ready(&self, wait: Duration) -> bool {
        let mut ready = self.ready.clone();
        let confirmed = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
        matches!(confirmed, Ok(Ok(_)))
    }
}

/// Whose events a channel carries.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    User(UserId),
    Broadcast,
}

impl Kind {
    /// The subject the channel subscribes to: its events as published (live mode), or
    /// their copies re-published by the history store (history mode).
    pub(super) fn live_subject(&self, history: bool) -> String {
        let s = self.stored_subject();
        if history {
            subject::republished(&s)
        } else {
            s
        }
    }

    /// The channel's events as published, and as the history store keeps them.
    pub(super) fn stored_subject(&self) -> String {
        match self {
            Self::User(u) => subject::user_wildcard(u),
            Self::Broadcast => subject::BROADCAST_WILDCARD.to_owned(),
        }
    }

    pub(super) fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(u),
            Self::Broadcast => None,
        }
    }

    /// The event name of one of this channel's (un-republished) subjects, validated once
    /// here (every message passes by, so the user id it already knows is not checked again);
    /// `None` for a subject that is not of this channel or not well-formed.
    pub(super) fn event_of(&self, subject: &str) -> Option<EventName> {
        let event = match self {
            Self::User(u) => subject::user_event(subject, u)?,
            Self::Broadcast => subject::broadcast_event(subject)?,
        };
        EventName::parse(event).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_know_their_subjects() {
        let user = Kind::User(UserId::parse("42").unwrap());
        assert_eq!(user.live_subject(false), "user.42.*");
        assert_eq!(user.live_subject(true), "rt.user.42.*");
        assert_eq!(user.stored_subject(), "user.42.*");
        assert_eq!(Kind::Broadcast.live_subject(false), "broadcast.*");
        assert_eq!(Kind::Broadcast.live_subject(true), "rt.broadcast.*");
        assert_eq!(user.event_of("user.42.message_new").as_ref().map(EventName::as_str), Some("message_new"));
        assert_eq!(Kind::Broadcast.event_of("broadcast.x").as_ref().map(EventName::as_str), Some("x"));
        for other in ["user.4.x", "user.421.x", "user.42.x.y", "user.42.", "broadcast.x", "user.42.a b"] {
            assert!(user.event_of(other).is_none(), "{other:?}");
        }
        for other in ["user.42.x", "broadcast.", "broadcast.a.b"] {
            assert!(Kind::Broadcast.event_of(other).is_none(), "{other:?}");
        }
    }

    #[tokio::test]
    async fn following_a_new_history_starts_again_behind_a_marker() {
        let (channel, _ready) = Channel::new(8);
        channel.start_at(10, 0);
        let (mut rx, upto, epoch) = channel.subscribe();
        assert_eq!((upto, epoch), (10, 0));
        assert!(!channel.follow(0), "the same incarnation: nothing to do");
        assert!(rx.is_empty());
        assert!(channel.follow(1));
        assert_eq!((*channel.lock(), channel.epoch()), (0, 1));
        let marker = rx.recv().await.unwrap();
        assert!(marker.restart && marker.epoch == 1);
        assert!(rx.is_empty());
        assert_eq!(channel.position_if_drained(&rx, 1), Some(0));
        assert_eq!(channel.position_if_drained(&rx, 0), None, "another incarnation's stream");
    }
}
