//! The NATS connection: reconnects forever, reports its state to metrics and logs.
//!
//! Credentials come from the URL (`nats://user:pass@host`, `nats://token@host`), a `.creds`
//! file, or a user and a password file. None of them reaches a log line or an error
//! message: URLs are shown with the password replaced, secrets print as `<redacted>`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};

use crate::cli::NatsArgs;
use crate::metrics::Metrics;

/// Inbox prefix of the server's connection. Services need `_INBOX.>` for their own acks and
/// replies, so anything the bridge receives there could be read by every service; under
/// its own prefix a NATS permission keeps the bridge's JetStream API replies, catch-up
/// deliveries and presence answers to the bridge (see `deploy/nats/`).
pub(crate) const INBOX_PREFIX: &str = "_RB.inbox";

/// NATS could not be reached or used, with a hint a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("bad --nats-url: {0}")]
    BadUrl(String),
    #[error("{flag}: {message}")]
    Credentials { flag: &'static str, message: String },
    #[error(
        "NATS at {url} refused the connection ({source}): check the NATS user and its password, token or .creds file"
    )]
    Refused { url: String, source: async_nats::ConnectError },
    #[error("NATS not reachable at {url}: is nats-server running? ({source})")]
    Unreachable { url: String, source: async_nats::ConnectError },
}

/// A secret that prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `--nats-url` as given: one URL or a comma-separated list, maybe with credentials.
/// `Display` and `Debug` show it with the password (or token) replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(String);

impl NatsUrl {
    pub fn new(urls: impl Into<String>) -> Self {
        Self(urls.into())
    }

    /// The URLs as given, credentials included: never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for NatsUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for NatsUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_urls(&self.0))
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsUrl({:?})", redact_urls(&self.0))
    }
}

/// Credentials given besides the URL (`--nats-creds`, `--nats-user` + `--nats-password-file`),
/// read once at start-up. `Debug` shows no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NatsCredentials {
    /// None, or in the URL.
    #[default]
    None,
    /// The contents of a `.creds` file: a user JWT and the nkey seed that signs for it.
    Creds(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
}

impl NatsCredentials {
    /// Reads the files named by `args`. Passwords live in files (or the URL in the
    /// environment) so that they never show in the process list.
    pub fn from_args(args: &NatsArgs) -> Result<Self, NatsError> {
        match (&args.nats_creds, &args.nats_user, &args.nats_password_file) {
            (None, None, None) => Ok(Self::None),
            (Some(path), None, None) => {
                let text = read_secret_file(path, "--nats-creds")?;
                // Parsed now so that a wrong file is a start-up error, not a reconnect loop.
                ConnectOptions::new().credentials(&text).map_err(|e| NatsError::Credentials {
                    flag: "--nats-creds",
                    message: format!("{} is not a NATS .creds file (user JWT and nkey seed): {e}", path.display()),
                })?;
                Ok(Self::Creds(Secret(text)))
            }
            (None, Some(user), Some(path)) => {
                if user.is_empty() {
                    return Err(NatsError::Credentials {
                        flag: "--nats-user",
                        message: "the user name is empty".into(),
                    });
                }
                let text = read_secret_file(path, "--nats-password-file")?;
                // Editors and `echo` end files with a newline; it is never part of the password.
                let password = text.strip_suffix('\n').map_or(text.as_str(), |p| p.strip_suffix('\r').unwrap_or(p));
                if password.is_empty() {
                    return Err(NatsError::Credentials {
                        flag: "--nats-password-file",
                        message: format!("{} is empty", path.display()),
                    });
                }
                Ok(Self::UserPassword { user: user.clone(), password: Secret(password.to_owned()) })
            }
            (Some(_), _, _) => Err(NatsError::Credentials {
                flag: "--nats-creds",
                message: "give --nats-creds or --nats-user with --nats-password-file, not both".into(),
            }),
            (None, Some(_), None) => Err(NatsError::Credentials {
                flag: "--nats-user",
                message: "needs --nats-password-file (the password is never a flag of its own)".into(),
            }),
            (None, None, Some(_)) => {
                Err(NatsError::Credentials { flag: "--nats-password-file", message: "needs --nats-user".into() })
            }
        }
    }
}

fn read_secret_file(path: &Path, flag: &'static str) -> Result<String, NatsError> {
    std::fs::read_to_string(path)
        .map_err(|e| NatsError::Credentials { flag, message: format!("cannot read {}: {e}", path.display()) })
}

