//! Publishes events to the users of [Realtime Bridge] from a Rust service, over NATS.
//!
//! The bridge turns NATS subjects into per-user Server-Sent-Events streams. This crate is the
//! service side: [`RealtimeService`] sends an event to one user, to several, or to everyone,
//! and asks which streams a user has open. It is the Rust member of a family of libraries
//! (TypeScript, Python) that share one contract, docs/protocol.md §1.7: the same methods,
//! options, defaults and error codes ([`Error::code`]).
//!
//! Why a library rather than `client.publish("user.42.x", ...)`:
//!
//! - **Nothing is lost silently.** When the bridge keeps history (JetStream), each message is
//!   published through JetStream and a send resolves only once it is stored; a lost
//!   acknowledgement is retried with the same `Nats-Msg-Id`, so it is stored once. A plain
//!   core publish in a flood can be dropped without anyone knowing.
//! - **Bounded.** At most [`Options::max_in_flight`] messages wait for their acknowledgement
//!   at once; more sends wait for a slot, so a flood slows down instead of filling memory.
//! - **Checked inputs.** User ids and event names are checked with the bridge's own grammar
//!   (the wire crate's [`UserId`](realtime_bridge_wire::UserId) and
//!   [`EventName`](realtime_bridge_wire::EventName)), and data against the bridge's size
//!   limit, before anything is sent: an event the bridge would drop is an error here.
//! - **The right mode.** [`Mode::Auto`] publishes through JetStream when the bridge's stream
//!   exists and with core NATS when it runs live, and follows a bridge that turns history on
//!   or off.
//!
//! ```no_run
//! use realtime_bridge_producer::{RealtimeService, SendOptions};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Message<'a> {
//!     text: &'a str,
//! }
//!
//! # async fn demo() -> Result<(), realtime_bridge_producer::Error> {
//! let rt = RealtimeService::connect("nats://127.0.0.1:4222").await?;
//! rt.send_event_to_user("42", "message_new", &Message { text: "hi" }).await?;
//! // With an id of your own, a retried operation is delivered once.
//! rt.send_event_to_user_with("42", "order_paid", &serde_json::json!({"order": 7}), &SendOptions::msg_id("order-7-paid"))
//!     .await?;
//! rt.send_event_to_users(["42", "43"], "typing_start", &serde_json::json!({"conversationId": "c1"})).await?;
//! rt.broadcast_event("maintenance", &"at 22:00 UTC").await?;
//! if rt.is_user_connected("42").await? {
//!     println!("42 has tabs open: {:?}", rt.get_connected_clients("42").await?);
//! }
//! match rt.send_event_to_user("4 2", "x", &1).await {
//!     Err(e) => assert_eq!(e.code(), "invalid_user_id"),
//!     Ok(()) => unreachable!(),
//! }
//! rt.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! [Realtime Bridge]: https://github.com/realtime-bridge/realtime-bridge

// A library's public items are its documentation: each says why it exists.
#![warn(missing_docs)]

mod error;
mod options;
mod presence;
mod service;

pub use error::Error;
pub use options::{Mode, Options, SendOptions};
pub use presence::{Presence, PresenceClient};
pub use realtime_bridge_wire::{EventName, IdError, UserId};
pub use service::RealtimeService;

/// The NATS client this crate is built on, re-exported so a service can open its connection
/// ([`async_nats::ConnectOptions`]: credentials, TLS) with the very version the library takes
/// in [`RealtimeService::with_client`] and [`RealtimeService::connect_with`].
pub use async_nats;
