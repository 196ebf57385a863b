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
/// and two timer calls each) cost more main-thread time than parsing the event. So a chunk
/// only records when it came (the connection's `last`), and one interval checks now and then
/// (`ms` / 4: the stream is cut between `ms` and 1.25 × `ms` after its last byte).
#[derive(Debug)]
pub(super) struct Watchdog {
    /// Set by the closure when it aborted the request.
    fired: Rc<Cell<bool>>,
    interval: JsValue,
    /// Owned here and dropped with the watchdog, after the interval is cleared.
    _tick: Closure<dyn FnMut()>,
}

impl Watchdog {
    /// `last`: when the last chunk came (`Date.now()`), set by the reader.
    pub(super) fn start(ms: f64, ctrl: &AbortController, last: &Rc<Cell<f64>>) -> Self {
        let fired = Rc::new(Cell::new(false));
        let (l, f, ctrl) = (Rc::clone(last), Rc::clone(&fired), ctrl.clone());
        let tick = Closure::<dyn FnMut()>::new(move || {
            if !f.get() && js_sys::Date::now() - l.get() >= ms {
                f.set(true);
                ctrl.abort();
            }
        });
        let interval = set_interval(tick.as_ref().unchecked_ref(), (ms / 4.0).max(10.0));
        Self { fired, interval, _tick: tick }
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
