//! The library's errors, each with the stable code of docs/protocol.md §1.7.

use std::time::Duration;

use realtime_bridge_wire::IdError;

/// Why a call failed. Every variant maps to one of the codes the producer libraries share
/// ([`Error::code`]), so a service can branch on the code whatever the language of the
/// library, and log the [`Display`](std::fmt::Display) text, which names the input or the
/// subject concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A user id that is not a token (1 to 128 characters of `A-Z a-z 0-9 _ -`). Nothing
    /// was sent.
    #[error("invalid user id {user_id:?}: it {reason}")]
    InvalidUserId {
        /// The refused input as given, so the caller can find it in a list.
        user_id: String,
        /// Which rule it breaks.
        reason: IdError,
    },

    /// An event name that is not a token. Nothing was sent.
    #[error("invalid event name {event:?}: it {reason}")]
    InvalidEventName {
        /// The refused input as given.
        event: String,
        /// Which rule it breaks.
        reason: IdError,
    },

    /// `end` or `reset`: the names of the stream's own control frames, which the bridge never
    /// delivers from a producer. Nothing was sent.
    #[error("event name {event:?} is reserved for the stream's control frames (end, reset): the bridge would drop it")]
    ReservedEvent {
        /// The refused name.
        event: String,
    },

    /// The data did not serialise to JSON (a `Serialize` implementation failed, or a map with
    /// keys JSON cannot have). Nothing was sent.
    #[error("data does not serialise to one JSON value: {0}")]
    InvalidData(#[source] serde_json::Error),

    /// The serialised data is larger than [`Options::max_event_bytes`](crate::Options):
    /// the bridge would drop it. Nothing was sent.
    #[error("data is {size} bytes of JSON, over max_event_bytes ({max}): the bridge would drop it")]
    TooLarge {
        /// Size of the serialised data, in bytes.
        size: usize,
        /// The limit it broke.
        max: usize,
    },

    /// A message id that cannot be a `Nats-Msg-Id` header value: empty, or with a control
    /// character. Nothing was sent.
    #[error("invalid msg_id {msg_id:?}: it must be non-empty, without control characters (it travels as a NATS header value)")]
    InvalidMsgId {
        /// The refused id as given.
        msg_id: String,
    },

    /// NATS or JetStream cannot take the message: not reachable, the stream missing in
    /// `jetstream` mode, or an error answer from JetStream (whose description is in
    /// `reason`). Retrying later may work; retrying at once rarely does.
    #[error("{reason}")]
    Unavailable {
        /// What failed and why, in words a person can act on.
        reason: String,
    },

    /// A send was not acknowledged within [`Options::publish_timeout`](crate::Options), or a
    /// flush was not confirmed in time. The message may still have been stored: sending it
    /// again with the same `msg_id` within the duplicate window stores it once.
    #[error("{what} not confirmed within {after:?}")]
    Timeout {
        /// What was waited for (a subject, or the flush).
        what: String,
        /// How long it waited.
        after: Duration,
    },

    /// No bridge answered a presence request: none runs on this NATS, or none answered in
    /// [`Options::presence_timeout`](crate::Options). A service cannot tell this from
    /// "nobody is connected", so it is an error and not an empty answer.
    #[error("no bridge answered the presence request for user {user_id:?}: {reason}")]
    NoBridge {
        /// The user asked about.
        user_id: String,
        /// No responders, or timed out.
        reason: String,
    },

    /// The service was closed: it takes no new calls.
    #[error("the realtime service is closed")]
    Closed,
}

impl Error {
    /// The shared code of docs/protocol.md §1.7: `invalid_user_id`, `invalid_event_name`,
    /// `reserved_event`, `invalid_data`, `too_large`, `unavailable`, `timeout`, `no_bridge`,
    /// `closed`, `invalid_msg_id`.
    ///
    /// ```
    /// use realtime_bridge_producer::Error;
    /// assert_eq!(Error::Closed.code(), "closed");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidUserId { .. } => "invalid_user_id",
            Error::InvalidEventName { .. } => "invalid_event_name",
            Error::ReservedEvent { .. } => "reserved_event",
            Error::InvalidData(_) => "invalid_data",
            Error::TooLarge { .. } => "too_large",
            Error::InvalidMsgId { .. } => "invalid_msg_id",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::NoBridge { .. } => "no_bridge",
            Error::Closed => "closed",
        }
    }

    /// Whether the call was refused before anything was sent (a bad input): retrying the
    /// same call can never succeed.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidUserId { .. }
                | Error::InvalidEventName { .. }
                | Error::ReservedEvent { .. }
                | Error::InvalidData(_)
                | Error::TooLarge { .. }
                | Error::InvalidMsgId { .. }
        )
    }

    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Error::Unavailable { reason: reason.into() }
    }
}
