//! HTTP errors: the client learns what was wrong with its request, never our internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every way a request can fail, with the status and stable `code` clients can branch on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("user id {value:?} {reason}")]
    InvalidUserId { value: String, reason: String },
    #[error("event name {value:?} {reason}")]
    InvalidEventName { value: String, reason: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("events= names {given} events; at most {max} are allowed (--max-filter-events)")]
    TooManyEvents { given: usize, max: usize },
    #[error("the request target is {len} bytes; at most {max} are allowed (--max-request-target)")]
    UriTooLong { len: usize, max: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestTimeout(String),
    /// A browser request from a site the bridge does not know (CSRF).
    #[error("{0}")]
    CrossSite(String),
    /// `--no-auth`: a `Host` that is not loopback (DNS rebinding).
    #[error("{0}")]
    HostNotAllowed(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many open streams for user {user} (at most {max} per bridge)")]
    TooManyStreams { user: String, max: u32 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Details go to the log, not to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidUserId { .. } => (StatusCode::BAD_REQUEST, "invalid_user_id"),
            Self::InvalidEventName { .. } => (StatusCode::BAD_REQUEST, "invalid_event_name"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::TooManyEvents { .. } => (StatusCode::BAD_REQUEST, "too_many_events"),
            Self::UriTooLong { .. } => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::CrossSite(_) => (StatusCode::FORBIDDEN, "cross_site"),
            Self::HostNotAllowed(_) => (StatusCode::FORBIDDEN, "host_not_allowed"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooManyStreams { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_streams"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The JSON error body (docs/protocol.md §3).
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: &'static str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let mut res = (status, Json(ErrorBody { error: self.to_string(), code })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        res
    }
}