/// The servers to connect to (without credentials) and options that carry the credentials.
/// Checks everything that can be checked without connecting, so `serve` runs it at start-up.
pub(crate) fn prepare(
    urls: &NatsUrl,
    credentials: &NatsCredentials,
    opts: ConnectOptions,
) -> Result<(Vec<ServerAddr>, ConnectOptions), NatsError> {
    let list: Vec<&str> = urls.expose().split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if list.is_empty() {
        return Err(NatsError::BadUrl("no NATS URL given".into()));
    }
    let mut servers = Vec::with_capacity(list.len());
    let mut in_url: Option<&str> = None;
    for u in list {
        let (bare, userinfo) = split_userinfo(u);
        // Parsed without its credentials, so that no later Debug of an address shows them.
        let addr =
            bare.parse::<ServerAddr>().map_err(|e| NatsError::BadUrl(format!("NATS URL {:?}: {e}", redact_url(u))))?;
        servers.push(addr);
        if let Some(info) = userinfo {
            match in_url {
                Some(seen) if seen != info => {
                    return Err(NatsError::BadUrl(
                        "the URLs carry different credentials: one NATS user connects to every server".into(),
                    ))
                }
                _ => in_url = Some(info),
            }
        }
    }
    let opts = match (in_url, credentials) {
        (None, NatsCredentials::None) => opts,
        (Some(info), NatsCredentials::None) => {
            // async-nats does not read credentials from the URL itself: user:password is a
            // user and password, a lone value is a token (as the Go client reads them).
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| {
                    NatsError::BadUrl("the credentials in the URL are not UTF-8 once percent-decoded".into())
                })
            };
            match info.split_once(':') {
                Some((user, pass)) => opts.user_and_password(decode(user)?, decode(pass)?),
                None => opts.token(decode(info)?),
            }
        }
        (Some(_), _) => {
            return Err(NatsError::Credentials {
                flag: "--nats-url",
                message: "credentials in the URL and in --nats-creds or --nats-user: give them one way".into(),
            })
        }
        (None, NatsCredentials::Creds(text)) => opts.credentials(text.expose()).map_err(|e| {
            NatsError::Credentials { flag: "--nats-creds", message: format!("not a NATS .creds file: {e}") }
        })?,
        (None, NatsCredentials::UserPassword { user, password }) => {
            opts.user_and_password(user.clone(), password.expose().to_owned())
        }
    };
    Ok((servers, opts))
}

/// Splits `scheme://userinfo@host...` into the URL without `userinfo@`, and the userinfo.
fn split_userinfo(url: &str) -> (String, Option<&str>) {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else { return (url.to_owned(), None) };
    let bare = match scheme {
        Some(s) => format!("{s}://{}", &rest[at + 1..]),
        None => rest[at + 1..].to_owned(),
    };
    (bare, Some(&rest[..at]))
}

/// One URL with its password (or token) replaced by `***`.
fn redact_url(url: &str) -> String {
    let (bare, userinfo) = split_userinfo(url);
    let Some(info) = userinfo else { return url.to_owned() };
    let shown = match info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    match bare.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{shown}@{rest}"),
        None => format!("{shown}@{bare}"),
    }
}

/// A `--nats-url` list as it may be shown: every password and token replaced by `***`.
pub(crate) fn redact_urls(urls: &str) -> String {
    urls.split(',').map(|u| redact_url(u.trim())).collect::<Vec<_>>().join(",")
}

fn connect_error(url: &NatsUrl, source: async_nats::ConnectError) -> NatsError {
    let url = url.to_string();
    match source.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            NatsError::Refused { url, source }
        }
        _ => NatsError::Unreachable { url, source },
    }
}

