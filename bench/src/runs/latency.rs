//! `latency`: an open-loop publisher sends at a fixed rate, round-robin over the users, each
//! payload stamped with its publish time; publish→receipt latency percentiles over the
//! measured window (after a warm-up) through the bridge's SSE streams (one per user) against
//! a plain NATS subscriber per user in the same run, and in history mode also against
//! subscribers on JetStream's re-publish (`rt.user.<id>.*`, what the bridge reads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use realtime_bridge_wire::SseEvent;
use serde_json::json;
use tokio::task::JoinSet;

use super::{
    bridge_metrics, nats, payload, round2, secs, stream_users, user_subject, user_wildcard, EVENT, OPEN_ALL_TIMEOUT,
};
use crate::client::{self, field_u64, now_nanos, Sink, StreamPlan, StreamStats};
use crate::harness::Setup;
use crate::report::{self, ms, percentiles, Report};
use crate::Common;

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
        let mut sub = nats_sub.subscribe(user_wildcard(u, false)).await?;
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
            let mut sub = nats_sub.subscribe(user_wildcard(u, true)).await?;
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
    let subjects: Vec<async_nats::Subject> = (0..users).map(user_subject).collect();
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
