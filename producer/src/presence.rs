//! The presence answer (docs/protocol.md §4.2), as the bridges send it over NATS.

use serde::Deserialize;

/// Who is connected: the answer to `realtime.presence.<userId>`, summed over every bridge on
/// the same NATS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Presence {
    /// The user asked about, as the bridge echoes it.
    pub user_id: String,
    /// Whether the user has at least one open stream on any bridge.
    pub connected: bool,
    /// Open streams of the user, counted on every bridge (exact even when `clients` was
    /// cut short by the bridges' list limits).
    pub streams: u64,
    /// One entry per open stream, oldest first (bounded; see §4.2).
    #[serde(default)]
    pub clients: Vec<PresenceClient>,
}

/// One open stream of a user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PresenceClient {
    /// The stream's `clientId` (given by the client with `clientId=`, or made up by the
    /// bridge): what the original port's `getConnectedClients` returned.
    pub id: String,
    /// The bridge process serving it (a random id per process), to tell bridges apart.
    pub instance: String,
    /// When the stream opened (RFC 3339 UTC with milliseconds, that bridge's clock).
    pub since: String,
}

/// A bridge's error answer (an invalid user id; never sent for ids this library checked).
#[derive(Debug, Deserialize)]
pub(crate) struct PresenceError {
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
}
