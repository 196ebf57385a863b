//! Serving one accepted connection.
//!
//! An SSE stream lives for hours and is idle nearly all that time, so what its connection
//! holds is most of what a client costs. hyper keeps an 8–16 KiB read buffer and an 8 KiB
//! write buffer for a connection's whole life, several times what the stream needs. So a
//! connection whose first request is a stream (`GET /v1/users/{id}/events`: what
//! `EventSource` and the SDK open) is answered here: its head is parsed with `httparse`
//! (hyper's own parser) from a buffer freed right after, the request goes through the same
//! axum router as every other one (auth, validation, CORS, JSON errors), and the stream's
//! chunks are written straight to the socket, those that are ready together in one
//! `writev`. The response is close-delimited (RFC 9112 §6.3: no length, no chunked
//! framing), so that connection carries this one stream and nothing else.
//!
//! Every other connection (and a stream request on a connection that served something
//! else first) is served by hyper, with the bytes already read handed back first.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Version};
use axum::Router;
use bytes::{Buf, Bytes};
use futures::{FutureExt, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use realtime_bridge_wire::{route, sse};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::sse_body::SseBody;
use crate::stall::StallGuard;

/// A request head larger than this is left to hyper (and its limits).
const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed here; a request with more is left to hyper.
const MAX_HEADERS: usize = 48;
/// At most this many ready chunks go into one `writev`.
const MAX_BATCH: usize = 64;
/// Bytes a client may send into its open stream (nothing is expected) before it is cut off.
const MAX_UNSOLICITED: usize = 4 * 1024;
/// Bodies of non-stream answers (errors) read to write them with a length.
const MAX_ANSWER_BODY: usize = 1 << 20;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct ConnConfig {
    pub(crate) router: Router,
    /// A write that makes no progress for this long fails the connection (see `stall`).
    pub(crate) stall_limit: Duration,
    /// A client must send a complete request head within this time, or is disconnected.
    pub(crate) head_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    /// `--max-connections`: past it a connection is answered 503 at once, so the process
    /// keeps descriptors for its streams and NATS instead of failing `accept`.
    pub(crate) max_connections: usize,
    /// Connections being served now.
    pub(crate) open_connections: AtomicUsize,
    /// Cancelled at shutdown. A write waiting on a client that stopped reading gives up at
    /// once then: it would otherwise hold shutdown for `stall_limit`, past any sane grace.
    pub(crate) stop: CancellationToken,
}

/// One counted connection; gives its place back when dropped (whatever ends the task).
#[derive(Debug)]
pub(crate) struct ConnSlot(Arc<ConnConfig>);

impl ConnSlot {
    /// A place for a new connection, or `None` at `--max-connections`.
    pub(crate) fn take(config: &Arc<ConnConfig>) -> Option<Self> {
        let taken = config
            .open_connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < config.max_connections).then_some(n + 1));
        taken.ok().map(|_| {
            config.metrics.open_connections.inc();
            Self(Arc::clone(config))
        })
    }
}

impl std::ops::Deref for ConnSlot {
    type Target = ConnConfig;
    fn deref(&self) -> &ConnConfig {
        &self.0
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open_connections.dec();
    }
}

/// The answer past `--max-connections`: written without waiting (the socket's buffer is
/// empty), then the connection is closed. Clients retry later (the SDK backs off).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 98\r\n\r\n{\"error\":\"this bridge has as many connections as it may hold; retry shortly\",\"code\":\"unavailable\"}";

/// Refuses a connection over the cap at once, without a task.
pub(crate) fn refuse_busy(sock: TcpStream, config: &ConnConfig) {
    config.metrics.connections_refused.inc();
    let _ = sock.try_write(BUSY);
}

/// Put into a stream request's extensions by [`serve`]: the handler leaves the stream here
/// (and answers with an empty body) so the connection can write it without hyper.
#[derive(Clone, Default)]
pub(crate) struct Takeover(Arc<Mutex<Option<SseBody>>>);

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Takeover")
    }
}

