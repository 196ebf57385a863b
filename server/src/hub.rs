//! Fan-out from NATS to streams.
//!
//! One NATS subscription per connected user (`user.<id>.*`, or its republished copy
//! `rt.user.<id>.*` in history mode), shared by all of that user's streams and dropped
//! with the last one, plus one broadcast subscription for the whole process. With
//! `--subscribe shared` (live mode) one `user.*.*` subscription replaces the per-user ones
//! and is dispatched here through the map of connected users. Each
//! subscription's task frames a message once and hands the same bytes to every stream
//! through a bounded [`Ring`]: a stream that falls further behind than the ring holds is
//! cut off instead of buffering without bound.
//!
//! In history mode each ring is also *complete*: its task tracks `upto`, the sequence up to
//! which every event of the channel has been pushed, in stored order. When it cannot be
//! sure of that (its subscription is new, or NATS reconnected) it reads the missing range
//! from JetStream before going on, so streams see no gap and no duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use realtime_bridge_wire::subject::{parse_subject, Target};
use realtime_bridge_wire::{subject, EventName, UserId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::AppError;
use crate::frame::{Frame, Framer, SharedFrame};
use crate::history::{republished_meta, History};
use crate::metrics::{DropReason, Metrics};
use crate::ring::{Receiver, Ring};

/// How long a new stream waits for its channel's NATS subscription to be confirmed by the
/// server before it starts anyway (live mode) or is refused with 503 (history mode).
const SUBSCRIBE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// A new subscription may miss what is stored before its interest reaches the stream's
/// server (in a cluster that takes a moment). If no event arrives by then, the channel
/// checks history once for anything it missed.
const VERIFY_AFTER: Duration = Duration::from_millis(500);

/// Minimum size of the process-wide broadcast ring.
const BROADCAST_QUEUE_LEN: usize = 1024;

/// After a failed read of history, how soon a channel tries again.
const FILL_RETRY: Duration = Duration::from_secs(1);

/// Per-process fan-out state.
#[derive(Debug)]
pub struct Hub {
    client: async_nats::Client,
    framer: Arc<Framer>,
    metrics: Arc<Metrics>,
    /// `Some` in history mode.
    history: Option<History>,
    /// Keyed by user; a slot exists exactly while the user has an open stream here.
    users: Mutex<HashMap<UserId, UserSlot>>,
    broadcasts: Arc<Channel>,
    /// Handed to the broadcast task by [`Hub::start_broadcasts`].
    broadcast_ready: Mutex<Option<watch::Sender<bool>>>,
    max_streams_per_user: u32,
    /// Frames a stream may lag behind before it is cut off (per ring).
    queue_len: usize,
    /// Bumped on every NATS (re)connection; history channels fill the gap it left.
    connections: watch::Receiver<u64>,
    /// `--subscribe shared`: one wildcard subscription feeds every user channel.
    shared: Option<SharedUsers>,
}

/// The hub's knobs (from `Config`).
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    pub max_streams_per_user: u32,
    /// Frames a stream may lag behind before it is cut off (per ring).
    pub queue_len: usize,
    /// `--subscribe shared`: one wildcard subscription instead of one per user.
    pub shared: bool,
}

/// The shared user subscription's state.
#[derive(Debug)]
struct SharedUsers {
    /// Handed to the dispatch task by [`Hub::start_user_dispatch`].
    ready_tx: Mutex<Option<watch::Sender<bool>>>,
    /// Cloned into every user channel: they are ready when the dispatch subscription is.
    ready: watch::Receiver<bool>,
}

/// One ring and how far it is complete.
#[derive(Debug)]
pub struct Channel {
    ring: Arc<Ring<SharedFrame>>,
    /// History mode: every event of the channel with a sequence up to this one has been
    /// pushed (or was stored before the channel existed). Pushes and new receivers take
    /// this lock, so a stream's ring position and its catch-up bound always agree.
    upto: Mutex<u64>,
    /// Becomes true once the subscription is confirmed and `upto` is set.
    ready: watch::Receiver<bool>,
    /// Bytes pushed so far; with each frame's `end_offset` it gives a stream's lag in bytes.
    pushed_bytes: AtomicU64,
    /// Shared dispatch: whose channel this is (the envelope names the user).
    user: Option<UserId>,
    /// History mode: the incarnation of the stream `upto` counts in (`History::epoch`).
    /// Changed with `upto` locked; every frame pushed carries it.
    epoch: AtomicU64,
}

