//! The command line: subcommands, flags and their `RB_*` environment variables (clap).
//!
//! Every flag has an `RB_*` environment variable (clap's `env`), so the same
//! binary is configured the same way on a laptop, in systemd and in a container.
//! What `serve`'s flags turn into, once checked, is [`crate::config::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use realtime_bridge_wire::{EventName, UserId};

use crate::config::{HistoryMode, UserSubscription};

/// Realtime Bridge: NATS subjects in, per-user Server-Sent-Events out.
#[derive(Debug, Parser)]
#[command(name = "realtime-bridge", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge server.
    Serve(ServeArgs),
    /// Publish one event to NATS (no nats CLI needed).
    Send(SendArgs),
    /// Print a JWT signed with --jwt-secret or --jwt-secret-file, for local work and tests.
    Token(TokenArgs),
    /// Print a user's stream from a running bridge in the terminal.
    Listen(ListenArgs),
}

/// Largest `--listen-backlog`: what older Linux kernels cap the queue at, and far beyond
/// what one bridge accepts in a second.
pub const MAX_LISTEN_BACKLOG: u32 = 65_535;

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 to let the OS choose).
    #[arg(long, env = "RB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Connections the kernel queues for the bridge to accept: room for a reconnect storm of
    /// thousands of clients at once (those beyond it wait for SYN retransmits: 1 s, 3 s...).
    /// Linux caps it at net.core.somaxconn (sysctl): raise that too for more than its value.
    #[arg(long, env = "RB_LISTEN_BACKLOG", value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LISTEN_BACKLOG)))]
    pub listen_backlog: u32,

    #[command(flatten)]
    pub nats: NatsArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Serve without authentication. Refused unless --listen is a loopback address.
    #[arg(long, env = "RB_NO_AUTH", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_auth: bool,

    /// How users' events are subscribed: per-user (NATS filters), shared (one subscription for
    /// the process; less memory per user, nothing asked of NATS when a user connects, every
    /// event reaches every bridge), or auto (shared in history mode, per-user in live mode).
    #[arg(long, env = "RB_SUBSCRIBE", value_enum, default_value_t = UserSubscription::Auto)]
    pub subscribe: UserSubscription,

    /// Replay from JetStream history: auto, on or off.
    #[arg(long, env = "RB_HISTORY", value_enum, default_value_t = HistoryMode::Auto)]
    pub history: HistoryMode,

    /// How long history keeps events.
    #[arg(long, env = "RB_HISTORY_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    pub history_max_age: Duration,

    /// How many bytes history keeps.
    #[arg(long, env = "RB_HISTORY_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub history_max_bytes: u64,

    /// JetStream replicas of the history stream.
    #[arg(long, env = "RB_HISTORY_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub history_replicas: u8,

    /// JetStream stream name of the history.
    #[arg(long, env = "RB_STREAM_NAME", default_value = "REALTIME")]
    pub stream_name: String,

    /// Take the sequence of every re-published `rt.>` message as JetStream's, without
    /// checking it against the stream (which costs new messages one JetStream round trip).
    /// Only where NATS permissions let nobody but JetStream publish on `rt.>` (deploy/nats/).
    #[arg(long, env = "RB_TRUST_REPUBLISHED", value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_republished: bool,

    /// Interval of the `: hb` comment that keeps proxies and watchdogs happy.
    #[arg(long, env = "RB_HEARTBEAT", default_value = "15s", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,

    /// Reconnect delay (ms) sent to clients as `retry:`.
    #[arg(long, env = "RB_RETRY", default_value_t = 2000)]
    pub retry: u64,

    /// Largest payload delivered; bigger ones are counted and skipped.
    #[arg(long, env = "RB_MAX_EVENT_BYTES", default_value = "262144", value_parser = parse_bytes_usize)]
    pub max_event_bytes: usize,

    /// Open streams allowed per user on this instance (429 beyond).
    #[arg(long, env = "RB_MAX_STREAMS_PER_USER", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_user: u32,

    /// Concurrent connections at most; more are answered 503 at once and closed
    /// [default: the open-file limit minus a reserve for the process itself].
    #[arg(long, env = "RB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Event names one stream's `events=` list may hold (400 beyond).
    #[arg(long, env = "RB_MAX_FILTER_EVENTS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_filter_events: u64,

    /// Longest request target (path and query) accepted (414 beyond).
    #[arg(long, env = "RB_MAX_REQUEST_TARGET", default_value = "8KiB", value_parser = parse_bytes_usize)]
    pub max_request_target: usize,

    /// Distinct users one POST /v1/publish may name (400 beyond).
    #[arg(long, env = "RB_MAX_PUBLISH_USERS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_publish_users: u64,

    /// Users × data bytes one POST /v1/publish may push (413 beyond).
    #[arg(long, env = "RB_MAX_PUBLISH_BYTES", default_value = "16MiB", value_parser = parse_bytes_usize)]
    pub max_publish_bytes: usize,

    /// Time a request body may take to arrive (408 beyond).
    #[arg(long, env = "RB_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,

    /// Longest life of a stream; it then ends with `end` / `max_lifetime` and the client
    /// reconnects at once [default: as long as its token].
    #[arg(long, env = "RB_MAX_STREAM_LIFETIME", value_parser = parse_positive_duration)]
    pub max_stream_lifetime: Option<Duration>,

    /// Browser origin allowed by CORS (repeatable, or comma-separated in RB_CORS_ORIGIN).
    #[arg(long = "cors-origin", env = "RB_CORS_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Longest time shutdown may take before the process exits anyway.
    #[arg(long, env = "RB_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format: text or json.
    #[arg(long, env = "RB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated for a cluster. May carry credentials
    /// (nats://user:password@host:4222, nats://token@host): set it through RB_NATS_URL then,
    /// not as a flag, so the password stays out of the process list. Logs show it as ***.
    #[arg(long, env = "RB_NATS_URL", hide_env_values = true, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS .creds file (user JWT and nkey seed) for decentralized (JWT) authentication.
    #[arg(long, env = "RB_NATS_CREDS", conflicts_with_all = ["nats_user", "nats_password_file"])]
    pub nats_creds: Option<PathBuf>,

    /// NATS user name; the password is read from --nats-password-file.
    #[arg(long, env = "RB_NATS_USER", requires = "nats_password_file")]
    pub nats_user: Option<String>,

    /// File holding the NATS password of --nats-user (one trailing newline is ignored).
    #[arg(long, env = "RB_NATS_PASSWORD_FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,
}