impl Takeover {
    pub(crate) fn put(&self, stream: SseBody) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
    }

    fn take(&self) -> Option<SseBody> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Serves `sock` until the client leaves, its stream ends, or (hyper) graceful shutdown.
pub(crate) async fn serve(mut sock: TcpStream, config: ConnSlot, graceful: Watcher) {
    // Events are small and latency matters more than packet count.
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::new();
    let head = tokio::time::timeout(config.head_timeout, read_head(&mut sock, &mut buf)).await;
    match head {
        Ok(Ok(Head::Stream(req))) => {
            drop(buf);
            serve_stream(sock, req, &config).await;
        }
        // Boxed: hyper's connection is large, and stream connections should not carry its
        // room for their whole life.
        Ok(Ok(Head::Other)) => Box::pin(serve_with_hyper(sock, buf, &config, graceful)).await,
        // Too slow to say what it wants: nothing to answer, but counted.
        Err(_) => {
            config.metrics.head_timeouts.inc();
        }
        // Gone, or unreadable: nothing to answer.
        Ok(Ok(Head::Closed) | Err(_)) => {}
    }
}

/// Serves the connection with hyper (HTTP/1.1, keep-alive), replaying `read` first.
async fn serve_with_hyper(sock: TcpStream, read: Vec<u8>, config: &ConnConfig, graceful: Watcher) {
    let io = StallGuard::new(
        Prefixed::new(Bytes::from(read), sock),
        config.stall_limit,
        Arc::clone(&config.metrics),
        config.stop.clone(),
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.head_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(config.router.clone()));
    // An error here is the client's (reset, bad request): hyper has answered or it left.
    if let Err(e) = graceful.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Who serves a connection, decided from the first bytes it sent.
#[derive(Debug)]
pub enum Head {
    /// A complete stream request, answered here.
    Stream(Box<Request<Body>>),
    /// Anything else: hyper serves the connection from the bytes read so far.
    Other,
    /// The client left before sending a request.
    Closed,
}

/// Decides, read after read, who serves a connection.
///
/// A head may arrive a byte at a time. Parsing the whole buffer after every read would cost
/// O(n²) on a trickled head, so the buffer is parsed at most twice: once when the request
/// line is complete (it alone may show the request is not a stream) and once when the blank
/// line that ends the head has arrived. In between, only the new bytes are scanned.
#[derive(Debug, Default)]
pub struct HeadReader {
    /// Bytes already searched for the end of the head (minus a few for a split marker).
    scanned: usize,
    /// Whether the request line was looked at already.
    line_checked: bool,
    /// How many times httparse ran (at most two; checked by the tests).
    parses: u8,
}

impl HeadReader {
    /// Called with everything read so far after each read. `Some` once it is clear who
    /// serves the request; `None` while more bytes are needed.
    pub fn advance(&mut self, buf: &[u8]) -> Option<Head> {
        if !self.line_checked {
            // From `scanned` on: the bytes before it held no line end, and searching from 0 made
            // a request line trickled a byte per read cost O(n²) in its length.
            let from = self.scanned.min(buf.len());
            if let Some(eol) = buf[from..].iter().position(|&b| b == b'\n').map(|i| from + i) {
                self.line_checked = true;
                self.parses += 1;
                let mut headers = [httparse::EMPTY_HEADER; 0];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&buf[..=eol]) {
                    // The request line alone shows it is not a stream: no need to wait.
                    Ok(_) | Err(httparse::Error::TooManyHeaders) => match (req.method, req.path) {
                        (Some(m), Some(p)) if !is_stream(m, p) => return Some(Head::Other),
                        _ => {}
                    },
                    // hyper answers malformed requests (400) in its own words.
                    Err(_) => return Some(Head::Other),
                }
            }
        }
        let end = find_head_end(buf, self.scanned);
        self.scanned = buf.len().saturating_sub(2);
        match end {
            Some(end) => {
                self.parses += 1;
                Some(parse_head(&buf[..end]).unwrap_or(Head::Other))
            }
            None if buf.len() >= MAX_HEAD => Some(Head::Other),
            None => None,
        }
    }

    /// The decision when the client closed its side after sending `buf`.
    pub fn at_eof(buf: &[u8]) -> Head {
        // Closed mid-head: let hyper say what is wrong if anything was sent.
        if buf.is_empty() {
            Head::Closed
        } else {
            Head::Other
        }
    }
}

