//! What `subscribe` reads from its arguments: typed getters over `Reflect`, and the options
//! parsed once into plain Rust values.
//!
//! Reading is lenient where it always was: an optional option that is missing, `null` or of
//! another type than its declaration in the `.d.ts` counts as not given (its default
//! applies), and a getter that throws counts as missing. Only what `subscribe` cannot do
//! without (the url, valid event names) makes it throw.

use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::errors;
use crate::backoff::Backoff;

/// Why a typed getter gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalid {
    /// `undefined` or `null`, or nothing to read it from (not an object; a throwing getter).
    Missing,
    /// Present, but not of the type asked for.
    WrongType,
}

/// `obj[key]`: `undefined` when `obj` is not an object or the read throws.
pub(super) fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn present(obj: &JsValue, key: &str) -> Result<JsValue, Invalid> {
    let v = get(obj, key);
    if v.is_undefined() || v.is_null() {
        Err(Invalid::Missing)
    } else {
        Ok(v)
    }
}

/// `obj[key]` as a string.
pub(super) fn get_string(obj: &JsValue, key: &str) -> Result<String, Invalid> {
    present(obj, key)?.as_string().ok_or(Invalid::WrongType)
}

/// `obj[key]` as a number.
pub(super) fn get_number(obj: &JsValue, key: &str) -> Result<f64, Invalid> {
    present(obj, key)?.as_f64().ok_or(Invalid::WrongType)
}

/// `obj[key]` as a function.
pub(super) fn get_function(obj: &JsValue, key: &str) -> Result<Function, Invalid> {
    present(obj, key)?.dyn_into::<Function>().map_err(|_| Invalid::WrongType)
}

/// `events`: `null`/`undefined` for every event, else an array of names (validated later
/// by `demux::parse_filter`).
pub(super) fn event_names(events: &JsValue) -> Result<Option<Vec<String>>, JsValue> {
    if events.is_null() || events.is_undefined() {
        return Ok(None);
    }
    if !Array::is_array(events) {
        return Err(errors::events_not_an_array());
    }
    let mut names = Vec::new();
    for item in events.unchecked_ref::<Array>().iter() {
        names.push(item.as_string().ok_or_else(errors::event_name_not_a_string)?);
    }
    Ok(Some(names))
}

/// The callbacks of one `subscribe` call (every call has its own).
#[derive(Debug)]
pub(super) struct Callbacks {
    pub(super) on_status: Option<Function>,
    pub(super) on_error: Option<Function>,
    pub(super) on_reset: Option<Function>,
}

/// What every `subscribe` call reads: where to connect, and its own callbacks.
#[derive(Debug)]
pub(super) struct SubscribeOptions {
    /// `options.url`, not empty.
    pub(super) url: String,
    pub(super) callbacks: Callbacks,
}

impl SubscribeOptions {
    /// Throws (a `TypeError`) only without a url.
    pub(super) fn parse(options: &JsValue) -> Result<Self, JsValue> {
        let url = get_string(options, "url").ok().filter(|u| !u.is_empty()).ok_or_else(errors::no_url)?;
        Ok(Self {
            url,
            callbacks: Callbacks {
                on_status: get_function(options, "onStatus").ok(),
                on_error: get_function(options, "onError").ok(),
                on_reset: get_function(options, "onReset").ok(),
            },
        })
    }
}

/// What only the call that opens a connection reads: later calls for the same url and user
/// join that connection as it is (docs/protocol.md §6.3).
#[derive(Debug)]
pub(super) struct ConnectionOptions {
    pub(super) backoff: Backoff,
    /// `lastEventId`: where to resume from.
    pub(super) last_event_id: Option<String>,
    /// `token`, not empty.
    pub(super) token: Option<String>,
    pub(super) get_token: Option<Function>,
    /// `heartbeatTimeoutMs`; 0 or less: no watchdog.
    pub(super) heartbeat_ms: f64,
    /// `closeWhenHidden`: no stream while the page is hidden.
    pub(super) close_when_hidden: bool,
}

/// The heartbeat timeout when none is given (docs/protocol.md §6.1).
const DEFAULT_HEARTBEAT_MS: f64 = 45_000.0;

impl ConnectionOptions {
    pub(super) fn parse(options: &JsValue) -> Self {
        let bo = get(options, "backoff");
        let d = Backoff::default();
        let backoff = Backoff {
            initial_ms: get_number(&bo, "initialMs").unwrap_or(d.initial_ms),
            max_ms: get_number(&bo, "maxMs").unwrap_or(d.max_ms),
            multiplier: get_number(&bo, "multiplier").unwrap_or(d.multiplier),
            jitter: get_number(&bo, "jitter").unwrap_or(d.jitter),
        }
        .sanitized();
        Self {
            backoff,
            last_event_id: get_string(options, "lastEventId").ok(),
            token: get_string(options, "token").ok().filter(|t| !t.is_empty()),
            get_token: get_function(options, "getToken").ok(),
            heartbeat_ms: get_number(options, "heartbeatTimeoutMs").unwrap_or(DEFAULT_HEARTBEAT_MS),
            close_when_hidden: get(options, "closeWhenHidden").is_truthy(),
        }
    }
}
