//! The `send`, `token` and `listen` subcommands: local work without the nats CLI.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use realtime_bridge_producer::{Options, RealtimeService, SendOptions};
use realtime_bridge_wire::{subject, SseEvent, SseParser};

use crate::auth::{load_secret, sign_hs256, unix_now, Claims, Scopes};
use crate::cli::{ListenArgs, SendArgs, TokenArgs};
use crate::nats::{connect_once, NatsCredentials, NatsError, NatsUrl};

/// A subcommand failed; `exit_code` follows sysexits (64 bad input, 69 unavailable).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) | Self::Nats(NatsError::BadUrl(_) | NatsError::Credentials { .. }) => 64,
            // NATS refused the credentials: as EX_NOPERM, like a refused stream.
            Self::Refused(_) | Self::Nats(NatsError::Refused { .. }) => 77,
            Self::Nats(_) | Self::Unavailable(_) => 69,
            Self::Io(_) => 74,
        }
    }
}

/// `realtime-bridge send`: publishes one event through the producer library (auto mode:
/// acknowledged by JetStream when the bridge keeps history, core NATS confirmed by a round
/// trip otherwise); prints the subjects.
pub async fn send(args: SendArgs, out: &mut impl Write) -> Result<(), CommandError> {
    // Validated here (a usage error, 64) and sent as written, byte for byte.
    let data: Box<serde_json::value::RawValue> = serde_json::from_str(&args.data).map_err(|e| {
        CommandError::Usage(format!("the payload must be JSON (e.g. '{{\"text\":\"hi\"}}' or '\"hi\"'): {e}"))
    })?;
    let subjects: Vec<String> = if args.broadcast {
        vec![subject::broadcast_subject(&args.event)]
    } else {
        let mut seen = std::collections::HashSet::new();
        args.users.iter().filter(|u| seen.insert(*u)).map(|u| subject::user_subject(u, &args.event)).collect()
    };
    // The same rule as `serve --stream-name`: the name becomes part of a JetStream API subject.
    if !crate::config::is_stream_name(&args.stream_name) {
        return Err(CommandError::Usage(format!(
            "--stream-name: {:?} is not a JetStream stream name (letters, digits, _ and -)",
            args.stream_name
        )));
    }
    let credentials = NatsCredentials::from_args(&args.nats)?;
    let conn = connect_once(&NatsUrl::new(args.nats.nats_url.clone()), &credentials).await?;
    let send_options = match &args.msg_id {
        Some(id) => SendOptions::msg_id(id.clone()),
        None => SendOptions::default(),
    };
    let work = async {
        // A command should answer within seconds, not the library's 30 s of retries.
        let options = Options::default().with_publish_timeout(SEND_TIMEOUT).with_stream(args.stream_name.clone());
        let rt = RealtimeService::with_client(conn.client.clone(), options).await?;
        if args.broadcast {
            rt.broadcast_event_with(&args.event, &data, &send_options).await?;
        } else {
            rt.send_event_to_users_with(&args.users, &args.event, &data, &send_options).await?;
        }
        // JetStream: every subject is acknowledged already. Core: a round trip, so
        // "published" means the server has it.
        rt.flush().await
    };
    // A publish (or the stream lookup) the NATS user may not make is refused by the server,
    // not by the client, and no acknowledgement ever comes: watch for the refusal meanwhile.
    let refusal = async {
        loop {
            let refused = conn.refused().await;
            if !refused.is_empty() {
                return refused;
            }
        }
    };
    let sent = tokio::select! {
        r = work => r,
        refused = refusal => return Err(refused_error(&refused)),
    };
    // In core mode a refusal can arrive just after the round trip's echo.
    let refused = conn.refused().await;
    if !refused.is_empty() {
        return Err(refused_error(&refused));
    }
    sent.map_err(|e| match e {
        e if e.is_input_error() => CommandError::Usage(e.to_string()),
        e => CommandError::Unavailable(format!("the publish was not confirmed: {e}")),
    })?;
    for s in &subjects {
        writeln!(out, "published {s}")?;
    }
    Ok(())
}

/// How long `send` keeps trying to get its event acknowledged.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

