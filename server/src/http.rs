//! Routes and handlers (docs/protocol.md §2 and §4). `app(state)` builds the whole router, so
//! tests drive it with `oneshot` exactly as the server does.
//!
//! The HTTP edge of the core: handlers read what the core needs out of the request (a
//! token's [`Credentials`]), and the core's errors become answers through `error`.

use std::sync::Arc;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use realtime_bridge_wire::{parse_event_list, route, subject, ClientId, EventName, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Auth, Credentials, TokenPlaces, SCOPE_PRESENCE, SCOPE_PUBLISH};
use crate::conn::Takeover;
use crate::error::AppError;
use crate::frame::Framer;
use crate::heartbeat::Heartbeats;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::sse_body::{EndReason, HistoryStart, StreamContext};

/// Everything handlers need; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) auth: Auth,
    pub(crate) client: async_nats::Client,
    pub(crate) hub: Arc<Hub>,
    pub(crate) framer: Arc<Framer>,
    pub(crate) presence: Arc<Presence>,
    pub(crate) metrics: Arc<Metrics>,
    /// Ticks every `--heartbeat`, a slot of the streams at a time; one timer for all streams
    /// instead of one each.
    pub(crate) heartbeats: Heartbeats,
    /// Cancelled at shutdown; every stream body watches it and ends.
    pub(crate) shutdown: CancellationToken,
    pub(crate) retry_ms: u64,
    pub(crate) max_event_bytes: usize,
    /// Per-stream lag limit in bytes (see `Config::queue_bytes`).
    pub(crate) queue_bytes: u64,
    pub(crate) cors_origins: Vec<String>,
    pub(crate) limits: Limits,
    /// `/readyz`'s last answer: probes and anonymous callers must not each cost JetStream
    /// API requests.
    pub(crate) readiness: tokio::sync::Mutex<Option<(Instant, Result<(), &'static str>)>>,
}

/// How long `/readyz` reuses its last answer.
const READY_CACHE: Duration = Duration::from_secs(1);

