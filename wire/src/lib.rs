//! The Realtime Bridge wire format, in one place.
//!
//! The server turns NATS subjects `user.<id>.<event>` and `broadcast.<event>`
//! into per-user Server-Sent-Events streams; the WASM SDK parses those streams
//! in the browser; the benchmarks do both. All three depend on this crate so
//! that the two ends of the wire cannot drift apart.
//!
//! * [`ids`] — validated [`UserId`] / [`EventName`] tokens. Because a token can
//!   only contain `A-Z a-z 0-9 _ -`, it can be spliced into a NATS subject
//!   without ever becoming a wildcard (`*`, `>`) or an extra level (`.`).
//! * [`subject`] — building and parsing NATS subjects.
//! * [`route`] — the HTTP path of a stream.
//! * [`sse`] — writing SSE frames (server side).
//! * [`parser`] — an incremental SSE parser following the WHATWG HTML
//!   "Server-sent events" interpretation rules (client side).
//!
//! The library has no dependency (only an optional `serde` feature), uses no
//! `unsafe`, no clock and no threads, so it builds for `wasm32-unknown-unknown`.
//!
//! ```
//! use realtime_bridge_wire::{parser::SseParser, sse, subject, EventName, UserId};
//!
//! let user = UserId::parse("42")?;
//! let event = EventName::parse("message_new")?;
//! assert_eq!(subject::user_subject(&user, &event), "user.42.message_new");
//!
//! let mut frame = Vec::new();
//! sse::write_event(&mut frame, Some("1"), Some(event.as_str()), "hi");
//!
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//! parser.push(&frame, &mut events);
//! assert_eq!(events[0].event, "message_new");
//! assert_eq!(events[0].data, "hi");
//! # Ok::<(), realtime_bridge_wire::IdError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cursor;
pub mod ids;
pub mod parser;
pub mod route;
pub mod sse;
pub mod subject;

pub use ids::{
    is_token_byte, parse_event_list, validate_token, ClientId, EventName, IdError, UserId, MAX_TOKEN_LEN,
    RESERVED_EVENT_NAMES,
};
pub use parser::{SseEvent, SseParser};
pub use subject::Target;
