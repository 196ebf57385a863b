//! Fan-out from NATS to streams.
//!
//! One NATS subscription per connected user (`user.<id>.*`, or its republished copy
//! `rt.user.<id>.*` in history mode), shared by all of that user's streams and dropped
//! with the last one, plus one broadcast subscription for the whole process. With
//! `--subscribe shared` (live mode) one `user.*.*` subscription replaces the per-user ones
//! and is dispatched through the map of connected users. Each subscription's task frames a
//! message once and hands the same bytes to every stream through a bounded ring: a stream
//! that falls further behind than the ring holds is cut off instead of buffering without
//! bound.
//!
//! In history mode each ring is also *complete*: its task tracks `upto`, the sequence up to
//! which every event of the channel has been pushed, in stored order. When it cannot be
//! sure of that (its subscription is new, or NATS reconnected) it reads the missing range
//! from the history store before going on, so streams see no gap and no duplicate.
//!
//! One job per file:
//!
//! - here: the registry of connected users (a slot per user, the stream limit) and the
//!   `Hub` API the HTTP layer calls (`attach`, presence counts);
//! - `channel.rs`: a channel (its ring, its position, its history incarnation) and whose
//!   events it carries;
//! - `live.rs`: live mode, a channel's task framing and pushing what it receives;
//! - `dispatch.rs`: `--subscribe shared`, the thread feeding every user's channel;
//! - `history_feed.rs`: history mode, a channel's task pushing in stored order and filling
//!   gaps from the history store;
//! - `gap_fill.rs`: the pure decisions that task takes (duplicate, check, fill, retry);
//! - `confirm.rs`: new subscriptions confirmed in batches (one round trip and one history
//!   read for every channel waiting at the same time).

mod channel;
mod confirm;
mod dispatch;
mod gap_fill;
mod history_feed;
mod live;
mod shared_history;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use realtime_bridge_wire::{ClientId, UserId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) use self::channel::Channel;
use self::channel::Kind;
use crate::frame::{Framer, SharedFrame};
use crate::history::History;
use crate::metrics::{DropReason, Metrics};
use crate::ring::Receiver;

/// Why a stream could not be attached to its user's channel (the HTTP layer turns it into
/// 429 or 503, docs/protocol.md §3).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachError {
    /// `--max-streams-per-user` streams of this user are already open here.
    #[error("too many open streams for user {user} (at most {max} per bridge)")]
    TooManyStreams { user: UserId, max: u32 },
    /// History mode: NATS did not confirm the subscriptions in time, so the stream could not
    /// promise to miss nothing.
    #[error("NATS/JetStream is not reachable right now; retry shortly")]
    NotConfirmed,
}

/// How long a round trip confirming new subscriptions may take. Live channels then go on
/// without it (they deliver once NATS has the subscription); history channels do not start,
/// or fill, before a round trip succeeds, and ask again in the next batch.
const SUBSCRIBE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a new stream waits for its channels to be ready while NATS is connected. A
/// reconnect storm on a loaded machine can take seconds to confirm; refusing then would only
/// make every client come back at once (docs/protocol.md §2.4). Without a NATS connection the
/// stream is refused at once.
const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// Minimum size of the process-wide broadcast ring.
const BROADCAST_QUEUE_LEN: usize = 1024;

/// Per-process fan-out state.
#[derive(Debug)]
pub(crate) struct Hub {
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
    /// Shared dispatch: one subscription feeds every user channel (and, in history mode,
    /// the broadcast one).
    shared: Option<SharedUsers>,
    /// Numbers the streams, so a closing stream removes its own presence entry.
    next_stream: AtomicU64,
    /// Channels waiting for their subscription to be confirmed, served in batches.
    confirmations: confirm::Confirmations,
}

/// The hub's knobs (from `Config`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HubSettings {
    pub(crate) max_streams_per_user: u32,
    /// Frames a stream may lag behind before it is cut off (per ring).
    pub(crate) queue_len: usize,
    /// Shared dispatch (`--subscribe`): one subscription instead of one per user.
    pub(crate) shared: bool,
}

/// The shared user subscription's state.
#[derive(Debug)]
struct SharedUsers {
    /// Handed to the dispatch task by [`Hub::start_user_dispatch`].
    ready_tx: Mutex<Option<watch::Sender<bool>>>,
    /// Cloned into every user channel: they are ready when the dispatch subscription is.
    ready: watch::Receiver<bool>,
    /// History mode: the dispatcher's position, shared by every channel it feeds (the
    /// broadcast one too).
    position: Arc<channel::Position>,
}

