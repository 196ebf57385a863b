//! The heartbeat timeout: a stream silent for too long (not even a heartbeat) is aborted.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::AbortController;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
}

/// Aborts the request when no byte has come for `ms` (not even a heartbeat).
///
/// Events often arrive one per chunk: re-arming a timer for every chunk (a promise, a race
/// and two timer calls each) cost more main-thread time than parsing the event, and even a
/// `Date.now()` per chunk is a call out of WebAssembly. So a chunk only counts itself
/// ([`Watchdog::chunks`]), and one interval checks now and then (every `ms` / 4): when the
/// count moved it notes the time, else it cuts the stream once `ms` have passed since that
/// note. The note is at most one interval after the last byte, so the stream is cut between
/// `ms` and 1.25 × `ms` after it; the clock is read by the interval, so a throttled timer
/// (background tab) only makes the check later, never early.
#[derive(Debug)]
pub(super) struct Watchdog {
    /// Chunks received, shared with the interval's closure.
    chunks: Rc<Cell<u32>>,
    /// Set by the closure when it aborted the request.
    fired: Rc<Cell<bool>>,
    interval: JsValue,
    /// Owned here and dropped with the watchdog, after the interval is cleared.
    _tick: Closure<dyn FnMut()>,
}

impl Watchdog {
    pub(super) fn start(ms: f64, ctrl: &AbortController) -> Self {
        let chunks = Rc::new(Cell::new(0u32));
        let fired = Rc::new(Cell::new(false));
        let (n, f, ctrl) = (Rc::clone(&chunks), Rc::clone(&fired), ctrl.clone());
        // The count and time at the last tick that saw it move (or at the start).
        let (mut seen, mut since) = (0u32, js_sys::Date::now());
        let tick = Closure::<dyn FnMut()>::new(move || {
            let now = js_sys::Date::now();
            if n.get() != seen {
                seen = n.get();
                since = now;
            } else if !f.get() && now - since >= ms {
                f.set(true);
                ctrl.abort();
            }
        });
        let interval = set_interval(tick.as_ref().unchecked_ref(), (ms / 4.0).max(10.0));
        Self { chunks, fired, interval, _tick: tick }
    }

    /// What a chunk increments when it comes.
    pub(super) fn chunks(&self) -> Rc<Cell<u32>> {
        Rc::clone(&self.chunks)
    }

    /// Whether it cut the stream.
    pub(super) fn fired(&self) -> bool {
        self.fired.get()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        clear_interval(&self.interval);
    }
}