impl Channel {
    fn new(queue_len: usize) -> (Arc<Self>, watch::Sender<bool>) {
        let (ready_tx, ready) = watch::channel(false);
        (Self::with_ready(queue_len, ready, None), ready_tx)
    }

    /// A channel whose readiness another task reports (the shared dispatch).
    fn with_ready(queue_len: usize, ready: watch::Receiver<bool>, user: Option<UserId>) -> Arc<Self> {
        Arc::new(Self {
            ring: Ring::new(queue_len),
            upto: Mutex::new(0),
            ready,
            pushed_bytes: AtomicU64::new(0),
            user,
            epoch: AtomicU64::new(0),
        })
    }

    /// Hands a frame to every receiver. Called by the channel's own task only (in history
    /// mode with `upto` locked), so offsets grow in push order.
    fn push(&self, mut frame: Frame) {
        let len = u64::try_from(frame.bytes.len()).unwrap_or(u64::MAX);
        frame.end_offset = self.pushed_bytes.fetch_add(len, Ordering::Relaxed).saturating_add(len);
        frame.epoch = self.epoch.load(Ordering::Relaxed);
        // No receiver is not an error: nobody is connected.
        self.ring.send(Arc::new(frame));
    }

    /// How many bytes were pushed after `frame`: how far behind a stream that just got it is.
    pub fn lag_bytes(&self, frame: &Frame) -> u64 {
        self.pushed_bytes.load(Ordering::Relaxed).saturating_sub(frame.end_offset)
    }

    /// How far `rx` is known complete: the channel's position if `rx` has taken every frame
    /// pushed so far (pushes take the same lock), else `None`.
    /// `epoch` is the stream's: a position counted in another incarnation of the history
    /// means nothing to it.
    pub fn position_if_drained(&self, rx: &Receiver<SharedFrame>, epoch: u64) -> Option<u64> {
        let upto = self.lock();
        (rx.is_empty() && self.epoch.load(Ordering::Relaxed) == epoch).then_some(*upto)
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.upto.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver positioned at the next push, the sequence everything before it covers,
    /// and the history incarnation that sequence belongs to.
    fn subscribe(&self) -> (Receiver<SharedFrame>, u64, u64) {
        let upto = self.lock();
        (self.ring.subscribe(), *upto, self.epoch.load(Ordering::Relaxed))
    }

    /// Follows a re-created history (`epoch` is `History::epoch`): the position counted in
    /// the old numbering is dropped, and streams are told by a restart marker. Returns
    /// whether it did (the channel must then read the new stream from its beginning).
    fn follow(&self, epoch: u64) -> bool {
        // Called for every history message: the common case must not take the lock. Only
        // the channel's own task changes `epoch`, and it is that task calling.
        if self.epoch.load(Ordering::Relaxed) == epoch {
            return false;
        }
        let mut upto = self.lock();
        self.epoch.store(epoch, Ordering::Relaxed);
        *upto = 0;
        self.push(Frame::restart());
        true
    }

    async fn wait_ready(&self) -> bool {
        let mut ready = self.ready.clone();
        let confirmed = tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, ready.wait_for(|r| *r)).await;
        matches!(confirmed, Ok(Ok(_)))
    }
}

#[derive(Debug)]
struct UserSlot {
    channel: Arc<Channel>,
    /// Open streams of this user on this instance.
    streams: u32,
    /// The task feeding the channel; `None` when the shared dispatch does.
    task: Option<JoinHandle<()>>,
}

/// Whose events a channel carries.
#[derive(Debug, Clone)]
enum Kind {
    User(UserId),
    Broadcast,
}

impl Kind {
    fn live_subject(&self, history: bool) -> String {
        let s = match self {
            Self::User(u) => subject::user_wildcard(u),
            Self::Broadcast => subject::BROADCAST_WILDCARD.to_owned(),
        };
        if history {
            format!("{}{s}", subject::REPUBLISH_PREFIX)
        } else {
            s
        }
    }

    fn stored_subject(&self) -> String {
        self.live_subject(false)
    }

    fn user(&self) -> Option<&UserId> {
        match self {
            Self::User(u) => Some(u),
            Self::Broadcast => None,
        }
    }

