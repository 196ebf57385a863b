//! How each accepted connection is served (src/conn.rs), checked on the raw bytes: a
//! connection whose first request is a stream is answered close-delimited by the bridge
//! itself; every other connection is served by hyper (keep-alive, chunked).
//!
//! Reading a takeover stream with an independent SSE parser is covered by tests/stream.rs
//! (`SseClient` opens every stream on a fresh connection).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    // The two heads the bridge reads itself are counted (hyper closes the third).
    wait_metric(&bridge.base(), "realtime_bridge_head_timeouts_total", 2.0).await;

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

// ---------------------------------------------------------------------------------------
// The listening socket (`realtime_bridge::bind`, `--listen-backlog`)
// ---------------------------------------------------------------------------------------

/// The kernel queues as many connections as the backlog `bind` was given (Linux completes
/// one more): with nobody accepting, the connections beyond it get no answer to their SYN.
/// `TcpListener::bind` (1024) would have completed them all.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn bind_queues_as_many_unaccepted_connections_as_its_backlog() {
    const BACKLOG: usize = 4;
    const TRIES: usize = 8;
    let listener = realtime_bridge::bind("127.0.0.1:0".parse().unwrap(), BACKLOG as u32).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..TRIES {
        // A dropped SYN is sent again only after a second: 300 ms tells the two apart.
        match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(c)) => queued.push(c),
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => {}
        }
    }
    println!("backlog {BACKLOG}: {} of {TRIES} connections completed without an accept", queued.len());
    assert!(
        (BACKLOG..TRIES).contains(&queued.len()),
        "{} of {TRIES} connections completed with a backlog of {BACKLOG}",
        queued.len()
    );
    // Accepting one makes room again.
    tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await.unwrap().unwrap();
}

/// Like std's bind, `bind` sets SO_REUSEADDR: a restarted bridge takes its port back while
/// the last one's connections are still in TIME_WAIT.
#[tokio::test]
async fn bind_takes_back_a_port_whose_connections_are_in_time_wait() {
    let listener = realtime_bridge::bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await.unwrap().unwrap();
    let (server_side, _) = tokio::time::timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    // The server side closes first, so it is the one left in TIME_WAIT.
    drop(server_side);
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut rest)).await.unwrap().unwrap();
    drop(client);
    drop(listener);
    let again = realtime_bridge::bind(addr, 16);
    assert!(again.is_ok(), "{addr} cannot be bound again: {:?}", again.err());
}