/// Connects for the long-running server: the first connection is retried in the
/// background (the bridge serves `/readyz` 503 meanwhile) and every later loss too.
pub(crate) async fn connect_server(
    urls: &NatsUrl,
    credentials: &NatsCredentials,
    metrics: Arc<Metrics>,
    connections: tokio::sync::watch::Sender<u64>,
) -> Result<async_nats::Client, NatsError> {
    let shown = urls.to_string();
    let opts = ConnectOptions::new()
        .name("realtime-bridge")
        .custom_inbox_prefix(INBOX_PREFIX)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |ev| {
            let metrics = Arc::clone(&metrics);
            let shown = shown.clone();
            let connections = connections.clone();
            async move {
                match ev {
                    async_nats::Event::Connected => {
                        metrics.nats_connected.set(1);
                        metrics.nats_connects.inc();
                        // History channels fill what was stored while we were away.
                        connections.send_modify(|n| *n += 1);
                        tracing::info!(url = %shown, "NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        metrics.nats_connected.set(0);
                        metrics.nats_disconnects.inc();
                        tracing::warn!(url = %shown, "NATS disconnected; reconnecting (is nats-server running?)");
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        metrics.nats_slow_consumer.inc();
                        tracing::warn!(sid, "NATS slow consumer: the bridge is not keeping up");
                    }
                    // A refused login or a permissions violation: the operator's to fix.
                    async_nats::Event::ServerError(e) => {
                        tracing::error!(url = %shown, error = %e, "NATS refused an operation: check the bridge's NATS user and its permissions");
                    }
                    // A refused login comes this way (as text), once per reconnect attempt.
                    async_nats::Event::ClientError(e) if e.to_string().contains("authorization") => {
                        tracing::error!(url = %shown, error = %e, "NATS refused the login: check the NATS user and its password, token or .creds file");
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        });
    let (servers, opts) = prepare(urls, credentials, opts)?;
    opts.connect(servers).await.map_err(|source| connect_error(urls, source))
}

/// The server's second connection, history mode only: JetStream requests and the catch-ups
/// they open (see `History::setup` for why not on the connection the live flow uses).
pub(crate) async fn connect_jetstream(
    urls: &NatsUrl,
    credentials: &NatsCredentials,
) -> Result<async_nats::Client, NatsError> {
    let opts = ConnectOptions::new()
        .name("realtime-bridge-jetstream")
        .custom_inbox_prefix(INBOX_PREFIX)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(3));
    let (servers, opts) = prepare(urls, credentials, opts)?;
    opts.connect(servers).await.map_err(|source| connect_error(urls, source))
}

/// A short-lived connection (`send`) and what the server refused on it.
#[derive(Debug)]
pub(crate) struct CliConnection {
    pub(crate) client: async_nats::Client,
    refused: Arc<std::sync::Mutex<Vec<String>>>,
    /// Woken when a refusal is recorded.
    refusal: Arc<tokio::sync::Notify>,
}

/// How long, after a round trip, a refusal the server sent before it may take to reach us.
/// async-nats hands server errors to a task of their own, so one sent before the round
/// trip's echo can still be on its way when the echo has arrived.
const REFUSAL_GRACE: Duration = Duration::from_millis(250);

impl CliConnection {
    /// The server's errors for what was sent before a [`round_trip`] that returned (a publish
    /// its permissions do not allow, say): waits up to `REFUSAL_GRACE` for one when there
    /// is none yet.
    pub(crate) async fn refused(&self) -> Vec<String> {
        let notified = self.refusal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.refused.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            let _ = tokio::time::timeout(REFUSAL_GRACE, notified).await;
        }
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Connects once for a short-lived command (`send`): fails fast with a clear message.
/// It keeps the default inbox prefix: `send` runs as a service, with a service's permissions.
pub(crate) async fn connect_once(urls: &NatsUrl, credentials: &NatsCredentials) -> Result<CliConnection, NatsError> {
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refusal = Arc::new(tokio::sync::Notify::new());
    let (sink, wake) = (Arc::clone(&refused), Arc::clone(&refusal));
    let opts = ConnectOptions::new()
        .name("realtime-bridge-cli")
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |ev| {
            let (sink, wake) = (Arc::clone(&sink), Arc::clone(&wake));
            async move {
                if let async_nats::Event::ServerError(e) = ev {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
                    wake.notify_waiters();
                }
            }
        });
    let (servers, opts) = prepare(urls, credentials, opts)?;
    let client = opts.connect(servers).await.map_err(|source| connect_error(urls, source))?;
    Ok(CliConnection { client, refused, refusal })
}

/// Returns once the server has processed everything this client sent before (a SUB
/// included). `Client::flush` only empties the local buffer; this is a real round trip:
/// our own message on a fresh inbox comes back only after the server processed everything
/// sent before it. (A request "nobody answers" is not: any subscriber on `>` or `_RB.>`
/// elsewhere on the NATS receives it, never replies, and the request times out.)
/// Relies on echo, which async-nats leaves on.
///
/// While disconnected it returns at once: the confirmation would only come after the
/// reconnect (async-nats resubscribes then), and nobody should wait for that.
pub(crate) async fn round_trip(client: &async_nats::Client) -> Result<(), async_nats::RequestError> {
    use async_nats::{RequestError, RequestErrorKind};
    use futures::StreamExt;
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(RequestError::new(RequestErrorKind::Other));
    }
    let inbox = client.new_inbox();
    let mut echo =
        client.subscribe(inbox.clone()).await.map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| RequestError::with_source(RequestErrorKind::Other, e))?;
    match tokio::time::timeout(Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(RequestError::new(RequestErrorKind::Other)),
        Err(_) => Err(RequestError::new(RequestErrorKind::TimedOut)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn args(creds: Option<&Path>, user: Option<&str>, password_file: Option<&Path>) -> NatsArgs {
        NatsArgs {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_creds: creds.map(Path::to_path_buf),
            nats_user: user.map(str::to_owned),
            nats_password_file: password_file.map(Path::to_path_buf),
        }
    }

    #[test]
    fn urls_are_shown_without_their_secrets() {
        let cases = [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://bridge:s3cr3t@h:4222", "nats://bridge:***@h:4222"),
            ("nats://t0ken@h:4222", "nats://***@h:4222"),
            ("tls://u:p%40ss@h:4222/x?y=z@w", "tls://u:***@h:4222/x?y=z@w"),
            ("u:p@h:4222", "u:***@h:4222"),
            ("nats://u:a@b@h", "nats://u:***@h"),
            ("nats://u:p@a:1, nats://u:p@b:2", "nats://u:***@a:1,nats://u:***@b:2"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_urls(raw), shown, "{raw}");
            let url = NatsUrl::new(raw);
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("s3cr3t") && !format!("{url:?}").contains("t0ken"));
        }
    }

    #[test]
    fn url_credentials_are_split_off_the_addresses() {
        let (servers, _) = prepare(
            &NatsUrl::new("nats://bridge:p%40ss@127.0.0.1:4222"),
            &NatsCredentials::None,
            ConnectOptions::new(),
        )
        .unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].username(), None);
        assert!(!format!("{servers:?}").contains("p%40ss"));
        // Clashing credentials and credentials given twice are refused, naming no secret.
        let e =
            prepare(&NatsUrl::new("nats://a:x@h1:1,nats://b:y@h2:2"), &NatsCredentials::None, ConnectOptions::new())
                .unwrap_err();
        assert!(matches!(e, NatsError::BadUrl(_)) && !e.to_string().contains('x'), "{e}");
        let both = NatsCredentials::UserPassword { user: "u".into(), password: Secret::new("pw") };
        let e = prepare(&NatsUrl::new("nats://a:x@h:1"), &both, ConnectOptions::new()).unwrap_err();
        assert!(matches!(e, NatsError::Credentials { flag: "--nats-url", .. }), "{e}");
        let e = prepare(&NatsUrl::new("nats://a:s3cr3t@h:notaport"), &NatsCredentials::None, ConnectOptions::new())
            .unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn password_files_and_creds_files_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("rb-nats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| -> PathBuf {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let pw = file("pw", "hunter2\r\n");
        let got = NatsCredentials::from_args(&args(None, Some("bridge"), Some(&pw))).unwrap();
        assert_eq!(got, NatsCredentials::UserPassword { user: "bridge".into(), password: Secret::new("hunter2") });
        assert!(!format!("{got:?}").contains("hunter2"));
        let empty = file("empty", "\n");
        let e = NatsCredentials::from_args(&args(None, Some("bridge"), Some(&empty))).unwrap_err();
        assert!(matches!(e, NatsError::Credentials { flag: "--nats-password-file", .. }), "{e}");
        let e = NatsCredentials::from_args(&args(None, Some("bridge"), Some(&dir.join("missing")))).unwrap_err();
        assert!(matches!(e, NatsError::Credentials { flag: "--nats-password-file", .. }), "{e}");
        let e = NatsCredentials::from_args(&args(None, Some("bridge"), None)).unwrap_err();
        assert!(matches!(e, NatsError::Credentials { flag: "--nats-user", .. }), "{e}");
        let not_creds = file("creds", "just some text\n");
        let e = NatsCredentials::from_args(&args(Some(&not_creds), None, None)).unwrap_err();
        assert!(matches!(e, NatsError::Credentials { flag: "--nats-creds", .. }), "{e}");
        assert_eq!(NatsCredentials::from_args(&args(None, None, None)).unwrap(), NatsCredentials::None);
        // A .creds file as nsc writes it: the JWT is the server's to check, the seed must parse.
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let creds = file(
            "user.creds",
            &format!(
                "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        );
        let got = NatsCredentials::from_args(&args(Some(&creds), None, None)).unwrap();
        assert!(matches!(&got, NatsCredentials::Creds(_)) && !format!("{got:?}").contains(&seed));
        prepare(&NatsUrl::new("nats://h:4222"), &got, ConnectOptions::new()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