    /// The event name of one of this channel's (un-republished) subjects.
    fn event_of<'s>(&self, subject: &'s str) -> Option<&'s str> {
        match self {
            Self::User(u) => subject.strip_prefix(subject::USER_PREFIX)?.strip_prefix(u.as_str())?.strip_prefix('.'),
            Self::Broadcast => subject.strip_prefix(subject::BROADCAST_PREFIX),
        }
    }
}

/// What a new stream gets: its two rings with the sequences they start after, and a
/// guard that gives the slot back.
#[derive(Debug)]
pub struct Attached {
    pub user_rx: Receiver<SharedFrame>,
    pub broadcast_rx: Receiver<SharedFrame>,
    /// History mode: the user ring holds every user event after this sequence.
    pub user_upto: u64,
    /// History mode: the broadcast ring holds every broadcast after this sequence.
    pub broadcast_upto: u64,
    /// History mode: the incarnation of the stream both positions count in.
    pub epoch: u64,
    /// The channels behind the rings, so the stream can move its cursor on when idle.
    pub user_channel: Arc<Channel>,
    pub broadcast_channel: Arc<Channel>,
    pub guard: StreamGuard,
}

impl Hub {
    pub fn new(
        client: async_nats::Client,
        framer: Arc<Framer>,
        metrics: Arc<Metrics>,
        history: Option<History>,
        settings: HubSettings,
        connections: watch::Receiver<u64>,
    ) -> Arc<Self> {
        let HubSettings { max_streams_per_user, queue_len, shared } = settings;
        // One broadcast ring for the whole process: it can afford more room than a user's.
        let (broadcasts, broadcast_ready) = Channel::new(queue_len.max(BROADCAST_QUEUE_LEN));
        Arc::new(Self {
            client,
            framer,
            metrics,
            history,
            users: Mutex::new(HashMap::new()),
            broadcasts,
            broadcast_ready: Mutex::new(Some(broadcast_ready)),
            max_streams_per_user,
            queue_len,
            connections,
            shared: shared.then(|| {
                let (ready_tx, ready) = watch::channel(false);
                SharedUsers { ready_tx: Mutex::new(Some(ready_tx)), ready }
            }),
        })
    }

    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Starts the process-wide broadcast channel (once; later calls do nothing).
    pub fn start_broadcasts(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let ready = self.broadcast_ready.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(self.spawn_channel(Kind::Broadcast, Arc::clone(&self.broadcasts), ready))
    }

    /// Registers a stream for `user`. Fails with 429 past `--max-streams-per-user`, and
    /// with 503 in history mode while its subscriptions cannot be confirmed.
    pub async fn attach(self: &Arc<Self>, user: &UserId) -> Result<Attached, AppError> {
        let channel = {
            let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            let slot = match users.get_mut(user) {
                Some(slot) => slot,
                None => {
                    let slot = self.new_slot(user.clone());
                    users.entry(user.clone()).or_insert(slot)
                }
            };
            // A fresh slot has 0 streams and the limit is at least 1, so only existing slots refuse.
            if slot.streams >= self.max_streams_per_user {
                return Err(AppError::TooManyStreams { user: user.to_string(), max: self.max_streams_per_user });
            }
            slot.streams += 1;
            let channel = Arc::clone(&slot.channel);
            self.metrics.connected_users.set(i64::try_from(users.len()).unwrap_or(i64::MAX));
            channel
        };
        self.metrics.open_streams.inc();
        let guard = StreamGuard { hub: Arc::clone(self), user: user.clone() };
        // Wait (bounded) for the server to confirm the subscriptions, so that an event
        // published after the client saw the stream open is never missed.
        let (user_ready, broadcast_ready) = tokio::join!(channel.wait_ready(), self.broadcasts.wait_ready());
        if self.history.is_some() && !(user_ready && broadcast_ready) {
            // Without a confirmed position the stream could not promise "no gap".
            return Err(AppError::Unavailable("NATS/JetStream is not reachable right now; retry shortly".into()));
        }
        let (user_rx, mut user_upto, user_epoch) = channel.subscribe();
        let (broadcast_rx, mut broadcast_upto, broadcast_epoch) = self.broadcasts.subscribe();
        // Right after a re-creation one channel may have followed it and the other not yet:
        // the stream starts in the newer numbering, where the other has not begun (its
        // restart marker, still to come, says so again).
        let epoch = user_epoch.max(broadcast_epoch);
        if user_epoch < epoch {
            user_upto = 0;
        }
        if broadcast_epoch < epoch {
            broadcast_upto = 0;
        }
        Ok(Attached {
            user_rx,
            broadcast_rx,
            user_upto,
            broadcast_upto,
            epoch,
            user_channel: channel,
            broadcast_channel: Arc::clone(&self.broadcasts),
            guard,
        })
    }

