//! The runtime configuration: [`Config`], what `serve`'s flags (`crate::cli`) turn into
//! once checked, and what tests build directly ([`Config::new`]).
//!
//! Everything clap cannot check alone is checked here, at start-up, and refused as a
//! [`ConfigError`] naming the flag (docs/architecture.md).

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

use crate::auth::Auth;
use crate::cli::ServeArgs;
use crate::history::HistoryConfig;
use crate::limits::Limits;
use crate::nats::{NatsCredentials, NatsError, NatsUrl};

// `nats` reads its flags from here.

/// `--history` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryMode {
    /// On when JetStream answers, else live mode.
    Auto,
    /// Required: refuse to start without JetStream.
    On,
    /// Live mode: core NATS only, at most once.
    Off,
}

/// `--subscribe` values: how the bridge listens for users' events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UserSubscription {
    /// `shared` in history mode, `per-user` in live mode.
    Auto,
    /// One NATS subscription per connected user: NATS sends a bridge only its users' events.
    PerUser,
    /// One subscription for the whole process, dispatched here (`user.*.*` in live mode,
    /// every re-published message in history mode): far less memory per connected user and
    /// nothing to ask NATS when a user connects, but every bridge receives every user's events.
    Shared,
}

impl UserSubscription {
    /// Whether the dispatch is shared, once it is known whether history is on.
    pub(crate) fn is_shared(self, history: bool) -> bool {
        match self {
            Self::Auto => history,
            Self::PerUser => false,
            Self::Shared => true,
        }
    }
}

/// Frames a stream may fall behind before it is cut off as too slow.
///
/// Enough to absorb a burst; the rings hold memory only for frames not yet read by every
/// stream (see `ring`), so an idle user costs nothing for it. The byte limit below bounds
/// what large events can pin.
pub(crate) const DEFAULT_QUEUE_LEN: usize = 1024;
/// Bytes a stream may fall behind before it is cut off as too slow.
pub(crate) const DEFAULT_QUEUE_BYTES: u64 = 8 << 20;

/// How long a new connection may take to send its request head (hyper's default too).
pub(crate) const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A bad configuration value: which flag, and why.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

/// Validated server settings (what `serve`'s flags turn into).
#[derive(Debug, Clone)]
pub struct Config {
    /// Shown (logs, `Debug`) without its password.
    pub nats_url: NatsUrl,
    /// NATS credentials read from files at start-up (`--nats-creds`, `--nats-password-file`).
    pub nats_credentials: NatsCredentials,
    pub auth: Auth,
    pub history: HistoryConfig,
    pub heartbeat: Duration,
    pub retry_ms: u64,
    pub max_event_bytes: usize,
    pub max_streams_per_user: u32,
    pub cors_origins: Vec<String>,
    pub shutdown_grace: Duration,
    /// Per-stream backlog, in frames, before the stream is cut off.
    pub queue_len: usize,
    /// Per-stream backlog, in bytes, before the stream is cut off.
    pub queue_bytes: u64,
    /// A client must send its request head within this time after connecting.
    pub head_timeout: Duration,
    /// Per-user NATS subscriptions, or one shared wildcard subscription (live mode only).
    pub subscribe: UserSubscription,
    /// What one request or stream may cost.
    pub limits: Limits,
    /// Concurrent connections at most; `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
}

impl Config {
    /// Defaults of docs/protocol.md §7.1 with the given NATS and auth (handy in tests).
    pub fn new(nats_url: impl Into<String>, auth: Auth) -> Self {
        Self {
            nats_url: NatsUrl::new(nats_url),
            nats_credentials: NatsCredentials::None,
            auth,
            history: HistoryConfig::default(),
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
            max_event_bytes: 262_144,
            max_streams_per_user: 16,
            cors_origins: Vec::new(),
            shutdown_grace: Duration::from_secs(10),
            queue_len: DEFAULT_QUEUE_LEN,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            subscribe: UserSubscription::Auto,
            limits: Limits::default(),
            max_connections: None,
        }
    }

    /// Checks the flags that clap cannot check alone.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let auth = Auth::from_args(&args.keys, args.no_auth)?;
        check_no_auth(&auth, args.listen)?;
        if !is_stream_name(&args.stream_name) {
            return Err(ConfigError {
                flag: "--stream-name",
                message: format!("{:?} is not a JetStream stream name (letters, digits, _ and -)", args.stream_name),
            });
        }
        let nats_url = NatsUrl::new(args.nats.nats_url.clone());
        let nats_credentials = NatsCredentials::from_args(&args.nats).map_err(nats_config_error)?;
        // A bad URL or clashing credentials are start-up errors, not a reconnect loop.
        crate::nats::prepare(&nats_url, &nats_credentials, async_nats::ConnectOptions::new())
            .map_err(nats_config_error)?;
        Ok(Self {
            nats_url,
            nats_credentials,
            auth,
            history: HistoryConfig {
                mode: args.history,
                stream_name: args.stream_name.clone(),
                max_age: args.history_max_age,
                max_bytes: args.history_max_bytes,
                replicas: args.history_replicas,
                trust_republished: args.trust_republished,
            },
            heartbeat: args.heartbeat,
            retry_ms: args.retry,
            max_event_bytes: args.max_event_bytes,
            max_streams_per_user: args.max_streams_per_user,
            cors_origins: args.cors_origins.clone(),
            shutdown_grace: args.shutdown_grace,
            queue_len: DEFAULT_QUEUE_LEN,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            subscribe: args.subscribe,
            limits: Limits {
                max_filter_events: usize::try_from(args.max_filter_events).unwrap_or(usize::MAX),
                max_request_target: args.max_request_target,
                max_publish_users: usize::try_from(args.max_publish_users).unwrap_or(usize::MAX),
                max_publish_bytes: args.max_publish_bytes,
                request_timeout: args.request_timeout,
                max_stream_lifetime: args.max_stream_lifetime,
            },
            max_connections: args.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }
}

/// A NATS setting that cannot work, as the flag that names it.
fn nats_config_error(e: NatsError) -> ConfigError {
    match e {
        NatsError::Credentials { flag, message } => ConfigError { flag, message },
        NatsError::BadUrl(message) => ConfigError { flag: "--nats-url", message },
        other => ConfigError { flag: "--nats-url", message: other.to_string() },
    }
}

/// `--no-auth` on a reachable address would hand every user's stream to anyone.
pub(crate) fn check_no_auth(auth: &Auth, addr: SocketAddr) -> Result<(), ConfigError> {
    if matches!(auth, Auth::Disabled) && !addr.ip().is_loopback() {
        return Err(ConfigError {
            flag: "--no-auth",
            message: format!("refused on {addr}: only a loopback --listen address may run without authentication"),
        });
    }
    Ok(())
}

/// Whether `name` may be a JetStream stream name here: it becomes part of JetStream API
/// subjects (`$JS.API.STREAM.INFO.<name>`), so letters, digits, `_` and `-` only (`serve` and
/// `send --stream-name`).
pub fn is_stream_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
