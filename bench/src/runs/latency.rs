//! `latency`: an open-loop publisher sends at a fixed rate, round-robin over the users, each
//! payload stamped with its publish time; publish→receipt latency percentiles over the
//! measured window (after a warm-up) through the bridge's SSE streams (one per user) against
//! a plain NATS subscriber per user in the same run, and in history mode also against
//! subscribers on JetStream's re-publish (`rt.user.<id>.*`, what the bridge reads).
//! Events published in the measured window carry `"m":1`, so that every receiver, in this
//! process or in a worker, counts the same events. With `--burst K` the publisher sends one
//! event to each of K consecutive users at once, a group every K / rate seconds (a producer
//! looping over users); the 1 ms publishing tick already groups rate / 1000 events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::task::JoinSet;

use super::{bridge_metrics, nats, payload_padded, round2, secs, user_subject, user_wildcard};
use crate::client::{field_u64, now_nanos};
use crate::fleet::{Fleet, FleetSpec, Record};
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
    /// Events sent at once, one to each of this many consecutive users (same overall rate).
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// Pad each payload to at least this many bytes (0: the bare timestamped payload, ~45 B).
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
}

/// Latencies of the events marked as published in the measured window (`"m":1`).
#[derive(Debug)]
struct LatencySink {
    hist: Mutex<Histogram<u64>>,
}

impl LatencySink {
    fn record(&self, text: &str, now: u64) {
        if field_u64(text, "m") != Some(1) {
            return;
        }
        if let Some(t) = field_u64(text, "bench_t") {
            let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
            let _ = h.record(now.saturating_sub(t).max(1));
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
    let burst = a.burst.clamp(1, users);
    let nats_sink = Arc::new(LatencySink { hist: Mutex::new(report::histogram()) });

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
    let rt_sink = Arc::new(LatencySink { hist: Mutex::new(report::histogram()) });
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

    let spec = FleetSpec::new(setup.bridges.clone(), users, Record::Latency, common.workers_for(setup, users));
    let (mut fleet, opened) = Fleet::open(&spec).await?;
    opened.require_all(users)?;
    let open_time = opened.settled;

    // Open-loop publisher: every millisecond, catch up to `rate × elapsed`.
    let publisher = nats(&setup.nats_url).await?;
    let subjects: Vec<async_nats::Subject> = (0..users).map(user_subject).collect();
    let total = secs(a.warmup + a.duration);
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut measured_from: Option<(Instant, u64)> = None;
    let burst_u = burst as u64;
    // Bounded: one iteration per millisecond of the run.
    let max_ticks = total.as_millis() as u64 + 1000;
    for _ in 0..max_ticks {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= total {
            break;
        }
        if measured_from.is_none() && elapsed >= secs(a.warmup) {
            measured_from = Some((Instant::now(), sent));
        }
        let mark = if measured_from.is_some() { ",\"m\":1" } else { "" };
        // Whole groups of `burst` events only: a group goes out when its last event is due.
        let due = (elapsed.as_secs_f64() * rate as f64) as u64 / burst_u * burst_u;
        // After a stall, don't burst more than 50 ms worth at once.
        let cap = (rate / 20).max(burst_u);
        let mut k = 0;
        while sent < due && k < cap {
            for _ in 0..burst {
                let subject = subjects[(sent % users as u64) as usize].clone();
                publisher.publish(subject, payload_padded(sent, mark, a.payload_bytes)).await?;
                sent += 1;
                k += 1;
            }
        }
    }
    publisher.flush().await?;
    let (m_start, m_sent) = measured_from.unwrap_or((started, 0));
    let achieved = (sent - m_sent) as f64 / m_start.elapsed().as_secs_f64().max(1e-9);
    // Let what is in flight arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let bh = fleet.latency().await?;
    let (_, ended, _, _) = fleet.snap().await?;
    let nh = nats_sink.hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let row = |name: &str, h: &Histogram<u64>| {
        let q = |x: f64| format!("{:.3}", ms(h.value_at_quantile(x)));
        vec![name.to_owned(), h.len().to_string(), q(0.5), q(0.9), q(0.99), q(0.999), format!("{:.3}", ms(h.max()))]
    };
    r.set("users", json!(users));
    r.set("rate_target", json!(rate));
    r.set("rate_achieved", json!(achieved.round()));
    r.set("burst", json!(burst));
    r.set("payload_bytes", json!(payload_padded(0, ",\"m\":1", a.payload_bytes).len()));
    if fleet.worker_count() > 0 {
        r.set("workers", json!(fleet.worker_count()));
    }
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
    r.set("streams_ended", json!(ended));
    bridge_metrics(setup, r).await;
    r.table("publish → receipt latency (ms)", &["path", "events", "p50", "p90", "p99", "p99.9", "max"], rows);
    fleet.close().await;
    tasks.abort_all();
    Ok(())
}
