//! HTTP errors: the client learns what was wrong with its request, never our internals.
//!
//! The one place where errors become HTTP answers (docs/architecture.md): the core (`auth`,
//! `jwks`) returns its own typed errors, converted here (`From`) into an [`AppError`], whose
//! [`IntoResponse`] gives the status, the stable `code` and the JSON body of
//! docs/protocol.md §3.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::auth::AuthError;
use crate::hub::AttachError;
use crate::sse_body::CatchUpUnavailable;

/// Every way a request can fail, with the status and stable `code` clients can branch on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("user id {value:?} {reason}")]
    InvalidUserId { value: String, reason: String },
    #[error("event name {value:?} {reason}")]
    InvalidEventName { value: String, reason: String },
    #[error("client id {value:?} {reason}")]
    InvalidClientId { value: String, reason: String },
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
    /// Details go to the log, not to the client. Reserved: no request fails this way today,
    /// but the answer's shape is part of the contract (and tested).
    #[allow(dead_code)]
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidUserId { .. } => (StatusCode::BAD_REQUEST, "invalid_user_id"),
            Self::InvalidEventName { .. } => (StatusCode::BAD_REQUEST, "invalid_event_name"),
            Self::InvalidClientId { .. } => (StatusCode::BAD_REQUEST, "invalid_client_id"),
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

/// A refused credential: 401 when the token is missing or invalid, 403 when a valid token
/// does not allow the request, 503 when no key is there to check it with.
impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing(_)
            | AuthError::HeaderNotAscii
            | AuthError::NotBearer
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::Invalid(_) => Self::Unauthorized(e.to_string()),
            AuthError::MissingScope { .. } | AuthError::NotYourStream { .. } => Self::Forbidden(e.to_string()),
            AuthError::KeysUnavailable => Self::Unavailable(e.to_string()),
        }
    }
}

/// 429 when the user has all the streams it may have here, 503 while NATS cannot confirm
/// the subscriptions a no-gap stream needs.
impl From<AttachError> for AppError {
    fn from(e: AttachError) -> Self {
        match e {
            AttachError::TooManyStreams { user, max } => Self::TooManyStreams { user: user.to_string(), max },
            AttachError::NotConfirmed => Self::Unavailable(e.to_string()),
        }
    }
}

/// 503: the client retries the resume.
impl From<CatchUpUnavailable> for AppError {
    fn from(e: CatchUpUnavailable) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// The JSON error body (docs/protocol.md §3).
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: String,
    pub(crate) code: &'static str,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::auth::TokenPlaces;
    use realtime_bridge_wire::UserId;

    async fn answer(e: impl Into<AppError>) -> (StatusCode, Option<String>, serde_json::Value) {
        let res = e.into().into_response();
        let status = res.status();
        let www = res.headers().get(axum::http::header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        (status, www, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn auth_errors_keep_their_status_code_and_reason() {
        let user = UserId::parse("42").unwrap();
        let cases: Vec<(AuthError, StatusCode, &str, &str)> = vec![
            (
                AuthError::Missing(TokenPlaces::Header),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing token: send Authorization: Bearer <jwt>",
            ),
            (
                AuthError::Missing(TokenPlaces::HeaderQueryCookie),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing token: send Authorization: Bearer <jwt>, the access_token query parameter or the rb_token cookie",
            ),
            (AuthError::HeaderNotAscii, StatusCode::UNAUTHORIZED, "unauthorized", "Authorization header is not ASCII"),
            (
                AuthError::NotBearer,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization header must be `Bearer <jwt>`",
            ),
            (AuthError::Expired, StatusCode::UNAUTHORIZED, "unauthorized", "token expired"),
            (AuthError::NotYetValid, StatusCode::UNAUTHORIZED, "unauthorized", "token not valid yet (nbf)"),
            (
                AuthError::Invalid("token signature is invalid".into()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "token signature is invalid",
            ),
            (
                AuthError::MissingScope { scope: crate::auth::SCOPE_PUBLISH },
                StatusCode::FORBIDDEN,
                "forbidden",
                "token lacks the \"publish\" scope (claim rb_scope)",
            ),
            (
                AuthError::NotYourStream { user },
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may not read the stream of user 42",
            ),
            (
                AuthError::KeysUnavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the identity provider's keys are not available yet; retry shortly",
            ),
        ];
        for (e, status, code, error) in cases {
            let what = format!("{e:?}");
            let (got, www, body) = answer(e).await;
            assert_eq!(got, status, "{what}");
            assert_eq!(body, serde_json::json!({ "error": error, "code": code }), "{what}");
            // A 401 says how to authenticate (RFC 9110 §11.6.1); nothing else does.
            assert_eq!(www.as_deref(), (status == StatusCode::UNAUTHORIZED).then_some("Bearer"), "{what}");
        }
    }

    #[tokio::test]
    async fn internal_errors_do_not_reach_the_client() {
        let (status, _, body) = answer(AppError::Internal("secret detail at /var/lib/x".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({ "error": "internal error", "code": "internal" }));
    }
}