/// The bridge's HTTP API.
pub(crate) fn app(state: AppState) -> Router {
    let cors = cors_layer(&state.0.cors_origins);
    let guard = axum::middleware::from_fn_with_state(state.clone(), guard_request);
    let router = Router::new()
        // A catch-all segment, so an empty or percent-encoded id reaches our validation
        // and gets a 400 with a reason instead of a bare 404.
        .route(&format!("{}{{*rest}}", route::STREAM_PATH_PREFIX), get(stream_events))
        .route("/v1/publish", post(publish))
        .route("/v1/presence/{user_id}", get(presence))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // After every route: a known path with another method gets a JSON 405 (axum adds `Allow`).
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
        // Around the router, so it applies to every path, known or not.
        .layer(guard)
        // The span names the path only: the query may hold `access_token`, which must never be logged.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request<Body>| tracing::debug_span!("http", method = %req.method(), path = %req.uri().path()),
        ));
    match cors {
        Some(c) => router.layer(c),
        None => router,
    }
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Checks made before routing, on both connection paths: the request target's length, and,
/// without authentication, that the `Host` is a loopback name.
async fn guard_request(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let s = &state.0;
    let len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if len > s.limits.max_request_target {
        return AppError::UriTooLong { len, max: s.limits.max_request_target }.into_response();
    }
    if matches!(s.auth, Auth::Disabled) {
        if let Some(host) = req.headers().get(header::HOST) {
            if !is_loopback_host(host.as_bytes()) {
                // A web page can point its own host name at 127.0.0.1 (DNS rebinding); the
                // browser then sends that name. Only loopback names reach a bridge that
                // checks no token.
                return AppError::HostNotAllowed(
                    "this bridge runs without authentication (--no-auth) and answers only loopback host names (localhost, 127.0.0.1, [::1])".into(),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// `localhost`, `*.localhost`, a 127/8 address or `[::1]`, with or without a port.
fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else { return false };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A browser sends `Origin` (and `Sec-Fetch-Site`) with a cross-site POST; a service calling
/// the API sends neither. Only origins allowed by `--cors-origin` may publish from a page:
/// a form or `no-cors` fetch needs no preflight, so CORS alone would not stop it.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), AppError> {
    let origin = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    let listed = origin.is_some_and(|o| allowed.iter().any(|a| a.as_bytes() == o));
    if listed {
        return Ok(());
    }
    if let Some(o) = origin {
        return Err(AppError::CrossSite(format!(
            "requests from origin {:?} are not allowed (list it with --cors-origin)",
            String::from_utf8_lossy(o)
        )));
    }
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        Some(b"cross-site" | b"same-site") => {
            Err(AppError::CrossSite("cross-site requests are not allowed (list the origin with --cors-origin)".into()))
        }
        _ => Ok(()),
    }
}

/// Where the request may carry a token: the `Authorization` and `Cookie` headers, and the
/// `access_token` query parameter (`auth::find_token` decides which one counts).
fn credentials<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Credentials<'a> {
    Credentials {
        authorization: headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        query,
        cookies: headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect(),
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    events: Option<String>,
    access_token: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

/// The `clientId=` of a stream request (docs/protocol.md §2.1), or a fresh one: 22 random
/// alphanumerics (about 131 bits, so made-up ids do not collide in practice).
fn client_id(raw: Option<&str>) -> Result<ClientId, AppError> {
    use rand::Rng;
    match raw {
        Some(raw) => {
            ClientId::parse(raw).map_err(|e| AppError::InvalidClientId { value: raw.to_owned(), reason: e.to_string() })
        }
        None => {
            let id: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(22).map(char::from).collect();
            ClientId::try_from(id)
                .map_err(|e| AppError::InvalidClientId { value: String::new(), reason: e.to_string() })
        }
    }
}

fn user_id(raw: &str) -> Result<UserId, AppError> {
    UserId::parse(raw).map_err(|e| AppError::InvalidUserId { value: raw.to_owned(), reason: e.to_string() })
}

/// A path parameter that is not UTF-8 once percent-decoded is an invalid user id (JSON 400
/// like every other error), not axum's plain-text rejection.
fn path_param(
    p: Result<Path<String>, PathRejection>,
    uri: &Uri,
    prefix: &str,
    suffix: &str,
) -> Result<String, AppError> {
    p.map(|Path(s)| s).map_err(|_| {
        let raw = uri.path();
        let raw = raw.strip_prefix(prefix).unwrap_or(raw);
        let raw = raw.strip_suffix(suffix).unwrap_or(raw);
        AppError::InvalidUserId {
            value: raw.to_owned(),
            reason: "is not UTF-8 once percent-decoded (allowed: A-Z a-z 0-9 _ -)".into(),
        }
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(t)| t).map_err(|e| AppError::BadRequest(format!("bad query string: {}", e.body_text())))
}

async fn stream_events(
    State(state): State<AppState>,
    rest: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
    takeover: Option<Extension<Takeover>>,
) -> Result<Response, AppError> {
    let s = &state.0;
    // Matched on the path as sent: `/v1/users/42%2Fevents` decodes to `42/events` but is not
    // a stream URL (one URL per stream, whatever a proxy's rules say about the other).
    if !uri.path().ends_with(route::STREAM_PATH_SUFFIX) {
        return Err(not_found_error());
    }
    let rest = path_param(rest, &uri, route::STREAM_PATH_PREFIX, route::STREAM_PATH_SUFFIX)?;
    let Some(raw_user) = rest.strip_suffix(route::STREAM_PATH_SUFFIX) else { return Err(not_found_error()) };
    let user = user_id(raw_user)?;
    let q = query(q)?;
    let filter: Option<Arc<[EventName]>> = match q.events.as_deref() {
        None => None,
        Some(list) => {
            let names = parse_event_list(list)
                .map_err(|(value, e)| AppError::InvalidEventName { value, reason: e.to_string() })?;
            if names.len() > s.limits.max_filter_events {
                return Err(AppError::TooManyEvents { given: names.len(), max: s.limits.max_filter_events });
            }
            Some(names.into())
        }
    };
    let client = client_id(q.client_id.as_deref())?;
    let creds = credentials(&headers, q.access_token.as_deref());
    let principal = s.auth.authenticate(&creds, TokenPlaces::HeaderQueryCookie).await?;
    if let Some(p) = &principal {
        p.check_read(&user)?;
    }
    let (ends_at, end_reason) = stream_end(principal.map(|p| p.expires_at), s.limits.max_stream_lifetime);
    // Resume cursors (`Last-Event-ID`, else `lastEventId`) only mean something with
    // history; in live mode the stream starts from now (docs/protocol.md §5.3).
    let cursor = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(q.last_event_id);

    let attached = s.hub.attach(&user, client).await?;
    let history = match s.hub.history() {
        Some(h) => Some(HistoryStart::new(h, &s.framer, &user, cursor.as_deref(), &attached).await?),
        None => None,
    };
    let ctx = StreamContext {
        filter,
        retry_ms: s.retry_ms,
        heartbeat: s.heartbeats.subscribe(),
        // A clone, not a child token: streams only watch it, and a clone costs one refcount.
        shutdown: s.shutdown.clone(),
        metrics: Arc::clone(&s.metrics),
        max_lag_bytes: s.queue_bytes,
        ends_at,
        end_reason,
    };
    let stream = crate::sse_body::build(attached, ctx, history);
    let body = match takeover {
        // The connection writes the stream itself (see `conn`).
        Some(Extension(slot)) => {
            slot.put(stream);
            Body::empty()
        }
        None => Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>)),
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform")),
            // nginx and friends buffer responses by default; SSE must not be.
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        body,
    )
        .into_response())
}

/// When a stream ends on its own: at its token's expiry or after `--max-stream-lifetime`,
/// whichever comes first.
fn stream_end(token_expires: Option<u64>, lifetime: Option<Duration>) -> (u64, EndReason) {
    let by_lifetime = lifetime.map(|d| crate::auth::unix_now().saturating_add(d.as_secs().max(1)));
    match (token_expires, by_lifetime) {
        (Some(t), Some(l)) if l < t => (l, EndReason::MaxLifetime),
        (Some(t), _) => (t, EndReason::TokenExpired),
        (None, Some(l)) => (l, EndReason::MaxLifetime),
        (None, None) => (u64::MAX, EndReason::TokenExpired),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    broadcast: bool,
    event: String,
    data: Box<RawValue>,
    /// Sent as `Nats-Msg-Id`: with history on, JetStream drops a repeat within its window.
    #[serde(default, rename = "msgId")]
    msg_id: Option<String>,
}

/// `POST /v1/publish`. Everything that can be decided from the head (origin, token,
/// content type) is, before a byte of the body is read: an unauthenticated client cannot
/// hold a connection by trickling a body, nor get `100 Continue`.
async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, AppError> {
    let s = &state.0;
    check_origin(&headers, &s.cors_origins)?;
    s.auth.require_scope(&credentials(&headers, None), SCOPE_PUBLISH).await?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        // Also what makes a browser preflight the request (CORS) instead of sending it blind.
        return Err(AppError::UnsupportedMediaType("the body must be sent as Content-Type: application/json".into()));
    }
    let max_body = s.max_event_bytes.saturating_mul(2).saturating_add(64 * 1024);
    let body = match tokio::time::timeout(s.limits.request_timeout, read_body(body, max_body)).await {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => {
            return Err(AppError::PayloadTooLarge(format!(
                "the body is too large: data may be at most {} bytes (--max-event-bytes)",
                s.max_event_bytes
            )))
        }
        Ok(Err(BodyError::Read)) => return Err(AppError::BadRequest("the body could not be read".into())),
        Err(_) => {
            return Err(AppError::RequestTimeout(format!(
                "the body did not arrive within {:?} (--request-timeout)",
                s.limits.request_timeout
            )))
        }
    };
    let req: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "body must be {{\"users\":[...]|\"broadcast\":true,\"event\":\"...\",\"data\":...}}: {e}"
        ))
    })?;
    let event = EventName::parse(&req.event)
        .map_err(|e| AppError::InvalidEventName { value: req.event.clone(), reason: e.to_string() })?;
    if event.is_reserved() {
        return Err(AppError::InvalidEventName {
            value: req.event.clone(),
            reason: "is reserved for the stream's control frames (end, reset)".into(),
        });
    }
    let payload = Bytes::copy_from_slice(req.data.get().as_bytes());
    if payload.len() > s.max_event_bytes {
        return Err(AppError::BadRequest(format!(
            "data is {} bytes, more than the {} bytes this bridge delivers (--max-event-bytes)",
            payload.len(),
            s.max_event_bytes
        )));
    }
    let subjects: Vec<String> = match (req.broadcast, req.users.is_empty()) {
        (true, true) => vec![subject::broadcast_subject(&event)],
        (false, false) => {
            let users = distinct_users(&req.users)?;
            if users.len() > s.limits.max_publish_users {
                return Err(AppError::BadRequest(format!(
                    "\"users\" names {} distinct users; at most {} are allowed per request (--max-publish-users)",
                    users.len(),
                    s.limits.max_publish_users
                )));
            }
            users.iter().map(|u| subject::user_subject(u, &event)).collect()
        }
        (true, false) => {
            return Err(AppError::BadRequest("give either \"users\" or \"broadcast\": true, not both".into()))
        }
        (false, true) => return Err(AppError::BadRequest("give \"users\" (non-empty) or \"broadcast\": true".into())),
    };
    let fan_out = subjects.len().saturating_mul(payload.len());
    if fan_out > s.limits.max_publish_bytes {
        return Err(AppError::PayloadTooLarge(format!(
            "{} users × {} bytes of data is {fan_out} bytes; one request may publish at most {} (--max-publish-bytes)",
            subjects.len(),
            payload.len(),
            s.limits.max_publish_bytes
        )));
    }
    if s.client.connection_state() != async_nats::connection::State::Connected {
        return Err(AppError::Unavailable("NATS is not connected; retry shortly".into()));
    }
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = &req.msg_id {
        if id.is_empty() || id.len() > 256 || id.chars().any(|c| c.is_control()) {
            return Err(AppError::BadRequest("msgId must be 1 to 256 printable characters".into()));
        }
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    match s.hub.history() {
        // With history, 202 means JetStream stored them (or knew them as duplicates).
        Some(h) => {
            let mut acks = Vec::with_capacity(subjects.len());
            for subj in &subjects {
                let mut hdrs = headers.clone();
                if subjects.len() > 1 {
                    if let Some(id) = &req.msg_id {
                        // One id per subject, or JetStream would drop all but the first.
                        hdrs.insert("Nats-Msg-Id", format!("{id}:{subj}").as_str());
                    }
                }
                let ack = h
                    .context()
                    .publish_with_headers(subj.clone(), hdrs, payload.clone())
                    .await
                    .map_err(|e| unavailable("publishing to JetStream failed", &e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| unavailable("JetStream did not acknowledge the publish", &e))?;
            }
        }
        // Without, a round trip to the server proves NATS has them.
        None => {
            for subj in &subjects {
                s.client
                    .publish_with_headers(subj.clone(), headers.clone(), payload.clone())
                    .await
                    .map_err(|e| unavailable("publishing to NATS failed", &e))?;
            }
            crate::nats::round_trip(&s.client)
                .await
                .map_err(|e| unavailable("NATS did not confirm the publish", &e))?;
        }
    }
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "published": subjects.len() }))).into_response())
}

