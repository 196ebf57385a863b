//! The four benchmarks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use realtime_bridge_wire::SseEvent;
use serde_json::json;
use tokio::task::JoinSet;

use crate::client::{self, field_u64, now_nanos, Sink, StreamPlan, StreamStats};
use crate::harness::{self, Setup};
use crate::report::{self, ms, percentiles, Report};
use crate::Common;

/// The event name every benchmark publishes.
const EVENT: &str = "bench";
/// How long opening all streams may take.
const OPEN_ALL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Args)]
pub(crate) struct ThroughputArgs {
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 1)]
    streams_per_user: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Publishing tasks (each its own NATS connection).
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Messages a publisher sends between two flushes (round trips to the server).
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct LatencyArgs {
    /// Events per second, spread round-robin over the users.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// Streams per user (1: every stream is its own user, so its own NATS subscription).
    #[arg(long, default_value_t = 1)]
    streams_per_user: usize,
    /// Streams opening at the same time.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// Seconds to wait before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Fail (exit 1, after printing the figures) when a stream costs more than this many
    /// bytes: how the test command notices a memory regression.
    #[arg(long)]
    max_bytes_per_stream: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BroadcastArgs {
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 1)]
    streams_per_user: usize,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Pause between rounds, in milliseconds.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `u0, u0, u1, u1, ...`: `per_user` streams for each user, `n` streams in all.
fn stream_users(n: usize, per_user: usize) -> Vec<String> {
    let per_user = per_user.max(1);
    (0..n).map(|i| format!("u{}", i / per_user)).collect()
}

fn payload(n: u64, round: Option<usize>) -> bytes::Bytes {
    match round {
        Some(r) => format!("{{\"bench_t\":{},\"r\":{r},\"n\":{n}}}", now_nanos()),
        None => format!("{{\"bench_t\":{},\"n\":{n}}}", now_nanos()),
    }
    .into()
}

async fn nats(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 16)
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// Bridge figures from /metrics: events dropped and streams cut (by any reason).
async fn bridge_metrics(setup: &Setup, report: &mut Report) {
    match client::metrics_text(setup.bridge).await {
        Ok(text) => {
            for (key, family) in [
                ("bridge_events_received", "realtime_bridge_events_received_total"),
                ("bridge_events_delivered", "realtime_bridge_events_delivered_total"),
                ("bridge_events_dropped", "realtime_bridge_events_dropped_total"),
                ("bridge_replayed_events", "realtime_bridge_replayed_events_total"),
                ("bridge_streams_cut", "realtime_bridge_streams_cut_total"),
                ("bridge_nats_connects", "realtime_bridge_nats_connects_total"),
                ("bridge_open_streams", "realtime_bridge_open_streams"),
            ] {
                report.set(key, json!(client::metric_sum(&text, family)));
            }
        }
        Err(e) => report.set("bridge_metrics_error", json!(e.to_string())),
    }
}

// ------------------------------------------------------------------------------------
// throughput

#[derive(Debug, Default)]
struct CountSink {
    events: AtomicU64,
}

