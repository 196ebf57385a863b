//! The errors the SDK throws or hands to `onError`, and their messages.
//!
//! * `subscribe` throws a `TypeError` for arguments it cannot use;
//! * a connection reports a `RealtimeError` (an `Error` with `status`, `code` and `final`,
//!   `RealtimeErrorLike` in the `.d.ts`) for what goes wrong while connected.
//!
//! Messages are built with `String` pushes, not `format!`: `core::fmt` costs kilobytes of
//! wasm.

use js_sys::Reflect;
use realtime_bridge_wire::IdError;
use wasm_bindgen::prelude::*;

use super::options;

fn type_error(msg: &str) -> JsValue {
    js_sys::TypeError::new(msg).into()
}

/// A `RealtimeError`: an `Error` with `status`, `code` and `final`.
fn realtime_error(msg: &str, status: Option<u16>, code: Option<&str>, is_final: bool) -> JsValue {
    let err = js_sys::Error::new(msg);
    err.set_name("RealtimeError");
    let v: JsValue = err.into();
    if let Some(s) = status {
        let _ = Reflect::set(&v, &"status".into(), &JsValue::from(s));
    }
    if let Some(c) = code {
        let _ = Reflect::set(&v, &"code".into(), &JsValue::from_str(c));
    }
    let _ = Reflect::set(&v, &"final".into(), &JsValue::from_bool(is_final));
    v
}

/// Appends `n` in decimal (no `core::fmt`, which costs kilobytes of wasm), with the wire
/// crate's digit writer.
fn push_u64(s: &mut String, n: u64) {
    let mut digits = Vec::with_capacity(20);
    realtime_bridge_wire::sse::push_u64(&mut digits, n);
    // Only ASCII digits were written.
    s.extend(digits.iter().map(|&b| char::from(b)));
}

/// The wire crate's `IdError` text, without `core::fmt` (its `{:?}` of a char alone
/// pulls in Unicode tables).
fn push_id_error(s: &mut String, e: &IdError) {
    match e {
        IdError::Empty => s.push_str("is empty"),
        IdError::TooLong { len } => {
            s.push_str("is ");
            push_u64(s, *len as u64);
            s.push_str(" characters long (at most 128 allowed)");
        }
        IdError::InvalidChar { ch, index } => {
            s.push_str("contains '");
            s.push(*ch);
            s.push_str("' at position ");
            push_u64(s, *index as u64);
            s.push_str(" (allowed: A-Z a-z 0-9 _ -)");
        }
    }
}

/// The text of a thrown value: a string as is, else its `message`.
fn error_text(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    options::get_string(e, "message").unwrap_or_else(|_| String::from("unknown error"))
}

// Thrown by `subscribe` (TypeError).

pub(super) fn invalid_user_id(e: &IdError) -> JsValue {
    let mut m = String::from("realtime-bridge: invalid user id: it ");
    push_id_error(&mut m, e);
    type_error(&m)
}

pub(super) fn event_name_not_a_string() -> JsValue {
    type_error("realtime-bridge: event names must be strings")
}

pub(super) fn events_not_an_array() -> JsValue {
    type_error("realtime-bridge: events must be an array of event names, or null for all")
}

pub(super) fn invalid_event_name(name: &str, e: &IdError) -> JsValue {
    let mut m = String::from("realtime-bridge: invalid event name '");
    m.push_str(name);
    m.push_str("' ");
    push_id_error(&mut m, e);
    type_error(&m)
}

pub(super) fn no_url() -> JsValue {
    type_error("realtime-bridge: no url: pass options.url or call configure({ url })")
}

// Given to `onError` (RealtimeError).

/// `getToken()` threw or its promise rejected: `token_error`, retried; or, when `signed_out`
/// (an `UnauthorizedError`), `unauthenticated`, final.
pub(super) fn token_error(thrown: &JsValue, signed_out: bool) -> JsValue {
    let mut m = String::from("getToken failed: ");
    m.push_str(&error_text(thrown));
    realtime_error(&m, None, Some(if signed_out { "unauthenticated" } else { "token_error" }), signed_out)
}

/// `fetch` rejected (not because we aborted it).
pub(super) fn network_error(thrown: &JsValue) -> JsValue {
    let mut m = String::from("cannot reach the bridge: ");
    m.push_str(&error_text(thrown));
    realtime_error(&m, None, Some("network_error"), false)
}

/// The bridge answered `status` (or 200 without an event stream), with the `error` and
/// `code` of its JSON body if it had one. `final`: 400 and 403 end the subscription.
pub(super) fn http_error(status: u16, message: Option<&str>, code: Option<&str>) -> JsValue {
    let mut m = String::from("the bridge answered ");
    push_u64(&mut m, u64::from(status));
    if let Some(msg) = message {
        m.push_str(": ");
        m.push_str(msg);
    } else if status == 200 {
        m.push_str(" without an event stream");
    }
    realtime_error(&m, Some(status), code, is_final_status(status))
}

/// 400 (a request this SDK cannot fix by retrying) and 403 (not allowed): the subscription is over.
pub(super) fn is_final_status(status: u16) -> bool {
    status == 400 || status == 403
}

/// An event whose `data` is not JSON.
pub(super) fn invalid_event(event: &str) -> JsValue {
    let mut m = String::from("the bridge sent an event whose data is not JSON (event '");
    m.push_str(event);
    m.push_str("')");
    realtime_error(&m, None, Some("invalid_event"), false)
}

/// No byte for `ms` (the watchdog cut the stream).
pub(super) fn heartbeat_timeout(ms: f64) -> JsValue {
    let mut m = String::from("no data from the bridge for ");
    push_u64(&mut m, ms as u64);
    m.push_str(" ms: reconnecting");
    realtime_error(&m, None, Some("heartbeat_timeout"), false)
}