/// A 503 that says what failed; the library's error text (server names, codes) goes to
/// the log only.
fn unavailable(what: &'static str, e: &dyn std::fmt::Display) -> AppError {
    tracing::warn!(error = %e, "{what}");
    AppError::Unavailable(format!("{what}; retry shortly"))
}

/// The validated `users` of a publish, each once, in the order given.
fn distinct_users(raw: &[String]) -> Result<Vec<UserId>, AppError> {
    let mut seen = std::collections::HashSet::with_capacity(raw.len().min(4096));
    let mut out = Vec::new();
    for u in raw {
        if seen.insert(u.as_str()) {
            out.push(user_id(u)?);
        }
    }
    Ok(out)
}

enum BodyError {
    TooLarge,
    Read,
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut data = body.into_data_stream();
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

async fn presence(
    State(state): State<AppState>,
    raw: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let s = &state.0;
    let raw = path_param(raw, &uri, "/v1/presence/", "")?;
    let user = user_id(&raw)?;
    s.auth.require_scope(&credentials(&headers, None), SCOPE_PRESENCE).await?;
    Ok(Json(s.presence.query(&user).await).into_response())
}

async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.0;
    // One check at a time, answered from the last one for a second.
    let mut cached = s.readiness.lock().await;
    let answer = match *cached {
        Some((at, answer)) if at.elapsed() < READY_CACHE => answer,
        _ => {
            let answer = check_ready(s).await;
            *cached = Some((Instant::now(), answer));
            answer
        }
    };
    drop(cached);
    match answer {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => AppError::Unavailable(why.to_owned()).into_response(),
    }
}

async fn check_ready(s: &Shared) -> Result<(), &'static str> {
    let state = s.client.connection_state();
    if state != async_nats::connection::State::Connected {
        tracing::debug!(%state, "not ready: NATS");
        return Err("NATS is not connected");
    }
    if let Some(h) = s.hub.history() {
        match tokio::time::timeout(Duration::from_secs(2), h.bounds()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "not ready: JetStream");
                return Err("JetStream is not reachable");
            }
            Err(_) => return Err("JetStream did not answer in 2s"),
        }
    }
    Ok(())
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.0.metrics.encode())
        .into_response()
}

fn not_found_error() -> AppError {
    use realtime_bridge_wire::route::{STREAM_PATH_PREFIX, STREAM_PATH_SUFFIX};
    AppError::NotFound(format!(
        "no such endpoint; the stream is GET {STREAM_PATH_PREFIX}{{userId}}{STREAM_PATH_SUFFIX}"
    ))
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed("this endpoint does not take that method (see the Allow header)".into())
}

async fn not_found() -> AppError {
    not_found_error()
}
