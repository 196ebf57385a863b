//! What a [`RealtimeService`](crate::RealtimeService) is configured with, and per-send options.

use std::time::Duration;

/// How events are published (docs/protocol.md §1.7, "Mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Looks the stream up at connect: JetStream when it exists, core NATS otherwise. Follows
    /// the bridge both ways: while in core mode it looks again (at most every
    /// [`Options::auto_recheck`]), so a bridge that turns history on later is followed; while
    /// in JetStream mode, a publish that gets "no responders" or no acknowledgement within
    /// [`Options::ack_timeout`] makes it look the stream up (one lookup at a time, shared by
    /// concurrent sends; after "no responders" at most one a second). If JetStream answers
    /// that the stream does not exist (history turned off) it switches to core mode. The
    /// message itself is then published with core NATS after "no responders" (nobody got
    /// it), and counted as sent after a lost acknowledgement: the attempt went out as a
    /// plain message to the subject's subscribers (a live bridge delivers it), so sending it
    /// again would deliver it twice. A lookup without an answer, or another error answer,
    /// changes nothing: the send keeps retrying. The right choice unless you know the
    /// bridge's mode.
    #[default]
    Auto,
    /// Acknowledged publishing only: connecting fails with `unavailable` when the stream does
    /// not exist. For services that must never fall back to at-most-once delivery.
    JetStream,
    /// Plain core-NATS publishes, never JetStream: live-mode bridges (at most once).
    Core,
}

impl Mode {
    /// `auto`, `jetstream` or `core`: the names the other languages' libraries use.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::JetStream => "jetstream",
            Mode::Core => "core",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of a [`RealtimeService`](crate::RealtimeService). Build one with
/// `Options::default()` and the `with_*` methods; the defaults are those of
/// docs/protocol.md §1.7 and match a bridge run with its defaults.
///
/// ```
/// use std::time::Duration;
/// use realtime_bridge_producer::{Mode, Options};
/// let o = Options::default().with_mode(Mode::JetStream).with_max_in_flight(1024);
/// assert_eq!(o.ack_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Which way to publish; [`Mode::Auto`] by default.
    pub mode: Mode,
    /// The bridge's JetStream stream (`--stream-name`, default `REALTIME`): the one looked up
    /// to choose the mode.
    pub stream: String,
    /// Messages waiting for their JetStream acknowledgement at once, per service (default
    /// 256). A send past it waits for a slot, so a flood slows down instead of queueing
    /// without bound in memory.
    pub max_in_flight: usize,
    /// How long one publish attempt waits for its acknowledgement before it is sent again
    /// with the same id (default 5 s); in auto mode it also makes the service look the
    /// stream up ([`Mode::Auto`]). Also bounds the stream lookup and a core flush.
    pub ack_timeout: Duration,
    /// How long a send may take in all, retries and waiting for a window slot included
    /// (default 30 s). Kept under JetStream's 2-minute duplicate window, so that every
    /// retry of a message is still recognised as a duplicate.
    pub publish_timeout: Duration,
    /// How long a presence request waits for a bridge (default 2 s; bridges answer within
    /// about 750 ms).
    pub presence_timeout: Duration,
    /// Largest serialised `data`, in bytes (default 262144, the bridge's default
    /// `--max-event-bytes`). Larger data is refused before sending, because the bridge would
    /// drop it silently; set the bridge's value if you changed it.
    pub max_event_bytes: usize,
    /// In [`Mode::Auto`], the shortest time between two stream lookups while publishing in
    /// core mode (default 30 s). Bounds the extra requests of a service whose bridge runs
    /// without history; tests shorten it.
    pub auto_recheck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Auto,
            stream: "REALTIME".to_owned(),
            max_in_flight: 256,
            ack_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(30),
            presence_timeout: Duration::from_secs(2),
            max_event_bytes: 262_144,
            auto_recheck: Duration::from_secs(30),
        }
    }
}

impl Options {
    /// Sets [`Options::mode`].
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`Options::stream`].
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// Sets [`Options::max_in_flight`] (at least 1).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Sets [`Options::ack_timeout`].
    pub fn with_ack_timeout(mut self, d: Duration) -> Self {
        self.ack_timeout = d;
        self
    }

    /// Sets [`Options::publish_timeout`].
    pub fn with_publish_timeout(mut self, d: Duration) -> Self {
        self.publish_timeout = d;
        self
    }

    /// Sets [`Options::presence_timeout`].
    pub fn with_presence_timeout(mut self, d: Duration) -> Self {
        self.presence_timeout = d;
        self
    }

    /// Sets [`Options::max_event_bytes`].
    pub fn with_max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n;
        self
    }

    /// Sets [`Options::auto_recheck`].
    pub fn with_auto_recheck(mut self, d: Duration) -> Self {
        self.auto_recheck = d;
        self
    }
}

/// Options of one send: the `_with` methods of
/// [`RealtimeService`](crate::RealtimeService) take it.
///
/// ```
/// use realtime_bridge_producer::SendOptions;
/// let o = SendOptions::msg_id("order-1234-paid");
/// assert_eq!(o.msg_id.as_deref(), Some("order-1234-paid"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// The message id (`Nats-Msg-Id`): JetStream stores a message whose id it saw within its
    /// duplicate window (2 minutes) once, so a service that retries a whole operation (after
    /// a crash, a timeout) delivers the event once. For several users each subject gets
    /// `<msg_id>:<subject>`. Without it the library makes up one id per message, which
    /// covers its own retries only.
    pub msg_id: Option<String>,
}

impl SendOptions {
    /// Options carrying `msg_id`.
    pub fn msg_id(id: impl Into<String>) -> Self {
        Self { msg_id: Some(id.into()) }
    }
}
