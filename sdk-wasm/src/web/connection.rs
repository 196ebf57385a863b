//! What the subscriptions of one url + user share: the listeners and their routing (the
//! [`Demux`]), the status, the command channel to the connection's task, when a byte last
//! came, the stream being replaced; and the registry of open connections, which the page's
//! network and visibility events reach through [`network`].
//!
//! The subscriptions and `subscribe` change the listeners directly (a closed subscription
//! must get nothing more, at once) and read the status and cursor (synchronous getters);
//! everything about connecting goes through [`Commands`] to the task (`handler`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;
use web_sys::AbortController;

use super::commands::{Command, Commands};
use super::delivery::Reader;
use super::options::Callbacks;
use crate::demux::{Demux, Filter, ListenerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Connecting,
    Open,
    Reconnecting,
    Closed,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Open => "open",
            Status::Reconnecting => "reconnecting",
            Status::Closed => "closed",
        }
    }
}

/// One `subscribe` call as the connection sees it.
#[derive(Debug)]
pub(super) struct Listener {
    pub(super) id: ListenerId,
    pub(super) callback: Function,
    pub(super) on_status: Option<Function>,
    pub(super) on_error: Option<Function>,
    pub(super) on_reset: Option<Function>,
    /// The last status this listener was told about.
    reported: Option<Status>,
}

impl Listener {
    /// A listener not added yet (its id comes from the demux).
    pub(super) fn new(callback: Function, callbacks: Callbacks) -> Self {
        let Callbacks { on_status, on_error, on_reset } = callbacks;
        Self { id: 0, callback, on_status, on_error, on_reset, reported: None }
    }

    /// Tells a listener that has left that it is closed, unless it knows.
    pub(super) fn tell_closed(self) {
        if self.reported != Some(Status::Closed) {
            if let Some(f) = self.on_status {
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(Status::Closed.as_str()));
            }
        }
    }
}

/// What the connection's task and the subscriptions both read and change.
#[derive(Debug)]
pub(super) struct State {
    pub(super) demux: Demux,
    pub(super) listeners: Vec<Listener>,
    /// `Closed` is for good.
    pub(super) status: Status,
}

/// The stream being replaced by a grown one (make-before-break), until the new one has
/// taken over: then aborted (`Drop`).
#[derive(Debug)]
pub(super) struct OldStream {
    pub(super) ctrl: AbortController,
    /// When the new stream opened (`Date.now()`); 0 while it is connecting.
    pub(super) since: Cell<f64>,
    /// Its reader (the body's sink and its watchdog), dropped with it, after the abort.
    pub(super) _reader: Reader,
}

impl Drop for OldStream {
    fn drop(&mut self) {
        self.ctrl.abort();
    }
}

/// One HTTP stream shared by every subscription of the same url + user.
#[derive(Debug)]
pub(super) struct Connection {
    /// `<url without trailing slashes>\n<user>`
    key: String,
    pub(super) state: RefCell<State>,
    pub(super) commands: Commands,
    /// When the last byte came (`Date.now()`), or the current stream opened.
    pub(super) last: Rc<Cell<f64>>,
    /// The bridge's heartbeat interval as the watchdog assumes it (a third of
    /// `heartbeatTimeoutMs`): longer without a byte, the link counts as silent (`network`).
    pub(super) quiet_ms: f64,
    /// `closeWhenHidden`.
    close_when_hidden: bool,
    pub(super) old: RefCell<Option<OldStream>>,
}

/// What [`network`] is told (the TypeScript layer listens to the page's events).
const OFFLINE: u32 = 0;
const ONLINE: u32 = 1;
const VISIBLE: u32 = 2;
const HIDDEN: u32 = 3;

/// The page went `offline` (0), `online` (1), visible (2) or hidden (3): every open
/// connection reacts (docs/protocol.md §6.2).
#[wasm_bindgen(js_name = network)]
pub fn network(event: u32) {
    // By index, from the end: a callback that closes a connection (`set_status`) removes it
    // from the registry: none is skipped (at worst one is told twice, which changes nothing).
    let mut i = REGISTRY.with(|r| r.borrow().len());
    while i > 0 {
        i -= 1;
        let Some(c) = REGISTRY.with(|r| r.borrow().get(i).cloned()) else { continue };
        let silent = c.status() == Status::Open && js_sys::Date::now() - c.last.get() > c.quiet_ms;
        let cmd = match event {
            OFFLINE => Command::Offline,
            ONLINE => Command::Online,
            VISIBLE => Command::Resume,
            _ if c.close_when_hidden => Command::Pause,
            _ => continue,
        };
        c.commands.send(cmd);
        if event == OFFLINE {
            c.set_status(Status::Reconnecting);
        } else if silent && event != HIDDEN {
            c.commands.send(Command::Reconnect);
        }
    }
}

