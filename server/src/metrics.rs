//! Prometheus metrics, exposed as text on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why an event was not delivered. Also the `reason` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// Payload is not one UTF-8 JSON value.
    InvalidJson,
    /// Payload larger than `--max-event-bytes`.
    TooLarge,
    /// Subject does not follow `user.<id>.<event>` / `broadcast.<event>` with valid tokens.
    InvalidSubject,
    /// A stream fell too far behind and was cut off; it missed these.
    SlowClient,
    /// A producer used a name the stream keeps for its control frames (`end`, `reset`).
    ReservedEvent,
    /// History mode: a re-published message whose sequence the history stream does not hold
    /// (published on `rt.>` by someone else than JetStream).
    Forged,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 6] =
        [Self::InvalidJson, Self::TooLarge, Self::InvalidSubject, Self::SlowClient, Self::ReservedEvent, Self::Forged];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::TooLarge => "too_large",
            Self::InvalidSubject => "invalid_subject",
            Self::SlowClient => "slow_client",
            Self::ReservedEvent => "reserved_event",
            Self::Forged => "forged",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// All metrics of one bridge process.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub open_streams: Gauge,
    pub connected_users: Gauge,
    /// One per frame handed to a stream (a broadcast to N streams counts N).
    pub events_delivered: Counter,
    /// Messages taken from NATS, before filtering (a broadcast counts once).
    pub events_received: Counter,
    dropped: Family<ReasonLabel, Counter>,
    streams_cut: Family<ReasonLabel, Counter>,
    /// `reset` frames sent: a cursor that could not be honoured, or a re-created history.
    streams_reset: Family<ReasonLabel, Counter>,
    pub nats_connected: Gauge,
    /// Successful (re)connections to NATS, the first one included.
    pub nats_connects: Counter,
    /// Losses of the NATS connection (the server cutting a slow consumer among them): each
    /// one makes history channels fill what was stored meanwhile.
    pub nats_disconnects: Counter,
    /// Messages the NATS client dropped because a subscription's buffer was full: the bridge
    /// was not keeping up with what NATS sent it.
    pub nats_slow_consumer: Counter,
    pub replayed_events: Counter,
    /// Connections being served (streams and every other request).
    pub open_connections: Gauge,
    /// Connections answered 503 at once because `--max-connections` was reached.
    pub connections_refused: Counter,
    /// Connections closed unanswered because the request head did not arrive in time: a slow
    /// or stuck client, or (in a reconnect storm) clients too busy to send it.
    pub head_timeouts: Counter,
    /// Batches of new subscriptions confirmed together (one round trip and, in history
    /// mode, one stream read each): far fewer than new users during a reconnect storm.
    pub confirmation_batches: Counter,
    /// Rate limit of "dropped" log lines: last log time per reason (ms since start).
    last_drop_log: [AtomicU64; DropReason::ALL.len()],
    started: Instant,
    /// Serialises encoding (the registry is not Sync-friendly for concurrent encodes).
    encode_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("realtime_bridge");
        let open_streams = Gauge::default();
        let connected_users = Gauge::default();
        let events_delivered = Counter::default();
        let events_received = Counter::default();
        let dropped = Family::<ReasonLabel, Counter>::default();
        let streams_cut = Family::<ReasonLabel, Counter>::default();
        let streams_reset = Family::<ReasonLabel, Counter>::default();
        let nats_connected = Gauge::default();
        let nats_connects = Counter::default();
        let nats_disconnects = Counter::default();
        let nats_slow_consumer = Counter::default();
        let replayed_events = Counter::default();
        let open_connections = Gauge::default();
        let connections_refused = Counter::default();
        let head_timeouts = Counter::default();
        let confirmation_batches = Counter::default();
        registry.register("open_streams", "SSE streams open on this instance", open_streams.clone());
        registry.register("connected_users", "Users with at least one open stream here", connected_users.clone());
        registry.register("events_delivered", "Event frames handed to SSE streams", events_delivered.clone());
        registry.register("events_received", "Messages received from NATS", events_received.clone());
        registry.register("events_dropped", "Events not delivered, by reason", dropped.clone());
        registry.register("streams_cut", "Streams closed by the bridge, by reason", streams_cut.clone());
        registry.register("streams_reset", "reset frames sent to streams, by reason", streams_reset.clone());
        registry.register("nats_connected", "1 while connected to NATS, else 0", nats_connected.clone());
        registry.register("nats_connects", "Successful connections to NATS, the first included", nats_connects.clone());
        registry.register("nats_disconnects", "Losses of the NATS connection", nats_disconnects.clone());
        registry.register(
            "nats_slow_consumer",
            "Slow-consumer events of the NATS client (a subscription's buffer was full and messages were dropped)",
            nats_slow_consumer.clone(),
        );
        registry.register("replayed_events", "Events replayed from history on resume", replayed_events.clone());
        registry.register("open_connections", "TCP connections being served", open_connections.clone());
        registry.register(
            "connections_refused",
            "Connections refused at once because --max-connections was reached",
            connections_refused.clone(),
        );
        registry.register(
            "head_timeouts",
            "Connections closed unanswered because the request head did not arrive in time",
            head_timeouts.clone(),
        );
        registry.register(
            "subscription_confirmation_batches",
            "Round trips (and history reads) that confirmed new subscriptions, each shared by every channel waiting",
            confirmation_batches.clone(),
        );
        // Make every reason visible at 0 so dashboards and alerts see the series from the start.
        for r in DropReason::ALL {
            let _ = dropped.get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        Self {
            registry,
            open_streams,
            connected_users,
            events_delivered,
            events_received,
            dropped,
            streams_cut,
            streams_reset,
            nats_connected,
            nats_connects,
            nats_disconnects,
            nats_slow_consumer,
            replayed_events,
            open_connections,
            connections_refused,
            head_timeouts,
            confirmation_batches,
            last_drop_log: Default::default(),
            started: Instant::now(),
            encode_lock: Mutex::new(()),
        }
    }

    /// Counts a dropped event; returns true when the caller should log it (at most once a second per reason).
    pub(crate) fn dropped(&self, reason: DropReason, n: u64) -> bool {
        self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc_by(n);
        let idx = DropReason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let last = self.last_drop_log[idx].load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= 1000)
            && self.last_drop_log[idx].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    pub(crate) fn stream_cut(&self, reason: &'static str) {
        self.streams_cut.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn stream_reset(&self, reason: &'static str) {
        self.streams_reset.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let _g = self.encode_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