/// How tokens are verified. Exactly one key source (`--jwt-secret`, `--jwt-secret-file`,
/// `--jwt-public-key`, `--jwks-url`) or `--no-auth` is required; `Auth::from_args` checks that,
/// so an environment variable and a flag conflict as clearly as two flags do.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// `--jwt-secret` / `--jwt-secret-file`.
    #[command(flatten)]
    pub secret: SecretArgs,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) used to verify JWTs.
    #[arg(long, env = "RB_JWT_PUBLIC_KEY", value_name = "PATH")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS URL of an identity provider (Keycloak, Auth0, Cognito, Clerk, Supabase...): its RSA,
    /// EC and Ed25519 signing keys verify JWTs, picked by `kid`, refreshed every 10 minutes and
    /// when a token names an unknown key.
    #[arg(long, env = "RB_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// Accepted `aud` value (repeatable, or comma-separated): when given, a token must carry
    /// an `aud` naming one of them.
    #[arg(long = "jwt-audience", env = "RB_JWT_AUDIENCE", value_name = "AUD", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// Required `iss` value: when given, a token must carry exactly this issuer.
    #[arg(long, env = "RB_JWT_ISSUER", value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Claim holding the user id (e.g. `preferred_username` with Keycloak, or a custom claim):
    /// a string or an integer that is a valid user id.
    #[arg(long, env = "RB_USER_CLAIM", value_name = "NAME", default_value = "sub", value_parser = parse_claim_name)]
    pub user_claim: String,

    /// Clock-skew allowance for `exp` and `nbf`; an open stream ends at `exp` plus this.
    #[arg(long, env = "RB_JWT_LEEWAY", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
}

