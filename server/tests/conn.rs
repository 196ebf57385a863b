//! How each accepted connection is served (src/conn.rs), checked on the raw bytes: a
//! connection whose first request is a stream is answered close-delimited by the bridge
//! itself; every other connection is served by hyper (keep-alive, chunked).
//!
//! Reading a takeover stream with an independent SSE parser is covered by tests/stream.rs
//! (`SseClient` opens every stream on a fresh connection).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPEN_STREAMS: &str = "realtime_bridge_open_streams";
const CONNECTED_USERS: &str = "realtime_bridge_connected_users";
const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// ---------------------------------------------------------------------------------------
// Helpers local to this file: a raw HTTP/1.1 client on a TcpStream.
// ---------------------------------------------------------------------------------------

/// nats-server and a bridge with `test_config`, changed by `tweak`.
async fn start(tweak: impl FnOnce(&mut realtime_bridge::Config)) -> (NatsServer, InProcessBridge) {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    tweak(&mut config);
    let bridge = InProcessBridge::start(config).await;
    (nats, bridge)
}

/// `GET /v1/users/{user}/events` in HTTP/`version` with `headers` (each `Name: value`).
fn stream_get(user: &str, version: &str, headers: &[&str]) -> String {
    let mut req = format!("GET /v1/users/{user}/events HTTP/{version}\r\n");
    if version == "1.1" {
        req.push_str("Host: 127.0.0.1\r\n");
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

fn bearer(user: &str) -> String {
    format!("Authorization: Bearer {}", token(user))
}

/// A response head: the status and the header lines as sent.
struct Head {
    status: u16,
    text: String,
}

impl Head {
    /// The first header named `name` (case-insensitive), trimmed.
    fn header(&self, name: &str) -> Option<&str> {
        self.text.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn expect_header(&self, name: &str, value: &str) {
        assert_eq!(self.header(name), Some(value), "header {name} in:\n{}", self.text);
    }
}

/// One client connection, with the bytes read and not yet consumed.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    /// The last response head announced `transfer-encoding: chunked`.
    chunked: bool,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Self {
        let sock = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").unwrap();
        Self { sock, buf: Vec::new(), chunked: false }
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.sock.write_all(bytes)).await.expect("write in time").unwrap();
    }

    /// Reads into `buf` until `done(buf)`; fails after [`WAIT`], or if the connection ends first.
    async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.buf) {
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => panic!("connection closed while waiting for {what}; got {:?}", self.text()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read error while waiting for {what}: {e}; got {:?}", self.text()),
                Err(_) => panic!("timed out after {WAIT:?} waiting for {what}; got {:?}", self.text()),
            }
        }
    }

    /// Reads the next response head; the bytes after it stay in `buf`.
    async fn head(&mut self) -> Head {
        self.read_until("a response head", |b| find(b, b"\r\n\r\n").is_some()).await;
        let end = find(&self.buf, b"\r\n\r\n").unwrap();
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        assert!(text.starts_with("HTTP/1.1 "), "status line: {text}");
        let status = text[9..12].parse().unwrap();
        let head = Head { status, text };
        self.chunked = head.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        head
    }

    /// The response body read so far (complete chunks only when chunked).
    fn body(&self) -> Vec<u8> {
        if self.chunked {
            dechunk(&self.buf).0
        } else {
            self.buf.clone()
        }
    }

    /// Reads until the body satisfies `done`.
    async fn read_body_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let chunked = self.chunked;
        self.read_until(what, |b| if chunked { done(&dechunk(b).0) } else { done(b) }).await;
    }

    /// Reads a stream's response head (200, SSE) and its `retry:` line.
    async fn expect_stream(&mut self) -> Head {
        let head = self.head().await;
        assert_eq!(head.status, 200, "{}\n{}", head.text, self.text());
        head.expect_header("content-type", "text/event-stream");
        self.read_body_until("the retry line", |b| find(b, b"\n\n").is_some()).await;
        let body = self.body();
        assert!(body.starts_with(b"retry: 2000\n\n"), "the body starts with the retry line: {:?}", self.text());
        head
    }

    /// Publishes `{"text":"hi"}` to `user.{user}.{event}` and reads until its frame arrives;
    /// returns the frame's text.
    async fn expect_event(&mut self, client: &async_nats::Client, user: &str, event: &str) -> String {
        publish(client, &format!("user.{user}.{event}"), r#"{"text":"hi"}"#).await;
        self.read_body_until(&format!("event {event}"), |b| frame_of(b, event).is_some()).await;
        let frame = frame_of(&self.body(), event).unwrap();
        let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data: {frame:?}"));
        let env: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(env["data"]["text"], "hi", "{frame:?}");
        assert_eq!(env["userId"], user, "{frame:?}");
        frame
    }

    /// Reads until the server closes the connection (EOF, or a reset); fails after [`WAIT`].
    /// What arrived meanwhile is added to `buf`.
    async fn expect_closed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("connection still open after {WAIT:?}; got {:?}", self.text()),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Connects, sends `request` and reads the stream's head and `retry:` line.
async fn open_stream(addr: SocketAddr, request: &str) -> (Conn, Head) {
    let mut conn = Conn::connect(addr).await;
    conn.send(request.as_bytes()).await;
    let head = conn.expect_stream().await;
    (conn, head)
}

/// `GET /healthz` on a new connection answers 200 `ok`.
async fn expect_healthy(addr: SocketAddr) {
    let mut conn = Conn::connect(addr).await;
    conn.send(HEALTHZ.as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200, "{}", head.text);
    conn.read_until("the healthz body", |b| b.len() >= 3).await;
    assert_eq!(conn.buf, b"ok\n");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The complete SSE frame (up to its blank line) whose `event:` line is `event`.
fn frame_of(body: &[u8], event: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("\nevent: {event}\n"))?;
    let frame_start = text[..start].rfind("\n\n").map_or(0, |i| i + 2);
    let end = start + text[start..].find("\n\n")?;
    Some(text[frame_start..end].to_owned())
}

/// Decodes the complete chunks at the start of `raw`; `true` once the last chunk was read.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        let Some(eol) = find(rest, b"\r\n") else { return (out, false) };
        let line = std::str::from_utf8(&rest[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|e| panic!("bad chunk size line {line:?} ({e}) in {:?}", String::from_utf8_lossy(raw)));
        let data = eol + 2;
        if rest.len() < data + size + 2 {
            return (out, false);
        }
        assert_eq!(&rest[data + size..data + size + 2], b"\r\n", "chunk not followed by CRLF");
        if size == 0 {
            return (out, true);
        }
        out.extend_from_slice(&rest[data..data + size]);
        rest = &rest[data + size + 2..];
    }
}

