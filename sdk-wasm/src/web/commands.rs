//! The one way into a connection's task: a command channel.
//!
//! The subscriptions (`reconnect()`, the last `close()`), `subscribe` (a grown filter) and the
//! page's network and visibility events (`connection::network`) send [`Command`]s; the task
//! (`handler`) alone receives them, at the points of its loop where they can change what it
//! does next, and owns what they change (the attempt count, whether to connect again at once,
//! whether to wait, whether to stop).
//!
//! Sending also interrupts what the task is waiting on, so it gets to the command: the
//! request in flight is aborted (an open stream is handed over instead, for a grown filter) and
//! the back-off wait ends, as each command's doc says. A single-threaded queue is all this
//! needs (every sender and the receiver run on the one JavaScript thread).

use std::cell::RefCell;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::AbortController;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// What a connection's task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// The union of the filters grew: connect again at once, with it (the attempt count
    /// stays). An open stream is not aborted: it is handed over (make-before-break,
    /// docs/protocol.md §6.3) and stays open until the new one has taken over.
    Refilter,
    /// `reconnect()`: connect again at once, with the backoff's attempt count reset.
    Reconnect,
    /// The browser's `online` event: a waiting retry goes at once, with the attempt count
    /// reset. Only sent to a task that is waiting (docs/protocol.md §6.2): it is dropped
    /// otherwise.
    Online,
    /// The browser's `offline` event: the request is aborted (then retried as after any
    /// drop); a waiting retry keeps waiting.
    Offline,
    /// `closeWhenHidden` and the page was hidden: abort, and connect no more until `Resume`.
    Pause,
    /// The page is visible again: connect (a waiting retry goes at once). Aborts nothing.
    Resume,
    /// The last subscription closed, or the bridge refused for good: stop. The last command.
    Close,
}

/// A promise and its `resolve`.
fn promise() -> (Promise, Function) {
    let mut resolve = JsValue::UNDEFINED;
    // The executor runs at once: `resolve` is set when `new` returns.
    let p = Promise::new(&mut |r, _reject| resolve = r.into());
    (p, resolve.unchecked_into())
}

/// A back-off wait in progress: its timer, and the `resolve` of the promise it awaits.
#[derive(Debug)]
struct Sleep {
    timer: JsValue,
    resolve: Function,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Sent, not yet received, in order.
    queue: Vec<Command>,
    /// `Close` was sent: nothing more is.
    closed: bool,
    /// The request in flight (or last made), aborted by every command but `Online`, `Resume` and
    /// a hand-over.
    request: Option<AbortController>,
    /// The back-off wait in progress, ended by every command but `Offline`.
    sleep: Option<Sleep>,
    /// While a stream is open: ends its read for a hand-over (`Refilter`), instead of the abort.
    handover: Option<Function>,
}

/// The command channel of one connection: any number of senders, one receiver (its task).
#[derive(Debug, Default)]
pub(super) struct Commands(RefCell<Inbox>);

impl Commands {
    /// Queues `cmd` and interrupts the task's wait, if it has not been closed.
    pub(super) fn send(&self, cmd: Command) {
        let (request, sleep, handover) = {
            let Ok(mut inbox) = self.0.try_borrow_mut() else { return };
            if inbox.closed || (cmd == Command::Online && inbox.sleep.is_none()) {
                return;
            }
            inbox.closed = cmd == Command::Close;
            inbox.queue.push(cmd);
            let handover = if cmd == Command::Refilter { inbox.handover.take() } else { None };
            let request = match cmd {
                Command::Online | Command::Resume => None,
                _ if handover.is_some() => None,
                _ => inbox.request.take(),
            };
            let sleep = if cmd == Command::Offline { None } else { inbox.sleep.take() };
            (request, sleep, handover)
        };
        // Called with nothing of ours borrowed.
        if let Some(r) = request {
            r.abort();
        }
        if let Some(h) = handover {
            let _ = h.call1(&JsValue::NULL, &JsValue::TRUE);
        }
        if let Some(s) = sleep {
            clear_timeout(&s.timer);
            let _ = s.resolve.call0(&JsValue::NULL);
        }
    }

    /// The commands sent since the last call, in order (the task's side).
    pub(super) fn recv_all(&self) -> Vec<Command> {
        std::mem::take(&mut self.0.borrow_mut().queue)
    }

    /// The request in flight: the next command that aborts (see `Inbox::request`) aborts it.
    pub(super) fn set_request(&self, ctrl: &AbortController) {
        self.0.borrow_mut().request = Some(ctrl.clone());
    }

    /// A promise resolved (with `true`) by the next `Refilter`, in place of the abort; until
    /// [`Commands::end_handover`].
    pub(super) fn handover(&self) -> Promise {
        let (p, resolve) = promise();
        self.0.borrow_mut().handover = Some(resolve);
        p
    }

    pub(super) fn end_handover(&self) {
        self.0.borrow_mut().handover = None;
    }

    /// Sleeps `ms`, or less if a command comes (the task's side).
    pub(super) async fn sleep(&self, ms: f64) {
        let promise = {
            let (p, resolve) = promise();
            let timer = set_timeout(&resolve, ms);
            self.0.borrow_mut().sleep = Some(Sleep { timer, resolve });
            p
        };
        let _ = JsFuture::from(promise).await;
        let sleep = self.0.borrow_mut().sleep.take();
        if let Some(s) = sleep {
            clear_timeout(&s.timer);
        }
    }
}
