//! Realtime Bridge: services publish JSON to NATS subjects `user.<id>.<event>` or
//! `broadcast.<event>`; the bridge serves each user one authenticated Server-Sent-Events
//! stream (`GET /v1/users/{userId}/events`).
//!
//! The binary is a thin shell over this library: [`server::run`] takes a bound listener,
//! a [`server::Config`] and a shutdown future, so tests run the real server in-process.

pub mod auth;
pub mod commands;
pub mod config;
pub mod conn;
pub mod error;
pub mod frame;
pub mod history;
pub mod http;
pub mod hub;
pub mod jwks;
pub mod limits;
pub mod metrics;
pub mod nats;
pub mod presence;
pub mod ring;
pub mod server;
pub mod stall;
pub mod stream;

pub use server::{run, shutdown_signal, Bridge, Config, ConfigError, ServerError};
