//! Routes and handlers (DESIGN.md section 2). `app(state)` builds the whole router, so
//! tests drive it with `oneshot` exactly as the server does.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use realtime_bridge_wire::{parse_event_list, subject, EventName, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Auth, SCOPE_PRESENCE, SCOPE_PUBLISH};
use crate::error::AppError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::Presence;

/// Everything handlers need; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub auth: Auth,
    pub client: async_nats::Client,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub metrics: Arc<Metrics>,
    /// Ticks every `--heartbeat`; one timer for all streams instead of one each.
    pub heartbeat: watch::Receiver<()>,
    /// Cancelled at shutdown; every stream body watches it and ends.
    pub shutdown: CancellationToken,
    pub retry_ms: u64,
    pub max_event_bytes: usize,
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
        .fallback(not_found)
        .with_state(state)
        // The span names the path only: the query may hold `access_token`, which must never be logged.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
        }));
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
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::HeaderName::from_static("last-event-id")])
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

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, AppError> {
    q.map(|Query(t)| t).map_err(|e| AppError::BadRequest(format!("bad query string: {}", e.body_text())))
}

async fn stream_events(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let s = &state.0;
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
    if let Some(p) = s.auth.authenticate(&headers, q.access_token.as_deref())? {
        if !p.may_read(&user) {
            return Err(AppError::Forbidden(format!("this token may not read the stream of user {user}")));
        }
    }
    // Resume cursors (`Last-Event-ID` / `lastEventId`) only mean something with history;
    // in live mode the stream starts from now, as DESIGN.md section 3 says.
    let _cursor = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(q.last_event_id);

    let attached = s.hub.attach(&user).await?;
    let body = crate::stream::sse_body(
        attached,
        filter,
        s.retry_ms,
        s.heartbeat.clone(),
        s.shutdown.child_token(),
        Arc::clone(&s.metrics),
    );
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform")),
            // nginx and friends buffer responses by default; SSE must not be.
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        Body::from_stream(body),
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
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<TokenQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response, AppError> {
    let s = &state.0;
    let q = query(q)?;
    s.auth.require_scope(&headers, q.access_token.as_deref(), SCOPE_PUBLISH)?;
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
        (true, false) => return Err(AppError::BadRequest("give either \"users\" or \"broadcast\": true, not both".into())),
        (false, true) => return Err(AppError::BadRequest("give \"users\" (non-empty) or \"broadcast\": true".into())),
    };
    if s.client.connection_state() != async_nats::connection::State::Connected {
        return Err(AppError::Unavailable("NATS is not connected; retry shortly".into()));
    }
    for subj in &subjects {
        s.client
            .publish(subj.clone(), payload.clone())
            .await
            .map_err(|e| AppError::Unavailable(format!("publish to NATS failed: {e}")))?;
    }
    // 202 promises NATS has the messages: wait for a round trip to the server.
    crate::nats::round_trip(&s.client)
        .await
        .map_err(|e| AppError::Unavailable(format!("NATS did not confirm the publish: {e}")))?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "published": subjects.len() }))).into_response())
}

async fn presence(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let s = &state.0;
    let user = user_id(&raw)?;
    let q = query(q)?;
    s.auth.require_scope(&headers, q.access_token.as_deref(), SCOPE_PRESENCE)?;
    Ok(Json(s.presence.query(&user).await).into_response())
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.0.client.connection_state() {
        async_nats::connection::State::Connected => (StatusCode::OK, "ready\n").into_response(),
        other => AppError::Unavailable(format!("NATS is {other}")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.0.metrics.encode(),
    )
        .into_response()
}

fn not_found_error() -> AppError {
    AppError::NotFound("no such endpoint; the stream is GET /v1/users/{userId}/events".into())
}

async fn not_found() -> AppError {
    not_found_error()
}
