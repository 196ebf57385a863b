//! Presence across every bridge instance on the same NATS.
//!
//! Nothing is stored: a query asks every live instance for its local count and the clients
//! holding those streams (scatter-gather over `_RB.presence.count.<user>`) and merges the
//! answers. Instances
//! announce themselves on `_RB.presence.hello` every few seconds, so a query knows how
//! many answers to wait for; an instance that died stops answering at once and is
//! forgotten from the peer list after [`PEER_TTL`] (graceful ones say `bye`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use realtime_bridge_wire::{subject, ClientId, UserId};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::hub::Hub;

const HELLO: &str = "_RB.presence.hello";
const BYE: &str = "_RB.presence.bye";
const COUNT_PREFIX: &str = "_RB.presence.count.";
/// Queue group so exactly one instance answers a service's request.
const QUEUE: &str = "realtime-bridge";

const HELLO_EVERY: Duration = Duration::from_secs(5);
/// Three missed hellos and a peer is gone (well inside the 30 s promise).
pub(crate) const PEER_TTL: Duration = Duration::from_secs(15);
/// Upper bound on a query when a known peer does not answer (it just died).
const GATHER_TIMEOUT: Duration = Duration::from_millis(750);
/// Peers remembered at most. Anyone who may publish `_RB.presence.hello` can announce
/// peers (the shipped NATS permissions keep producers out of `_RB.>`); this bounds what they cost.
const MAX_PEERS: usize = 256;
/// Longest instance id accepted in a hello or a count reply (ours are 22 characters).
const MAX_INSTANCE_LEN: usize = 64;
/// Clients one instance lists for one user. A user has at most `--max-streams-per-user`
/// streams per instance (16 by default), so this cuts the list only where that flag is
/// raised past it; `streams` still counts every stream.
pub(crate) const MAX_CLIENTS_PER_INSTANCE: usize = 256;
/// Clients one answer lists at most (oldest first), whatever the number of instances, so
/// that the NATS answer stays far below NATS's 1 MB payload limit.
pub(crate) const MAX_CLIENTS: usize = 1024;
/// Largest count reply read: [`MAX_CLIENTS_PER_INSTANCE`] entries of at most ~170 bytes.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Latest `since` accepted from a peer (the end of year 9999, in ms): RFC 3339 has four
/// digits for the year.
const MAX_SINCE_MS: u64 = 253_402_300_799_999;
/// A peer that missed this many queries in a row is not waited for: a query then ends as
/// soon as the peers that do answer have, instead of always taking [`GATHER_TIMEOUT`].
const MAX_MISSED: u32 = 2;
/// Once every trusted peer answered, how long the others still have.
const SUSPECT_GRACE: Duration = Duration::from_millis(20);
/// `realtime.presence.*` requests answered at the same time; more wait their turn.
const MAX_CONCURRENT_REQUESTS: usize = 64;

/// The answer of a presence query (HTTP and NATS alike).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PresenceInfo {
    pub(crate) user_id: String,
    pub(crate) connected: bool,
    pub(crate) streams: u64,
    /// Who holds the streams, oldest first, at most [`MAX_CLIENTS`].
    pub(crate) clients: Vec<ClientInfo>,
}

/// One open stream in a presence answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientInfo {
    /// The stream's `clientId` (given, or made up by the bridge).
    pub(crate) id: String,
    /// The instance serving it.
    pub(crate) instance: String,
    /// When it opened, RFC 3339 UTC with milliseconds.
    pub(crate) since: String,
}

/// An instance's answer to `_RB.presence.count.<user>`.
#[derive(Debug, Serialize, Deserialize)]
struct CountReply {
    instance: String,
    streams: u64,
    /// Absent from the replies of bridges that predate client ids: they list nobody.
    #[serde(default)]
    clients: Vec<PeerClient>,
}

