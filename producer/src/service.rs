//! [`RealtimeService`]: validation, mode choice, acknowledged publishing, presence,
//! flush and close (docs/protocol.md §1.7).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use realtime_bridge_wire::{subject, EventName, UserId};
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::presence::{Presence, PresenceError};
use crate::{Error, Mode, Options, SendOptions};

/// First pause before a publish is sent again; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between two attempts: keeps a retried message close to its first try.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The header JetStream de-duplicates on.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// In auto mode, the shortest time between two stream lookups triggered by "no responders":
/// a stream that exists but has no leader for a while must not cost a lookup per retry. (A
/// lost acknowledgement always triggers one.)
const GONE_RECHECK_MIN: Duration = Duration::from_secs(1);

/// Publishes events to the users of Realtime Bridge over NATS: the original system's
/// `IRealtimeService` port (send to a user, to several, broadcast; who is connected).
///
/// Cheap to clone (the clones share one connection, one in-flight window and one state),
/// so a service keeps one and hands clones to its tasks. See the crate documentation for
/// an example, and docs/protocol.md §1.7 for the contract shared with the TypeScript and
/// Python libraries.
#[derive(Clone)]
pub struct RealtimeService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RealtimeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealtimeService")
            .field("mode", &self.mode())
            .field("options", &self.inner.options)
            .field("owns_client", &self.inner.owns_client)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: async_nats::Client,
    /// Publishes and waits for acknowledgements; its own ack limit is set to ours, so our
    /// `window` is the one that decides.
    js: jetstream::Context,
    options: Options,
    /// Whether `close` closes the connection: only one this library opened.
    owns_client: bool,
    /// One permit per message waiting for its acknowledgement (`max_in_flight`).
    window: Semaphore,
    state: Mutex<State>,
    /// Woken each time a send settles (flush and close wait on it).
    settled: Notify,
    /// Held while an auto-mode lookup runs, so concurrent sends trigger one lookup, not many
    /// (sends that got "no responders" or no acknowledgement meanwhile use its result).
    recheck: tokio::sync::Mutex<()>,
}

struct State {
    /// What is in use: [`Mode::JetStream`] or [`Mode::Core`], never `Auto`.
    mode: Mode,
    /// When the stream was last looked up (auto mode re-checks from core mode).
    checked_at: Instant,
    /// When a JetStream publish's "no responders" or lost acknowledgement last made auto
    /// mode look the stream up, and when that lookup ended.
    gone_checked_at: Option<Instant>,
    gone_checked_done: Option<Instant>,
    /// Number given to the next send; flush waits for the sends numbered below its mark.
    next_send: u64,
    /// Sends started and not yet settled.
    pending: BTreeSet<u64>,
    closed: bool,
}

/// A started send: removed from the pending set when dropped, whichever way it ends.
struct Ticket<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.inner.lock().pending.remove(&self.id);
        self.inner.settled.notify_waiters();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves consistent data (plain field updates).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self) -> Result<Ticket<'_>, Error> {
        let mut s = self.lock();
        if s.closed {
            return Err(Error::Closed);
        }
        let id = s.next_send;
        s.next_send += 1;
        s.pending.insert(id);
        Ok(Ticket { inner: self, id })
    }

    /// Waits until every send numbered below `mark` has settled, or `deadline`.
    async fn wait_settled(&self, mark: u64, deadline: Instant, what: &str) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before the check, so a send settling in between still wakes us.
            notified.as_mut().enable();
            if self.lock().pending.first().is_none_or(|&first| first >= mark) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                return Err(Error::Timeout { what: what.to_owned(), after: started.elapsed() });
            }
        }
    }
}

impl RealtimeService {
    /// Connects to NATS at `url` (e.g. `nats://127.0.0.1:4222`, or a comma-separated list)
    /// with the default [`Options`]: auto mode, so it publishes acknowledged through
    /// JetStream when the bridge runs with history and with core NATS otherwise.
    ///
    /// Fails with `unavailable` when NATS cannot be reached. [`RealtimeService::close`]
    /// closes the connection it opened.
    pub async fn connect(url: impl async_nats::ToServerAddrs) -> Result<Self, Error> {
        let nats = async_nats::ConnectOptions::new().name("realtime-bridge-producer");
        Self::connect_with(url, nats, Options::default()).await
    }