/// One open stream as presence lists it.
#[derive(Debug, Clone)]
pub(crate) struct LocalClient {
    /// The stream's number in this process (`Hub::next_stream`).
    stream: u64,
    pub(crate) id: ClientId,
    /// When the stream opened.
    pub(crate) since: SystemTime,
}

#[derive(Debug)]
struct UserSlot {
    channel: Arc<Channel>,
    /// Open streams of this user on this instance.
    streams: u32,
    /// Who holds them (presence): one entry per open stream, so at most
    /// `--max-streams-per-user` entries.
    clients: Vec<LocalClient>,
    /// The task feeding the channel; `None` when the shared dispatch does.
    task: Option<JoinHandle<()>>,
}

/// What a new stream gets: its two rings with the sequences they start after, and a
/// guard that gives the slot back.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) user_rx: Receiver<SharedFrame>,
    pub(crate) broadcast_rx: Receiver<SharedFrame>,
    /// History mode: the user ring holds every user event after this sequence.
    pub(crate) user_upto: u64,
    /// History mode: the broadcast ring holds every broadcast after this sequence.
    pub(crate) broadcast_upto: u64,
    /// History mode: the incarnation of the history store both positions count in.
    pub(crate) epoch: u64,
    /// The channels behind the rings, so the stream can move its cursor on when idle.
    pub(crate) user_channel: Arc<Channel>,
    pub(crate) broadcast_channel: Arc<Channel>,
    pub(crate) guard: StreamGuard,
}

/// Where a channel's ring starts for a new receiver: the sequence it is complete up to,
/// in the history incarnation `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    upto: u64,
    epoch: u64,
}

/// The positions a new stream starts from, and the incarnation they count in, given where
/// its user and broadcast rings start.
///
/// Right after a re-creation of the history store one channel may have followed it and the
/// other not yet: the stream starts in the newer numbering, where the other has not begun
/// (its restart marker, still to come, says so again).
fn start_positions(user: Start, broadcast: Start) -> (u64, u64, u64) {
    let epoch = user.epoch.max(broadcast.epoch);
    let user_upto = if user.epoch < epoch { 0 } else { user.upto };
    let broadcast_upto = if broadcast.epoch < epoch { 0 } else { broadcast.upto };
    (user_upto, broadcast_upto, epoch)
}

impl Hub {
    pub(crate) fn new(
        client: async_nats::Client,
        framer: Arc<Framer>,
        metrics: Arc<Metrics>,
        history: Option<History>,
        settings: HubSettings,
        connections: watch::Receiver<u64>,
    ) -> Arc<Self> {
        let HubSettings { max_streams_per_user, queue_len, shared } = settings;
        let shared = shared.then(|| {
            let (ready_tx, ready) = watch::channel(false);
            SharedUsers { ready_tx: Mutex::new(Some(ready_tx)), ready, position: Arc::default() }
        });
        // One broadcast ring for the whole process: it can afford more room than a user's.
        let broadcast_len = queue_len.max(BROADCAST_QUEUE_LEN);
        let (broadcasts, broadcast_ready) = match (&shared, &history) {
            // Shared history dispatch: the dispatcher feeds broadcasts too, in stored order.
            (Some(shared), Some(_)) => {
                (Channel::with_ready(broadcast_len, shared.ready.clone(), None, Arc::clone(&shared.position)), None)
            }
            _ => {
                let (channel, ready) = Channel::new(broadcast_len);
                (channel, Some(ready))
            }
        };
        Arc::new(Self {
            client,
            framer,
            metrics,
            history,
            users: Mutex::new(HashMap::new()),
            broadcasts,
            broadcast_ready: Mutex::new(broadcast_ready),
            max_streams_per_user,
            queue_len,
            connections,
            shared,
            next_stream: AtomicU64::new(0),
            confirmations: confirm::Confirmations::default(),
        })
    }

