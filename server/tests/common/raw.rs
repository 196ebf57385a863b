//! A raw HTTP/1.1 client on a TcpStream, for tests that check the bytes on the wire.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

pub const OPEN_STREAMS: &str = "realtime_bridge_open_streams";
pub const CONNECTED_USERS: &str = "realtime_bridge_connected_users";
pub const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// ---------------------------------------------------------------------------------------
// A raw HTTP/1.1 client on a TcpStream, for tests that check the bytes on the wire.
// ---------------------------------------------------------------------------------------

/// nats-server and a bridge with `test_config`, changed by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut realtime_bridge::Config)) -> (NatsServer, InProcessBridge) {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    tweak(&mut config);
    let bridge = InProcessBridge::start(config).await;
    (nats, bridge)
}

/// `GET /v1/users/{user}/events` in HTTP/`version` with `headers` (each `Name: value`).
pub fn stream_get(user: &str, version: &str, headers: &[&str]) -> String {
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

pub fn bearer(user: &str) -> String {
    format!("Authorization: Bearer {}", token(user))
}

/// A response head: the status and the header lines as sent.
pub struct Head {
    pub status: u16,
    pub text: String,
}

impl Head {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn expect_header(&self, name: &str, value: &str) {
        assert_eq!(self.header(name), Some(value), "header {name} in:\n{}", self.text);
    }
}

/// One client connection, with the bytes read and not yet consumed.
pub struct Conn {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
    /// The last response head announced `transfer-encoding: chunked`.
    pub chunked: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let sock = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").unwrap();
        Self { sock, buf: Vec::new(), chunked: false }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.sock.write_all(bytes)).await.expect("write in time").unwrap();
    }

    /// Reads into `buf` until `done(buf)`; fails after [`WAIT`], or if the connection ends first.
    pub async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
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
    pub async fn head(&mut self) -> Head {
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
    pub fn body(&self) -> Vec<u8> {
        if self.chunked {
            dechunk(&self.buf).0
        } else {
            self.buf.clone()
        }
    }

    /// Reads until the body satisfies `done`.
    pub async fn read_body_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let chunked = self.chunked;
        self.read_until(what, |b| if chunked { done(&dechunk(b).0) } else { done(b) }).await;
    }

    /// Reads a stream's response head (200, SSE) and its `retry:` line.
    pub async fn expect_stream(&mut self) -> Head {
        let head = self.head().await;
        assert_eq!(head.status, 200, "{}\n{}", head.text, self.text());
        head.expect_header("content-type", "text/event-stream");
        // What keeps proxies from buffering or rewriting the stream (docs/protocol.md §2),
        // on whichever path served it.
        head.expect_header("cache-control", "no-cache, no-transform");
        head.expect_header("x-accel-buffering", "no");
        self.read_body_until("the retry line", |b| find(b, b"\n\n").is_some()).await;
        let body = self.body();
        assert!(body.starts_with(b"retry: 2000\n\n"), "the body starts with the retry line: {:?}", self.text());
        head
    }

    /// Publishes `{"text":"hi"}` to `user.{user}.{event}` and reads until its frame arrives;
    /// returns the frame's text.
    pub async fn expect_event(&mut self, client: &async_nats::Client, user: &str, event: &str) -> String {
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
    pub async fn expect_closed(&mut self) {
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

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Connects, sends `request` and reads the stream's head and `retry:` line.
pub async fn open_stream(addr: SocketAddr, request: &str) -> (Conn, Head) {
    let mut conn = Conn::connect(addr).await;
    conn.send(request.as_bytes()).await;
    let head = conn.expect_stream().await;
    (conn, head)
}

/// Opens a stream for `user` and reads only its head and `retry:` line. With `keep_alive`
/// the connection first carries a `GET /healthz`, so hyper (not the bridge's own writer)
/// serves the stream that follows on it.
pub async fn open_unread_stream(addr: SocketAddr, user: &str, keep_alive: bool) -> Conn {
    let mut conn = Conn::connect(addr).await;
    if keep_alive {
        conn.send(HEALTHZ.as_bytes()).await;
        let head = conn.head().await;
        assert_eq!(head.status, 200, "{}", head.text);
        let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).expect("healthz has a length");
        conn.read_until("the healthz body", |b| b.len() >= len).await;
        conn.buf.drain(..len);
    }
    conn.send(stream_get(user, "1.1", &[&bearer(user)]).as_bytes()).await;
    let head = conn.expect_stream().await;
    // hyper frames its bodies in chunks; the bridge's own writer does not.
    assert_eq!(conn.chunked, keep_alive, "{}", head.text);
    conn
}

/// `GET /healthz` on a new connection answers 200 `ok`.
pub async fn expect_healthy(addr: SocketAddr) {
    let mut conn = Conn::connect(addr).await;
    conn.send(HEALTHZ.as_bytes()).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200, "{}", head.text);
    conn.read_until("the healthz body", |b| b.len() >= 3).await;
    assert_eq!(conn.buf, b"ok\n");
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The complete SSE frame (up to its blank line) whose `event:` line is `event`.
pub fn frame_of(body: &[u8], event: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("\nevent: {event}\n"))?;
    let frame_start = text[..start].rfind("\n\n").map_or(0, |i| i + 2);
    let end = start + text[start..].find("\n\n")?;
    Some(text[frame_start..end].to_owned())
}

/// Decodes the complete chunks at the start of `raw`; `true` once the last chunk was read.
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
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
