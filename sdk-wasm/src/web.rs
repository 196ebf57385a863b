//! JavaScript glue (wasm32 only): `subscribe`, the exported `Subscription`, and
//! one shared connection task per url + user.
//!
//! Rules kept throughout:
//! * No JavaScript callback is ever called while a `RefCell` of ours is
//!   borrowed: a callback may call `close()`, `reconnect()` or `subscribe()`.
//! * Every JS closure we hand out is a `Closure` owned on the Rust side: the
//!   `online` listener by the shared connection, which the `Subscription`s own
//!   (removed and dropped when the last subscription closes); the body's `write`
//!   sink and the watchdog's interval by the read loop (dropped, the interval
//!   cleared, once the body has ended). Back-off timers get the `resolve`
//!   function of a promise directly, so they need no Rust closure at all.
//! * Messages are built with `String` pushes, not `format!`, to keep the
//!   module small.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Promise, Reflect, Uint8Array, JSON};
use realtime_bridge_wire::{IdError, UserId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{AbortController, EventTarget, Headers, ReadableStream, RequestInit, Response, WritableStream};

use crate::backoff::Backoff;
use crate::demux::{parse_filter, Demux, EndReason, FrameKind, ListenerId};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Connection state of a subscription. */
export type SubscriptionStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The JSON envelope the bridge sends for each event. */
export interface RawEnvelope {
  id: string;
  event: string;
  data: unknown;
  timestamp: string;
  userId?: string;
}

/** Error given to `onError`. `final` is true when the subscription is closed for good (400, 403). */
export interface RealtimeErrorLike extends Error {
  status?: number;
  code?: string;
  final: boolean;
}

/** Options understood by the raw `subscribe` (the package's `configure`/`subscribe` merge them). */
export interface RawSubscribeOptions {
  url: string;
  token?: string | null;
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  lastEventId?: string | null;
  backoff?: { initialMs?: number; maxMs?: number; multiplier?: number; jitter?: number };
  heartbeatTimeoutMs?: number;
  onStatus?: (status: SubscriptionStatus) => void;
  onError?: (error: RealtimeErrorLike) => void;
  onReset?: (info: { reason?: string }) => void;
}

/**
 * Subscribes to the events of one user. Calls for the same url and user share one HTTP
 * connection. Throws a TypeError for an invalid user id, event name or missing url.
 */
export function subscribe(
  userId: string,
  events: readonly string[] | null | undefined,
  callback: (envelope: RawEnvelope) => void,
  options: RawSubscribeOptions,
): Subscription;
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetch)]
    fn js_fetch(url: &str, init: &RequestInit) -> Result<Promise, JsValue>;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(value: &JsValue);

    /// `'connecting' | 'open' | 'reconnecting' | 'closed'`
    #[wasm_bindgen(typescript_type = "SubscriptionStatus")]
    pub type StatusJs;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Connecting,
    Open,
    Reconnecting,
    Closed,
}

