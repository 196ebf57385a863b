//! What one request, one connection or one stream may cost, and the process-wide cap on
//! connections. Every limit here is a `serve` flag (see `cli`), so an operator can see
//! and change what a hostile client is allowed.

use std::time::Duration;

/// Limits on requests (from the `--max-*` and `--request-timeout` flags).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Names in one `events=` list. Each one is compared with every event of the stream,
    /// and a list is the only unbounded thing a client sends in a stream request.
    pub max_filter_events: usize,
    /// Bytes of the request target (path and query). Stream URLs are short; anything longer
    /// is refused on both connection paths before routing.
    pub max_request_target: usize,
    /// Distinct users in one `POST /v1/publish`.
    pub max_publish_users: usize,
    /// Users × data bytes of one `POST /v1/publish`: what one request may push into NATS
    /// (and, with history, into the stream that holds every user's catch-up window).
    pub max_publish_bytes: usize,
    /// Time a request body may take to arrive (`POST /v1/publish`).
    pub request_timeout: Duration,
    /// Longest life of a stream; `None`: as long as its token.
    pub max_stream_lifetime: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_filter_events: 64,
            max_request_target: 8 * 1024,
            max_publish_users: 1000,
            max_publish_bytes: 16 << 20,
            request_timeout: Duration::from_secs(10),
            max_stream_lifetime: None,
        }
    }
}

/// Descriptors kept out of the connection budget: the NATS connection, the listener, the
/// runtime's own, outgoing HTTPS (identity provider keys), log files.
const RESERVED_FDS: u64 = 64;

/// Raises this process's soft open-file limit to its hard limit (what most servers do at
/// start-up: the soft default of 1024 is far below what a stream server needs) and returns
/// the resulting limit, or `None` where it cannot be read.
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let lim = getrlimit(Resource::Nofile);
        let current = lim.current?;
        if let Some(max) = lim.maximum.filter(|max| *max > current) {
            if setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) }).is_ok() {
                return Some(max);
            }
        }
        Some(current)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The default of `--max-connections`: the open-file limit minus what the process needs for
/// itself, so the cap refuses a connection before `accept` would fail for lack of descriptors.
pub(crate) fn default_max_connections(open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else { return 10_000 };
    let reserve = RESERVED_FDS.max(limit / 100);
    usize::try_from(limit.saturating_sub(reserve).max(16)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_default_leaves_room_for_the_process() {
        assert_eq!(default_max_connections(Some(20_000)), 19_800);
        assert_eq!(default_max_connections(Some(1024)), 960);
        assert_eq!(default_max_connections(Some(10)), 16);
        assert_eq!(default_max_connections(None), 10_000);
    }
}