/// The end of the head (just past its blank line), searching from `from`. Bare LF line
/// endings count, as httparse accepts them.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        let nl = i + buf[i..].iter().position(|&b| b == b'\n')?;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

async fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    let mut reader = HeadReader::default();
    loop {
        buf.reserve(1024);
        if sock.read_buf(buf).await? == 0 {
            return Ok(HeadReader::at_eof(buf));
        }
        if let Some(head) = reader.advance(buf) {
            return Ok(head);
        }
    }
}

/// `Some` once it is clear who serves the request; `None` while more bytes are needed.
fn parse_head(buf: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            Some(stream_request(&req).map_or(Head::Other, |r| Head::Stream(Box::new(r))))
        }
        Ok(httparse::Status::Partial) => match (req.method, req.path) {
            // The request line alone shows it is not a stream: no need to wait for the rest.
            (Some(m), Some(p)) if !is_stream(m, p) => Some(Head::Other),
            _ => None,
        },
        // hyper answers malformed requests (400, 431) in its own words.
        Err(_) => Some(Head::Other),
    }
}

fn is_stream(method: &str, target: &str) -> bool {
    // The path ends at the query or at a fragment, which `Uri` drops before axum routes:
    // `/v1/users/1/x#/events` asks for `/v1/users/1/x`, not a stream (fuzz/regressions/head/).
    let path = target.split(['?', '#']).next().unwrap_or(target);
    method == "GET" && route::is_stream_path(path)
}

/// The request as axum sees it, if it is a stream request this connection may carry.
fn stream_request(parsed: &httparse::Request<'_, '_>) -> Option<Request<Body>> {
    let (method, target) = (parsed.method?, parsed.path?);
    if !is_stream(method, target) {
        return None;
    }
    let version = match parsed.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut req = Request::builder().method(Method::GET).uri(target).version(version);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A body or a protocol switch needs hyper's handling.
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE {
            return None;
        }
        if name == header::CONTENT_LENGTH && h.value != b"0" {
            return None;
        }
        req = req.header(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    req.body(Body::empty()).ok()
}

/// Runs a stream request through the router and writes the answer itself.
async fn serve_stream(sock: TcpStream, req: Box<Request<Body>>, config: &ConnConfig) {
    // Boxed: the router's future, the request and the response are large and needed once;
    // inline they would stay part of this task's state for the whole life of the stream.
    let (head, stream) = Box::pin(answer(req, config)).await;
    drive(sock, head, stream, config).await;
}

/// The response head to write, and the stream to follow it (or a refusal's body).
async fn answer(mut req: Box<Request<Body>>, config: &ConnConfig) -> (Bytes, SseBody) {
    let slot = Takeover::default();
    req.extensions_mut().insert(slot.clone());
    let response = match config.router.clone().oneshot(*req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let (parts, body) = response.into_parts();
    let mut head = Vec::with_capacity(256);
    write_head(&mut head, &parts);
    let stream = match slot.take() {
        Some(stream) => stream,
        None => {
            // Refused (400, 401, 429, ...): a short JSON answer, then the connection closes.
            let body = axum::body::to_bytes(body, MAX_ANSWER_BODY).await.unwrap_or_default();
            head.extend_from_slice(b"content-length: ");
            sse::push_u64(&mut head, u64::try_from(body.len()).unwrap_or(u64::MAX));
            head.extend_from_slice(b"\r\n");
            futures::stream::iter([body]).boxed()
        }
    };
    head.extend_from_slice(b"\r\n");
    (Bytes::from(head), stream)
}

/// Status line and headers, ending with `connection: close` (the blank line is the caller's).
fn write_head(out: &mut Vec<u8>, parts: &axum::http::response::Parts) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        // Framing is ours to decide.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n");
}

/// Writes `head`, then the stream's chunks as they come, until the stream ends, the client
/// leaves, or a write stalls; then closes the connection.
async fn drive(sock: TcpStream, head: Bytes, mut stream: SseBody, config: &ConnConfig) {
    let mut queue = VecDeque::from([head]);
    let mut ended = false;
    // Bytes the client sent after its head (see `client_gone`).
    let mut unsolicited = 0usize;
    loop {
        // Whatever is ready goes out in the same write (a burst, a cursor line and its frame).
        // A stream that returned its end is never polled again.
        while !ended && queue.len() < MAX_BATCH {
            match stream.next().now_or_never() {
                Some(Some(chunk)) => queue.push_back(chunk),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if let Err(e) = write_all(&sock, &mut queue, config).await {
            tracing::debug!(error = %e, "stream connection failed");
            return;
        }
        if queue.capacity() > 16 {
            // A burst is over; an idle stream should not keep its peak.
            queue.shrink_to(4);
        }
        if ended {
            break;
        }
        // Neither the ring nor a non-blocking write counts against tokio's budget: a stream
        // that always has data and room would otherwise never let its worker run others.
        tokio::task::coop::consume_budget().await;
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(chunk) => queue.push_back(chunk),
                None => ended = true,
            },
            () = client_gone(&sock, &mut unsolicited) => return,
        }
    }
    // Every byte is written: a clean close (FIN) tells the client the stream ended.
    drop(stream);
    let mut sock = sock;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut sock).await;
}

