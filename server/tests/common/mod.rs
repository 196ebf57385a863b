//! Test harness for the server's integration tests: the processes come from the workspace's
//! test kit (`testkit`: a real `nats-server` per test, the bridge binary as a child
//! process, bounded waits, HTTP and metric helpers); what is kept here needs the server
//! crate itself: the bridge in-process (`realtime_bridge::run`), tokens signed with its
//! auth module, the binary cargo built for these tests, and an SSE client built on an
//! independent parser (eventsource-stream).
//!
//! Every wait is bounded by a timeout; nothing sleeps to synchronise.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stdout)]

pub mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use realtime_bridge::auth::{sign_hs256, unix_now, Claims, Scopes};
use serde_json::{json, Value};

#[allow(unused_imports)] // each test binary uses some of them
pub use testkit::{
    eventually, free_ports, http_get_local, lines_of, metric, metric_or_zero, post_publish, post_publish_status,
    presence_http, run_bounded, status_of, wait_metric, wait_status, BridgeProcess, ClusterNode, KillOnDrop,
    NatsCluster, NatsServer, Ran, WAIT,
};

/// The HS256 secret every test bridge uses (the bridge refuses secrets under 32 bytes).
pub const SECRET: &str = "test-secret-0123456789-0123456789";

// ---------------------------------------------------------------------------------------
// Tokens and keys

/// A token for `user` signed with [`SECRET`], valid for an hour.
pub fn token(user: &str) -> String {
    token_with(user, false, &[])
}

pub fn token_with(user: &str, admin: bool, scopes: &[&str]) -> String {
    let claims = Claims {
        sub: Some(user.to_owned()),
        exp: unix_now() + 3600,
        rb_admin: admin,
        rb_scope: Scopes(scopes.iter().map(|s| (*s).to_owned()).collect()),
    };
    sign_hs256(SECRET, &claims).unwrap()
}

/// A token of user `svc` allowed to publish (`POST /v1/publish`).
pub fn publisher_token() -> String {
    token_with("svc", false, &["publish"])
}

/// Claims for `user`, valid for an hour, to sign with any key.
pub fn claims_for(user: &str) -> Value {
    json!({ "sub": user, "exp": unix_now() + 3600 })
}

/// An HS256 token over arbitrary claims, "signed" with `secret`, carrying `kid`.
pub fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let mut h = Header::new(Algorithm::HS256);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A file of `tests/fixtures` (keys; see its README).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Decodes unpadded base64url (the JWT segment encoding), independently of the crate under test.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c:?} in {s:?}"),
        }
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => panic!("bad base64url length in {s:?}"),
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The bridge as a process: the binary cargo built for these tests

/// The `realtime-bridge` binary built by cargo for these tests.
pub fn bridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_realtime-bridge"))
}

/// A `Command` for the `realtime-bridge` binary with every inherited `RB_*` variable removed,
/// so the machine's environment cannot change what a test checks.
pub fn bridge_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    testkit::bridge_command(&bridge_bin(), args, env)
}

/// Runs the binary with `args` (bounded by [`WAIT`]).
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_bounded(bridge_command(args, env), WAIT)
}

/// How these tests start [`BridgeProcess`]es: this crate's binary, `RUST_LOG=debug` unless
/// given, and a process that logged a panic fails the test when dropped.
pub trait BridgeProcessExt {
    /// Starts `realtime-bridge serve --listen 127.0.0.1:0 --nats-url {nats_url} --log-format
    /// json`, with `--jwt-secret SECRET` unless `extra` names a key source, and `extra`.
    fn start(nats_url: &str, extra: &[&str]) -> BridgeProcess;

    /// Starts the binary with exactly `args`, and `env`.
    fn start_args(args: &[String], env: &[(&str, &str)]) -> BridgeProcess;
}

