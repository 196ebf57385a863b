//! Realtime Bridge: services publish JSON to NATS subjects `user.<id>.<event>` or
//! `broadcast.<event>`; the bridge serves each user one authenticated Server-Sent-Events
//! stream (`GET /v1/users/{userId}/events`).
//!
//! The binary is a thin shell over this library: [`run`] takes a bound listener, a
//! [`Config`] and a shutdown future, so tests run the real server in-process.
//!
//! # Layout
//!
//! By layer, outside in; docs/architecture.md follows an event and a stream request through
//! them. Modules in `code` without a link are internal.
//!
//! - process: `server` (start-up, accept loop, shutdown: [`Bridge`], [`run`]), [`cli`]
//!   (flags), [`config`] (the checked [`Config`]), [`limits`], [`commands`] (`send`,
//!   `token`, `listen`);
//! - connection: [`conn`] (one TCP connection; stream requests written without hyper),
//!   `stall` (hyper's write-stall guard);
//! - HTTP: `http` (the router), `error` (the one place core errors become HTTP answers),
//!   `metrics`; [`auth`] and [`jwks`] (tokens and keys) know nothing of HTTP;
//! - fan-out: `hub` (`mod.rs` the user registry, `channel.rs`, `live.rs`, `dispatch.rs` the
//!   shared subscription, `history_feed.rs` and `gap_fill.rs` the gap-free history feed),
//!   `ring` (bounded per-user rings), `frame` (validate and frame each message once);
//! - history: [`history`] (the history store, a JetStream stream);
//! - stream: `sse_body` (one SSE response body and its cursor decisions), `heartbeat` (one
//!   ticker, streams spread over the interval);
//! - cluster: `presence`, [`nats`] (the connections).
//!
//! Subjects, the stream's path and the SSE framing come from the `realtime-bridge-wire`
//! crate, never from a string written here.

// process
pub mod cli;
pub mod commands;
pub mod config;
pub mod limits;
mod server;

// connection
pub mod conn;
pub(crate) mod stall;

// HTTP
pub mod auth;
pub(crate) mod error;
pub(crate) mod http;
pub mod jwks;
pub(crate) mod metrics;

// fan-out and history
pub(crate) mod frame;
pub mod history;
pub(crate) mod hub;
pub(crate) mod ring;

// stream
pub(crate) mod heartbeat;
pub(crate) mod sse_body;

// cluster
pub mod nats;
pub(crate) mod presence;

pub use config::{Config, ConfigError};
pub use server::{bind, run, shutdown_signal, Bridge, ServerError};
