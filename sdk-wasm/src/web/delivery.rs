//! From the response body to the callbacks: chunks into the demux, frames into parsed
//! envelopes, each to the listeners it is for, once (docs/protocol.md §6.2).

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Promise, Reflect, Uint8Array, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStream, WritableStream};

use super::connection::Connection;
use super::errors;
use super::options;
use super::watchdog::Watchdog;
use crate::demux::{envelope_id, EndReason, FrameKind, ListenerId};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(value: &JsValue);
}

/// How long a stream being replaced is kept once the new one is open, at most: what it
/// still had in flight has come by then. (Closed sooner when an event came on both.)
const HANDOVER_GRACE_MS: f64 = 1000.0;

/// What reads a stream: the body's sink (its `write`) and the watchdog. For a stream being
/// replaced, owned by the connection's `OldStream` (dropped when it is closed; dropping a
/// closure from within its own call is deferred by wasm-bindgen to the call's end).
#[derive(Debug)]
pub(super) struct Reader {
    _write: Closure<dyn FnMut(JsValue)>,
    _watchdog: Option<Watchdog>,
}

/// How the read of a stream ended.
pub(super) enum Read {
    /// The stream ended (closed, failed, aborted, silent too long), with the reason of the
    /// bridge's `end` if it sent one.
    Done(Option<EndReason>),
    /// A grown filter asked for a new stream: this one goes on being read as the old one
    /// (the pipe is still running) by the reader returned, until closed.
    HandedOver(Reader),
}

/// Reads chunks until the stream ends, fails, is aborted, or stays silent for longer than
/// `heartbeat_ms` (0 or less: no limit), or until a hand-over.
///
/// The body is piped into a sink whose `write` is called by the browser for each chunk: one
/// promise for the whole stream, where a `reader.read()` loop costs a promise, a Rust future
/// and two closures per chunk (most of the main-thread time when events come one by one).
pub(super) async fn read_stream(
    conn: &Rc<Connection>,
    body: &ReadableStream,
    ctrl: &AbortController,
    heartbeat_ms: f64,
) -> Read {
    conn.last.set(js_sys::Date::now());
    let watchdog = (heartbeat_ms > 0.0).then(|| Watchdog::start(heartbeat_ms, ctrl, &conn.last));
    let end = Rc::new(Cell::new(None));
    // Set at a hand-over: this stream is the one being replaced.
    let is_old = Rc::new(Cell::new(false));
    let (c, e, o, abort) = (Rc::clone(conn), Rc::clone(&end), Rc::clone(&is_old), ctrl.clone());
    let write = Closure::<dyn FnMut(JsValue)>::new(move |chunk: JsValue| {
        let old = o.get();
        c.last.set(js_sys::Date::now());
        if chunk.is_object() {
            // A body's chunks are Uint8Arrays (Fetch standard): read as one, not wrapped in a
            // new one (an allocation and a call out of WebAssembly per chunk).
            let (reason, dup) = deliver(&c, &chunk.unchecked_ref::<Uint8Array>().to_vec(), old);
            if !old && reason.is_some() {
                e.set(reason);
            }
            // Closed, or the bridge said `end`: close our side now rather than wait for
            // the bridge's close (the reconnection need not wait for it).
            if e.get().is_some() || c.is_closed() {
                abort.abort();
            }
            // An event both streams carried: the old one has delivered everything it got
            // before the new one started, and the new one carries the rest (or, failing
            // that, once the new one has been open for a while).
            let due = c
                .old
                .borrow()
                .as_ref()
                .is_some_and(|o| o.since.get() > 0.0 && js_sys::Date::now() - o.since.get() >= HANDOVER_GRACE_MS);
            if dup || due {
                c.close_old();
            }
        }
    });
    let sink = js_sys::Object::new();
    if Reflect::set(&sink, &JsValue::from_str("write"), write.as_ref()).is_err() {
        return Read::Done(None);
    }
    let Ok(dest) = WritableStream::new_with_underlying_sink(&sink) else { return Read::Done(None) };
    // Ends when the body does, or rejects when it fails or is aborted: either way, done; or
    // resolves with `true` for a hand-over.
    let pipe = body.pipe_to(&dest);
    let raced = JsFuture::from(Promise::race(&Array::of2(&pipe, &conn.commands.handover()))).await;
    conn.commands.end_handover();
    if raced.is_ok_and(|v| v.is_truthy()) {
        is_old.set(true);
        return Read::HandedOver(Reader { _write: write, _watchdog: watchdog });
    }
    drop(write);
    if watchdog.as_ref().is_some_and(Watchdog::fired) {
        conn.report_error(&errors::heartbeat_timeout(heartbeat_ms));
    }
    Read::Done(end.get())
}

/// Parses `bytes` (of the old stream, if `old`), de-duplicates, and calls each target's
/// callback. Returns the reason of an `end` frame among them (for the connection only: never
/// handed to a callback), and whether an event was a duplicate.
fn deliver(conn: &Connection, bytes: &[u8], old: bool) -> (Option<EndReason>, bool) {
    let mut end = None;
    let mut dup = false;
    let mut calls: Vec<(ListenerId, FrameKind, JsValue)> = Vec::new();
    let mut bad: Vec<JsValue> = Vec::new();
    {
        let mut st = conn.state.borrow_mut();
        let mut frames = Vec::new();
        st.demux.push(bytes, old, &mut frames);
        for f in frames {
            if let FrameKind::End(reason) = f.kind {
                end = Some(reason);
                continue;
            }
            // The engine's own JSON.parse: no Rust JSON round trip.
            let Ok(value) = JSON::parse(&f.data) else {
                bad.push(errors::invalid_event(&f.event));
                continue;
            };
            // In frame order: a `reset` makes the ids delivered before it forgotten.
            let looked_up;
            let id = match f.kind {
                FrameKind::Event => match envelope_id(&f.data) {
                    Some(id) => Some(id),
                    None => {
                        looked_up = options::get_string(&value, "id").ok();
                        looked_up.as_deref()
                    }
                },
                _ => None,
            };
            if !st.demux.admit(f.kind, id) {
                dup = true;
                continue;
            }
            for t in f.targets {
                calls.push((t, f.kind, value.clone()));
            }
        }
    }
    for e in &bad {
        conn.report_error(e);
    }
    for (target, kind, value) in calls {
        // Looked up per call: an earlier callback may have closed this listener.
        let (cb, on_error) = {
            let st = conn.state.borrow();
            match st.listeners.iter().find(|l| l.id == target) {
                Some(l) => {
                    let cb = match kind {
                        FrameKind::Event => Some(l.callback.clone()),
                        FrameKind::Reset => l.on_reset.clone(),
                        FrameKind::End(_) => None,
                    };
                    (cb, l.on_error.clone())
                }
                None => (None, None),
            }
        };
        let Some(cb) = cb else { continue };
        if let Err(thrown) = cb.call1(&JsValue::NULL, &value) {
            // A throwing callback must not break the stream; surface it.
            match on_error {
                Some(f) => {
                    let _ = f.call1(&JsValue::NULL, &thrown);
                }
                None => console_error(&thrown),
            }
        }
    }
    (end, dup)
}
