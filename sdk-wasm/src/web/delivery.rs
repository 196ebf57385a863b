//! From the response body to the callbacks: chunks into the demux, frames into parsed
//! envelopes, each to the listeners it is for, once (docs/protocol.md §6.2).

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Reflect, Uint8Array, JSON};
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

/// Reads chunks until the stream ends, fails, is aborted, or stays silent for longer than
/// `heartbeat_ms` (0 or less: no limit). Returns the reason of the bridge's `end`, if it
/// sent one.
///
/// The body is piped into a sink whose `write` is called by the browser for each chunk: one
/// promise for the whole stream, where a `reader.read()` loop costs a promise, a Rust future
/// and two closures per chunk (most of the main-thread time when events come one by one).
pub(super) async fn read_stream(
    conn: &Rc<Connection>,
    body: &ReadableStream,
    ctrl: &AbortController,
    heartbeat_ms: f64,
) -> Option<EndReason> {
    let watchdog = (heartbeat_ms > 0.0).then(|| Watchdog::start(heartbeat_ms, ctrl));
    let end = Rc::new(Cell::new(None));
    let (c, e, abort) = (Rc::clone(conn), Rc::clone(&end), ctrl.clone());
    let chunks = watchdog.as_ref().map(Watchdog::chunks);
    let write = Closure::<dyn FnMut(JsValue)>::new(move |chunk: JsValue| {
        if let Some(n) = &chunks {
            n.set(n.get().wrapping_add(1));
        }
        // A body's chunks are Uint8Arrays (Fetch standard): read as one, not wrapped in a
        // new one (an allocation and a call out of WebAssembly per chunk).
        if let Some(reason) = deliver(&c, &chunk.unchecked_into::<Uint8Array>().to_vec()) {
            e.set(Some(reason));
        }
        // Closed, or the bridge said `end`: close our side now rather than wait for
        // the bridge's close (the reconnection need not wait for it).
        if e.get().is_some() || c.is_closed() {
            abort.abort();
        }
    });
    let sink = js_sys::Object::new();
    if Reflect::set(&sink, &JsValue::from_str("write"), write.as_ref()).is_err() {
        return None;
    }
    let Ok(dest) = WritableStream::new_with_underlying_sink(&sink) else { return None };
    // Ends when the body does, or rejects when it fails or is aborted: either way, done.
    let _ = JsFuture::from(body.pipe_to(&dest)).await;
    drop(write);
    if watchdog.as_ref().is_some_and(Watchdog::fired) {
        conn.report_error(&errors::heartbeat_timeout(heartbeat_ms));
    }
    end.get()
}

/// Parses `bytes`, de-duplicates, and calls each target's callback. Returns the reason of
/// an `end` frame among them (for the connection only: never handed to a callback).
fn deliver(conn: &Connection, bytes: &[u8]) -> Option<EndReason> {
    let mut end = None;
    let mut calls: Vec<(ListenerId, FrameKind, JsValue)> = Vec::new();
    let mut bad: Vec<JsValue> = Vec::new();
    {
        let mut st = conn.state.borrow_mut();
        let mut frames = Vec::new();
        st.demux.push(bytes, &mut frames);
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
    end
}