    /// [`RealtimeService::connect`] with NATS connection options (credentials, TLS, name)
    /// and library [`Options`].
    pub async fn connect_with(
        url: impl async_nats::ToServerAddrs,
        nats: async_nats::ConnectOptions,
        options: Options,
    ) -> Result<Self, Error> {
        let client = nats.connect(url).await.map_err(|e| Error::unavailable(format!("cannot connect to NATS: {e}")))?;
        let service = Self::build(client.clone(), options, true).await;
        if service.is_err() {
            // Ours to close: nobody else holds it.
            let _ = client.drain().await;
        }
        service
    }

    /// Uses a connection the service already has (its credentials, its reconnection
    /// policy). [`RealtimeService::close`] leaves it open.
    ///
    /// Looks the stream up unless `options.mode` is [`Mode::Core`]; with
    /// [`Mode::JetStream`] fails with `unavailable` when the stream does not exist.
    pub async fn with_client(client: async_nats::Client, options: Options) -> Result<Self, Error> {
        Self::build(client, options, false).await
    }

    async fn build(client: async_nats::Client, mut options: Options, owns_client: bool) -> Result<Self, Error> {
        options.max_in_flight = options.max_in_flight.max(1);
        let js = jetstream::ContextBuilder::new()
            .timeout(options.ack_timeout)
            .max_ack_inflight(options.max_in_flight)
            .backpressure_on_inflight(true)
            .build(client.clone());
        let mode = match options.mode {
            Mode::Core => Mode::Core,
            Mode::JetStream => match lookup(&js, &options.stream).await {
                Lookup::Found => Mode::JetStream,
                Lookup::Missing(e) | Lookup::Unknown(e) => {
                    return Err(Error::unavailable(format!(
                        "mode jetstream: the JetStream stream {:?} cannot be found ({e}); is the bridge running \
                         with history (--history on/auto), under this --stream-name?",
                        options.stream
                    )))
                }
            },
            Mode::Auto => match lookup(&js, &options.stream).await {
                Lookup::Found => Mode::JetStream,
                Lookup::Missing(_) | Lookup::Unknown(_) => Mode::Core,
            },
        };
        let window = Semaphore::new(options.max_in_flight);
        let state = State {
            mode,
            checked_at: Instant::now(),
            gone_checked_at: None,
            gone_checked_done: None,
            next_send: 0,
            pending: BTreeSet::new(),
            closed: false,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                js,
                options,
                owns_client,
                window,
                state: Mutex::new(state),
                settled: Notify::new(),
                recheck: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// How events are published now: [`Mode::JetStream`] (acknowledged) or [`Mode::Core`]
    /// (at most once); never [`Mode::Auto`], which resolves to one of them and may change
    /// between sends as the bridge's stream appears or disappears.
    pub fn mode(&self) -> Mode {
        self.inner.lock().mode
    }

    /// The options in use (with their defaults filled in).
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The NATS connection, for what this library does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// Sends `data` as event `event` to user `user_id` (`user.<userId>.<event>`).
    ///
    /// Resolves once JetStream acknowledged it (JetStream mode) or the NATS client took it
    /// (core mode). Inputs are checked first, and a bad one sends nothing: user id and event
    /// name as tokens (`invalid_user_id`, `invalid_event_name`, `reserved_event`), `data` as
    /// JSON (`invalid_data`, `too_large`).
    pub async fn send_event_to_user<T: Serialize + ?Sized>(
        &self,
        user_id: impl AsRef<str>,
        event: impl AsRef<str>,
        data: &T,
    ) -> Result<(), Error> {
        self.send_event_to_user_with(user_id, event, data, &SendOptions::default()).await
    }

    /// [`RealtimeService::send_event_to_user`] with a message id ([`SendOptions`]).
    pub async fn send_event_to_user_with<T: Serialize + ?Sized>(
        &self,
        user_id: impl AsRef<str>,
        event: impl AsRef<str>,
        data: &T,
        options: &SendOptions,
    ) -> Result<(), Error> {
        let event = event_name(event.as_ref())?;
        let user = user_id_of(user_id.as_ref())?;
        let payload = self.payload(data)?;
        let msg_id = checked_msg_id(options)?;
        self.send(vec![subject::user_subject(&user, &event)], payload, msg_id).await
    }

    /// Sends `data` as event `event` to each of `user_ids`: one message per distinct user
    /// (repeated ids are sent once, order kept; an empty list sends nothing). Resolves once
    /// every one of them is acknowledged; fails if one fails (the others may have been
    /// stored: send again with the same `msg_id` to complete without duplicates).
    pub async fn send_event_to_users<I>(
        &self,
        user_ids: I,
        event: impl AsRef<str>,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.send_event_to_users_with(user_ids, event, data, &SendOptions::default()).await
    }

    /// [`RealtimeService::send_event_to_users`] with a message id: each user's message gets
    /// `<msg_id>:<subject>`, because JetStream's duplicate window is per stream, not per
    /// subject.
    pub async fn send_event_to_users_with<I>(
        &self,
        user_ids: I,
        event: impl AsRef<str>,
        data: &(impl Serialize + ?Sized),
        options: &SendOptions,
    ) -> Result<(), Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let event = event_name(event.as_ref())?;
        let mut seen = std::collections::HashSet::new();
        let mut subjects = Vec::new();
        for u in user_ids {
            let user = user_id_of(u.as_ref())?;
            let s = subject::user_subject(&user, &event);
            if seen.insert(user) {
                subjects.push(s);
            }
        }
        let payload = self.payload(data)?;
        let msg_id = checked_msg_id(options)?;
        self.send(subjects, payload, msg_id).await
    }

    /// Sends `data` as event `event` to every connected user (`broadcast.<event>`).
    pub async fn broadcast_event<T: Serialize + ?Sized>(&self, event: impl AsRef<str>, data: &T) -> Result<(), Error> {
        self.broadcast_event_with(event, data, &SendOptions::default()).await
    }

    /// [`RealtimeService::broadcast_event`] with a message id ([`SendOptions`]).
    pub async fn broadcast_event_with<T: Serialize + ?Sized>(
        &self,
        event: impl AsRef<str>,
        data: &T,
        options: &SendOptions,
    ) -> Result<(), Error> {
        let event = event_name(event.as_ref())?;
        let payload = self.payload(data)?;
        let msg_id = checked_msg_id(options)?;
        self.send(vec![subject::broadcast_subject(&event)], payload, msg_id).await
    }

    /// The whole presence answer for `user_id` (docs/protocol.md §4.2), summed over every
    /// bridge on this NATS: a NATS request on `realtime.presence.<userId>`.
    ///
    /// Fails with `no_bridge` when no bridge answers within
    /// [`Options::presence_timeout`]: "no bridge" is not "nobody connected".
    pub async fn get_presence(&self, user_id: impl AsRef<str>) -> Result<Presence, Error> {
        let user = user_id_of(user_id.as_ref())?;
        if self.inner.lock().closed {
            return Err(Error::Closed);
        }
        let request =
            async_nats::Request::new().payload(Bytes::new()).timeout(Some(self.inner.options.presence_timeout));
        let subject = format!("{}{}", subject::PRESENCE_REQUEST_PREFIX, user.as_str());
        let no_bridge = |reason: String| Error::NoBridge { user_id: user.to_string(), reason };
        let msg = match self.inner.client.send_request(subject, request).await {
            Ok(m) => m,
            Err(e) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => no_bridge("no bridge runs on this NATS (no responders)".into()),
                    RequestErrorKind::TimedOut => {
                        no_bridge(format!("none answered within {:?}", self.inner.options.presence_timeout))
                    }
                    _ => Error::unavailable(format!("presence request for user {user:?} failed: {e}")),
                })
            }
        };
        if let Ok(p) = serde_json::from_slice::<Presence>(&msg.payload) {
            return Ok(p);
        }
        Err(match serde_json::from_slice::<PresenceError>(&msg.payload) {
            Ok(e) => Error::unavailable(format!(
                "the bridge refused the presence request for user {user:?}: {} ({})",
                e.error,
                e.code.as_deref().unwrap_or("no code")
            )),
            Err(e) => Error::unavailable(format!("unreadable presence answer for user {user:?}: {e}")),
        })
    }

    /// The client ids of `user_id`'s open streams, oldest first (the original port's
    /// `getConnectedClients`): each stream's `clientId=`, or the id its bridge made up.
    pub async fn get_connected_clients(&self, user_id: impl AsRef<str>) -> Result<Vec<String>, Error> {
        Ok(self.get_presence(user_id).await?.clients.into_iter().map(|c| c.id).collect())
    }

    /// Whether `user_id` has at least one open stream on any bridge.
    pub async fn is_user_connected(&self, user_id: impl AsRef<str>) -> Result<bool, Error> {
        Ok(self.get_presence(user_id).await?.connected)
    }

    /// Waits until every send started before this call has settled (acknowledged or failed;
    /// their own calls report which), then, in core mode, for a round trip to the server,
    /// so that what was published is known to have reached it.
    ///
    /// Bounded by [`Options::publish_timeout`] (`timeout`).
    pub async fn flush(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let mark = inner.lock().next_send;
        inner.wait_settled(mark, Instant::now() + inner.options.publish_timeout, "flush").await?;
        if self.mode() == Mode::Core {
            self.round_trip().await
        } else {
            inner.client.flush().await.map_err(|e| Error::unavailable(format!("NATS flush failed: {e}")))
        }
    }

    /// Refuses new sends (`closed`), waits for the sends in flight (at most
    /// [`Options::publish_timeout`]), then closes the NATS connection if
    /// [`RealtimeService::connect`] opened it (a connection given to
    /// [`RealtimeService::with_client`] stays open). Closing twice is harmless.
    pub async fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let mark = {
            let mut s = inner.lock();
            s.closed = true;
            s.next_send
        };
        let waited = inner.wait_settled(mark, Instant::now() + inner.options.publish_timeout, "close").await;
        if inner.owns_client {
            // Core messages still in the client's buffer go out before the connection closes.
            let _ = inner.client.flush().await;
            let _ = inner.client.drain().await;
        }
        waited
    }

    /// Validated, serialised and size-checked `data`.
    fn payload<T: Serialize + ?Sized>(&self, data: &T) -> Result<Bytes, Error> {
        let bytes = serde_json::to_vec(data).map_err(Error::InvalidData)?;
        let max = self.inner.options.max_event_bytes;
        if bytes.len() > max {
            return Err(Error::TooLarge { size: bytes.len(), max });
        }
        Ok(Bytes::from(bytes))
    }

    /// Publishes `payload` on every subject (already validated) in the current mode.
    async fn send(&self, subjects: Vec<String>, payload: Bytes, msg_id: Option<&str>) -> Result<(), Error> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.options.publish_timeout;
        let _ticket = inner.begin()?;
        if subjects.is_empty() {
            return Ok(());
        }
        // The caller's id as it travels in each mode (core messages carry it too).
        let given_id = |s: &str| match msg_id {
            Some(id) if subjects.len() == 1 => Some(id.to_owned()),
            Some(id) => Some(format!("{id}:{s}")),
            None => None,
        };
        match self.current_mode().await {
            Mode::JetStream => {
                if let [s] = subjects.as_slice() {
                    return self.publish_js(s, given_id(s), payload, deadline).await;
                }
                let all = subjects.iter().map(|s| self.publish_js(s, given_id(s), payload.clone(), deadline));
                // Every subject runs to its end: one failure must not cancel the others
                // halfway (they may already be stored).
                futures::future::join_all(all).await.into_iter().collect()
            }
            _ => {
                for s in &subjects {
                    self.publish_core(s, given_id(s).as_deref(), payload.clone()).await?;
                }
                Ok(())
            }
        }
    }

    /// One message through JetStream with `given` as id, else one made up. If auto mode finds
    /// the stream gone meanwhile: with core NATS when nobody got it ("no responders"), as a
    /// core send would be, or counted as sent when its last attempt went unacknowledged (that
    /// attempt reached the subject's subscribers, a live bridge among them).
    async fn publish_js(
        &self,
        subject: &str,
        given: Option<String>,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<(), Error> {
        let id = given.clone().unwrap_or_else(|| nuid::next().to_string());
        match self.publish_acked(subject, &id, payload.clone(), deadline).await? {
            Acked::Stored | Acked::Delivered => Ok(()),
            Acked::StreamGone => self.publish_core(subject, given.as_deref(), payload).await,
        }
    }

    /// One core-NATS publish, with the caller's id as header when there is one: resolves once
    /// the client has it.
    async fn publish_core(&self, subject: &str, msg_id: Option<&str>, payload: Bytes) -> Result<(), Error> {
        let client = &self.inner.client;
        let r = match msg_id {
            Some(id) => {
                let mut h = HeaderMap::new();
                h.insert(MSG_ID_HEADER, id);
                client.publish_with_headers(subject.to_owned(), h, payload).await
            }
            None => client.publish(subject.to_owned(), payload).await,
        };
        r.map_err(|e| Error::unavailable(format!("publish to {subject} failed: {e}")))
    }

    /// The mode to publish in now; in auto mode from core, looks the stream up again when
    /// the last lookup is older than [`Options::auto_recheck`] (one lookup at a time).
    async fn current_mode(&self) -> Mode {
        let inner = &*self.inner;
        let due = |s: &State| {
            inner.options.mode == Mode::Auto
                && s.mode == Mode::Core
                && s.checked_at.elapsed() >= inner.options.auto_recheck
        };
        {
            let s = inner.lock();
            if !due(&s) {
                return s.mode;
            }
        }
        // Another send is looking: use what is known meanwhile.
        let Ok(_looking) = inner.recheck.try_lock() else { return self.mode() };
        if !due(&inner.lock()) {
            return self.mode();
        }
        let found = lookup(&inner.js, &inner.options.stream).await;
        let mut s = inner.lock();
        s.checked_at = Instant::now();
        if let Lookup::Found = found {
            s.mode = Mode::JetStream;
        }
        s.mode
    }

    /// Auto mode, after a JetStream publish got "no responders" (`timed_out` false) or no
    /// acknowledgement (`timed_out` true): whether the stream is gone, in which case the
    /// service is switched to core mode. Only JetStream saying so counts (no answer, or
    /// another error answer such as a stream without a leader, changes nothing).
    ///
    /// One lookup at a time; a send that waited while one ran uses its result. After "no
    /// responders", which a flood meets in numbers while JetStream elects a leader, at most
    /// one lookup per [`GONE_RECHECK_MIN`]; after a lost acknowledgement always one, since
    /// the retry would otherwise reach a live bridge again.
    async fn stream_gone(&self, timed_out: bool) -> bool {
        let inner = &*self.inner;
        let asked = Instant::now();
        let _looking = inner.recheck.lock().await;
        {
            let mut s = inner.lock();
            if s.mode == Mode::Core {
                // Switched meanwhile (by the lookup this send waited for, or an earlier one).
                return true;
            }
            if s.gone_checked_done.is_some_and(|t| t > asked) {
                // A lookup ended while this send waited for it, and found the stream.
                return false;
            }
            if !timed_out && s.gone_checked_at.is_some_and(|t| t.elapsed() < GONE_RECHECK_MIN) {
                return false;
            }
            s.gone_checked_at = Some(Instant::now());
        }
        let found = lookup(&inner.js, &inner.options.stream).await;
        let mut s = inner.lock();
        s.gone_checked_done = Some(Instant::now());
        match found {
            Lookup::Missing(_) => {
                s.mode = Mode::Core;
                // From now on the rule of core mode: look again after `auto_recheck`.
                s.checked_at = Instant::now();
                true
            }
            Lookup::Found | Lookup::Unknown(_) => false,
        }
    }

    /// One message through JetStream, acknowledged: holds a window slot until it settles,
    /// sends it again with the same id on a lost acknowledgement or "no responders", and
    /// fails at `deadline` (`timeout`) or on JetStream's error answer (`unavailable`). In
    /// auto mode, "no responders" or a lost acknowledgement may find the stream gone, and so
    /// may another send's lookup while this one waits to retry: [`Acked::Delivered`] when
    /// the last attempt went unacknowledged, else [`Acked::StreamGone`].
    async fn publish_acked(
        &self,
        subject: &str,
        msg_id: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<Acked, Error> {
        let inner = &*self.inner;
        let started = Instant::now();
        let timed_out =
            |last: &str| Error::Timeout { what: format!("publish to {subject} ({last})"), after: started.elapsed() };
        let _slot = match tokio::time::timeout_at(deadline.into(), inner.window.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => return Err(timed_out("waiting for a slot in the in-flight window")),
        };
        let mut backoff = BACKOFF_START;
        let mut last = String::from("no time left for an attempt");
        // Whether the last attempt went out without an acknowledgement: subscribers of the
        // subject (a live bridge) may have got it as a plain message.
        let mut unacked = false;
        // What auto mode does with this message once the stream is known to be gone.
        let gone = |unacked: bool| if unacked { Acked::Delivered } else { Acked::StreamGone };
        loop {
            if inner.options.mode == Mode::Auto && inner.lock().mode == Mode::Core {
                // Another send's lookup found the stream gone: as after this send's own.
                return Ok(gone(unacked));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out(&last));
            }
            let mut headers = HeaderMap::new();
            headers.insert(MSG_ID_HEADER, msg_id);
            let attempt = async {
                let ack = inner.js.publish_with_headers(subject.to_owned(), headers, payload.clone()).await?;
                ack.await
            };
            let outcome = tokio::time::timeout(inner.options.ack_timeout.min(deadline - now), attempt).await;
            // "No responders": nothing listens on the subject (a stream without a leader for
            // a moment, or a stream deleted because the bridge runs without history now).
            // No acknowledgement: lost or late, or a stream deleted while a live bridge
            // subscribes to the subject and took the attempt as a plain message.
            let (lookup_due, why) = match outcome {
                Ok(Ok(_ack)) => return Ok(Acked::Stored),
                Ok(Err(e)) => match e.kind() {
                    PublishErrorKind::StreamNotFound => {
                        unacked = false;
                        (true, format!("last attempt: {e}"))
                    }
                    PublishErrorKind::TimedOut => {
                        unacked = true;
                        (true, format!("last attempt: {e}"))
                    }
                    // A connection being re-established: the attempt did not go out.
                    PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                        unacked = false;
                        (false, format!("last attempt: {e}"))
                    }
                    _ => {
                        return Err(Error::unavailable(format!(
                            "JetStream did not store the publish to {subject}: {e}"
                        )))
                    }
                },
                Err(_) => {
                    unacked = true;
                    (true, format!("last attempt: no acknowledgement within {:?}", inner.options.ack_timeout))
                }
            };
            last = why;
            if lookup_due
                && inner.options.mode == Mode::Auto
                && matches!(tokio::time::timeout_at(deadline.into(), self.stream_gone(unacked)).await, Ok(true))
            {
                return Ok(gone(unacked));
            }
            // Otherwise the same id again after a backoff: a resend is safe.
            let now = Instant::now();
            if now >= deadline {
                return Err(timed_out(&last));
            }
            tokio::time::sleep(jittered(backoff).min(deadline - now)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// A message to our own inbox comes back only after the server processed everything
    /// this connection sent before it: the confirmation `Client::flush` (a local write)
    /// does not give.
    async fn round_trip(&self) -> Result<(), Error> {
        let client = &self.inner.client;
        let wait = self.inner.options.ack_timeout;
        let failed = |e: String| Error::unavailable(format!("NATS round trip failed: {e}"));
        let inbox = client.new_inbox();
        let mut echo = client.subscribe(inbox.clone()).await.map_err(|e| failed(e.to_string()))?;
        client.publish(inbox, Bytes::new()).await.map_err(|e| failed(e.to_string()))?;
        match tokio::time::timeout(wait, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(failed("the connection closed".into())),
            Err(_) => Err(Error::Timeout { what: "flush (round trip to the NATS server)".into(), after: wait }),
        }
    }
}

/// How a JetStream publish ended well.
enum Acked {
    /// JetStream acknowledged it (a duplicate's acknowledgement counts).
    Stored,
    /// Auto mode found the stream gone and switched to core after an unacknowledged attempt:
    /// that attempt went to the subject's subscribers as a plain message (a live bridge
    /// delivered it), so it counts as sent; sending it again would deliver it twice.
    Delivered,
    /// Auto mode found the stream gone and switched to core, and nobody got the message
    /// ("no responders", or no attempt yet): publish it with core NATS.
    StreamGone,
}

/// What a stream lookup told.
enum Lookup {
    Found,
    /// JetStream answered that the stream does not exist.
    Missing(String),
    /// No answer (no JetStream, a timeout) or another error answer (e.g. no leader): why.
    Unknown(String),
}

/// Looks the stream up (one stream-info request).
async fn lookup(js: &jetstream::Context, stream: &str) -> Lookup {
    match js.get_stream(stream).await {
        Ok(_) => Lookup::Found,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(answer)
                if answer.code() == 404 || answer.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Lookup::Missing(e.to_string())
            }
            _ => Lookup::Unknown(e.to_string()),
        },
    }
}

fn user_id_of(s: &str) -> Result<UserId, Error> {
    UserId::parse(s).map_err(|reason| Error::InvalidUserId { user_id: s.to_owned(), reason })
}

fn event_name(s: &str) -> Result<EventName, Error> {
    let name = EventName::parse(s).map_err(|reason| Error::InvalidEventName { event: s.to_owned(), reason })?;
    if name.is_reserved() {
        return Err(Error::ReservedEvent { event: s.to_owned() });
    }
    Ok(name)
}

fn checked_msg_id(options: &SendOptions) -> Result<Option<&str>, Error> {
    match options.msg_id.as_deref() {
        // It travels as a NATS header value: a control character (CR, LF) would break it.
        Some(id) if id.is_empty() || id.chars().any(char::is_control) => {
            Err(Error::InvalidMsgId { msg_id: id.to_owned() })
        }
        other => Ok(other),
    }
}

/// `d` scaled by a random factor in [0.5, 1): producers that failed together do not all
/// come back at the same instant.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.5..1.0))
}