/// Writes all of `queue`; fails if the client makes no room for `stall_limit`.
async fn write_all(sock: &TcpStream, queue: &mut VecDeque<Bytes>, config: &ConnConfig) -> io::Result<()> {
    while !queue.is_empty() {
        match write_some(sock, queue) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                while n > 0 {
                    let Some(front) = queue.front_mut() else { break };
                    if front.len() <= n {
                        n -= front.len();
                        queue.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    r = tokio::time::timeout(config.stall_limit, sock.writable()) => if r.is_err() {
                        config.metrics.stream_cut("write_stalled");
                        tracing::info!(limit = ?config.stall_limit, "connection cut off: client stopped reading");
                        return Err(io::ErrorKind::TimedOut.into());
                    },
                    // Shutting down: a client with a full socket will not read the `end`
                    // frame in time anyway, and waiting would hold the whole process.
                    () = config.stop.cancelled() => {
                        tracing::debug!("connection closed at shutdown with unwritten bytes: client not reading");
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One non-blocking `writev` of the queue's first chunks.
fn write_some(sock: &TcpStream, queue: &VecDeque<Bytes>) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_BATCH];
    let mut n = 0;
    for (slot, chunk) in slices.iter_mut().zip(queue) {
        *slot = IoSlice::new(chunk);
        n += 1;
    }
    sock.try_write_vectored(&slices[..n])
}

/// Resolves when the client closes its side (or the connection fails). Anything it sends
/// meanwhile (a pipelined request this connection will never answer) is discarded, up to
/// [`MAX_UNSOLICITED`] bytes over the connection's life: a client that keeps sending into
/// its stream is cut off rather than costing a read per few bytes for as long as it likes.
async fn client_gone(sock: &TcpStream, unsolicited: &mut usize) {
    // Small on purpose: this buffer is part of every idle stream's task.
    let mut scratch = [0u8; 64];
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        match sock.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => {
                *unsolicited += n;
                if *unsolicited > MAX_UNSOLICITED {
                    tracing::debug!(bytes = *unsolicited, "stream connection cut off: the client keeps sending");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// An IO that first yields bytes already read from it, so hyper sees the whole request.
#[derive(Debug)]
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    io: T,
}

impl<T> Prefixed<T> {
    pub(crate) fn new(prefix: Bytes, io: T) -> Self {
        Self { prefix, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Free the head buffer for the connection's remaining life.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn busy_answer_is_well_framed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.lines().any(|l| l == format!("content-length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "unavailable");
    }

    #[test]
    fn only_stream_requests_are_taken() {
        assert!(is_stream("GET", "/v1/users/42/events"));
        assert!(is_stream("GET", "/v1/users/42/events?events=a,b"));
        assert!(!is_stream("POST", "/v1/users/42/events"));
        assert!(!is_stream("GET", "/v1/presence/42"));
        assert!(!is_stream("GET", "/v1/users/42/events/x"));
        assert!(!is_stream("GET", "/healthz?/v1/users/1/events"));
        assert!(!is_stream("GET", "/v1/users/42/x#/events"));
    }

    /// Feeds `head` to a [`HeadReader`] in chunks of `step` bytes, as reads would.
    fn decide(head: &[u8], step: usize) -> Option<Head> {
        decide_counting(head, step).0
    }

    /// [`decide`], and how many times the reader ran httparse.
    fn decide_counting(head: &[u8], step: usize) -> (Option<Head>, u8) {
        let mut reader = HeadReader::default();
        let mut buf = Vec::new();
        for chunk in head.chunks(step) {
            buf.extend_from_slice(chunk);
            if let Some(h) = reader.advance(&buf) {
                return (Some(h), reader.parses);
            }
        }
        (None, reader.parses)
    }

    #[test]
    fn heads_are_sorted_out() {
        for step in [usize::MAX, 1, 2, 3, 7] {
            let parsed = |s: &str| decide(s.as_bytes(), step);
            assert!(matches!(parsed("GET /v1/users/42/events HTTP/1.1\r\nHost: a\r\n\r\n"), Some(Head::Stream(_))));
            assert!(matches!(parsed("GET /v1/users/42/events HTTP/1.1\nHost: a\n\n"), Some(Head::Stream(_))));
            // Not known yet: the head is incomplete.
            assert!(parsed("GET /v1/users/42/events HTTP/1.1\r\nHost: a\r\n").is_none());
            // Known from the request line.
            assert!(matches!(parsed("POST /v1/publish HTTP/1.1\r\n"), Some(Head::Other)));
            // Bodies and garbage go to hyper.
            assert!(matches!(
                parsed("GET /v1/users/42/events HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"),
                Some(Head::Other)
            ));
            assert!(matches!(parsed("\x01\x02 nonsense\r\n\r\n"), Some(Head::Other)));
            let Some(Head::Stream(req)) = parsed("GET /v1/users/7/events?x=1 HTTP/1.0\r\nLast-Event-ID: 3:4\r\n\r\n")
            else {
                panic!("not a stream request")
            };
            assert_eq!(req.version(), Version::HTTP_10);
            assert_eq!(req.uri().query(), Some("x=1"));
            assert_eq!(req.headers()["last-event-id"], "3:4");
        }
    }

    #[test]
    fn a_trickled_head_is_scanned_not_reparsed() {
        // 16 KiB of headers sent a byte at a time: parsed twice (request line, whole head),
        // not once per read (which was quadratic in the head's size).
        let mut head = b"GET /v1/users/42/events HTTP/1.1\r\n".to_vec();
        while head.len() < MAX_HEAD - 64 {
            head.extend_from_slice(b"x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let (decided, parses) = decide_counting(&head, 1);
        // More than 48 headers: hyper's, but only once the whole head is there.
        assert!(matches!(decided, Some(Head::Other)));
        assert_eq!(parses, 2);
        assert!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r", 0).is_none());
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 10), Some(24));
    }

    #[tokio::test]
    async fn prefixed_yields_the_prefix_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