thread_local! {
    /// Open shared connections (closed ones are removed).
    static REGISTRY: RefCell<Vec<Rc<Connection>>> = const { RefCell::new(Vec::new()) };
}

impl Connection {
    /// The open connection for `key`, if there is one.
    pub(super) fn find(key: &str) -> Option<Rc<Self>> {
        REGISTRY.with(|r| r.borrow().iter().find(|c| c.key == key).cloned())
    }

    /// A new connection whose first listener was added to `demux`, registered (its task is
    /// the caller's to start).
    pub(super) fn open(
        key: String,
        demux: Demux,
        listener: Listener,
        heartbeat_ms: f64,
        close_when_hidden: bool,
    ) -> Rc<Self> {
        let conn = Rc::new(Self {
            key,
            state: RefCell::new(State { demux, listeners: vec![listener], status: Status::Connecting }),
            commands: Commands::default(),
            last: Rc::new(Cell::new(0.0)),
            // No watchdog: the bridge's default heartbeat.
            quiet_ms: if heartbeat_ms > 0.0 { heartbeat_ms / 3.0 } else { 15_000.0 },
            close_when_hidden,
            old: RefCell::new(None),
        });
        REGISTRY.with(|r| r.borrow_mut().push(Rc::clone(&conn)));
        conn
    }

    /// Closes the stream being replaced, if any.
    pub(super) fn close_old(&self) {
        let old = self.old.borrow_mut().take();
        drop(old);
        self.state.borrow_mut().demux.close_old();
    }

    /// Adds a listener; when its events are not all in the current request, the connection
    /// connects again with the grown union (docs/protocol.md §6.3).
    pub(super) fn join(&self, filter: Filter, mut listener: Listener) -> ListenerId {
        let (id, grow) = {
            let mut st = self.state.borrow_mut();
            let (id, grow) = st.demux.add(filter);
            listener.id = id;
            st.listeners.push(listener);
            (id, grow)
        };
        if grow {
            self.commands.send(Command::Refilter);
        }
        id
    }

    /// Removes a listener; the last one closes the connection. Returns the listener (if it
    /// was still there) and the cursor.
    pub(super) fn leave(&self, id: ListenerId) -> (Option<Listener>, Option<String>) {
        let (listener, empty, cursor) = {
            let mut st = self.state.borrow_mut();
            st.demux.remove(id);
            let pos = st.listeners.iter().position(|l| l.id == id);
            let listener = pos.map(|p| st.listeners.remove(p));
            (listener, st.demux.is_empty(), st.demux.cursor().map(str::to_owned))
        };
        if empty {
            self.shut_down();
        }
        (listener, cursor)
    }

    /// The status, for the getter: `open` while the task is in the middle of something.
    pub(super) fn status(&self) -> Status {
        self.state.try_borrow().map_or(Status::Open, |st| st.status)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state.try_borrow().is_ok_and(|st| st.status == Status::Closed)
    }

    /// The resume cursor.
    pub(super) fn cursor(&self) -> Option<String> {
        self.state.try_borrow().ok().and_then(|st| st.demux.cursor().map(str::to_owned))
    }

    /// Tells every listener the current status, once per change.
    pub(super) fn notify_status(&self) {
        let calls: Vec<(Function, Status)> = {
            let Ok(mut st) = self.state.try_borrow_mut() else {
                return;
            };
            let status = st.status;
            st.listeners
                .iter_mut()
                .filter(|l| l.reported != Some(status))
                .filter_map(|l| {
                    l.reported = Some(status);
                    l.on_status.clone().map(|f| (f, status))
                })
                .collect()
        };
        for (f, s) in calls {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(s.as_str()));
        }
    }

    /// Moves to `status` (never out of `Closed`) and tells the listeners.
    pub(super) fn set_status(&self, status: Status) {
        {
            let mut st = self.state.borrow_mut();
            if st.status == Status::Closed {
                return;
            }
            st.status = status;
        }
        self.notify_status();
    }

    /// Gives `err` to every listener's `onError`.
    pub(super) fn report_error(&self, err: &JsValue) {
        let fns: Vec<Function> = self.state.borrow().listeners.iter().filter_map(|l| l.on_error.clone()).collect();
        for f in fns {
            let _ = f.call1(&JsValue::NULL, err);
        }
    }

    /// Closes the connection: status `closed` (told to no one: the caller does), `Close` to the
    /// task (which aborts its request and ends its wait), a stream being replaced aborted, and
    /// out of the registry.
    pub(super) fn shut_down(&self) {
        let was_open = {
            let mut st = self.state.borrow_mut();
            std::mem::replace(&mut st.status, Status::Closed) != Status::Closed
        };
        if was_open {
            self.commands.send(Command::Close);
            let old = self.old.borrow_mut().take();
            drop(old);
        }
        REGISTRY.with(|r| r.borrow_mut().retain(|c| !std::ptr::eq(&**c, self)));
    }
}
