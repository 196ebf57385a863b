//! Realtime Bridge client SDK, compiled to WebAssembly for browsers and Node 18+.
//!
//! `subscribe(userId, events, callback, options)` opens (or joins) one `fetch`
//! stream per url + user, parses it with the wire crate's SSE parser, and calls
//! the callback with each envelope `{id, event, data, timestamp, userId?}` as
//! parsed by the JavaScript engine's own `JSON.parse`. It reconnects with
//! exponential backoff and jitter (at once when the bridge ends the stream
//! with an `end` frame), resumes with `Last-Event-ID`, and never
//! delivers the same envelope id twice (docs/protocol.md §6).
//!
//! * [`backoff`] and [`demux`] are plain Rust (tested natively): reconnection
//!   delays, listener registry, routing, cursor tracking and de-duplication.
//! * `web` (wasm32 only) is the JavaScript glue: the exported `subscribe` /
//!   `Subscription`, and per shared connection one task (the reconnect loop: fetch,
//!   stream reader, timers) that the subscriptions and the `online` event drive
//!   by commands.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod demux;

#[cfg(target_arch = "wasm32")]
pub mod web;
