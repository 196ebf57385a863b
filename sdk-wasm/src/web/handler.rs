//! The connection's task: connect, read, reconnect, until closed (docs/protocol.md §6.2).
//!
//! It alone connects, waits and decides; it owns the loop's state (the backoff's attempt
//! count, the one retry after a 401, whether the last token was refused or expired, what the
//! commands asked for) and learns of `close()`, `reconnect()`, a grown filter and the page's
//! network and visibility events from its command channel, which it reads at each point where
//! they change what comes next.
//!
//! A grown filter while a stream is open is a hand-over (make-before-break): the open
//! stream goes on being read as the connection's `old` one while the task connects again,
//! and is closed once the new one has taken over (`delivery`), or before any wait.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Promise, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestInit, Response};

use super::commands::Command;
use super::connection::{Connection, OldStream, Status};
use super::delivery::Read;
use super::options::{self, ConnectionOptions};
use super::{delivery, errors};
use crate::backoff::Backoff;
use crate::demux::EndReason;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetch)]
    fn js_fetch(url: &str, init: &RequestInit) -> Result<Promise, JsValue>;
}

/// How one attempt ended.
enum Outcome {
    /// Closed: stop.
    Closed,
    /// Connect again now, no backoff.
    Now,
    /// The bridge ended the stream with `end`: connect again at once (see `EndReason`).
    End(EndReason),
    /// Wait, then connect again.
    Retry,
    /// 400 / 403, or signed out: the subscription is over.
    Final,
    /// Not connected: `closeWhenHidden` and the page is hidden.
    Pause,
}

/// The task of one connection (async-nats' `ConnectionHandler`: the subscriptions hold the
/// sending side of its commands).
#[derive(Debug)]
pub(super) struct ConnectionHandler {
    conn: Rc<Connection>,
    /// `<url>/v1/users/<user>/events`
    endpoint: String,
    token: Option<String>,
    get_token: Option<Function>,
    /// The last token was refused (401) or expired (`end` / `token_expired`): `getToken(true)`
    /// until it gives another.
    stale_token: bool,
    backoff: Backoff,
    heartbeat_ms: f64,
    /// Failed attempts since the last open stream (or reset).
    attempt: u32,
    /// The last answer was a 401 and was retried at once.
    retried_401: bool,
    /// Received: stop.
    closed: bool,
    /// Received: drop the current attempt and connect again at once.
    restart: bool,
    /// Received: reset the attempt count before the next connection.
    reset_attempts: bool,
    /// `closeWhenHidden` and the page is hidden: no connection until resumed.
    paused: bool,
}

impl ConnectionHandler {
    pub(super) fn new(conn: Rc<Connection>, endpoint: String, options: ConnectionOptions) -> Self {
        let ConnectionOptions { backoff, last_event_id: _, token, get_token, heartbeat_ms, close_when_hidden: _ } =
            options;
        Self {
            conn,
            endpoint,
            token,
            get_token,
            stale_token: false,
            backoff,
            heartbeat_ms,
            attempt: 0,
            retried_401: false,
            closed: false,
            restart: false,
            reset_attempts: false,
            paused: false,
        }
    }

    /// Takes in the commands sent since last time.
    fn receive(&mut self) {
        for cmd in self.conn.commands.recv_all() {
            match cmd {
                Command::Refilter => self.restart = true,
                Command::Reconnect => {
                    self.restart = true;
                    self.reset_attempts = true;
                }
                Command::Online => self.reset_attempts = true,
                Command::Offline => {}
                Command::Pause => self.paused = true,
                Command::Resume => self.paused = false,
                Command::Close => self.closed = true,
            }
        }
    }

    /// The loop, until closed.
    pub(super) async fn run(mut self) {
        let mut first = true;
        loop {
            self.receive();
            if self.closed {
                break;
            }
            self.restart = false;
            if self.reset_attempts {
                self.reset_attempts = false;
                self.attempt = 0;
            }
            // While a stream is being replaced it still delivers: the status stays.
            if self.conn.old.borrow().is_none() {
                self.conn.set_status(if first { Status::Connecting } else { Status::Reconnecting });
            }
            first = false;
            // Paused: wait for a command (the longest timer there is), at the one sleep below.
            let outcome = if self.paused { Outcome::Pause } else { self.connect_once().await };
            let pause = matches!(outcome, Outcome::Pause);
            self.receive();
            if self.closed {
                break;
            }
            let delay = match outcome {
                Outcome::Pause => 2_147_483_647.0,
                Outcome::Closed => break,
                Outcome::Final => {
                    self.conn.shut_down();
                    self.conn.notify_status();
                    self.conn.state.borrow_mut().listeners.clear();
                    break;
                }
                Outcome::Now => continue,
                Outcome::Retry if self.restart || self.paused => continue,
                Outcome::End(reason) => {
                    // The bridge asked for this reconnection: no backoff, and the attempt count
                    // stays as the successful open left it. After `token_expired` getToken is
                    // told the token is stale (a fixed `token` is sent again, and a 401 is
                    // handled as usual).
                    self.stale_token |= reason == EndReason::TokenExpired;
                    self.conn.set_status(Status::Reconnecting);
                    reason.reconnect_delay_ms(js_sys::Math::random())
                }
                Outcome::Retry => {
                    self.conn.set_status(Status::Reconnecting);
                    // The server's `retry:` is the floor.
                    let floor = self.conn.state.borrow().demux.server_retry_ms();
                    let delay = self.backoff.delay_with_floor_ms(self.attempt, js_sys::Math::random(), floor);
                    self.attempt = self.attempt.saturating_add(1);
                    delay
                }
            };
            // One sleep for all (each await point costs wasm size); ended early by any
            // command (but `Offline`). A stream being replaced does not outlive a wait.
            self.conn.close_old();
            self.receive();
            // (Resumed already: connect now.)
            if self.closed || !self.paused && (self.restart || pause) {
                continue;
            }
            self.conn.commands.sleep(delay).await;
        }
        self.conn.close_old();
    }

