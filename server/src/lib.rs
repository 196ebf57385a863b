//! Realtime Bridge: services publish JSON to NATS subjects `user.<id>.<event>` or
//! `broadcast.<event>`; the bridge serves each user one authenticated Server-Sent-Events
//! stream (`GET /v1/users/{userId}/events`).
//!
//! The binary is a thin shell over this library: [`run`] takes a bound listener, a
//! [`Config`] and a shutdown future, so tests run the real server in-process.
//!
//! # Layout
//!
//! By layer, outside in (docs/architecture.md has the life of an event through them):
//!
//! - process: `server` (start-up, accept loop, shutdown: [`Bridge`], [`run`]), [`cli`]
//!   (flags), [`config`] (the checked [`Config`]), [`limits`], [`commands`] (`send`,
//!   `token`, `listen`);
//! - connection: [`conn`] (one TCP connection; stream requests written without hyper),
//!   [`stall`] (hyper's write-stall guard);
//! - HTTP: `http` (the router), `error` (the one place core errors become HTTP answers),
//!   `metrics`; [`auth`] and [`jwks`] (tokens and keys) know nothing of HTTP;
//! - fan-out: [`hub`] (subscriptions and channels), [`ring`], [`frame`];
//! - history: [`history`] (JetStream);
//! - stream: [`sse_body`] (one SSE response body);
//! - cluster: [`presence`], [`nats`] (the connections).

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
pub(crate) mod sse_body;

// cluster
pub mod nats;
pub(crate) mod presence;

pub use config::{Config, ConfigError};
pub use server::{run, shutdown_signal, Bridge, ServerError};
