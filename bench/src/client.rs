//! The load generator's HTTP side: SSE streams over hyper's HTTP/1 client connections,
//! each on its own TCP socket bound to a chosen 127.0.0.x source address (so the
//! ephemeral port range of one address is no limit), parsed with the wire crate's
//! `SseParser` (the same parser the SDK uses).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use realtime_bridge_wire::{SseEvent, SseParser};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Streams per source address: well below the 28k ports of the default ephemeral range.
const STREAMS_PER_SOURCE: usize = 16_000;

/// Wall clock in nanoseconds since the Unix epoch (what publishers embed as `bench_t`).
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

static SOURCE_NET: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

/// The N of this run's source addresses (127.N.0.x), picked once per run.
pub(crate) fn source_net() -> u8 {
    *SOURCE_NET.get_or_init(|| u8::try_from(1 + now_nanos() / 1000 % 250).unwrap_or(1))
}

/// Makes this process use the coordinator's N: worker processes number their streams
/// globally, so with one N no two processes put more than 16,000 streams on one address.
pub(crate) fn set_source_net(net: u8) {
    let _ = SOURCE_NET.set(net);
}

/// The source address of stream `i`: 127.N.0.2, then 127.N.0.3 after 16,000 streams, ...
/// where N (1..=250) is picked per run: the ports of a previous run's sockets linger in
/// TIME_WAIT for a minute on their address, and a fresh address does not see them.
pub(crate) fn source_for(i: usize) -> IpAddr {
    let k = u8::try_from(2 + i / STREAMS_PER_SOURCE).unwrap_or(254);
    IpAddr::V4(Ipv4Addr::new(127, source_net(), 0, k))
}

/// A stream the server answered with another status than 200 (kept typed so that refusals
/// can be counted by status).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {} {}", self.status, self.body)
    }
}

impl std::error::Error for Refused {}

/// What an open that failed is counted as: its HTTP status, else the kind of failure.
pub(crate) fn failure_kind(e: &anyhow::Error) -> String {
    if let Some(r) = e.downcast_ref::<Refused>() {
        return r.status.to_string();
    }
    // The socket's own error says more than hyper's wrapper around it, so look for it first.
    if let Some(io) = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection_refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection_reset".into(),
            std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::AddrInUse => "no_source_port".into(),
            _ => "io_error".into(),
        };
    }
    if let Some(h) = e.chain().find_map(|c| c.downcast_ref::<hyper::Error>()) {
        // The server accepted the connection, then closed it without answering (e.g. its
        // request-head timeout while it was too busy to read the head).
        // (hyper reports a request whose connection closed while it waited as canceled.)
        if h.is_incomplete_message() || h.is_canceled() {
            return "closed_without_answer".into();
        }
        return "http_error".into();
    }
    "error".into()
}

/// Reads `"key":<digits>` from a JSON text without parsing all of it.
pub(crate) fn field_u64(text: &str, key: &str) -> Option<u64> {
    let needle = format!("\"{key}\":");
    let at = text.find(&needle)? + needle.len();
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// What a stream does with what it receives (shared by every stream of a run).
pub(crate) trait Sink: Send + Sync + 'static {
    /// One dispatched event, received at `now_ns`.
    fn on_event(&self, stream: usize, event: &SseEvent, now_ns: u64);
}

/// Counts of what the streams went through.
#[derive(Debug, Default)]
pub(crate) struct StreamStats {
    pub(crate) opened: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    /// Streams that ended (the bridge closed them, e.g. cut off as too slow).
    pub(crate) ended: AtomicUsize,
    pub(crate) reconnects: AtomicUsize,
    pub(crate) reopen_failed: AtomicUsize,
    /// Open times in microseconds, summed (for the mean) and the worst.
    pub(crate) open_us_sum: AtomicU64,
    pub(crate) open_us_max: AtomicU64,
    /// From a stream's end to its reopening (a resume), in microseconds: summed and the worst.
    pub(crate) reconnect_us_sum: AtomicU64,
    pub(crate) reconnect_us_max: AtomicU64,
    /// When the last first open succeeded, in microseconds after the streams were spawned.
    pub(crate) last_open_us: AtomicU64,
    /// First-try failures by what they were: the HTTP status, or `timeout`, `connection_reset`, ...
    pub(crate) failed_by: Mutex<BTreeMap<String, usize>>,
}