/// A client in a count reply: the time as a number, so a reply cannot carry a malformed one.
#[derive(Debug, Serialize, Deserialize)]
struct PeerClient {
    /// Validated on the way in: a bad id makes the whole reply junk.
    id: ClientId,
    /// Unix time in milliseconds.
    since: u64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `since` as the answer writes it; `None` past what RFC 3339 can say.
fn rfc3339_ms(ms: u64) -> Option<String> {
    if ms > MAX_SINCE_MS {
        return None;
    }
    let t = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// Oldest first (then by instance and id, so answers are stable), at most [`MAX_CLIENTS`].
fn sort_clients(clients: &mut Vec<(u64, ClientInfo)>) {
    clients.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.instance.cmp(&y.instance)).then_with(|| x.id.cmp(&y.id)));
    clients.truncate(MAX_CLIENTS);
}

/// What we know of another instance.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Its last hello.
    seen: Instant,
    /// Queries in a row it did not answer (reset by any answer).
    missed: u32,
}

/// A valid instance id: short and from the token alphabet.
fn instance_id(raw: &[u8]) -> Option<&str> {
    if raw.is_empty() || raw.len() > MAX_INSTANCE_LEN || !raw.iter().all(|&b| realtime_bridge_wire::is_token_byte(b)) {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

/// Whether the bridge may answer a service's request on `reply`. The requester picks the
/// reply subject, and the answer goes out with the bridge's own NATS permissions: a reply
/// subject naming a JetStream API (`$JS.API.STREAM.PURGE.REALTIME`, say), the bridges' own
/// subjects, or a subject that reaches users' streams would have the bridge do what the
/// requester may not. No inbox looks like these.
pub(crate) fn answerable(reply: &str) -> bool {
    const RESERVED: [&str; 6] = [
        "$",
        "_RB.",
        subject::REPUBLISH_PREFIX,
        subject::USER_PREFIX,
        subject::BROADCAST_PREFIX,
        subject::SERVICE_PREFIX,
    ];
    !RESERVED.iter().any(|p| reply.starts_with(p))
}

/// Presence service of one instance.
#[derive(Debug)]
pub(crate) struct Presence {
    client: async_nats::Client,
    hub: Arc<Hub>,
    /// Random per process, so a restarted instance is a new peer.
    instance: String,
    /// Other instances and when we last heard from them.
    peers: Mutex<HashMap<String, Peer>>,
}

impl Presence {
    pub(crate) fn new(client: async_nats::Client, hub: Arc<Hub>) -> Arc<Self> {
        let instance = client.new_inbox().rsplit('.').next().unwrap_or("rb").to_owned();
        Arc::new(Self { client, hub, instance, peers: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Subscribes and starts the background tasks; they end when the client closes.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<Vec<JoinHandle<()>>, async_nats::SubscribeError> {
        let mut hello = self.client.subscribe(HELLO).await?;
        let mut bye = self.client.subscribe(BYE).await?;
        let mut count = self.client.subscribe(format!("{COUNT_PREFIX}*")).await?;
        let mut requests = self.client.queue_subscribe(subject::presence_request_wildcard(), QUEUE.to_owned()).await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), crate::nats::round_trip(&self.client)).await;

        let mut tasks = Vec::new();
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = hello.next().await {
                let Some(peer) = instance_id(&msg.payload) else { continue };
                if peer == me.instance {
                    continue;
                }
                let new = {
                    let mut peers = me.lock_peers();
                    let full = peers.len() >= MAX_PEERS;
                    match peers.get_mut(peer) {
                        Some(p) => {
                            p.seen = Instant::now();
                            false
                        }
                        None if !full => {
                            peers.insert(peer.to_owned(), Peer { seen: Instant::now(), missed: 0 });
                            true
                        }
                        None => {
                            tracing::debug!("presence: peer list full; hello ignored");
                            false
                        }
                    }
                };
                if new {
                    // Answer a newcomer at once so it need not wait for our next hello.
                    me.announce().await;
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = bye.next().await {
                if let Some(peer) = instance_id(&msg.payload) {
                    if me.lock_peers().remove(peer).is_some() {
                        tracing::debug!(peer, "presence: a peer said bye; queries no longer wait for it");
                    }
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = count.next().await {
                let (Some(reply), Some(user)) = (msg.reply, msg.subject.strip_prefix(COUNT_PREFIX)) else { continue };
                let (streams, clients) = me.hub.local_clients(user, MAX_CLIENTS_PER_INSTANCE);
                let clients = clients.into_iter().map(|c| PeerClient { id: c.id, since: unix_ms(c.since) }).collect();
                let body = CountReply { instance: me.instance.clone(), streams: u64::from(streams), clients };
                if let Ok(json) = serde_json::to_vec(&body) {
                    let _ = me.client.publish(reply, json.into()).await;
                }
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            // Answered concurrently (a query may wait for a peer), at most so many at once.
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_REQUESTS));
            let mut running = tokio::task::JoinSet::new();
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply else { continue };
                if !answerable(&reply) {
                    tracing::debug!(reply = %reply, "presence request with a reserved reply subject ignored");
                    continue;
                }
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
                // Finished answers are collected as we go, so the set stays small.
                while running.try_join_next().is_some() {}
                let me = Arc::clone(&me);
                running.spawn(async move {
                    let _slot = slot;
                    let raw = subject::presence_request_user(&msg.subject).unwrap_or_default();
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
                });
            }
        }));
        let me = Arc::clone(self);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HELLO_EVERY);
            loop {
                tick.tick().await;
                me.announce().await;
                let now = Instant::now();
                me.lock_peers().retain(|_, p| now.duration_since(p.seen) < PEER_TTL);
            }
        }));
        Ok(tasks)
    }

    async fn announce(&self) {
        let _ = self.client.publish(HELLO, Bytes::from(self.instance.clone())).await;
    }

    /// Tells peers we are leaving (graceful shutdown).
    pub(crate) async fn leave(&self) {
        let _ = self.client.publish(BYE, Bytes::from(self.instance.clone())).await;
        let _ = tokio::time::timeout(Duration::from_millis(500), self.client.flush()).await;
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open streams of `user` over every live instance, and who holds them.
    pub(crate) async fn query(&self, user: &UserId) -> PresenceInfo {
        let (local, mine) = self.hub.local_clients(user.as_str(), MAX_CLIENTS_PER_INSTANCE);
        let local = u64::from(local);
        let mut clients: Vec<(u64, ClientInfo)> = mine
            .into_iter()
            .map(|c| {
                let ms = unix_ms(c.since);
                let since = humantime::format_rfc3339_millis(c.since).to_string();
                (ms, ClientInfo { id: c.id.into_string(), instance: self.instance.clone(), since })
            })
            .collect();
        // The peers to hear from: alive, and answering lately.
        let expected: Vec<String> = {
            let now = Instant::now();
            self.lock_peers()
                .iter()
                .filter(|(_, p)| now.duration_since(p.seen) < PEER_TTL)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let remote = if expected.is_empty() { 0 } else { self.gather(user, &expected, &mut clients).await };
        let streams = local.saturating_add(remote);
        sort_clients(&mut clients);
        PresenceInfo {
            user_id: user.to_string(),
            connected: streams > 0,
            streams,
            clients: clients.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// Sums the counts of `peers` for `user` and adds the clients they list to `clients`.
    /// Only known peers count, each once (at most [`MAX_CLIENTS_PER_INSTANCE`] clients each),
    /// and the sum saturates: a stray or hostile reply cannot inflate or wrap it.
    async fn gather(&self, user: &UserId, peers: &[String], clients: &mut Vec<(u64, ClientInfo)>) -> u64 {
        let inbox = self.client.new_inbox();
        let Ok(mut replies) = self.client.subscribe(inbox.clone()).await else { return 0 };
        if self.client.publish_with_reply(format!("{COUNT_PREFIX}{user}"), inbox, Bytes::new()).await.is_err() {
            return 0;
        }
        // Peers that missed recent queries are not waited for (a fake or dead peer would
        // otherwise make every query take the whole timeout); their answers still count if
        // they come before the others'.
        let trusted: Vec<&String> = {
            let known = self.lock_peers();
            peers.iter().filter(|id| known.get(*id).is_some_and(|p| p.missed < MAX_MISSED)).collect()
        };
        let mut seen: HashMap<String, (u64, Vec<PeerClient>)> = HashMap::new();
        let all_in = |seen: &HashMap<String, (u64, Vec<PeerClient>)>| trusted.iter().all(|id| seen.contains_key(*id));
        let mut deadline =
            tokio::time::Instant::now() + if trusted.is_empty() { SUSPECT_GRACE } else { GATHER_TIMEOUT };
        while seen.len() < peers.len() {
            match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(msg)) => {
                    if msg.payload.len() > MAX_REPLY_BYTES {
                        continue;
                    }
                    let Ok(r) = serde_json::from_slice::<CountReply>(&msg.payload) else { continue };
                    if peers.contains(&r.instance) {
                        let mut listed = r.clients;
                        listed.truncate(MAX_CLIENTS_PER_INSTANCE);
                        seen.insert(r.instance, (r.streams, listed));
                        if all_in(&seen) {
                            deadline = deadline.min(tokio::time::Instant::now() + SUSPECT_GRACE);
                        }
                    }
                }
                _ => break,
            }
        }
        // Who answered is trusted again; who did not is waited for less next time.
        let mut known = self.lock_peers();
        for id in peers {
            if let Some(p) = known.get_mut(id) {
                p.missed = if seen.contains_key(id) { 0 } else { p.missed.saturating_add(1) };
            }
        }
        drop(known);
        let mut sum = 0u64;
        for (instance, (streams, listed)) in seen {
            sum = sum.saturating_add(streams);
            for c in listed {
                if let Some(since) = rfc3339_ms(c.since) {
                    clients.push((c.since, ClientInfo { id: c.id.into_string(), instance: instance.clone(), since }));
                }
            }
        }
        sum
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn since_is_rfc3339_with_ms_and_bounded() {
        assert_eq!(rfc3339_ms(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
        assert_eq!(rfc3339_ms(1_764_620_400_123).as_deref(), Some("2025-12-01T20:20:00.123Z"));
        assert_eq!(rfc3339_ms(MAX_SINCE_MS).as_deref(), Some("9999-12-31T23:59:59.999Z"));
        // A peer's absurd time is dropped, never a panic.
        assert_eq!(rfc3339_ms(MAX_SINCE_MS + 1), None);
        assert_eq!(rfc3339_ms(u64::MAX), None);
    }

    #[test]
    fn clients_oldest_first_and_at_most_max() {
        let c = |ms: u64, instance: &str, id: &str| {
            (ms, ClientInfo { id: id.into(), instance: instance.into(), since: rfc3339_ms(ms).unwrap() })
        };
        let mut v = vec![c(3, "a", "x"), c(1, "b", "y"), c(1, "a", "z"), c(2, "a", "w")];
        sort_clients(&mut v);
        let order: Vec<&str> = v.iter().map(|(_, c)| c.id.as_str()).collect();
        assert_eq!(order, ["z", "y", "w", "x"]);
        let mut many: Vec<_> = (0..MAX_CLIENTS as u64 + 10).rev().map(|i| c(i, "a", "id")).collect();
        sort_clients(&mut many);
        assert_eq!(many.len(), MAX_CLIENTS);
        assert_eq!(many[0].0, 0, "the oldest are kept");
    }

    #[test]
    fn count_replies_without_clients_still_count() {
        let r: CountReply = serde_json::from_slice(br#"{"instance":"old","streams":3}"#).unwrap();
        assert_eq!((r.streams, r.clients.len()), (3, 0));
        // An invalid client id makes the whole reply junk.
        let bad = br#"{"instance":"x","streams":1,"clients":[{"id":"a.b","since":1}]}"#;
        assert!(serde_json::from_slice::<CountReply>(bad).is_err());
        let good = br#"{"instance":"x","streams":1,"clients":[{"id":"tab-1","since":1}]}"#;
        assert_eq!(serde_json::from_slice::<CountReply>(good).unwrap().clients[0].id.as_str(), "tab-1");
    }
}
