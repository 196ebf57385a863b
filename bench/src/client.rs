//! The load generator's HTTP side: SSE streams over hyper's HTTP/1 client connections,
//! each on its own TCP socket bound to a chosen 127.0.0.x source address (so the
//! ephemeral port range of one address is no limit), parsed with the wire crate's
//! `SseParser` (the same parser the SDK uses).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
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
/// How long one stream may take to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Wall clock in nanoseconds since the Unix epoch (what publishers embed as `bench_t`).
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The source address of stream `i`: 127.N.0.2, then 127.N.0.3 after 16,000 streams, ...
/// where N (1..=250) is picked per run: the ports of a previous run's sockets linger in
/// TIME_WAIT for a minute on their address, and a fresh address does not see them.
pub(crate) fn source_for(i: usize) -> IpAddr {
    static NET: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let net = *NET.get_or_init(|| u8::try_from(1 + now_nanos() / 1000 % 250).unwrap_or(1));
    let k = u8::try_from(2 + i / STREAMS_PER_SOURCE).unwrap_or(254);
    IpAddr::V4(Ipv4Addr::new(127, net, 0, k))
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
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::ACCEPT, accept)
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    if resp.status() != hyper::StatusCode::OK {
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
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
    pub(crate) bridge: SocketAddr,
    /// Streams opening at the same time.
    pub(crate) open_concurrency: usize,
    /// Reopen a stream the bridge ended, until this instant (None: don't).
    pub(crate) reconnect_until: Option<Instant>,
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
    let gate = Arc::new(Semaphore::new(plan.open_concurrency.max(1)));
    let mut set = JoinSet::new();
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
            let mut first = true;
            // Bounded: one open, plus reopenings only until `reconnect_until`.
            loop {
                let body = {
                    let Ok(_permit) = gate.acquire().await else { return };
                    let started = Instant::now();
                    let opened = tokio::time::timeout(
                        OPEN_TIMEOUT,
                        get(plan.bridge, Some(source_for(i)), &path, "text/event-stream"),
                    )
                    .await;
                    match opened {
                        Ok(Ok(body)) => {
                            if first {
                                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                                stats.open_us_sum.fetch_add(us, Ordering::Relaxed);
                                stats.open_us_max.fetch_max(us, Ordering::Relaxed);
                                stats.opened.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            body
                        }
                        Ok(Err(e)) => {
                            let failures = if first {
                                stats.failed.fetch_add(1, Ordering::Relaxed)
                            } else {
                                stats.reopen_failed.fetch_add(1, Ordering::Relaxed)
                            };
                            if failures < 3 {
                                eprintln!("stream {i} ({user}) failed to open: {e:#}");
                            }
                            return;
                        }
                        Err(_) => {
                            if first {
                                stats.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            return;
                        }
                    }
                };
                first = false;
                read_events(body, i, sink.as_ref()).await;
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

/// Feeds the body to an `SseParser` until it ends.
async fn read_events(mut body: Body, stream: usize, sink: &dyn Sink) {
    let body = &mut body.body;
    let mut parser = SseParser::new();
    let mut out = Vec::with_capacity(4);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return };
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
}

/// Waits (bounded by `timeout`) until every stream opened or failed; returns how long it took.
pub(crate) async fn wait_open(stats: &StreamStats, n: usize, timeout: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let opened = stats.opened.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        if opened + failed >= n {
            if failed > 0 {
                bail!("{failed} of {n} streams failed to open");
            }
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("only {opened} of {n} streams opened within {timeout:?}");
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