impl Status {
    fn as_str(self) -> &'static str {
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
struct Listener {
    id: ListenerId,
    callback: Function,
    on_status: Option<Function>,
    on_error: Option<Function>,
    on_reset: Option<Function>,
    /// The last status this listener was told about.
    reported: Option<Status>,
}

/// One HTTP stream shared by every subscription of the same url + user.
#[derive(Debug)]
struct Shared {
    key: String,
    /// `<url>/v1/users/<user>/events`
    endpoint: String,
    token: Option<String>,
    get_token: Option<Function>,
    backoff: Backoff,
    heartbeat_ms: f64,
    demux: Demux,
    listeners: Vec<Listener>,
    status: Status,
    closed: bool,
    /// Connect again at once (the union of filters grew, or `reconnect()`).
    restart: bool,
    /// Reset the backoff (an explicit `reconnect()` or the browser came back online).
    reset_attempts: bool,
    /// The current stream sent `end`: it is being closed, and reconnected without backoff.
    end: Option<EndReason>,
    abort: Option<AbortController>,
    /// Resolves the pending backoff sleep early.
    wake: Option<Function>,
    sleep_timer: Option<JsValue>,
    online: Option<(EventTarget, Closure<dyn FnMut()>)>,
}

type Conn = Rc<RefCell<Shared>>;

thread_local! {
    /// Open shared connections (closed ones are removed).
    static REGISTRY: RefCell<Vec<Conn>> = const { RefCell::new(Vec::new()) };
}

fn prop(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn func(obj: &JsValue, key: &str) -> Option<Function> {
    prop(obj, key).dyn_into::<Function>().ok()
}

fn number(obj: &JsValue, key: &str) -> Option<f64> {
    prop(obj, key).as_f64()
}

fn type_error(msg: &str) -> JsValue {
    js_sys::TypeError::new(msg).into()
}

/// A `RealtimeError`: an `Error` with `status`, `code` and `final`.
fn realtime_error(msg: &str, status: Option<u16>, code: Option<&str>, is_final: bool) -> JsValue {
    let err = js_sys::Error::new(msg);
    err.set_name("RealtimeError");
    let v: JsValue = err.into();
    if let Some(s) = status {
        let _ = Reflect::set(&v, &"status".into(), &JsValue::from(s));
    }
    if let Some(c) = code {
        let _ = Reflect::set(&v, &"code".into(), &JsValue::from_str(c));
    }
    let _ = Reflect::set(&v, &"final".into(), &JsValue::from_bool(is_final));
    v
}

/// Appends `n` in decimal (no `core::fmt`, which costs kilobytes of wasm), with the wire
/// crate's digit writer.
fn push_u64(s: &mut String, n: u64) {
    let mut digits = Vec::with_capacity(20);
    realtime_bridge_wire::sse::push_u64(&mut digits, n);
    // Only ASCII digits were written.
    s.extend(digits.iter().map(|&b| char::from(b)));
}

/// The wire crate's `IdError` text, without `core::fmt` (its `{:?}` of a char alone
/// pulls in Unicode tables).
fn push_id_error(s: &mut String, e: &IdError) {
    match e {
        IdError::Empty => s.push_str("is empty"),
        IdError::TooLong { len } => {
            s.push_str("is ");
            push_u64(s, *len as u64);
            s.push_str(" characters long (at most 128 allowed)");
        }
        IdError::InvalidChar { ch, index } => {
            s.push_str("contains '");
            s.push(*ch);
            s.push_str("' at position ");
            push_u64(s, *index as u64);
            s.push_str(" (allowed: A-Z a-z 0-9 _ -)");
        }
    }
}

fn error_text(e: &JsValue) -> String {
    if let Some(s) = e.as_string() {
        return s;
    }
    prop(e, "message").as_string().unwrap_or_else(|| String::from("unknown error"))
}

/// Subscribes to the events of one user (see the TypeScript declaration above).
#[wasm_bindgen(js_name = subscribe, skip_typescript)]
pub fn subscribe(
    user_id: &str,
    events: JsValue,
    callback: Function,
    options: JsValue,
) -> Result<Subscription, JsValue> {
    let user = UserId::parse(user_id).map_err(|e| {
        let mut m = String::from("realtime-bridge: invalid user id: it ");
        push_id_error(&mut m, &e);
        type_error(&m)
    })?;
    let names: Option<Vec<String>> = if events.is_null() || events.is_undefined() {
        None
    } else if Array::is_array(&events) {
        let arr: Array = events.unchecked_into();
        let mut v = Vec::new();
        for item in arr.iter() {
            v.push(item.as_string().ok_or_else(|| type_error("realtime-bridge: event names must be strings"))?);
        }
        Some(v)
    } else {
        return Err(type_error("realtime-bridge: events must be an array of event names, or null for all"));
    };
    let filter = parse_filter(names).map_err(|(name, e)| {
        let mut m = String::from("realtime-bridge: invalid event name '");
        m.push_str(&name);
        m.push_str("' ");
        push_id_error(&mut m, &e);
        type_error(&m)
    })?;
    let url = prop(&options, "url")
        .as_string()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| type_error("realtime-bridge: no url: pass options.url or call configure({ url })"))?;
    let base = url.trim_end_matches('/');
    let mut key = String::with_capacity(base.len() + user.as_str().len() + 1);
    key.push_str(base);
    key.push('\n');
    key.push_str(user.as_str());

    let mut listener = Listener {
        id: 0,
        callback,
        on_status: func(&options, "onStatus"),
        on_error: func(&options, "onError"),
        on_reset: func(&options, "onReset"),
        reported: None,
    };

    let existing = REGISTRY.with(|r| r.borrow().iter().find(|c| c.borrow().key == key).cloned());
    let (conn, id) = match existing {
        Some(conn) => {
            let (id, grow) = {
                let mut st = conn.borrow_mut();
                let (id, grow) = st.demux.add(filter);
                listener.id = id;
                st.listeners.push(listener);
                (id, grow)
            };
            if grow {
                request_restart(&conn, false);
            }
            // Tell the newcomer the current status, after `subscribe` has returned.
            let c = Rc::clone(&conn);
            spawn_local(async move { notify_status(&c) });
            (conn, id)
        }
        None => {
            let mut endpoint = String::with_capacity(base.len() + user.as_str().len() + 20);
            endpoint.push_str(base);
            endpoint.push_str("/v1/users/");
            endpoint.push_str(user.as_str());
            endpoint.push_str("/events");
            let bo = prop(&options, "backoff");
            let d = Backoff::default();
            let backoff = Backoff {
                initial_ms: number(&bo, "initialMs").unwrap_or(d.initial_ms),
                max_ms: number(&bo, "maxMs").unwrap_or(d.max_ms),
                multiplier: number(&bo, "multiplier").unwrap_or(d.multiplier),
                jitter: number(&bo, "jitter").unwrap_or(d.jitter),
            }
            .sanitized();
            let mut demux = Demux::new(prop(&options, "lastEventId").as_string());
            let (id, _) = demux.add(filter);
            listener.id = id;
            let conn: Conn = Rc::new(RefCell::new(Shared {
                key,
                endpoint,
                token: prop(&options, "token").as_string().filter(|t| !t.is_empty()),
                get_token: func(&options, "getToken"),
                backoff,
                heartbeat_ms: number(&options, "heartbeatTimeoutMs").unwrap_or(45_000.0),
                demux,
                listeners: vec![listener],
                status: Status::Connecting,
                closed: false,
                restart: false,
                reset_attempts: false,
                end: None,
                abort: None,
                wake: None,
                sleep_timer: None,
                online: None,
            }));
            watch_online(&conn);
            REGISTRY.with(|r| r.borrow_mut().push(Rc::clone(&conn)));
            spawn_local(run(Rc::clone(&conn)));
            (conn, id)
        }
    };
    Ok(Subscription { conn: RefCell::new(Some(conn)), id, closed_cursor: RefCell::new(None) })
}

/// Listens to the global `online` event where there is one (browsers, workers; not Node).
fn watch_online(conn: &Conn) {
    let global = js_sys::global();
    if !prop(&global, "addEventListener").is_function() {
        return;
    }
    let target: EventTarget = global.unchecked_into();
    let weak: Weak<RefCell<Shared>> = Rc::downgrade(conn);
    let closure = Closure::<dyn FnMut()>::new(move || {
        if let Some(c) = weak.upgrade() {
            if let Ok(mut st) = c.try_borrow_mut() {
                if st.wake.is_some() {
                    st.reset_attempts = true;
                    wake(&mut st);
                }
            }
        }
    });
    if target.add_event_listener_with_callback("online", closure.as_ref().unchecked_ref()).is_ok() {
        conn.borrow_mut().online = Some((target, closure));
    }
}

fn wake(st: &mut Shared) {
    if let Some(t) = st.sleep_timer.take() {
        clear_timeout(&t);
    }
    if let Some(w) = st.wake.take() {
        let _ = w.call0(&JsValue::NULL);
    }
}

/// Drops the current attempt and connects again at once.
fn request_restart(conn: &Conn, reset_attempts: bool) {
    let mut st = conn.borrow_mut();
    if st.closed {
        return;
    }
    st.restart = true;
    st.reset_attempts |= reset_attempts;
    if let Some(a) = st.abort.take() {
        a.abort();
    }
    wake(&mut st);
}

/// Tells every listener the current status, once per change.
fn notify_status(conn: &Conn) {
    let calls: Vec<(Function, Status)> = {
        let Ok(mut st) = conn.try_borrow_mut() else {
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

fn set_status(conn: &Conn, status: Status) {
    {
        let mut st = conn.borrow_mut();
        if st.closed && status != Status::Closed {
            return;
        }
        st.status = status;
    }
    notify_status(conn);
}

/// Gives `err` to every listener's `onError`.
fn report_error(conn: &Conn, err: &JsValue) {
    let fns: Vec<Function> = conn.borrow().listeners.iter().filter_map(|l| l.on_error.clone()).collect();
    for f in fns {
        let _ = f.call1(&JsValue::NULL, err);
    }
}

/// Ends the shared connection: abort, stop timers, drop the `online` closure, unregister.
fn shutdown(conn: &Conn) {
    let online = {
        let mut st = conn.borrow_mut();
        if st.closed {
            None
        } else {
            st.closed = true;
            st.status = Status::Closed;
            if let Some(a) = st.abort.take() {
                a.abort();
            }
            wake(&mut st);
            st.online.take()
        }
    };
    if let Some((target, closure)) = online {
        let _ = target.remove_event_listener_with_callback("online", closure.as_ref().unchecked_ref());
        drop(closure);
    }
    REGISTRY.with(|r| r.borrow_mut().retain(|c| !Rc::ptr_eq(c, conn)));
}

/// Sleeps `ms`, or less if woken (`reconnect()`, `online`, `close()`).
async fn sleep(conn: &Conn, ms: f64) {
    let promise = {
        let mut st = conn.borrow_mut();
        if st.closed || st.restart {
            return;
        }
        let mut timer = JsValue::UNDEFINED;
        let mut resolver = None;
        let p = Promise::new(&mut |resolve, _reject| {
            timer = set_timeout(&resolve, ms);
            resolver = Some(resolve);
        });
        st.sleep_timer = Some(timer);
        st.wake = resolver;
        p
    };
    let _ = JsFuture::from(promise).await;
    let mut st = conn.borrow_mut();
    st.wake = None;
    if let Some(t) = st.sleep_timer.take() {
        clear_timeout(&t);
    }
}

/// The token for the next request: `getToken()` (awaited) if given, else `token`.
async fn fetch_token(conn: &Conn) -> Result<Option<String>, JsValue> {
    let (get, fixed) = {
        let st = conn.borrow();
        (st.get_token.clone(), st.token.clone())
    };
    let Some(get) = get else { return Ok(fixed) };
    let v = get.call0(&JsValue::NULL)?;
    let v = JsFuture::from(Promise::resolve(&v)).await?;
    Ok(v.as_string().filter(|t| !t.is_empty()))
}

enum Outcome {
    /// `close()` was called: stop.
    Closed,
    /// Connect again now, no backoff.
    Now,
    /// The bridge ended the stream with `end`: connect again at once (see `EndReason`).
    End(EndReason),
    /// Wait, then connect again.
    Retry,
    /// 400 / 403: the subscription is over.
    Final,
}

/// The connection task: connect, read, reconnect, until closed.
async fn run(conn: Conn) {
    let mut attempt: u32 = 0;
    let mut retried_401 = false;
    let mut first = true;
    loop {
        {
            let mut st = conn.borrow_mut();
            if st.closed {
                break;
            }
            st.restart = false;
            if st.reset_attempts {
                st.reset_attempts = false;
                attempt = 0;
            }
        }
        set_status(&conn, if first { Status::Connecting } else { Status::Reconnecting });
        first = false;
        let outcome = connect_once(&conn, &mut attempt, &mut retried_401).await;
        let (closed, restart) = {
            let st = conn.borrow();
            (st.closed, st.restart)
        };
        if closed {
            break;
        }
        let delay = match outcome {
            Outcome::Closed => break,
            Outcome::Final => {
                shutdown(&conn);
                notify_status(&conn);
                conn.borrow_mut().listeners.clear();
                break;
            }
            Outcome::Now => continue,
            Outcome::Retry if restart => continue,
            Outcome::End(reason) => {
                // The bridge asked for this reconnection: no backoff, and the attempt count
                // stays as the successful open left it. `getToken()` is awaited before it, as
                // before every connection: after `token_expired` that is the fresh token (a
                // fixed `token` is sent again and a 401 is handled as usual).
                set_status(&conn, Status::Reconnecting);
                reason.reconnect_delay_ms(js_sys::Math::random())
            }
            Outcome::Retry => {
                set_status(&conn, Status::Reconnecting);
                let delay = {
                    let st = conn.borrow();
                    st.backoff.delay_ms(attempt, js_sys::Math::random())
                };
                attempt = attempt.saturating_add(1);
                f64::from(delay)
            }
        };
        // One sleep for both (each await point costs wasm size); woken early by `close()`,
        // `reconnect()`, `online` or a grown filter.
        sleep(&conn, delay).await;
    }
}

/// One request: token, fetch, status handling, reading the stream to its end.
async fn connect_once(conn: &Conn, attempt: &mut u32, retried_401: &mut bool) -> Outcome {
    let token = match fetch_token(conn).await {
        Ok(t) => t,
        Err(e) => {
            let mut m = String::from("getToken failed: ");
            m.push_str(&error_text(&e));
            report_error(conn, &realtime_error(&m, None, Some("token_error"), false));
            return Outcome::Retry;
        }
    };
    let Ok(ctrl) = AbortController::new() else {
        return Outcome::Retry;
    };
    let (url, init) = {
        let mut st = conn.borrow_mut();
        if st.closed {
            return Outcome::Closed;
        }
        if st.restart {
            return Outcome::Now;
        }
        st.end = None;
        let mut url = st.endpoint.clone();
        if let Some(q) = st.demux.begin_request() {
            url.push_str("?events=");
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
        st.abort = Some(ctrl.clone());
        (url, init)
    };
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
            let mut m = String::from("cannot reach the bridge: ");
            m.push_str(&error_text(&e));
            report_error(conn, &realtime_error(&m, None, Some("network_error"), false));
            return Outcome::Retry;
        }
    };
    let status = response.status();
    if status == 401 && !*retried_401 {
        // The token may just have expired: ask getToken again, once, right away.
        *retried_401 = true;
        return Outcome::Now;
    }
    if status != 401 {
        *retried_401 = false;
    }
    let is_sse = response
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if status != 200 || !is_sse {
        let (message, code) = error_body(&response).await;
        let is_final = status == 400 || status == 403;
        let mut m = String::from("the bridge answered ");
        push_u64(&mut m, u64::from(status));
        if let Some(msg) = &message {
            m.push_str(": ");
            m.push_str(msg);
        } else if status == 200 {
            m.push_str(" without an event stream");
        }
        report_error(conn, &realtime_error(&m, Some(status), code.as_deref(), is_final));
        return if is_final { Outcome::Final } else { Outcome::Retry };
    }
    let Some(body) = response.body() else {
        return Outcome::Retry;
    };
    *attempt = 0;
    set_status(conn, Status::Open);
    read_stream(conn, &body, &ctrl).await;
    // Ends the body if it is still open (no-op otherwise). Not `reader.cancel()`: its
    // promise rejects on an errored stream, an unhandled rejection in Node.
    ctrl.abort();
    let mut st = conn.borrow_mut();
    st.demux.end_stream();
    // After `end` the close that follows is expected: one immediate reconnection, not
    // that and a backoff one.
    match st.end.take() {
        Some(reason) => Outcome::End(reason),
        None => Outcome::Retry,
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
        Ok(v) => (prop(&v, "error").as_string(), prop(&v, "code").as_string()),
        Err(_) => (None, None),
    }
}

/// Aborts the request when no byte has come for `ms` (not even a heartbeat).
///
/// Events often arrive one per chunk: re-arming a timer for every chunk (a promise, a race
/// and two timer calls each) cost more main-thread time than parsing the event. So a chunk
/// only records when it came, and one interval checks now and then (`ms` / 4: the stream is
/// cut between `ms` and 1.25 × `ms` after its last byte).
struct Watchdog {
    /// When the last chunk came (`Date.now()`), shared with the interval's closure.
    last: Rc<std::cell::Cell<f64>>,
    /// Set by the closure when it aborted the request.
    fired: Rc<std::cell::Cell<bool>>,
    interval: JsValue,
    /// Owned here and dropped with the watchdog, after the interval is cleared.
    _tick: Closure<dyn FnMut()>,
}

impl Watchdog {
    fn start(ms: f64, ctrl: &AbortController) -> Self {
        let last = Rc::new(std::cell::Cell::new(js_sys::Date::now()));
        let fired = Rc::new(std::cell::Cell::new(false));
        let (l, f, ctrl) = (Rc::clone(&last), Rc::clone(&fired), ctrl.clone());
        let tick = Closure::<dyn FnMut()>::new(move || {
            if !f.get() && js_sys::Date::now() - l.get() >= ms {
                f.set(true);
                ctrl.abort();
            }
        });
        let interval = set_interval(tick.as_ref().unchecked_ref(), (ms / 4.0).max(10.0));
        Self { last, fired, interval, _tick: tick }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        clear_interval(&self.interval);
    }
}

/// Reads chunks until the stream ends, fails, is aborted, or stays silent for
/// longer than the heartbeat timeout.
///
/// The body is piped into a sink whose `write` is called by the browser for each chunk: one
/// promise for the whole stream, where a `reader.read()` loop costs a promise, a Rust future
/// and two closures per chunk (most of the main-thread time when events come one by one).
async fn read_stream(conn: &Conn, body: &ReadableStream, ctrl: &AbortController) {
    let heartbeat_ms = conn.borrow().heartbeat_ms;
    let watchdog = (heartbeat_ms > 0.0).then(|| Watchdog::start(heartbeat_ms, ctrl));
    let (c, abort) = (Rc::clone(conn), ctrl.clone());
    let last = watchdog.as_ref().map(|w| Rc::clone(&w.last));
    let write = Closure::<dyn FnMut(JsValue)>::new(move |chunk: JsValue| {
        if let Some(l) = &last {
            l.set(js_sys::Date::now());
        }
        if chunk.is_object() {
            deliver(&c, &Uint8Array::new(&chunk).to_vec());
            // Closed, or the bridge said `end`: close our side now rather than wait for
            // the bridge's close (the reconnection need not wait for it).
            let stop = c.try_borrow().is_ok_and(|st| st.closed || st.end.is_some());
            if stop {
                abort.abort();
            }
        }
    });
    let sink = js_sys::Object::new();
    if Reflect::set(&sink, &JsValue::from_str("write"), write.as_ref()).is_err() {
        return;
    }
    let Ok(dest) = WritableStream::new_with_underlying_sink(&sink) else { return };
    // Ends when the body does, or rejects when it fails or is aborted: either way, done.
    let _ = JsFuture::from(body.pipe_to(&dest)).await;
    drop(write);
    if watchdog.as_ref().is_some_and(|w| w.fired.get()) {
        let mut m = String::from("no data from the bridge for ");
        push_u64(&mut m, heartbeat_ms as u64);
        m.push_str(" ms: reconnecting");
        report_error(conn, &realtime_error(&m, None, Some("heartbeat_timeout"), false));
    }
}

/// Parses `bytes`, de-duplicates, and calls each target's callback.
fn deliver(conn: &Conn, bytes: &[u8]) {
    let mut calls: Vec<(ListenerId, FrameKind, JsValue)> = Vec::new();
    let mut bad: Vec<JsValue> = Vec::new();
    {
        let mut st = conn.borrow_mut();
        let mut frames = Vec::new();
        st.demux.push(bytes, &mut frames);
        for f in frames {
            if let FrameKind::End(reason) = f.kind {
                // For the connection only: never handed to a callback.
                st.end = Some(reason);
                continue;
            }
            // The engine's own JSON.parse: no Rust JSON round trip.
            let value = match JSON::parse(&f.data) {
                Ok(v) => v,
                Err(_) => {
                    let mut m = String::from("the bridge sent an event whose data is not JSON (event '");
                    m.push_str(&f.event);
                    m.push_str("')");
                    bad.push(realtime_error(&m, None, Some("invalid_event"), false));
                    continue;
                }
            };
            // In frame order: a `reset` makes the ids delivered before it forgotten.
            let id = if f.kind == FrameKind::Event { prop(&value, "id").as_string() } else { None };
            if !st.demux.admit(f.kind, id.as_deref()) {
                continue;
            }
            for t in f.targets {
                calls.push((t, f.kind, value.clone()));
            }
        }
    }
    for e in &bad {
        report_error(conn, e);
    }
    for (target, kind, value) in calls {
        // Looked up per call: an earlier callback may have closed this listener.
        let (cb, on_error) = {
            let st = conn.borrow();
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
}

/// What `subscribe` returns. Owns (with the other subscriptions of the same
/// url + user) the shared connection and its closures; `close()` or dropping it
/// (`free()`, `[Symbol.dispose]`) releases them when it is the last one.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Subscription {
    conn: RefCell<Option<Conn>>,
    id: ListenerId,
    closed_cursor: RefCell<Option<String>>,
}

#[wasm_bindgen]
impl Subscription {
    /// `'connecting' | 'open' | 'reconnecting' | 'closed'`
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> StatusJs {
        let s = match &*self.conn.borrow() {
            Some(c) => match c.try_borrow() {
                Ok(st) if st.closed => Status::Closed,
                Ok(st) => st.status,
                Err(_) => Status::Open,
            },
            None => Status::Closed,
        };
        JsValue::from_str(s.as_str()).unchecked_into()
    }

    /// The resume cursor (the last SSE `id:` received), or `null`.
    #[wasm_bindgen(getter, js_name = lastEventId)]
    pub fn last_event_id(&self) -> Option<String> {
        match &*self.conn.borrow() {
            Some(c) => c.try_borrow().ok().and_then(|st| st.demux.cursor().map(str::to_owned)),
            None => self.closed_cursor.borrow().clone(),
        }
    }

    /// Drops the current connection (if any) and connects again at once,
    /// resuming from `lastEventId`. No effect once closed.
    pub fn reconnect(&self) {
        let conn = self.conn.borrow().clone();
        if let Some(c) = conn {
            request_restart(&c, true);
        }
    }

    /// Stops delivery to this subscription; the last one of a shared
    /// connection closes it. Idempotent.
    pub fn close(&self) {
        let Some(conn) = self.conn.borrow_mut().take() else {
            return;
        };
        let (listener, empty, cursor) = {
            let mut st = conn.borrow_mut();
            st.demux.remove(self.id);
            let pos = st.listeners.iter().position(|l| l.id == self.id);
            let listener = pos.map(|p| st.listeners.remove(p));
            (listener, st.demux.is_empty(), st.demux.cursor().map(str::to_owned))
        };
        *self.closed_cursor.borrow_mut() = cursor;
        if empty {
            shutdown(&conn);
        }
        if let Some(l) = listener {
            if l.reported != Some(Status::Closed) {
                if let Some(f) = l.on_status {
                    let _ = f.call1(&JsValue::NULL, &JsValue::from_str(Status::Closed.as_str()));
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}