    pub(crate) fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Starts the process-wide broadcast channel (once; later calls do nothing; nothing
    /// with the shared history dispatch, which feeds it).
    pub(crate) fn start_broadcasts(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let ready = self.broadcast_ready.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(self.spawn_channel(Kind::Broadcast, Arc::clone(&self.broadcasts), ready))
    }

    /// Registers a stream for `user`, held by `client` (for presence). Fails past
    /// `--max-streams-per-user`, and in history mode while its subscriptions cannot be
    /// confirmed.
    pub(crate) async fn attach(self: &Arc<Self>, user: &UserId, client: ClientId) -> Result<Attached, AttachError> {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
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
                return Err(AttachError::TooManyStreams { user: user.clone(), max: self.max_streams_per_user });
            }
            slot.streams += 1;
            // Exactly one more slot: most users hold one stream, and a plain `push` would
            // allocate room for four entries per user.
            slot.clients.reserve_exact(1);
            slot.clients.push(LocalClient { stream, id: client, since: SystemTime::now() });
            let channel = Arc::clone(&slot.channel);
            self.metrics.connected_users.set(i64::try_from(users.len()).unwrap_or(i64::MAX));
            channel
        };
        self.metrics.open_streams.inc();
        let guard = StreamGuard { hub: Arc::clone(self), user: user.clone(), stream };
        // Wait (bounded) for the server to confirm the subscriptions, so that an event
        // published after the client saw the stream open is never missed.
        let wait = if self.client.connection_state() == async_nats::connection::State::Connected {
            ATTACH_WAIT
        } else {
            Duration::ZERO
        };
        let (user_ready, broadcast_ready) = tokio::join!(channel.wait_ready(wait), self.broadcasts.wait_ready(wait));
        if self.history.is_some() && !(user_ready && broadcast_ready) {
            // Without a confirmed position the stream could not promise "no gap".
            return Err(AttachError::NotConfirmed);
        }
        let (user_rx, user_upto, user_epoch) = channel.subscribe();
        let (broadcast_rx, broadcast_upto, broadcast_epoch) = self.broadcasts.subscribe();
        let (user_upto, broadcast_upto, epoch) = start_positions(
            Start { upto: user_upto, epoch: user_epoch },
            Start { upto: broadcast_upto, epoch: broadcast_epoch },
        );
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
    pub(crate) fn local_streams(&self, user: &str) -> u32 {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).map_or(0, |s| s.streams)
    }

    /// Streams open for `user` on this instance, and who holds the first `max` of them
    /// (oldest first), read together so the two agree.
    pub(crate) fn local_clients(&self, user: &str, max: usize) -> (u32, Vec<LocalClient>) {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).map_or((0, Vec::new()), |s| (s.streams, s.clients.iter().take(max).cloned().collect()))
    }

    /// Users with at least one open stream here (each has one NATS subscription, unless the
    /// dispatch is shared).
    pub(crate) fn connected_users(&self) -> usize {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The channel of `user` if the user has a stream here.
    fn channel_of(&self, user: &str) -> Option<Arc<Channel>> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).map(|slot| Arc::clone(&slot.channel))
    }

    fn new_slot(self: &Arc<Self>, user: UserId) -> UserSlot {
        if let Some(shared) = &self.shared {
            let channel =
                Channel::with_ready(self.queue_len, shared.ready.clone(), Some(user), Arc::clone(&shared.position));
            return UserSlot { channel, streams: 0, clients: Vec::new(), task: None };
        }
        let (channel, ready_tx) = Channel::new(self.queue_len);
        let task = self.spawn_channel(Kind::User(user), Arc::clone(&channel), ready_tx);
        UserSlot { channel, streams: 0, clients: Vec::new(), task: Some(task) }
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

    /// Subscribes to the channel's subject and waits (bounded) for the server to confirm it,
    /// in a batch with every channel subscribing at the same time.
    async fn subscribe(self: &Arc<Self>, subject: String) -> Option<(async_nats::Subscriber, confirm::Confirmation)> {
        let sub = match self.client.subscribe(subject.clone()).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::error!(subject, error = %e, "cannot subscribe");
                return None;
            }
        };
        let confirmation = self.confirm().await;
        if !confirmation.round_trip {
            tracing::warn!(subject, "NATS did not confirm the subscription in time; events flow once it does");
        }
        Some((sub, confirmation))
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

    fn detach(&self, user: &UserId, stream: u64) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = users.get_mut(user) {
            slot.streams = slot.streams.saturating_sub(1);
            slot.clients.retain(|c| c.stream != stream);
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
pub(crate) struct StreamGuard {
    hub: Arc<Hub>,
    user: UserId,
    /// Its number, to remove its presence entry.
    stream: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.hub.detach(&self.user, self.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_start_in_the_newer_incarnation() {
        let s = |upto, epoch| Start { upto, epoch };
        assert_eq!(start_positions(s(7, 0), s(9, 0)), (7, 9, 0));
        assert_eq!(start_positions(s(0, 0), s(0, 0)), (0, 0, 0));
        // The user channel followed a re-created history store, the broadcast one not yet.
        assert_eq!(start_positions(s(3, 1), s(9, 0)), (3, 0, 1));
        assert_eq!(start_positions(s(7, 0), s(2, 1)), (0, 2, 1));
        assert_eq!(start_positions(s(4, 2), s(5, 2)), (4, 5, 2));
    }
}
