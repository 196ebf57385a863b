//! The browser's `online` event, as a [`Command::Online`] to one connection.

use std::rc::Weak;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::EventTarget;

use super::commands::Command;
use super::connection::Connection;
use super::options;

/// A listener of the global `online` event, removed when dropped (the connection owns it and
/// drops it when it closes).
#[derive(Debug)]
pub(super) struct OnlineListener {
    target: EventTarget,
    closure: Closure<dyn FnMut()>,
}

impl OnlineListener {
    /// Listens where there is an `online` event (browsers, workers; not Node): `None` elsewhere.
    pub(super) fn new(conn: Weak<Connection>) -> Option<Self> {
        let global = js_sys::global();
        if !options::get(&global, "addEventListener").is_function() {
            return None;
        }
        let target: EventTarget = global.unchecked_into();
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(c) = conn.upgrade() {
                c.commands.send(Command::Online);
            }
        });
        target.add_event_listener_with_callback("online", closure.as_ref().unchecked_ref()).ok()?;
        Some(Self { target, closure })
    }
}

impl Drop for OnlineListener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback("online", self.closure.as_ref().unchecked_ref());
    }
}