impl StreamStats {
    /// Counts a failure; true for the first two of its kind (worth printing).
    fn count_failure(&self, kind: String) -> bool {
        let mut by = self.failed_by.lock().unwrap_or_else(|p| p.into_inner());
        let n = by.entry(kind).or_default();
        *n += 1;
        *n <= 2
    }

    /// First-try failures by kind.
    pub(crate) fn failures(&self) -> BTreeMap<String, usize> {
        self.failed_by.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A response body and the task driving its connection (aborted with it).
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) body: Incoming,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Body {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// An HTTP/1 GET on a fresh connection from `source`; returns the response body once
/// the status is 200.
pub(crate) async fn get(addr: SocketAddr, source: Option<IpAddr>, path: &str, accept: &str) -> anyhow::Result<Body> {
    get_with(addr, source, path, accept, None).await
}

/// [`get`] with a `Last-Event-ID` header when `last_event_id` is given (a resume).
pub(crate) async fn get_with(
    addr: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    accept: &str,
    last_event_id: Option<&str>,
) -> anyhow::Result<Body> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        // Ports of earlier runs may still be in TIME_WAIT on this address.
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let tcp = sock.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let conn = AbortOnDrop(Some(conn));
    let mut req =
        hyper::Request::get(path).header(hyper::header::HOST, addr.to_string()).header(hyper::header::ACCEPT, accept);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != hyper::StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(anyhow::Error::new(Refused {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
        .context(format!("GET {path}")));
    }
    let conn = conn.disarm();
    Ok(Body { body: resp.into_body(), conn })
}

/// Aborts a task if dropped before `disarm` (an error on the way out of `get`).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    fn disarm(mut self) -> tokio::task::JoinHandle<()> {
        self.0.take().unwrap_or_else(|| tokio::spawn(async {}))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// The bridge's /metrics text.
pub(crate) async fn metrics_text(addr: SocketAddr) -> anyhow::Result<String> {
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        let mut body = get(addr, None, "/metrics", "text/plain").await?;
        let bytes = (&mut body.body).collect().await?.to_bytes();
        anyhow::Ok(bytes)
    })
    .await
    .map_err(|_| anyhow!("GET /metrics timed out"))??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sum of every sample of a Prometheus family, from the test kit (one reader of /metrics).
pub(crate) use testkit::metric_sum;

/// How streams are opened and kept.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    /// The bridges: stream `i` (numbered from `first`) opens on `bridges[i % len]`.
    pub(crate) bridges: Vec<SocketAddr>,
    /// The global number of this process's first stream (workers each own a slice).
    pub(crate) first: usize,
    /// Streams opening at the same time.
    pub(crate) open_concurrency: usize,
    /// How long one open may take.
    pub(crate) open_timeout: Duration,
    /// Reopen a stream the bridge ended, until this instant (None: don't).
    pub(crate) reconnect_until: Option<Instant>,
    /// Reopen with the last `id:` as `Last-Event-ID`, on the next bridge of the list, and
    /// keep trying (a bridge that is gone refuses connections) until `reconnect_until`.
    pub(crate) resume: bool,
}