impl Sink for CountSink {
    fn on_event(&self, _stream: usize, event: &SseEvent, _now: u64) {
        if event.event == EVENT {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub(crate) async fn throughput(
    setup: &Setup,
    common: &Common,
    mut a: ThroughputArgs,
    r: &mut Report,
) -> anyhow::Result<()> {
    if common.quick {
        a.users = a.users.min(20);
        a.duration = a.duration.min(1.0);
        a.warmup = a.warmup.min(0.5);
    }
    let users = a.users.max(1);
    let streams = users * a.streams_per_user.max(1);

    // Plain NATS: one subscription per user on the same subjects, one connection.
    let nats_sub = nats(&setup.nats_url).await?;
    let nats_count = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for u in 0..users {
        let mut sub = nats_sub.subscribe(format!("user.u{u}.*")).await?;
        let count = Arc::clone(&nats_count);
        tasks.spawn(async move {
            while sub.next().await.is_some() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // History mode: also count what JetStream stored and re-published (`rt.user.<id>.*`,
    // what the bridge subscribes to), to tell JetStream's share from the bridge's.
    let republished = Arc::new(AtomicU64::new(0));
    let history = setup.history == "on";
    if history {
        for u in 0..users {
            let mut sub = nats_sub.subscribe(format!("rt.user.u{u}.*")).await?;
            let count = Arc::clone(&republished);
            tasks.spawn(async move {
                while sub.next().await.is_some() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    nats_sub.flush().await?;

    // The bridge: every stream reads its user's events; reopened if the bridge cuts it.
    let total = a.warmup + a.duration;
    let sink = Arc::new(CountSink::default());
    let stats = Arc::new(StreamStats::default());
    let plan = StreamPlan {
        bridge: setup.bridge,
        open_concurrency: 256,
        reconnect_until: Some(Instant::now() + OPEN_ALL_TIMEOUT + secs(total)),
    };
    let streams_set = client::spawn_streams(
        &plan,
        stream_users(streams, a.streams_per_user),
        Arc::clone(&sink) as Arc<dyn Sink>,
        Arc::clone(&stats),
    );
    let open_time = client::wait_open(&stats, streams, OPEN_ALL_TIMEOUT).await?;

    // Publishers: batches of `batch` messages round-robin over the users, a flush between.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let mut pubs = JoinSet::new();
    for p in 0..a.publishers.max(1) {
        let client = nats(&setup.nats_url).await?;
        let stop = Arc::clone(&stop);
        let published = Arc::clone(&published);
        let batch = a.batch.max(1);
        let nb = a.publishers.max(1);
        let subjects: Vec<async_nats::Subject> =
            (0..users).map(|u| async_nats::Subject::from(format!("user.u{u}.{EVENT}"))).collect();
        let deadline = Instant::now() + secs(total) + Duration::from_secs(5);
        // History mode: JetStream publishes, a batch of acks awaited before the next batch
        // (fire-and-forget publishes would outrun JetStream, which then stores little or
        // nothing). Live mode: core publishes, a flush (round trip) between batches.
        let js = history.then(|| async_nats::jetstream::new(client.clone()));
        pubs.spawn(async move {
            let mut n = p as u64;
            let mut u = p;
            let mut acks = Vec::with_capacity(batch);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for _ in 0..batch {
                    let subject = subjects[u % users].clone();
                    let ok = match &js {
                        Some(js) => js.publish(subject, payload(n, None)).await.map(|ack| acks.push(ack)).is_ok(),
                        None => client.publish(subject, payload(n, None)).await.is_ok(),
                    };
                    if !ok {
                        return;
                    }
                    u = u.wrapping_add(nb);
                    n += nb as u64;
                }
                let done = if js.is_some() {
                    let mut ok = 0u64;
                    for ack in acks.drain(..) {
                        if ack.await.is_ok() {
                            ok += 1;
                        }
                    }
                    ok
                } else if client.flush().await.is_ok() {
                    batch as u64
                } else {
                    return;
                };
                published.fetch_add(done, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(secs(a.warmup)).await;
    let snap = || {
        (
            Instant::now(),
            published.load(Ordering::Relaxed),
            nats_count.load(Ordering::Relaxed),
            sink.events.load(Ordering::Relaxed),
            republished.load(Ordering::Relaxed),
        )
    };
    let (t0, p0, n0, b0, j0) = snap();
    tokio::time::sleep(secs(a.duration)).await;
    let (t1, p1, n1, b1, j1) = snap();
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), async { while pubs.join_next().await.is_some() {} }).await;
    pubs.abort_all();

    let elapsed = (t1 - t0).as_secs_f64().max(1e-9);
    let pub_rate = (p1 - p0) as f64 / elapsed;
    let nats_rate = (n1 - n0) as f64 / elapsed;
    let bridge_rate = (b1 - b0) as f64 / elapsed;
    // Each event reaches `streams_per_user` streams through the bridge, one NATS subscription.
    let expected = nats_rate * a.streams_per_user.max(1) as f64;
    let ratio = if expected > 0.0 { bridge_rate / expected } else { 0.0 };
    r.set("users", json!(users));
    r.set("streams_per_user", json!(a.streams_per_user));
    r.set("streams", json!(streams));
    r.set("duration_s", json!(round2(elapsed)));
    r.set("open_all_s", json!(round2(open_time.as_secs_f64())));
    r.set("published_per_s", json!(pub_rate.round()));
    r.set("publish", json!(if history { "jetstream_acked" } else { "core_flush_per_batch" }));
    r.set("nats_events_per_s", json!(nats_rate.round()));
    r.set("bridge_events_per_s", json!(bridge_rate.round()));
    r.set("ratio_vs_nats", json!((ratio * 1000.0).round() / 1000.0));
    let mut rows = vec![
        vec!["published".into(), format!("{pub_rate:.0}"), String::new()],
        vec!["plain NATS subscribers".into(), format!("{nats_rate:.0}"), "1.000".into()],
    ];
    if history {
        let rt_rate = (j1 - j0) as f64 / elapsed;
        let rt_ratio = if rt_rate > 0.0 { bridge_rate / (rt_rate * a.streams_per_user.max(1) as f64) } else { 0.0 };
        r.set("nats_republished_per_s", json!(rt_rate.round()));
        r.set("ratio_vs_republished", json!((rt_ratio * 1000.0).round() / 1000.0));
        rows.push(vec![
            "NATS subscribers on rt.user.* (JetStream re-publish)".into(),
            format!("{rt_rate:.0}"),
            format!("{:.3}", if nats_rate > 0.0 { rt_rate / nats_rate } else { 0.0 }),
        ]);
    }
    rows.push(vec!["bridge SSE streams".into(), format!("{bridge_rate:.0}"), format!("{ratio:.3}")]);
    r.set("streams_ended", json!(stats.ended.load(Ordering::Relaxed)));
    r.set("stream_reconnects", json!(stats.reconnects.load(Ordering::Relaxed)));
    r.set("stream_reopen_failed", json!(stats.reopen_failed.load(Ordering::Relaxed)));
    bridge_metrics(setup, r).await;
    r.table("throughput (events/s over the measured window)", &["path", "events/s", "vs NATS"], rows);
    drop(streams_set);
    tasks.abort_all();
    Ok(())
}

// ------------------------------------------------------------------------------------
// latency

#[derive(Debug)]
struct LatencySink {
    hist: Mutex<Histogram<u64>>,
    recording: Arc<AtomicBool>,
}

impl LatencySink {
    fn record(&self, text: &str, now: u64) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        if let Some(t) = field_u64(text, "bench_t") {
            let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
            let _ = h.record(now.saturating_sub(t).max(1));
        }
    }
}

impl Sink for LatencySink {
    fn on_event(&self, _stream: usize, event: &SseEvent, now: u64) {
        if event.event == EVENT {
            self.record(&event.data, now);
        }
    }
}

pub(crate) async fn latency(setup: &Setup, common: &Common, mut a: LatencyArgs, r: &mut Report) -> anyhow::Result<()> {
    if common.quick {
        a.users = a.users.min(20);
        a.rate = a.rate.min(500);
        a.duration = a.duration.min(1.0);
        a.warmup = a.warmup.min(0.3);
    }
    let users = a.users.max(1);
    let rate = a.rate.max(1);
    let recording = Arc::new(AtomicBool::new(false));
    let bridge_sink =
        Arc::new(LatencySink { hist: Mutex::new(report::histogram()), recording: Arc::clone(&recording) });
    let nats_sink = Arc::new(LatencySink { hist: Mutex::new(report::histogram()), recording: Arc::clone(&recording) });

    let nats_sub = nats(&setup.nats_url).await?;
    let mut tasks = JoinSet::new();
    for u in 0..users {
        let mut sub = nats_sub.subscribe(format!("user.u{u}.*")).await?;
        let sink = Arc::clone(&nats_sink);
        tasks.spawn(async move {
            while let Some(msg) = sub.next().await {
                let now = now_nanos();
                if let Ok(text) = std::str::from_utf8(&msg.payload) {
                    sink.record(text, now);
                }
            }
        });
    }
    // History mode: also through JetStream's re-publish (`rt.user.<id>.*`, what the bridge
    // reads), to tell JetStream's share of the latency from the bridge's.
    let history = setup.history == "on";
    let rt_sink = Arc::new(LatencySink { hist: Mutex::new(report::histogram()), recording: Arc::clone(&recording) });
    if history {
        for u in 0..users {
            let mut sub = nats_sub.subscribe(format!("rt.user.u{u}.*")).await?;
            let sink = Arc::clone(&rt_sink);
            tasks.spawn(async move {
                while let Some(msg) = sub.next().await {
                    let now = now_nanos();
                    if let Ok(text) = std::str::from_utf8(&msg.payload) {
                        sink.record(text, now);
                    }
                }
            });
        }
    }
    nats_sub.flush().await?;

    let stats = Arc::new(StreamStats::default());
    let plan = StreamPlan { bridge: setup.bridge, open_concurrency: 256, reconnect_until: None };
    let streams_set = client::spawn_streams(
        &plan,
        stream_users(users, 1),
        Arc::clone(&bridge_sink) as Arc<dyn Sink>,
        Arc::clone(&stats),
    );
    let open_time = client::wait_open(&stats, users, OPEN_ALL_TIMEOUT).await?;

    // Open-loop publisher: every millisecond, catch up to `rate × elapsed`.
    let publisher = nats(&setup.nats_url).await?;
    let subjects: Vec<async_nats::Subject> =
        (0..users).map(|u| async_nats::Subject::from(format!("user.u{u}.{EVENT}"))).collect();
    let total = secs(a.warmup + a.duration);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut measured_from: Option<(Instant, u64)> = None;
    // Bounded: one iteration per millisecond of the run.
    let max_ticks = total.as_millis() as u64 + 1000;
    for _ in 0..max_ticks {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= total {
            break;
        }
        if measured_from.is_none() && elapsed >= secs(a.warmup) {
            recording.store(true, Ordering::Relaxed);
            measured_from = Some((Instant::now(), sent));
        }
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        // After a stall, don't burst more than 50 ms worth at once.
        let cap = (rate / 20).max(1);
        let mut k = 0;
        while sent < due && k < cap {
            publisher.publish(subjects[(sent % users as u64) as usize].clone(), payload(sent, None)).await?;
            sent += 1;
            k += 1;
        }
    }
    publisher.flush().await?;
    let (m_start, m_sent) = measured_from.unwrap_or((started, 0));
    let achieved = (sent - m_sent) as f64 / m_start.elapsed().as_secs_f64().max(1e-9);
    // Let what is in flight arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    recording.store(false, Ordering::Relaxed);

    let bh = bridge_sink.hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let nh = nats_sink.hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let row = |name: &str, h: &Histogram<u64>| {
        let q = |x: f64| format!("{:.3}", ms(h.value_at_quantile(x)));
        vec![name.to_owned(), h.len().to_string(), q(0.5), q(0.9), q(0.99), q(0.999), format!("{:.3}", ms(h.max()))]
    };
    r.set("users", json!(users));
    r.set("rate_target", json!(rate));
    r.set("rate_achieved", json!(achieved.round()));
    r.set("open_all_s", json!(round2(open_time.as_secs_f64())));
    r.set("bridge", json!(percentiles(&bh)));
    r.set("nats", json!(percentiles(&nh)));
    let added = |q: f64| ms(bh.value_at_quantile(q)) - ms(nh.value_at_quantile(q));
    r.set("added_p50_ms", json!((added(0.5) * 1000.0).round() / 1000.0));
    r.set("added_p99_ms", json!((added(0.99) * 1000.0).round() / 1000.0));
    let mut rows = vec![row("plain NATS subscriber", &nh)];
    if history {
        let jh = rt_sink.hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
        r.set("nats_republished", json!(percentiles(&jh)));
        let added_rt = ms(bh.value_at_quantile(0.99)) - ms(jh.value_at_quantile(0.99));
        r.set("added_p99_vs_republished_ms", json!((added_rt * 1000.0).round() / 1000.0));
        rows.push(row("NATS subscriber on rt.user.* (JetStream re-publish)", &jh));
    }
    rows.push(row("bridge SSE stream", &bh));
    r.set("bridge_received", json!(bh.len()));
    r.set("nats_received", json!(nh.len()));
    r.set("streams_ended", json!(stats.ended.load(Ordering::Relaxed)));
    bridge_metrics(setup, r).await;
    r.table("publish → receipt latency (ms)", &["path", "events", "p50", "p90", "p99", "p99.9", "max"], rows);
    drop(streams_set);
    tasks.abort_all();
    Ok(())
}

// ------------------------------------------------------------------------------------
// idle

#[derive(Debug)]
struct NullSink;

impl Sink for NullSink {
    fn on_event(&self, _stream: usize, _event: &SseEvent, _now: u64) {}
}

pub(crate) async fn idle(setup: &Setup, common: &Common, mut a: IdleArgs, r: &mut Report) -> anyhow::Result<()> {
    if common.quick {
        a.streams = a.streams.min(100);
        a.settle = a.settle.min(0.5);
    }
    let n = a.streams.max(1);
    let Some(pid) = setup.bridge_pid else {
        bail!("idle needs the bridge's pid for its RSS: pass --bridge-pid with --bridge-url");
    };
    tokio::time::sleep(secs(a.settle)).await;
    let before = harness::rss_kib(pid).context("cannot read the bridge's VmRSS")?;

    let stats = Arc::new(StreamStats::default());
    let plan = StreamPlan { bridge: setup.bridge, open_concurrency: a.open_concurrency, reconnect_until: None };
    let set = client::spawn_streams(
        &plan,
        stream_users(n, a.streams_per_user),
        Arc::new(NullSink) as Arc<dyn Sink>,
        Arc::clone(&stats),
    );
    let open_time = client::wait_open(&stats, n, OPEN_ALL_TIMEOUT).await?;
    tokio::time::sleep(secs(a.settle)).await;
    let after = harness::rss_kib(pid).context("cannot read the bridge's VmRSS")?;
    bridge_metrics(setup, r).await;
    let bench_rss = harness::rss_kib(std::process::id()).unwrap_or(0);
    drop(set);
    tokio::time::sleep(secs(a.settle)).await;
    let after_close = harness::rss_kib(pid).unwrap_or(0);

    let per_stream = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    let opened = stats.opened.load(Ordering::Relaxed);
    let mean_open_ms = stats.open_us_sum.load(Ordering::Relaxed) as f64 / opened.max(1) as f64 / 1000.0;
    r.set("streams", json!(n));
    r.set("users", json!(n.div_ceil(a.streams_per_user.max(1))));
    r.set("rss_before_kib", json!(before));
    r.set("rss_after_kib", json!(after));
    r.set("rss_after_close_kib", json!(after_close));
    r.set("bytes_per_stream", json!(per_stream.round()));
    if let Some(budget) = a.max_bytes_per_stream {
        r.set("max_bytes_per_stream", json!(budget));
        r.set("over_budget", json!(per_stream > budget as f64));
    }
    r.set("open_all_s", json!(round2(open_time.as_secs_f64())));
    r.set("opens_per_s", json!((n as f64 / open_time.as_secs_f64().max(1e-9)).round()));
    r.set("open_mean_ms", json!(round2(mean_open_ms)));
    r.set("open_max_ms", json!(round2(stats.open_us_max.load(Ordering::Relaxed) as f64 / 1000.0)));
    r.set("bench_rss_kib", json!(bench_rss));
    if let Some(nats_rss) = setup.nats_pid.and_then(harness::rss_kib) {
        r.set("nats_rss_kib", json!(nats_rss));
    }
    r.table(
        "bridge memory",
        &["", "RSS KiB"],
        vec![
            vec!["before".into(), before.to_string()],
            vec![format!("with {n} idle streams"), after.to_string()],
            vec!["after closing them".into(), after_close.to_string()],
            vec!["per stream (bytes)".into(), format!("{per_stream:.0}")],
        ],
    );
    Ok(())
}

// ------------------------------------------------------------------------------------
// broadcast

#[derive(Debug)]
struct BroadcastSink {
    /// Per round: streams that got it, and the slowest of them (ns).
    rounds: Vec<(AtomicUsize, AtomicU64)>,
    per_stream: Mutex<Histogram<u64>>,
}

impl Sink for BroadcastSink {
    fn on_event(&self, _stream: usize, event: &SseEvent, now: u64) {
        if event.event != EVENT {
            return;
        }
        let (Some(t), Some(round)) = (field_u64(&event.data, "bench_t"), field_u64(&event.data, "r")) else { return };
        let Some((count, max)) = usize::try_from(round).ok().and_then(|r| self.rounds.get(r)) else { return };
        let lat = now.saturating_sub(t).max(1);
        max.fetch_max(lat, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
        let _ = self.per_stream.lock().unwrap_or_else(|p| p.into_inner()).record(lat);
    }
}

pub(crate) async fn broadcast(
    setup: &Setup,
    common: &Common,
    mut a: BroadcastArgs,
    r: &mut Report,
) -> anyhow::Result<()> {
    if common.quick {
        a.streams = a.streams.min(100);
        a.rounds = a.rounds.min(5);
        a.interval_ms = a.interval_ms.min(100);
    }
    let n = a.streams.max(1);
    let rounds = a.rounds.max(1);
    let sink = Arc::new(BroadcastSink {
        rounds: (0..rounds).map(|_| (AtomicUsize::new(0), AtomicU64::new(0))).collect(),
        per_stream: Mutex::new(report::histogram()),
    });
    let stats = Arc::new(StreamStats::default());
    let plan = StreamPlan { bridge: setup.bridge, open_concurrency: a.open_concurrency, reconnect_until: None };
    let set = client::spawn_streams(
        &plan,
        stream_users(n, a.streams_per_user),
        Arc::clone(&sink) as Arc<dyn Sink>,
        Arc::clone(&stats),
    );
    let open_time = client::wait_open(&stats, n, OPEN_ALL_TIMEOUT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publisher = nats(&setup.nats_url).await?;
    let mut last = report::histogram();
    let mut missed = 0usize;
    let round_timeout = Duration::from_secs(30);
    for round in 0..rounds {
        publisher.publish(format!("broadcast.{EVENT}"), payload(round as u64, Some(round))).await?;
        publisher.flush().await?;
        let started = Instant::now();
        let (count, max) = &sink.rounds[round];
        // Bounded wait for every stream to get this round.
        while count.load(Ordering::Relaxed) < n && started.elapsed() < round_timeout {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let got = count.load(Ordering::Relaxed);
        if got < n {
            missed += n - got;
        } else {
            let _ = last.record(max.load(Ordering::Relaxed).max(1));
        }
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    let per_stream = sink.per_stream.lock().unwrap_or_else(|p| p.into_inner()).clone();
    bridge_metrics(setup, r).await;
    r.set("streams", json!(n));
    r.set("rounds", json!(rounds));
    r.set("open_all_s", json!(round2(open_time.as_secs_f64())));
    r.set("last_stream", json!(percentiles(&last)));
    r.set("last_stream_p50_ms", json!(ms(last.value_at_quantile(0.5))));
    r.set("last_stream_p99_ms", json!(ms(last.value_at_quantile(0.99))));
    r.set("per_stream", json!(percentiles(&per_stream)));
    r.set("missed", json!(missed));
    r.set("streams_ended", json!(stats.ended.load(Ordering::Relaxed)));
    let row = |name: &str, h: &Histogram<u64>| {
        let q = |x: f64| format!("{:.3}", ms(h.value_at_quantile(x)));
        vec![name.to_owned(), h.len().to_string(), q(0.5), q(0.99), format!("{:.3}", ms(h.max()))]
    };
    r.table(
        "broadcast → receipt (ms)",
        &["what", "samples", "p50", "p99", "max"],
        vec![row("last stream of a round", &last), row("any stream", &per_stream)],
    );
    drop(set);
    Ok(())
}