async fn wait_metric(base: &str, series: &str, value: f64) {
    eventually(
        &format!("{series} == {value}"),
        WAIT,
        || async move { (metric(base, series).await == value).then_some(()) },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Streams taken over on a fresh connection
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_on_a_fresh_connection_is_close_delimited_and_released_when_the_client_leaves() {
    // No heartbeat within the test: only watching the socket can notice the client left.
    let (nats, bridge) = start(|c| c.heartbeat = Duration::from_secs(60)).await;
    let base = bridge.base();
    let client = nats.client().await;
    let (mut conn, head) = open_stream(bridge.addr, &stream_get("42", "1.1", &[&bearer("42")])).await;
    assert!(head.text.starts_with("HTTP/1.1 200 OK\r\n"), "{}", head.text);
    head.expect_header("connection", "close");
    head.expect_header("cache-control", "no-cache, no-transform");
    assert_eq!(head.header("transfer-encoding"), None, "{}", head.text);
    assert_eq!(head.header("content-length"), None, "{}", head.text);

    let frame = conn.expect_event(&client, "42", "hello").await;
    assert!(frame.starts_with("id: "), "{frame:?}");
    // SSE lines end with LF alone: a CRLF would be chunk framing.
    assert!(find(&conn.buf, b"\r\n").is_none(), "no chunk framing in a close-delimited body: {:?}", conn.text());
    assert_eq!(metric(&base, OPEN_STREAMS).await, 1.0);
    assert_eq!(metric(&base, CONNECTED_USERS).await, 1.0);

    // The client leaves while the stream is idle: noticed without waiting for a write.
    drop(conn);
    wait_metric(&base, OPEN_STREAMS, 0.0).await;
    wait_metric(&base, CONNECTED_USERS, 0.0).await;
    bridge.stop().await;
}

#[tokio::test]
async fn http_1_0_stream_request_is_served_and_ends_cleanly_at_shutdown() {
    let (nats, bridge) = start(|_| {}).await;
    let client = nats.client().await;
    let (mut conn, head) = open_stream(bridge.addr, &stream_get("42", "1.0", &[&bearer("42")])).await;
    // HTTP/1.0 knows no chunked framing: the end of the connection ends the body.
    assert_eq!(head.header("transfer-encoding"), None, "{}", head.text);
    head.expect_header("connection", "close");
    conn.expect_event(&client, "42", "hello").await;

    // Shutdown ends the stream with a clean close, every byte written.
    let started = Instant::now();
    tokio::join!(bridge.stop(), conn.expect_closed());
    assert!(started.elapsed() < WAIT, "shutdown took {:?}", started.elapsed());
    assert!(conn.buf.ends_with(b"\n\n"), "the body ends on a frame boundary: {:?}", conn.text());
}

#[tokio::test]
async fn cors_headers_are_sent_on_the_takeover_path() {
    let (_nats, bridge) = start(|c| c.cors_origins = vec!["http://app.example".into()]).await;
    let origin = "Origin: http://app.example";
    let (_conn, head) = open_stream(bridge.addr, &stream_get("42", "1.1", &[&bearer("42"), origin])).await;
    head.expect_header("access-control-allow-origin", "http://app.example");
    head.expect_header("access-control-allow-credentials", "true");
    head.expect_header("connection", "close");

    // A refusal carries them too, so the page can read why.
    let mut conn = Conn::connect(bridge.addr).await;
    conn.send(stream_get("42", "1.1", &[origin]).as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head.status, 401, "{}", head.text);
    head.expect_header("access-control-allow-origin", "http://app.example");
    head.expect_header("access-control-allow-credentials", "true");
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// Refusals on the takeover path
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refusals_on_the_takeover_path_are_json_with_a_length_then_the_connection_closes() {
    let (_nats, bridge) = start(|c| c.max_streams_per_user = 1).await;
    // User 7's one allowed stream, so that the next is refused after the hub was asked.
    let (_seven, _) = open_stream(bridge.addr, &stream_get("7", "1.1", &[&bearer("7")])).await;
    let cases = [
        ("a*b", Some("42"), 400, "invalid_user_id"),
        ("%2A", Some("42"), 400, "invalid_user_id"),
        ("42", None, 401, "unauthorized"),
        ("42", Some("43"), 403, "forbidden"),
        ("7", Some("7"), 429, "too_many_streams"),
    ];
    for (user, token_user, status, code) in cases {
        let what = format!("GET /v1/users/{user}/events with a token for {token_user:?}");
        let auth = token_user.map(bearer);
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        let mut conn = Conn::connect(bridge.addr).await;
        conn.send(stream_get(user, "1.1", &headers).as_bytes()).await;
        let head = conn.head().await;
        assert_eq!(head.status, status, "{what}: {}", head.text);
        head.expect_header("content-type", "application/json");
        head.expect_header("connection", "close");
        assert_eq!(head.header("transfer-encoding"), None, "{what}: {}", head.text);
        if status == 401 {
            head.expect_header("www-authenticate", "Bearer");
        }
        let len: usize = head.header("content-length").unwrap_or_else(|| panic!("{what}: no length")).parse().unwrap();
        // The server closes after the body: everything it sent is the body.
        conn.expect_closed().await;
        assert_eq!(conn.buf.len(), len, "{what}: content-length matches the body {:?}", conn.text());
        let body: serde_json::Value = serde_json::from_slice(&conn.buf).unwrap();
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// Connections left to hyper
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_after_another_request_on_a_keep_alive_connection_is_served_chunked_by_hyper() {
    let (nats, bridge) = start(|_| {}).await;
    let client = nats.client().await;
    let mut conn = Conn::connect(bridge.addr).await;
    conn.send(HEALTHZ.as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200, "{}", head.text);
    head.expect_header("content-length", "3");
    conn.read_until("the healthz body", |b| b.len() >= 3).await;
    assert_eq!(conn.buf, b"ok\n");
    conn.buf.clear();

    conn.send(stream_get("42", "1.1", &[&bearer("42")]).as_bytes()).await;
    let head = conn.expect_stream().await;
    head.expect_header("transfer-encoding", "chunked");
    assert_ne!(head.header("connection"), Some("close"), "{}", head.text);
    conn.expect_event(&client, "42", "hello").await;

    // Shutdown ends the body with its last chunk.
    let started = Instant::now();
    tokio::join!(bridge.stop(), conn.expect_closed());
    assert!(started.elapsed() < WAIT, "shutdown took {:?}", started.elapsed());
    assert!(dechunk(&conn.buf).1, "the body ended with the terminating chunk: {:?}", conn.text());
}

#[tokio::test]
async fn stream_request_with_a_head_over_16_kib_is_served_by_hyper() {
    let (nats, bridge) = start(|_| {}).await;
    let client = nats.client().await;
    let cookie = format!("Cookie: big={}", "c".repeat(20 * 1024));
    let (mut conn, head) = open_stream(bridge.addr, &stream_get("42", "1.1", &[&cookie, &bearer("42")])).await;
    head.expect_header("transfer-encoding", "chunked");
    conn.expect_event(&client, "42", "hello").await;
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// Slow heads and pipelining
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn client_that_sends_no_complete_head_in_time_is_disconnected() {
    let head_timeout = Duration::from_millis(300);
    let (_nats, bridge) = start(|c| c.head_timeout = head_timeout).await;

    let cases = [
        ("nothing", ""),
        ("a stream head without its blank line", "GET /v1/users/42/events HTTP/1.1\r\nHost: x\r\n"),
        ("another head without its blank line (left to hyper)", "GET /healthz HTTP/1.1\r\nHost: x\r\n"),
    ];
    for (what, sent) in cases {
        let started = Instant::now();
        let mut conn = Conn::connect(bridge.addr).await;
        conn.send(sent.as_bytes()).await;
        conn.expect_closed().await;
        let took = started.elapsed();
        assert!(took >= head_timeout - Duration::from_millis(50), "{what}: closed after {took:?}");
        assert!(conn.buf.is_empty(), "{what}: nothing is answered; got {:?}", conn.text());
    }

    // A head that keeps growing, one header every 50 ms, never complete: the limit is on
    // the whole head, not on the time between bytes.
    let started = Instant::now();
    let mut conn = Conn::connect(bridge.addr).await;
    conn.send(b"GET /v1/users/42/events HTTP/1.1\r\n").await;
    let mut scratch = [0u8; 1024];
    loop {
        assert!(started.elapsed() < WAIT, "a trickling head still connected after {WAIT:?}");
        match tokio::time::timeout(Duration::from_millis(50), conn.sock.read(&mut scratch)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => panic!("answered a trickling head: {:?}", String::from_utf8_lossy(&scratch[..n])),
            // Pacing, not synchronisation: nothing arrived for 50 ms, send one more header.
            Err(_) => {
                if conn.sock.write_all(b"X-Pad: a\r\n").await.is_err() {
                    break;
                }
            }
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "a trickling head was disconnected only after {took:?}");

    expect_healthy(bridge.addr).await;
    bridge.stop().await;
}

#[tokio::test]
async fn requests_pipelined_behind_a_stream_are_ignored() {
    let (nats, bridge) = start(|_| {}).await;
    let base = bridge.base();
    let client = nats.client().await;
    let request = stream_get("42", "1.1", &[&bearer("42")]) + HEALTHZ;
    let (mut conn, _) = open_stream(bridge.addr, &request).await;
    conn.expect_event(&client, "42", "first").await;
    // More, once the stream is running.
    conn.send(HEALTHZ.repeat(50).as_bytes()).await;
    conn.expect_event(&client, "42", "second").await;
    assert!(find(&conn.buf, b"HTTP/1.1").is_none(), "no answer to a pipelined request: {:?}", conn.text());
    assert_eq!(metric(&base, OPEN_STREAMS).await, 1.0);

    expect_healthy(bridge.addr).await;
    drop(conn);
    wait_metric(&base, OPEN_STREAMS, 0.0).await;
    bridge.stop().await;
}