/// An HS256 secret given directly or as a file (the `token` and `listen` subcommands).
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// HS256 secret (at least 32 bytes). Visible in the process list: prefer
    /// --jwt-secret-file or the environment variable.
    #[arg(long, env = "RB_JWT_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// File holding the HS256 secret (at least 32 bytes; a trailing newline is ignored).
    #[arg(long, env = "RB_JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Recipient user id (repeatable).
    #[arg(long = "user", required_unless_present = "broadcast", value_parser = parse_user_id)]
    pub users: Vec<UserId>,

    /// Send to every connected user instead of --user.
    #[arg(long, conflicts_with = "users")]
    pub broadcast: bool,

    /// Event name, e.g. message_new.
    #[arg(long, value_parser = parse_event_name)]
    pub event: EventName,

    /// Set the Nats-Msg-Id header (JetStream drops duplicates with the same id); with several
    /// users each subject gets `<id>:<subject>`.
    #[arg(long)]
    pub msg_id: Option<String>,

    /// The bridge's history stream (`serve --stream-name`): when it exists, the event is
    /// published through JetStream and acknowledged; otherwise with core NATS.
    #[arg(long, env = "RB_STREAM_NAME", default_value = "REALTIME")]
    pub stream_name: String,

    /// The JSON payload (becomes `data`).
    pub data: String,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Subject (`sub`) of the token.
    #[arg(long, value_parser = parse_user_id)]
    pub user: UserId,

    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_positive_duration)]
    pub ttl: Duration,

    /// Sets `rb_admin: true` (may read any user's stream).
    #[arg(long)]
    pub admin: bool,

    /// Scopes, e.g. publish,presence.
    #[arg(long, value_delimiter = ',')]
    pub scope: Vec<String>,

    /// The secret to sign with (one of --jwt-secret, --jwt-secret-file).
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Bridge base URL.
    #[arg(long, env = "RB_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// User whose stream to print.
    #[arg(long, value_parser = parse_user_id)]
    pub user: UserId,

    /// Only these events (comma-separated).
    #[arg(long, value_parser = parse_event_list)]
    pub events: Option<EventList>,

    /// Token to send; without it one is signed with --jwt-secret (if given).
    #[arg(long, env = "RB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Secret to sign a token with when --token is absent (--jwt-secret or --jwt-secret-file).
    #[command(flatten)]
    pub secret: SecretArgs,

    /// Resume after this cursor.
    #[arg(long)]
    pub last_event_id: Option<String>,
}

/// A validated, de-duplicated `a,b,c` list (clap needs one value type).
#[derive(Debug, Clone)]
pub struct EventList(pub Vec<EventName>);

fn parse_user_id(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|e| format!("user id {s:?} {e}"))
}

fn parse_event_name(s: &str) -> Result<EventName, String> {
    EventName::parse(s).map_err(|e| format!("event name {s:?} {e}"))
}

fn parse_event_list(s: &str) -> Result<EventList, String> {
    realtime_bridge_wire::parse_event_list(s).map(EventList).map_err(|(item, e)| format!("event name {item:?} {e}"))
}

/// A JWT claim name: not empty, no control characters.
fn parse_claim_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(format!("claim name {s:?} must be non-empty printable text, e.g. sub or preferred_username"));
    }
    Ok(s.to_owned())
}

/// Durations as `15s`, `500ms`, `24h`, `1h 30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 15s, 500ms, 24h)"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Sizes as `262144`, `256KiB`, `1GiB`, `10 MB`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (expected e.g. 262144, 256KiB, 1GiB)"))
}

fn parse_bytes_usize(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if n == 0 {
        return Err("must be greater than zero".into());
    }
    usize::try_from(n).map_err(|_| "too large for this platform".into())
}

/// A CORS origin must be `scheme://host[:port]` with nothing after it, as browsers send it.
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    let (scheme, rest) =
        s.split_once("://").ok_or_else(|| format!("origin {s:?} must look like https://app.example.com"))?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return Err(format!("origin {s:?} must look like https://app.example.com (scheme and host, no path)"));
    }
    axum::http::HeaderValue::from_str(s).map_err(|_| format!("origin {s:?} is not a valid header value"))?;
    Ok(s.to_owned())
}
