//! Fan-out from NATS to streams.
//!
//! One NATS subscription per connected user (`user.<id>.*`), shared by all of that
//! user's streams and dropped with the last one, plus one `broadcast.*` subscription for
//! the whole process. Each subscription's task frames a message once and hands the same
//! bytes to every stream through a bounded `tokio::sync::broadcast` ring: a stream that
//! falls further behind than the ring holds is cut off instead of buffering without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use realtime_bridge_wire::{subject, EventName, UserId};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::error::AppError;
use crate::frame::{Framer, SharedFrame};
use crate::metrics::{DropReason, Metrics};

/// How long a new stream waits for its user's NATS subscription to be confirmed by the
/// server before it starts anyway (it will get events once NATS is back).
const SUBSCRIBE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// Per-process fan-out state.
#[derive(Debug)]
pub struct Hub {
    client: async_nats::Client,
    framer: Arc<Framer>,
    metrics: Arc<Metrics>,
    /// Keyed by user; a slot exists exactly while the user has an open stream here.
    users: Mutex<HashMap<UserId, UserSlot>>,
    broadcast_tx: broadcast::Sender<SharedFrame>,
    max_streams_per_user: u32,
    /// Frames a stream may lag behind before it is cut off (per ring).
    queue_len: usize,
}

#[derive(Debug)]
struct UserSlot {
    tx: broadcast::Sender<SharedFrame>,
    /// Open streams of this user on this instance.
    streams: u32,
    /// Becomes true once the server has confirmed the subscription.
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// What a new stream gets: its two rings, and a guard that gives the slot back.
#[derive(Debug)]
pub struct Attached {
    pub user_rx: broadcast::Receiver<SharedFrame>,
    pub broadcast_rx: broadcast::Receiver<SharedFrame>,
    pub guard: StreamGuard,
}

impl Hub {
    pub fn new(
        client: async_nats::Client,
        framer: Arc<Framer>,
        metrics: Arc<Metrics>,
        max_streams_per_user: u32,
        queue_len: usize,
    ) -> Arc<Self> {
        let (broadcast_tx, _) = broadcast::channel(queue_len);
        Arc::new(Self {
            client,
            framer,
            metrics,
            users: Mutex::new(HashMap::new()),
            broadcast_tx,
            max_streams_per_user,
            queue_len,
        })
    }

    /// Subscribes to `broadcast.*` and runs until the subscription ends.
    /// Resolves its first future once the server confirmed the subscription.
    pub async fn start_broadcasts(self: &Arc<Self>) -> Result<JoinHandle<()>, async_nats::SubscribeError> {
        let mut sub = self.client.subscribe(subject::BROADCAST_WILDCARD).await?;
        let _ = tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, crate::nats::round_trip(&self.client)).await;
        let hub = Arc::clone(self);
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                hub.metrics.events_received.inc();
                let Some(event) = msg.subject.strip_prefix("broadcast.").and_then(|e| EventName::parse(e).ok())
                else {
                    hub.drop_event(DropReason::InvalidSubject, &msg.subject);
                    continue;
                };
                match hub.framer.frame_live(event, None, &msg.payload) {
                    // No receiver is not an error: nobody is connected.
                    Ok(frame) => drop(hub.broadcast_tx.send(frame)),
                    Err(reason) => hub.drop_event(reason, &msg.subject),
                }
            }
        }))
    }

    /// Registers a stream for `user`. Fails with 429 past `--max-streams-per-user`.
    pub async fn attach(self: &Arc<Self>, user: &UserId) -> Result<Attached, AppError> {
        let (user_rx, mut ready) = {
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
            let rx = slot.tx.subscribe();
            let ready = slot.ready.clone();
            self.metrics.connected_users.set(i64::try_from(users.len()).unwrap_or(i64::MAX));
            (rx, ready)
        };
        self.metrics.open_streams.inc();
        let guard = StreamGuard { hub: Arc::clone(self), user: user.clone() };
        // Wait (bounded) for the server to confirm the subscription, so that an event
        // published after the client saw the stream open is never missed.
        let _ = tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, ready.wait_for(|r| *r)).await;
        Ok(Attached { user_rx, broadcast_rx: self.broadcast_tx.subscribe(), guard })
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
        let (tx, _) = broadcast::channel(self.queue_len);
        let (ready_tx, ready) = watch::channel(false);
        let hub = Arc::clone(self);
        let task_tx = tx.clone();
        let task = tokio::spawn(async move { hub.run_user(user, task_tx, ready_tx).await });
        UserSlot { tx, streams: 0, ready, task }
    }

    async fn run_user(self: Arc<Self>, user: UserId, tx: broadcast::Sender<SharedFrame>, ready: watch::Sender<bool>) {
        let mut sub = match self.client.subscribe(subject::user_wildcard(&user)).await {
            Ok(sub) => sub,
            Err(e) => {
                tracing::error!(user = %user, error = %e, "cannot subscribe for user");
                return;
            }
        };
        if !matches!(
            tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, crate::nats::round_trip(&self.client)).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(user = %user, "NATS did not confirm the subscription in time; events flow once it does");
        }
        let _ = ready.send(true);
        // `user.<id>.` is the same for every message of this subscription: strip it, no re-parse.
        let prefix_len = "user.".len() + user.as_str().len() + 1;
        while let Some(msg) = sub.next().await {
            self.metrics.events_received.inc();
            let Some(event) = msg.subject.get(prefix_len..).and_then(|e| EventName::parse(e).ok()) else {
                self.drop_event(DropReason::InvalidSubject, &msg.subject);
                continue;
            };
            match self.framer.frame_live(event, Some(&user), &msg.payload) {
                Ok(frame) => drop(tx.send(frame)),
                Err(reason) => self.drop_event(reason, &msg.subject),
            }
        }
    }

    fn drop_event(&self, reason: DropReason, subject: &str) {
        if self.metrics.dropped(reason, 1) {
            tracing::warn!(reason = reason.as_str(), subject, "event skipped (logged at most once a second per reason)");
        }
    }

    fn detach(&self, user: &UserId) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = users.get_mut(user) {
            slot.streams = slot.streams.saturating_sub(1);
            if slot.streams == 0 {
                if let Some(slot) = users.remove(user) {
                    // Dropping the subscriber (by aborting its task) unsubscribes from NATS.
                    slot.task.abort();
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