/// Opens one stream per entry of `users` (stream `i` reads `users[i]`), each read by its
/// own task that hands events to `sink`. Returns at once; watch `stats.opened`.
/// Dropping the returned set aborts every stream.
pub(crate) fn spawn_streams(
    plan: &StreamPlan,
    users: Vec<String>,
    sink: Arc<dyn Sink>,
    stats: Arc<StreamStats>,
) -> JoinSet<()> {
    let gate = Arc::new(Semaphore::new(plan.open_concurrency.clamp(1, Semaphore::MAX_PERMITS)));
    let mut set = JoinSet::new();
    let spawned = Instant::now();
    for (i, user) in users.into_iter().enumerate() {
        let gate = Arc::clone(&gate);
        let sink = Arc::clone(&sink);
        let stats = Arc::clone(&stats);
        let plan = plan.clone();
        set.spawn(async move {
            #[allow(clippy::expect_used)] // the bench makes its own ids (`u<n>`)
            let path = realtime_bridge_wire::route::stream_path(
                &realtime_bridge_wire::UserId::parse(&user).expect("a valid user id"),
            );
            let global = plan.first + i;
            let n_bridges = plan.bridges.len().max(1);
            let mut attempt = 0usize;
            let mut first = true;
            let mut cursor: Option<String> = None;
            let mut ended_at: Option<Instant> = None;
            // Bounded: one open, plus reopenings only until `reconnect_until`.
            loop {
                // Reopenings move on to the next bridges, the streams of one bridge starting
                // at different ones so that they spread over the others.
                let shift = if attempt == 0 { 0 } else { attempt + (global / n_bridges) % (n_bridges - 1).max(1) };
                let Some(&bridge) = plan.bridges.get((global + shift) % n_bridges) else { return };
                let body = {
                    let Ok(_permit) = gate.acquire().await else { return };
                    let started = Instant::now();
                    let opened = tokio::time::timeout(
                        plan.open_timeout,
                        get_with(bridge, Some(source_for(global)), &path, "text/event-stream", cursor.as_deref()),
                    )
                    .await;
                    match opened {
                        Ok(Ok(body)) => {
                            if first {
                                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                                stats.open_us_sum.fetch_add(us, Ordering::Relaxed);
                                stats.open_us_max.fetch_max(us, Ordering::Relaxed);
                                let at = u64::try_from(spawned.elapsed().as_micros()).unwrap_or(u64::MAX);
                                stats.last_open_us.fetch_max(at, Ordering::Relaxed);
                                stats.opened.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                                if let Some(t) = ended_at.take() {
                                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                                    stats.reconnect_us_sum.fetch_add(us, Ordering::Relaxed);
                                    stats.reconnect_us_max.fetch_max(us, Ordering::Relaxed);
                                }
                            }
                            body
                        }
                        failed => {
                            let timed_out = failed.is_err();
                            let e = match failed {
                                Ok(Err(e)) => e,
                                _ => anyhow!("no answer within {:?}", plan.open_timeout),
                            };
                            let kind = if timed_out { "timeout".to_owned() } else { failure_kind(&e) };
                            if first {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                                if stats.count_failure(kind) {
                                    eprintln!("stream {global} ({user}) failed to open: {e:#}");
                                }
                                return;
                            }
                            stats.reopen_failed.fetch_add(1, Ordering::Relaxed);
                            // A resuming client tries the next bridge after a pause, as the
                            // SDK does; anything else gives up.
                            match plan.reconnect_until {
                                Some(until) if plan.resume && Instant::now() < until => {
                                    attempt += 1;
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                }
                                _ => return,
                            }
                        }
                    }
                };
                first = false;
                let last = read_events(body, i, sink.as_ref()).await;
                ended_at = Some(Instant::now());
                if plan.resume {
                    if last.is_some() {
                        cursor = last;
                    }
                    attempt += 1;
                }
                stats.ended.fetch_add(1, Ordering::Relaxed);
                match plan.reconnect_until {
                    Some(until) if Instant::now() < until => continue,
                    _ => return,
                }
            }
        });
    }
    set
}

/// Feeds the body to an `SseParser` until it ends; returns the stream's last event id
/// (what a client sends back as `Last-Event-ID`).
async fn read_events(mut body: Body, stream: usize, sink: &dyn Sink) -> Option<String> {
    let body = &mut body.body;
    let mut parser = SseParser::new();
    let mut out = Vec::with_capacity(4);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else { continue };
        parser.push(&data, &mut out);
        if out.is_empty() {
            continue;
        }
        let now = now_nanos();
        for ev in out.drain(..) {
            sink.on_event(stream, &ev, now);
        }
    }
    parser.last_event_id().map(str::to_owned)
}

/// Waits (bounded by `timeout`) until every stream opened or failed, failures included;
/// returns how long it took.
pub(crate) async fn wait_settled(stats: &StreamStats, n: usize, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let opened = stats.opened.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        if opened + failed >= n {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("only {opened} of {n} streams opened ({failed} failed) within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_fields_and_metrics() {
        assert_eq!(field_u64(r#"{"id":"1","data":{"bench_t":123,"r":4},"timestamp":"x"}"#, "bench_t"), Some(123));
        assert_eq!(field_u64(r#"{"data":{"bench_t":123,"r":4}}"#, "r"), Some(4));
        assert_eq!(field_u64(r#"{"timestamp":"x"}"#, "t"), None);
        let (a, b) = (source_for(0).to_string(), source_for(16_000).to_string());
        assert!(a.starts_with("127.") && a.ends_with(".0.2"), "{a}");
        assert!(b.starts_with("127.") && b.ends_with(".0.3"), "{b}");
    }
}