    /// Streams open for `user` on this instance.
    pub fn local_streams(&self, user: &str) -> u32 {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).map_or(0, |s| s.streams)
    }

    /// Users with at least one open stream here (each has exactly one NATS subscription).
    pub fn connected_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn new_slot(self: &Arc<Self>, user: UserId) -> UserSlot {
        if let Some(shared) = &self.shared {
            let channel = Channel::with_ready(self.queue_len, shared.ready.clone(), Some(user));
            return UserSlot { channel, streams: 0, task: None };
        }
        let (channel, ready_tx) = Channel::new(self.queue_len);
        let task = self.spawn_channel(Kind::User(user), Arc::clone(&channel), ready_tx);
        UserSlot { channel, streams: 0, task: Some(task) }
    }

    /// `--subscribe shared`: starts the dispatch that feeds every user channel (once).
    ///
    /// It frames every user event of the process, so it gets a thread of its own instead of
    /// sharing a worker with the streams it wakes (which halved its rate when measured).
    pub fn start_user_dispatch(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let ready = self.shared.as_ref()?.ready_tx.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let hub = Arc::clone(self);
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name("rb-dispatch".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => rt.block_on(hub.run_user_dispatch(ready)),
                Err(e) => tracing::error!(error = %e, "cannot start the dispatch thread's runtime"),
            }
            drop(done_tx);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the dispatch thread");
        }
        // Ends with the thread (the subscription ends when NATS is drained at shutdown).
        Some(tokio::spawn(async move {
            let _ = done.await;
        }))
    }

    /// One `user.*.*` subscription: each event goes to its user's channel if that user has a
    /// stream here, and is framed only then.
    async fn run_user_dispatch(self: Arc<Self>, ready: watch::Sender<bool>) {
        let Some(mut sub) = Box::pin(self.subscribe(subject::ALL_USERS_WILDCARD.to_owned())).await else { return };
        let _ = ready.send(true);
        while let Some(msg) = sub.next().await {
            self.metrics.events_received.inc();
            let Some(Target::User { user, event }) = parse_subject(&msg.subject) else {
                self.drop_event(DropReason::InvalidSubject, &msg.subject);
                continue;
            };
            // Users with no stream here are the common case: one map lookup, nothing else.
            let channel = {
                let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
                users.get(user).map(|slot| Arc::clone(&slot.channel))
            };
            let Some(channel) = channel else { continue };
            self.push_live(&channel, Some(event), channel.user.as_ref(), &msg);
        }
    }

    /// Starts the task that feeds `channel`: the live one is much smaller, and there is one
    /// per connected user.
    fn spawn_channel(
        self: &Arc<Self>,
        kind: Kind,
        channel: Arc<Channel>,
        ready: watch::Sender<bool>,
    ) -> JoinHandle<()> {
        let hub = Arc::clone(self);
        match self.history {
            None => tokio::spawn(async move { hub.run_live(kind, channel, ready).await }),
            Some(_) => tokio::spawn(async move { hub.run_history(kind, channel, ready).await }),
        }
    }

    /// Subscribes to the channel's subject and waits (bounded) for the server to confirm it.
    async fn subscribe(&self, subject: String) -> Option<async_nats::Subscriber> {
        let sub = match self.client.subscribe(subject.clone()).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::error!(subject, error = %e, "cannot subscribe");
                return None;
            }
        };
        let confirmed = matches!(
            tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, crate::nats::round_trip(&self.client)).await,
            Ok(Ok(()))
        );
        if !confirmed {
            tracing::warn!(subject, "NATS did not confirm the subscription in time; events flow once it does");
        }
        Some(sub)
    }

    /// Live mode: frame and push every message.
    async fn run_live(self: Arc<Self>, kind: Kind, channel: Arc<Channel>, ready: watch::Sender<bool>) {
        // Boxed (here and below): rare, large awaits would otherwise stay part of the task.
        let Some(mut sub) = Box::pin(self.subscribe(kind.live_subject(false))).await else { return };
        let _ = ready.send(true);
        while let Some(msg) = sub.next().await {
            self.metrics.events_received.inc();
            self.push_live(&channel, kind.event_of(&msg.subject), kind.user(), &msg);
        }
    }

    /// Frames a live message for `channel` and pushes it; a bad event name or payload is
    /// counted and skipped.
    fn push_live(&self, channel: &Channel, event: Option<&str>, user: Option<&UserId>, msg: &async_nats::Message) {
        let Some(event) = event.and_then(|e| EventName::parse(e).ok()) else {
            self.drop_event(DropReason::InvalidSubject, &msg.subject);
            return;
        };
        match self.framer.frame_live(event, user, &msg.payload) {
            Ok(frame) => channel.push(frame),
            Err(reason) => self.drop_event(reason, &msg.subject),
        }
    }

    /// History mode: push every message in stored order, filling gaps from JetStream.
    async fn run_history(self: Arc<Self>, kind: Kind, channel: Arc<Channel>, ready: watch::Sender<bool>) {
        // Borrowed, not cloned: a `History` is ~1 KB, and this future lives once per user.
        let Some(history) = self.history.as_ref() else { return };
        let Some(mut sub) = Box::pin(self.subscribe(kind.live_subject(true))).await else { return };
        let subject = kind.stored_subject();
        // History mode. Everything stored up to `base` is history for streams to read;
        // everything after it is this channel's to push, in order, with no gap.
        let base = loop {
            match Box::pin(history.bounds()).await {
                Ok((_, last)) => break last,
                Err(e) => {
                    tracing::warn!(subject, error = %e, "cannot read the history stream's state; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        {
            let mut upto = channel.lock();
            *upto = base;
            channel.epoch.store(history.epoch(), Ordering::Relaxed);
        }
        let _ = ready.send(true);
        let mut connections = self.connections.clone();
        connections.mark_unchanged();
        // async-nats counts a (re)connection before it resubscribes, so the first message
        // over a new connection is recognised here even before the `Connected` callback
        // (another task) bumps `connections`; otherwise `upto` could jump over the gap.
        let stats = self.client.statistics();
        let connects = || stats.connects.load(std::sync::atomic::Ordering::Acquire);
        let mut generation = connects();
        // Whether `upto` is known to be gap-free right up to the live flow.
        let mut synced = false;
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
                    let now = connects();
                    if now != generation {
                        generation = now;
                        // The first message over a new connection. NATS may have come back
                        // without its store, and then this message's sequence, counted
                        // again from 1, would pass for a duplicate: look at the stream first.
                        synced = Box::pin(self.fill_to_end(history, &kind, &channel)).await;
                        if !synced {
                            verify.as_mut().reset(tokio::time::Instant::now() + FILL_RETRY);
                        }
                    }
                    if channel.follow(history.epoch()) {
                        synced = false;
                    }
                    let upto = *channel.lock();
                    if seq <= upto {
                        continue;
                    }
                    // A sequence past what the stream is known to hold is checked before it
                    // moves anything: anyone allowed to publish on `rt.>` could have sent it.
                    if !history.known_to_hold(seq) {
                        match Box::pin(history.holds(seq)).await {
                            Ok(true) => {}
                            Ok(false) => {
                                self.drop_event(DropReason::Forged, &msg.subject);
                                continue;
                            }
                            Err(e) => {
                                // Cannot tell now: hold it back. If it is real, the next fill
                                // reads it from the stream itself.
                                tracing::debug!(error = %e, "cannot check a re-published sequence; filling from history instead");
                                synced = false;
                                verify.as_mut().reset(tokio::time::Instant::now() + FILL_RETRY);
                                continue;
                            }
                        }
                    }
                    if !synced {
                        // First message since (re)subscribing: send what was missed before it.
                        // If history cannot be read now, hold this one back too (it is stored,
                        // and the next fill reads it): order and completeness beat latency.
                        if !Box::pin(self.fill(history, &kind, &channel, upto + 1, seq - 1)).await {
                            // Try again soon even if no further event comes to trigger it.
                            verify.as_mut().reset(tokio::time::Instant::now() + FILL_RETRY);
                            continue;
                        }
                        synced = true;
                    }
                    self.push_stored(&kind, &channel, seq, stored_subject, &msg.payload, time);
                }
                _ = confirm.tick() => {
                    synced = Box::pin(self.fill_to_end(history, &kind, &channel)).await;
                }
                () = &mut verify, if !synced => {
                    synced = Box::pin(self.fill_to_end(history, &kind, &channel)).await;
                    if !synced {
                        verify.as_mut().reset(tokio::time::Instant::now() + FILL_RETRY);
                    }
                }
                r = connections.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let now = connects();
                    // A message over the new connection may have been here first and filled
                    // the gap already: then there is nothing to read again.
                    let filled = synced && now == generation;
                    generation = now;
                    // NATS came back: what was stored while we were away never reached us.
                    let _ = tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, Box::pin(crate::nats::round_trip(&self.client))).await;
                    if matches!(kind, Kind::Broadcast) {
                        // Once per process (the broadcast channel lives as long as it does).
                        if let Err(e) = Box::pin(history.ensure()).await {
                            tracing::error!(error = %e, "cannot re-apply the history stream after reconnecting");
                        }
                    }
                    if !filled {
                        synced = Box::pin(self.fill_to_end(history, &kind, &channel)).await;
                        if !synced {
                            verify.as_mut().reset(tokio::time::Instant::now() + FILL_RETRY);
                        }
                    }
                }
            }
        }
    }

    /// Fills up to the stream's last sequence; false if history could not be read.
    ///
    /// Callers box this and `fill`: a history read is a large future that runs rarely, and
    /// inline it would be part of every channel task's state (one per connected user).
    async fn fill_to_end(&self, history: &History, kind: &Kind, channel: &Channel) -> bool {
        match history.bounds().await {
            Ok((_, last)) => {
                // `bounds` noticed a re-created stream if there is one: start again in it.
                channel.follow(history.epoch());
                let upto = *channel.lock();
                if last < upto {
                    // Behind this channel, yet not re-created: the position cannot be right.
                    history.went_backwards(channel.epoch.load(Ordering::Relaxed), last);
                    channel.follow(history.epoch());
                }
                let upto = *channel.lock();
                self.fill(history, kind, channel, upto + 1, last).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history stream's state");
                false
            }
        }
    }

    /// Pushes the stored events of this channel in `from..=to` that it has not pushed yet.
    /// Returns false if history could not be read (nothing past what was pushed is assumed).
    async fn fill(&self, history: &History, kind: &Kind, channel: &Channel, from: u64, to: u64) -> bool {
        if from > to {
            return true;
        }
        let mut pushed = 0u64;
        let mut complete = true;
        match history.read(vec![kind.stored_subject()], from, to).await {
            Ok(mut stored) => {
                while let Some(item) = stored.next().await {
                    match item {
                        Ok(s) => {
                            if self.push_stored(kind, channel, s.seq, &s.subject, &s.payload, s.time) {
                                pushed += 1;
                            }
                        }
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
            // Every event of this channel up to `to` has been pushed: its position is `to`.
            let mut upto = channel.lock();
            *upto = (*upto).max(to);
        }
        if pushed > 0 {
            self.metrics.replayed_events.inc_by(pushed);
            tracing::info!(subject = kind.stored_subject(), pushed, from, to, "filled a gap from history");
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
        let Some(event) = kind.event_of(subject).and_then(|e| EventName::parse(e).ok()) else {
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

    fn drop_event(&self, reason: DropReason, subject: &str) {
        if self.metrics.dropped(reason, 1) {
            tracing::warn!(
                reason = reason.as_str(),
                subject,
                "event skipped (logged at most once a second per reason)"
            );
        }
    }

    fn detach(&self, user: &UserId) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = users.get_mut(user) {
            slot.streams = slot.streams.saturating_sub(1);
            if slot.streams == 0 {
                if let Some(task) = users.remove(user).and_then(|slot| slot.task) {
                    // Dropping the subscriber (by aborting its task) unsubscribes from NATS.
                    task.abort();
                }
            }
        }
        self.metrics.connected_users.set(i64::try_from(users.len()).unwrap_or(i64::MAX));
        drop(users);
        self.metrics.open_streams.dec();
    }
}

/// Held by a stream for its whole life; dropping it releases the user's slot.
#[derive(Debug)]
pub struct StreamGuard {
    hub: Arc<Hub>,
    user: UserId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.detach(&self.user);
    }
}