    /// One request: token, fetch, status handling, reading the stream to its end.
    async fn connect_once(&mut self) -> Outcome {
        let token = match self.fetch_token().await {
            Ok(t) => t,
            Err(e) => {
                // An `UnauthorizedError` (by name: it may come from another copy of the
                // package or another realm): signed out, the subscription is over.
                let signed_out = options::get(&e, "name") == JsValue::from_str("UnauthorizedError");
                self.conn.report_error(&errors::token_error(&e, signed_out));
                return if signed_out { Outcome::Final } else { Outcome::Retry };
            }
        };
        let Ok(ctrl) = AbortController::new() else {
            return Outcome::Retry;
        };
        self.receive();
        if self.closed {
            return Outcome::Closed;
        }
        if self.restart {
            return Outcome::Now;
        }
        let (url, init) = {
            let mut st = self.conn.state.borrow_mut();
            let mut url = self.endpoint.clone();
            if let Some(q) = st.demux.begin_request() {
                url.push_str(if url.contains('?') { "&events=" } else { "?events=" });
                url.push_str(&q);
            }
            let Ok(headers) = Headers::new() else {
                return Outcome::Retry;
            };
            let _ = headers.set("Accept", "text/event-stream");
            if let Some(t) = &token {
                let mut v = String::from("Bearer ");
                v.push_str(t);
                let _ = headers.set("Authorization", &v);
            }
            if let Some(c) = st.demux.cursor() {
                let _ = headers.set("Last-Event-ID", c);
            }
            let init = RequestInit::new();
            init.set_method("GET");
            init.set_headers(&headers);
            init.set_signal(Some(&ctrl.signal()));
            (url, init)
        };
        self.conn.commands.set_request(&ctrl);
        let response = match js_fetch(&url, &init) {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        let response: Response = match response.map(JsCast::unchecked_into::<Response>) {
            Ok(r) => r,
            Err(e) => {
                if ctrl.signal().aborted() {
                    return Outcome::Retry; // closed or restarting: the caller sees which
                }
                self.conn.report_error(&errors::network_error(&e));
                return Outcome::Retry;
            }
        };
        let status = response.status();
        self.stale_token |= status == 401;
        if status == 401 && !self.retried_401 {
            // The token may just have expired: ask getToken again, once, right away.
            self.retried_401 = true;
            return Outcome::Now;
        }
        if status != 401 {
            self.retried_401 = false;
        }
        let is_sse = response
            .headers()
            .get("content-type")
            .ok()
            .flatten()
            .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
        if status != 200 || !is_sse {
            let (message, code) = error_body(&response).await;
            self.conn.report_error(&errors::http_error(status, message.as_deref(), code.as_deref()));
            return if errors::is_final_status(status) { Outcome::Final } else { Outcome::Retry };
        }
        let Some(body) = response.body() else {
            return Outcome::Retry;
        };
        self.attempt = 0;
        if let Some(o) = &*self.conn.old.borrow() {
            o.since.set(js_sys::Date::now());
        }
        self.conn.set_status(Status::Open);
        let end = match delivery::read_stream(&self.conn, &body, &ctrl, self.heartbeat_ms).await {
            Read::HandedOver(reader) => {
                // This stream goes on as the old one (an older one is closed); connect again.
                self.conn.close_old();
                self.conn.state.borrow_mut().demux.hand_over();
                *self.conn.old.borrow_mut() = Some(OldStream { ctrl, since: Cell::new(0.0), _reader: reader });
                return Outcome::Now;
            }
            Read::Done(end) => end,
        };
        // Ends the body if it is still open (no-op otherwise). Not `reader.cancel()`: its
        // promise rejects on an errored stream, an unhandled rejection in Node.
        ctrl.abort();
        self.conn.state.borrow_mut().demux.end_stream();
        // After `end` the close that follows is expected: one immediate reconnection, not
        // that and a backoff one.
        match end {
            Some(reason) => Outcome::End(reason),
            None => Outcome::Retry,
        }
    }

    /// The token for the next request: `getToken(stale_token)` (awaited) if given, else
    /// `token`.
    async fn fetch_token(&mut self) -> Result<Option<String>, JsValue> {
        let Some(get) = &self.get_token else { return Ok(self.token.clone()) };
        let v = get.call1(&JsValue::NULL, &JsValue::from_bool(self.stale_token))?;
        let v = JsFuture::from(Promise::resolve(&v)).await?;
        self.stale_token = false;
        Ok(v.as_string().filter(|t| !t.is_empty()))
    }
}

/// `{error, code}` of a JSON error body, if it is one.
async fn error_body(response: &Response) -> (Option<String>, Option<String>) {
    let Ok(p) = response.text() else {
        return (None, None);
    };
    let Ok(text) = JsFuture::from(p).await else {
        return (None, None);
    };
    let Some(text) = text.as_string() else {
        return (None, None);
    };
    match JSON::parse(&text) {
        Ok(v) => (options::get_string(&v, "error").ok(), options::get_string(&v, "code").ok()),
        Err(_) => (None, None),
    }
}
