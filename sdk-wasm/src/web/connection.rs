//! What the subscriptions of one url + user share: the listeners and their routing (the
//! [`Demux`]), the status, the command channel to the connection's task, and the `online`
//! listener; and the registry of open connections.
//!
//! The subscriptions and `subscribe` change the listeners directly (a closed subscription
//! must get nothing more, at once) and read the status and cursor (synchronous getters);
//! everything about connecting goes through [`Commands`] to the task (`handler`).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::commands::{Command, Commands};
use super::online::OnlineListener;
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

/// One HTTP stream shared by every subscription of the same url + user.
#[derive(Debug)]
pub(super) struct Connection {
    /// `<url without trailing slashes>\n<user>`
    key: String,
    pub(super) state: RefCell<State>,
    pub(super) commands: Commands,
    online: RefCell<Option<OnlineListener>>,
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

    /// A new connection whose first listener was added to `demux`: it listens to `online`
    /// and is registered (its task is the caller's to start).
    pub(super) fn open(key: String, demux: Demux, listener: Listener) -> Rc<Self> {
        let conn = Rc::new(Self {
            key,
            state: RefCell::new(State { demux, listeners: vec![listener], status: Status::Connecting }),
            commands: Commands::default(),
            online: RefCell::new(None),
        });
        let online = OnlineListener::new(Rc::downgrade(&conn));
        *conn.online.borrow_mut() = online;
        REGISTRY.with(|r| r.borrow_mut().push(Rc::clone(&conn)));
        conn
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
    /// task (which aborts its request and ends its wait), the `online` listener removed, and
    /// out of the registry.
    pub(super) fn shut_down(&self) {
        let was_open = {
            let mut st = self.state.borrow_mut();
            std::mem::replace(&mut st.status, Status::Closed) != Status::Closed
        };
        if was_open {
            self.commands.send(Command::Close);
            let online = self.online.borrow_mut().take();
            drop(online);
        }
        REGISTRY.with(|r| r.borrow_mut().retain(|c| !std::ptr::eq(&**c, self)));
    }
}