impl BridgeProcessExt for BridgeProcess {
    fn start(nats_url: &str, extra: &[&str]) -> BridgeProcess {
        let mut args: Vec<String> =
            ["serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--log-format", "json"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        let key_flags = ["--no-auth", "--jwt-secret", "--jwt-secret-file", "--jwt-public-key", "--jwks-url"];
        if !extra.iter().any(|a| key_flags.contains(a)) {
            args.extend(["--jwt-secret".into(), SECRET.into()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::start_args(&args, &[])
    }

    fn start_args(args: &[String], env: &[(&str, &str)]) -> BridgeProcess {
        let mut b = testkit::BridgeBuilder::new(bridge_bin()).args(args).fail_on_panic();
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            b = b.env("RUST_LOG", "debug");
        }
        for (k, v) in env {
            b = b.env(k, v);
        }
        b.start()
    }
}

/// The presence instance id a bridge process logged when it started listening.
pub async fn instance_of(bridge: &BridgeProcess) -> String {
    // The harness learns the address from that line before it stores it: wait for it.
    eventually("the bridge's listening line", WAIT, || {
        let found = bridge
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "listening")
            .and_then(|v| v["fields"]["instance"].as_str().map(str::to_owned));
        async move { found }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The bridge in this process

/// `Bridge::start` (the router without a listener), bounded.
pub async fn start_router(config: &realtime_bridge::Config) -> realtime_bridge::Bridge {
    tokio::time::timeout(WAIT, realtime_bridge::Bridge::start(config)).await.expect("bridge starts in time").unwrap()
}

/// The bridge running in this test process (for tests that need its internals).
pub struct InProcessBridge {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), realtime_bridge::ServerError>>,
}

impl InProcessBridge {
    pub async fn start(config: realtime_bridge::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(realtime_bridge::run(listener, config, async {
            let _ = rx.await;
        }));
        Self { addr, shutdown: Some(tx), task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task).await.expect("bridge stops in time").unwrap().unwrap();
    }
}

/// Bridge config for tests: HS256 with [`SECRET`], fast heartbeat.
pub fn test_config(nats_url: &str) -> realtime_bridge::Config {
    let auth =
        realtime_bridge::auth::Auth::Jwt(Box::new(realtime_bridge::auth::Verifier::from_secret(SECRET).unwrap()));
    let mut c = realtime_bridge::Config::new(nats_url, auth);
    c.history.mode = realtime_bridge::config::HistoryMode::Off;
    c
}

/// An open SSE stream read with eventsource-stream (an independent SSE parser).
pub struct SseClient {
    events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
}

impl SseClient {
    /// Opens `{base}/v1/users/{user}/events{query}` with a Bearer token; panics unless 200.
    pub async fn open(base: &str, user: &str, query: &str, token: Option<&str>) -> Self {
        let resp = open_raw(base, user, query, token).await;
        assert_eq!(resp.status(), 200, "stream refused: {}", resp.text().await.unwrap_or_default());
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = resp.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()));
        Self { events: Box::pin(events) }
    }

    /// Next event (not comments; eventsource-stream skips them), failing after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        self.next_within(WAIT).await.expect("an event before the timeout")
    }

    /// Next event, or `None` if none arrives within `d` (to check nothing was delivered).
    pub async fn next_within(&mut self, d: Duration) -> Option<Event> {
        match tokio::time::timeout(d, self.events.next()).await {
            Ok(Some(Ok(e))) => Some(e),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => None,
        }
    }

    /// Waits (bounded) for the server to end the stream.
    pub async fn expect_end(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("stream still open after {d:?}"),
            }
        }
    }
}