fn refused_error(refused: &[String]) -> CommandError {
    let mut message = format!("NATS refused: {}", refused.join("; "));
    if refused.iter().any(|r| r.contains("$JS.API.STREAM.INFO")) {
        message.push_str(
            " (the NATS user needs publish permission on $JS.API.STREAM.INFO.<stream> to find the \
             history stream; see deploy/nats/README.md)",
        );
    }
    CommandError::Refused(message)
}

/// `realtime-bridge token`: prints an HS256 JWT.
pub fn token(args: &TokenArgs, out: &mut impl Write) -> Result<(), CommandError> {
    // The same length rule as `serve`: a token signed with a guessable secret is no token.
    let secret = load_secret(&args.secret).map_err(|e| CommandError::Usage(e.to_string()))?.ok_or_else(|| {
        CommandError::Usage("--jwt-secret: give --jwt-secret or --jwt-secret-file to sign with".into())
    })?;
    for s in &args.scope {
        if !matches!(s.as_str(), "publish" | "presence") {
            return Err(CommandError::Usage(format!("--scope: unknown scope {s:?} (known: publish, presence)")));
        }
    }
    let claims = Claims {
        sub: Some(args.user.to_string()),
        exp: unix_now() + args.ttl.as_secs().max(1),
        rb_admin: args.admin,
        rb_scope: Scopes(args.scope.iter().cloned().collect()),
    };
    let t = sign_hs256(&secret, &claims).map_err(|e| CommandError::Usage(format!("cannot sign: {e}")))?;
    writeln!(out, "{t}")?;
    Ok(())
}

/// `realtime-bridge listen`: prints a user's stream, reconnecting with the last id.
pub async fn listen(args: ListenArgs, out: &mut (impl Write + Send)) -> Result<(), CommandError> {
    let secret = match &args.token {
        Some(_) => None,
        None => load_secret(&args.secret).map_err(|e| CommandError::Usage(e.to_string()))?,
    };
    let token = match (&args.token, &secret) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(secret)) => {
            let claims = Claims {
                sub: Some(args.user.to_string()),
                exp: unix_now() + 24 * 3600,
                rb_admin: false,
                rb_scope: Scopes::default(),
            };
            Some(sign_hs256(secret, &claims).map_err(|e| CommandError::Usage(format!("cannot sign: {e}")))?)
        }
        (None, None) => None,
    };
    let base = args.url.trim_end_matches('/');
    let mut url = format!("{base}{}", realtime_bridge_wire::route::stream_path(&args.user));
    if let Some(list) = &args.events {
        let names: Vec<&str> = list.0.iter().map(|e| e.as_str()).collect();
        url.push_str("?events=");
        url.push_str(&names.join(","));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CommandError::Unavailable(format!("HTTP client: {e}")))?;
    let mut last_id = args.last_event_id.clone();
    let mut delay = Duration::from_millis(500);
    loop {
        let mut req = http.get(&url).header("accept", "text/event-stream");
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id.as_str());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "bridge not reachable at {base}: is `realtime-bridge serve` running? ({e}); retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let status = resp.status();
        if status.is_client_error() && status.as_u16() != 429 {
            let body = resp.text().await.unwrap_or_default();
            return Err(CommandError::Refused(format!("the bridge refused the stream ({status}): {}", body.trim())));
        }
        if !status.is_success() {
            eprintln!("the bridge answered {status}; retrying in {delay:?}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
            continue;
        }
        eprintln!("connected to {url}");
        delay = Duration::from_millis(500);
        let mut parser = SseParser::new();
        let mut events: Vec<SseEvent> = Vec::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            parser.push(&chunk, &mut events);
            for e in events.drain(..) {
                writeln!(out, "{} {} {}", e.id.as_deref().unwrap_or("-"), e.event, e.data)?;
                out.flush()?;
            }
            if let Some(id) = parser.last_event_id() {
                last_id = Some(id.to_owned());
            }
        }
        eprintln!("stream ended; reconnecting");
        tokio::time::sleep(Duration::from_millis(parser.retry().unwrap_or(500).min(10_000))).await;
    }
}
