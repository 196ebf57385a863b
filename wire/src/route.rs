//! The HTTP route of a stream: `GET /v1/users/{userId}/events` (docs/protocol.md).
//!
//! The server's router and its connection layer (which answers stream requests without
//! hyper) both recognise it through this module, so the two cannot disagree.

use crate::ids::UserId;

/// What a stream's path starts with (the user id follows).
pub const STREAM_PATH_PREFIX: &str = "/v1/users/";
/// What a stream's path ends with (after the user id).
pub const STREAM_PATH_SUFFIX: &str = "/events";

/// `/v1/users/<id>/events`: the path of a user's stream.
///
/// ```
/// use realtime_bridge_wire::{route::stream_path, UserId};
/// assert_eq!(stream_path(&UserId::parse("42")?), "/v1/users/42/events");
/// # Ok::<(), realtime_bridge_wire::IdError>(())
/// ```
pub fn stream_path(user: &UserId) -> String {
    let u = user.as_str();
    let mut s = String::with_capacity(STREAM_PATH_PREFIX.len() + u.len() + STREAM_PATH_SUFFIX.len());
    s.push_str(STREAM_PATH_PREFIX);
    s.push_str(u);
    s.push_str(STREAM_PATH_SUFFIX);
    s
}

/// Whether `path` (no query, no fragment) has the shape of a stream's path. The user id in
/// between is not checked here: the router answers a bad one with a reason.
///
/// ```
/// use realtime_bridge_wire::route::is_stream_path;
/// assert!(is_stream_path("/v1/users/42/events"));
/// assert!(!is_stream_path("/v1/presence/42"));
/// ```
pub fn is_stream_path(path: &str) -> bool {
    path.starts_with(STREAM_PATH_PREFIX) && path.ends_with(STREAM_PATH_SUFFIX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = stream_path(&UserId::parse("u-1").unwrap());
        assert_eq!(p, "/v1/users/u-1/events");
        assert!(is_stream_path(&p));
        assert!(is_stream_path("/v1/users//events"));
        for other in ["/v1/users/42/events/x", "/v1/users/42", "/healthz", "/v2/users/42/events", ""] {
            assert!(!is_stream_path(other), "{other:?}");
        }
    }
}