pub async fn open_raw(base: &str, user: &str, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{base}/v1/users/{user}/events{query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Publishes a sentinel to `subject` (an event `sse` wants) and checks it is the next event:
/// anything unwanted still on its way would arrive first. Beats waiting a while for nothing.
pub async fn expect_sentinel_next(sse: &mut SseClient, client: &async_nats::Client, subject: &str) {
    publish(client, subject, r#"{"sentinel":true}"#).await;
    let e = sse.next().await;
    let event = subject.rsplit('.').next().unwrap();
    assert_eq!(
        (e.event.as_str(), &envelope(&e)["data"]),
        (event, &serde_json::json!({"sentinel": true})),
        "expected the sentinel next, got {} {}",
        e.event,
        e.data
    );
}

/// Parses the envelope carried in an event's `data`.
pub fn envelope(e: &Event) -> serde_json::Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("data is not JSON ({err}): {}", e.data))
}

/// Publishes `payload` on `subject` and flushes, so it reached the server.
pub async fn publish(client: &async_nats::Client, subject: &str, payload: &str) {
    client.publish(subject.to_owned(), payload.to_owned().into()).await.unwrap();
    client.flush().await.unwrap();
}

/// A plain NATS subscriber that the server has registered before this returns.
/// (`Client::flush` only writes the socket; the echo of our own message on a fresh inbox
/// proves the server processed the SUB sent before it.)
pub async fn subscriber(nats: &NatsServer, subject: &str) -> (async_nats::Client, async_nats::Subscriber) {
    let client = tokio::time::timeout(WAIT, nats.client()).await.expect("NATS connect in time");
    let sub = client.subscribe(subject.to_owned()).await.unwrap();
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(WAIT, echo.next()).await.expect("NATS registered the subscription in time").unwrap();
    (client, sub)
}

impl SseClient {
    /// Opens `{base}/v1/users/{user}/events` resuming after `last_id` (the `Last-Event-ID`
    /// header, as a browser sends it); panics unless 200.
    pub async fn resume(base: &str, user: &str, last_id: &str, token: &str) -> Self {
        let req = reqwest::Client::new()
            .get(format!("{base}/v1/users/{user}/events"))
            .bearer_auth(token)
            .header("Last-Event-ID", last_id);
        let resp = tokio::time::timeout(WAIT, req.send()).await.expect("stream response in time").unwrap();
        assert_eq!(resp.status(), 200, "stream refused: {}", resp.text().await.unwrap_or_default());
        let events = resp.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()));
        Self { events: Box::pin(events) }
    }
}

// ---------------------------------------------------------------------------------------
// Presence over NATS (over HTTP: `presence_http`)

/// The NATS request `realtime.presence.{user}`, answered in time.
pub async fn presence_nats(client: &async_nats::Client, user: &str) -> serde_json::Value {
    let msg = tokio::time::timeout(WAIT, client.request(format!("realtime.presence.{user}"), bytes::Bytes::new()))
        .await
        .expect("presence request answered in time")
        .expect("presence request answered");
    serde_json::from_slice(&msg.payload).unwrap()
}

/// A presence answer without its `clients` list: the counts, for tests about counting.
pub fn counts(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("clients");
    }
    v
}

// ---------------------------------------------------------------------------------------
// Clients that stop reading (stream.rs, process.rs)

pub const DELIVERED: &str = "realtime_bridge_events_delivered_total";

/// Publishes `n` events of ~4 KiB to `subject`, then flushes.
pub async fn flood(client: &async_nats::Client, subject: &str, n: u64) {
    let payload = bytes::Bytes::from(format!("\"{}\"", "x".repeat(4096 - 2)));
    for _ in 0..n {
        client.publish(subject.to_owned(), payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
}

/// Fills the socket of a stream whose client does not read, without ever letting the
/// stream's ring (16) overflow: publishes 8 events of 4 KiB at a time and waits until the
/// bridge handed them all to the connection (`events_delivered`). When that stops happening,
/// the socket is full and the stream is no longer polled. Returns the number published.
///
/// Then a flood of more than `queue_len` events makes the stream lag while it is not polled:
/// the situation of a client that stopped reading (tab frozen, reader not consumed, half-dead peer).
pub async fn fill_until_stalled(base: &str, client: &async_nats::Client, subject: &str) -> u64 {
    let base_delivered = metric(base, DELIVERED).await;
    let mut published = 0u64;
    loop {
        assert!(published < 10_000, "the stream never stalled after {published} events of 4 KiB");
        flood(client, subject, 8).await;
        published += 8;
        let target = base_delivered + published as f64;
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut caught_up = false;
        while Instant::now() < deadline {
            if metric(base, DELIVERED).await >= target {
                caught_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !caught_up {
            // Make sure it is a stall, not a hiccup: nothing more is taken for another second.
            let before = metric(base, DELIVERED).await;
            let moved = tokio::time::timeout(Duration::from_secs(1), async {
                while metric(base, DELIVERED).await == before {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok();
            if !moved {
                return published;
            }
        }
    }
}
