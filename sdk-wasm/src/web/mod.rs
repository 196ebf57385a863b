//! JavaScript glue (wasm32 only): `subscribe`, the exported `Subscription`, and one shared
//! connection per url + user (docs/architecture.md, "The SDK").
//!
//! One job per module:
//! * `ts`: the TypeScript declarations the `.d.ts` gets;
//! * `options`: typed reads of `subscribe`'s arguments and options, parsed once;
//! * `errors`: the `TypeError`s `subscribe` throws and the `RealtimeError`s given to `onError`;
//! * `connection`: what the subscriptions of one url + user share (listeners, status, the
//!   command channel to the task), and the registry of open connections;
//! * `commands`: that channel (`Command`s in, the task's waits interrupted);
//! * `handler`: the connection's task, the reconnect loop;
//! * `delivery`: the response body to the callbacks; `watchdog`: the heartbeat timeout.
//!
//! The page's `online`, `offline` and `visibilitychange` events are listened to by the
//! TypeScript layer (cheaper there), which calls [`network`].
//!
//! Rules kept throughout:
//! * No JavaScript callback is ever called while a `RefCell` of ours is
//!   borrowed: a callback may call `close()`, `reconnect()` or `subscribe()`.
//! * Every JS closure we hand out is a `Closure` owned on the Rust side, and
//!   dropped (its timer cleared) in a `Drop`, never `forget()`: the body's
//!   `write` sink and the watchdog's interval by the read of one stream (dropped
//!   once the body has ended, also for a stream being replaced). Back-off timers get the `resolve` function of a
//!   promise directly, so they need no Rust closure at all.
//! * Messages are built with `String` pushes, not `format!`, to keep the
//!   module small.

mod commands;
mod connection;
mod delivery;
mod errors;
mod handler;
mod options;
mod ts;
mod watchdog;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use realtime_bridge_wire::UserId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;

use crate::demux::{parse_filter, Demux, ListenerId};
use commands::Command;
pub use connection::network;
use connection::{Connection, Listener, Status};
use handler::ConnectionHandler;
use options::{ConnectionOptions, SubscribeOptions};
pub use ts::StatusJs;

/// Subscribes to the events of one user (see the TypeScript declaration in `ts`).
#[wasm_bindgen(js_name = subscribe, skip_typescript)]
pub fn subscribe(
    user_id: &str,
    events: JsValue,
    callback: Function,
    options: JsValue,
) -> Result<Subscription, JsValue> {
    let user = UserId::parse(user_id).map_err(|e| errors::invalid_user_id(&e))?;
    let names = options::event_names(&events)?;
    let filter = parse_filter(names).map_err(|(name, e)| errors::invalid_event_name(&name, &e))?;
    let SubscribeOptions { url, callbacks } = SubscribeOptions::parse(&options)?;
    let base = url.trim_end_matches('/');
    let mut key = String::with_capacity(base.len() + user.as_str().len() + 1);
    key.push_str(base);
    key.push('\n');
    key.push_str(user.as_str());

    let mut listener = Listener::new(callback, callbacks);
    let (conn, id) = match Connection::find(&key) {
        Some(conn) => {
            let id = conn.join(filter, listener);
            // Tell the newcomer the current status, after `subscribe` has returned.
            let c = Rc::clone(&conn);
            spawn_local(async move { c.notify_status() });
            (conn, id)
        }
        None => {
            let mut endpoint = String::from(base);
            endpoint.push_str(&realtime_bridge_wire::route::stream_path(&user));
            // Names this connection in presence (the package always gives one); only a token,
            // which needs no escaping in a query.
            if let Ok(c) = options::get_string(&options, "clientId") {
                if realtime_bridge_wire::validate_token(&c).is_ok() {
                    endpoint.push_str("?clientId=");
                    endpoint.push_str(&c);
                }
            }
            let mut opts = ConnectionOptions::parse(&options);
            let mut demux = Demux::new(opts.last_event_id.take());
            let (id, _) = demux.add(filter);
            listener.id = id;
            let conn = Connection::open(key, demux, listener, opts.heartbeat_ms, opts.close_when_hidden);
            spawn_local(ConnectionHandler::new(Rc::clone(&conn), endpoint, opts).run());
            (conn, id)
        }
    };
    Ok(Subscription { conn: RefCell::new(Some(conn)), id, closed_cursor: RefCell::new(None) })
}

/// What `subscribe` returns. Owns (with the other subscriptions of the same
/// url + user) the shared connection and its closures; `close()` or dropping it
/// (`free()`, `[Symbol.dispose]`) releases them when it is the last one.
// A handle: it drives the connection's task by commands (`commands`). (Not in the doc
// comment above, which the `.d.ts` carries.)
#[wasm_bindgen]
#[derive(Debug)]
pub struct Subscription {
    conn: RefCell<Option<Rc<Connection>>>,
    id: ListenerId,
    closed_cursor: RefCell<Option<String>>,
}

#[wasm_bindgen]
impl Subscription {
    /// `'connecting' | 'open' | 'reconnecting' | 'closed'`
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> StatusJs {
        let s = match &*self.conn.borrow() {
            Some(c) => c.status(),
            None => Status::Closed,
        };
        JsValue::from_str(s.as_str()).unchecked_into()
    }

    /// The resume cursor (the last SSE `id:` received), or `null`.
    #[wasm_bindgen(getter, js_name = lastEventId)]
    pub fn last_event_id(&self) -> Option<String> {
        match &*self.conn.borrow() {
            Some(c) => c.cursor(),
            None => self.closed_cursor.borrow().clone(),
        }
    }

    /// Drops the current connection (if any) and connects again at once,
    /// resuming from `lastEventId`. No effect once closed.
    pub fn reconnect(&self) {
        let conn = self.conn.borrow().clone();
        if let Some(c) = conn {
            c.commands.send(Command::Reconnect);
        }
    }

    /// Stops delivery to this subscription; the last one of a shared
    /// connection closes it. Idempotent.
    pub fn close(&self) {
        let Some(conn) = self.conn.borrow_mut().take() else {
            return;
        };
        let (listener, cursor) = conn.leave(self.id);
        *self.closed_cursor.borrow_mut() = cursor;
        if let Some(l) = listener {
            l.tell_closed();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}
