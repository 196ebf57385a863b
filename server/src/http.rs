//! Routes and handlers (DESIGN.md section 2). `app(state)` builds the whole router, so
//! tests drive it with `oneshot` exactly as the server does.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use realtime_bridge_wire::{parse_event_list, subject, EventName, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Auth, TokenPlaces, SCOPE_PRESENCE, SCOPE_PUBLISH};
use crate::conn::Takeover;
use crate::error::AppError;
use crate::frame::Framer;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::stream::{HistoryStart, StreamContext};

/// Everything handlers need; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub auth: Auth,
    pub client: async_nats::Client,
    pub hub: Arc<Hub>,
    pub framer: Arc<Framer>,
    pub presence: Arc<Presence>,
    pub metrics: Arc<Metrics>,
    /// Ticks every `--heartbeat`; one timer for all streams instead of one each.
    pub heartbeat: watch::Receiver<()>,
    /// Cancelled at shutdown; every stream body watches it and ends.
    pub shutdown: CancellationToken,
    pub retry_ms: u64,
    pub max_event_bytes: usize,
    /// Per-stream lag limit in bytes (see `Config::queue_bytes`).
    pub queue_bytes: u64,
    pub cors_origins: Vec<String>,
}

/// The bridge's HTTP API.
pub fn app(state: AppState) -> Router {
    let cors = cors_layer(&state.0.cors_origins);
    let max_body = state.0.max_event_bytes.saturating_mul(2).saturating_add(64 * 1024);
    let router = Router::new()
        // A catch-all segment, so an empty or percent-encoded id reaches our validation
        // and gets a 400 with a reason instead of a bare 404.
        .route("/v1/users/{*rest}", get(stream_events))
        .route("/v1/publish", post(publish).layer(axum::extract::DefaultBodyLimit::max(max_body)))
        .route("/v1/presence/{user_id}", get(presence))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // After every route: a known path with another method gets a JSON 405 (axum adds `Allow`).
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
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

#[derive(Debug, Deserialize)]
struct StreamQuery {
    events: Option<String>,
    access_token: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
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
    let rest = path_param(rest, &uri, "/v1/users/", "/events")?;
    let Some(raw_user) = rest.strip_suffix("/events") else { return Err(not_found_error()) };
    let user = user_id(raw_user)?;
    let q = query(q)?;
    let filter: Option<Arc<[EventName]>> = match q.events.as_deref() {
        None => None,
        Some(list) => Some(
            parse_event_list(list)
                .map_err(|(value, e)| AppError::InvalidEventName { value, reason: e.to_string() })?
                .into(),
        ),
    };
    if let Some(p) = s.auth.authenticate(&headers, q.access_token.as_deref(), TokenPlaces::HeaderQueryCookie).await? {
        if !p.may_read(&user) {
            return Err(AppError::Forbidden(format!("this token may not read the stream of user {user}")));
        }
    }
    // Resume cursors (`Last-Event-ID`, else `lastEventId`) only mean something with
    // history; in live mode the stream starts from now (DESIGN.md section 3).
    let cursor = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(q.last_event_id);

    let attached = s.hub.attach(&user).await?;
    let history = match s.hub.history() {
        Some(h) => Some(HistoryStart::new(h, &s.framer, &user, filter.as_deref(), cursor.as_deref(), &attached).await?),
        None => None,
    };
    let ctx = StreamContext {
        filter,
        retry_ms: s.retry_ms,
        heartbeat: s.heartbeat.clone(),
        // A clone, not a child token: streams only watch it, and a clone costs one refcount.
        shutdown: s.shutdown.clone(),
        metrics: Arc::clone(&s.metrics),
        max_lag_bytes: s.queue_bytes,
    };
    let stream = crate::stream::sse_body(attached, ctx, history);
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

async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let s = &state.0;
    s.auth.require_scope(&headers, SCOPE_PUBLISH).await?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge(format!(
                "the body is too large: data may be at most {} bytes (--max-event-bytes)",
                s.max_event_bytes
            ))
        } else {
            AppError::BadRequest(format!("cannot read the body: {}", e.body_text()))
        }
    })?;
    let req: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "body must be {{\"users\":[...]|\"broadcast\":true,\"event\":\"...\",\"data\":...}}: {e}"
        ))
    })?;
    let event = EventName::parse(&req.event)
        .map_err(|e| AppError::InvalidEventName { value: req.event.clone(), reason: e.to_string() })?;
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
            let users = req.users.iter().map(|u| user_id(u)).collect::<Result<Vec<_>, _>>()?;
            users.iter().map(|u| subject::user_subject(u, &event)).collect()
        }
        (true, false) => {
            return Err(AppError::BadRequest("give either \"users\" or \"broadcast\": true, not both".into()))
        }
        (false, true) => return Err(AppError::BadRequest("give \"users\" (non-empty) or \"broadcast\": true".into())),
    };
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
                    .map_err(|e| AppError::Unavailable(format!("publish to JetStream failed: {e}")))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| AppError::Unavailable(format!("JetStream did not acknowledge: {e}")))?;
            }
        }
        // Without, a round trip to the server proves NATS has them.
        None => {
            for subj in &subjects {
                s.client
                    .publish_with_headers(subj.clone(), headers.clone(), payload.clone())
                    .await
                    .map_err(|e| AppError::Unavailable(format!("publish to NATS failed: {e}")))?;
            }
            crate::nats::round_trip(&s.client)
                .await
                .map_err(|e| AppError::Unavailable(format!("NATS did not confirm the publish: {e}")))?;
        }
    }
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "published": subjects.len() }))).into_response())
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
    s.auth.require_scope(&headers, SCOPE_PRESENCE).await?;
    Ok(Json(s.presence.query(&user).await).into_response())
}

async fn readyz(State(state): State<AppState>) -> Response {
    let s = &state.0;
    match s.client.connection_state() {
        async_nats::connection::State::Connected => {}
        other => return AppError::Unavailable(format!("NATS is {other}")).into_response(),
    }
    if let Some(h) = s.hub.history() {
        match tokio::time::timeout(std::time::Duration::from_secs(2), h.bounds()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return AppError::Unavailable(format!("JetStream is not reachable: {e}")).into_response(),
            Err(_) => return AppError::Unavailable("JetStream did not answer in 2s".into()).into_response(),
        }
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.0.metrics.encode())
        .into_response()
}

fn not_found_error() -> AppError {
    AppError::NotFound("no such endpoint; the stream is GET /v1/users/{userId}/events".into())
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed("this endpoint does not take that method (see the Allow header)".into())
}

async fn not_found() -> AppError {
    not_found_error()
}
