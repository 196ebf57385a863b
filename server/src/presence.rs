//! Presence across every bridge instance on the same NATS.
//!
//! Nothing is stored: a query asks every live instance for its local count
//! (scatter-gather over `_RB.presence.count.<user>`) and sums the answers. Instances
//! announce themselves on `_RB.presence.hello` every few seconds, so a query knows how
//! many answers to wait for; an instance that died stops answering at once and is
//! forgotten from the peer list after [`PEER_TTL`] (graceful ones say `bye`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use realtime_bridge_wire::UserId;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::hub::Hub;

const HELLO: &str = "_RB.presence.hello";
const BYE: &str = "_RB.presence.bye";
const COUNT_PREFIX: &str = "_RB.presence.count.";
/// Subject services use (DESIGN.md section 2): `realtime.presence.<userId>`.
pub const REQUEST_PREFIX: &str = "realtime.presence.";
/// Queue group so exactly one instance answers a service's request.
const QUEUE: &str = "realtime-bridge";

const HELLO_EVERY: Duration = Duration::from_secs(5);
/// Three missed hellos and a peer is gone (well inside the 30 s promise).
pub const PEER_TTL: Duration = Duration::from_secs(15);
/// Upper bound on a query when a known peer does not answer (it just died).
const GATHER_TIMEOUT: Duration = Duration::from_millis(750);

/// The answer of a presence query (HTTP and NATS alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceInfo {
    pub user_id: String,
    pub connected: bool,
    pub streams: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CountReply {
    instance: String,
    streams: u64,
}

/// Whether the bridge may answer a service's request on `reply`. The requester picks the
/// reply subject, and the answer goes out with the bridge's own NATS permissions: a reply
/// subject naming a JetStream API (`$JS.API.STREAM.PURGE.REALTIME`, say), the bridges' own
/// subjects, or a subject that reaches users' streams would have the bridge do what the
/// requester may not. No inbox looks like these.
pub fn answerable(reply: &str) -> bool {
    const RESERVED: [&str; 6] = ["$", "_RB.", "rt.", "user.", "broadcast.", "realtime."];
    !RESERVED.iter().any(|p| reply.starts_with(p))
}

/// Presence service of one instance.
#[derive(Debug)]
pub struct Presence {
    client: async_nats::Client,
    hub: Arc<Hub>,
    /// Random per process, so a restarted instance is a new peer.
    instance: String,
    /// Other instances and when we last heard from them.
    peers: Mutex<HashMap<String, Instant>>,
}

impl Presence {
    pub fn new(client: async_nats::Client, hub: Arc<Hub>) -> Arc<Self> {
        let instance = client.new_inbox().rsplit('.').next().unwrap_or("rb").to_owned();
        Arc::new(Self { client, hub, instance, peers: Mutex::new(HashMap::new()) })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Subscribes and starts the background tasks; they end when the client closes.
    pub async fn start(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, async_nats::SubscribeError> {
        let mut hello = self.client.subscribe(HELLO).await?;
        let mut bye = self.client.subscribe(BYE).await?;
        let mut count = self.client.subscribe(format!("{COUNT_PREFIX}*")).await?;
        let mut requests = self.client.queue_subscribe(format!("{REQUEST_PREFIX}*"), QUEUE.to_owned()).await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), crate::nats::round_trip(&self.client)).await;

        let mut tasks = Vec::new();
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = hello.next().await {
                let Ok(peer) = std::str::from_utf8(&msg.payload) else { continue };
                if peer == me.instance {
                    continue;
                }
                let new = me.lock_peers().insert(peer.to_owned(), Instant::now()).is_none();
                if new {
                    // Answer a newcomer at once so it need not wait for our next hello.
                    me.announce().await;
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = bye.next().await {
                if let Ok(peer) = std::str::from_utf8(&msg.payload) {
                    me.lock_peers().remove(peer);
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = count.next().await {
                let (Some(reply), Some(user)) = (msg.reply, msg.subject.strip_prefix(COUNT_PREFIX)) else { continue };
                let body = CountReply { instance: me.instance.clone(), streams: u64::from(me.hub.local_streams(user)) };
                if let Ok(json) = serde_json::to_vec(&body) {
                    let _ = me.client.publish(reply, json.into()).await;
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply else { continue };
                if !answerable(&reply) {
                    tracing::debug!(reply = %reply, "presence request with a reserved reply subject ignored");
                    continue;
                }
                let raw = msg.subject.strip_prefix(REQUEST_PREFIX).unwrap_or_default();
                let body = match UserId::parse(raw) {
                    Ok(user) => serde_json::to_vec(&me.query(&user).await),
                    Err(e) => serde_json::to_vec(&crate::error::ErrorBody {
                        error: format!("user id {raw:?} {e}"),
                        code: "invalid_user_id",
                    }),
                };
                if let Ok(json) = body {
                    let _ = me.client.publish(reply, json.into()).await;
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HELLO_EVERY);
            loop {
                tick.tick().await;
                me.announce().await;
                let now = Instant::now();
                me.lock_peers().retain(|_, seen| now.duration_since(*seen) < PEER_TTL);
            }
        }));
        Ok(tasks)
    }

    async fn announce(&self) {
        let _ = self.client.publish(HELLO, Bytes::from(self.instance.clone())).await;
    }

    /// Tells peers we are leaving (graceful shutdown).
    pub async fn leave(&self) {
        let _ = self.client.publish(BYE, Bytes::from(self.instance.clone())).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open streams of `user` over every live instance.
    pub async fn query(&self, user: &UserId) -> PresenceInfo {
        let local = u64::from(self.hub.local_streams(user.as_str()));
        let expected = {
            let now = Instant::now();
            self.lock_peers().values().filter(|seen| now.duration_since(**seen) < PEER_TTL).count()
        };
        let remote = if expected == 0 { 0 } else { self.gather(user, expected).await };
        let streams = local + remote;
        PresenceInfo { user_id: user.to_string(), connected: streams > 0, streams }
    }

    async fn gather(&self, user: &UserId, expected: usize) -> u64 {
        let inbox = self.client.new_inbox();
        let Ok(mut replies) = self.client.subscribe(inbox.clone()).await else { return 0 };
        if self.client.publish_with_reply(format!("{COUNT_PREFIX}{user}"), inbox, Bytes::new()).await.is_err() {
            return 0;
        }
        let mut seen: HashMap<String, u64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
        while seen.len() < expected {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(msg)) => {
                    if let Ok(r) = serde_json::from_slice::<CountReply>(&msg.payload) {
                        if r.instance != self.instance {
                            seen.insert(r.instance, r.streams);
                        }
                    }
                }
                _ => break,
            }
        }
        seen.values().sum()
    }
}
