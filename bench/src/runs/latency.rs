//! `latency`: an open-loop publisher sends at a fixed rate, round-robin over the users, each
//! payload stamped with its publish time; publish→receipt latency percentiles over the
//! measured window (after a warm-up) through the bridge's SSE streams (one per user) against
//! a plain NATS subscriber per user in the same run, and in history mode also against
//! subscribers on JetStream's re-publish (`rt.user.<id>.*`, what the bridge reads).
//! Events published in the measured window carry `"m":1`, so that every receiver, in this
//! process or in a worker, counts the same events. With `--burst K` the publisher sends one
//! event to each of K consecutive users at once, a group every K / rate seconds (a producer
//! looping over users), sleeping between groups on a thread of its own; without it, a 1 ms
//! tick sends what is due (rate / 1000 events at once), as before.

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
    /// Send one event to each of this many consecutive users at once, a group every
    /// burst / rate seconds, from a thread of its own that sleeps between groups (without
    /// it: a 1 ms tick that sends what is due, ~rate / 1000 events at once).
    #[arg(long)]
    burst: Option<usize>,
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

    let publisher = nats(&setup.nats_url).await?;
    let subjects: Vec<async_nats::Subject> = (0..users).map(user_subject).collect();
    let plan =
        Pace { rate, total: secs(a.warmup + a.duration), warmup: secs(a.warmup), payload_bytes: a.payload_bytes };
    let published = match a.burst {
        None => tick_publisher(&publisher, &subjects, &plan).await?,
        Some(k) => {
            let (publisher, handle) = (publisher.clone(), tokio::runtime::Handle::current());
            let k = k.clamp(1, users);
            tokio::task::spawn_blocking(move || paced_publisher(&handle, &publisher, &subjects, &plan, k)).await??
        }
    };
    publisher.flush().await?;
    let sent = published.sent;
    let (m_start, m_sent) = published.measured_from.unwrap_or((published.started, 0));
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
    r.set("burst", json!(a.burst.map(|k| k.clamp(1, users))));
    r.set("publish_groups", json!(published.groups));
    r.set("events_per_group", json!(round2(sent as f64 / published.groups.max(1) as f64)));
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

/// When and how much to publish.
#[derive(Debug, Clone, Copy)]
struct Pace {
    rate: u64,
    total: Duration,
    warmup: Duration,
    payload_bytes: usize,
}

/// What a publisher sent: events, where the measured window began (instant, events sent
/// before it), when it started, and how many times it sent something (groups).
#[derive(Debug)]
struct Published {
    sent: u64,
    measured_from: Option<(Instant, u64)>,
    started: Instant,
    groups: u64,
}

/// The mark of events published in the measured window.
fn mark(measuring: bool) -> &'static str {
    if measuring {
        ",\"m\":1"
    } else {
        ""
    }
}

/// Open loop: every millisecond, catch up to `rate × elapsed`.
async fn tick_publisher(
    publisher: &async_nats::Client,
    subjects: &[async_nats::Subject],
    p: &Pace,
) -> anyhow::Result<Published> {
    let users = subjects.len() as u64;
    let started = Instant::now();
    let mut out = Published { sent: 0, measured_from: None, started, groups: 0 };
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Bounded: one iteration per millisecond of the run.
    let max_ticks = p.total.as_millis() as u64 + 1000;
    for _ in 0..max_ticks {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= p.total {
            break;
        }
        if out.measured_from.is_none() && elapsed >= p.warmup {
            out.measured_from = Some((Instant::now(), out.sent));
        }
        let m = mark(out.measured_from.is_some());
        let due = (elapsed.as_secs_f64() * p.rate as f64) as u64;
        // After a stall, don't burst more than 50 ms worth at once.
        let cap = (p.rate / 20).max(1);
        let mut k = 0;
        out.groups += u64::from(out.sent < due);
        while out.sent < due && k < cap {
            let subject = subjects[(out.sent % users) as usize].clone();
            publisher.publish(subject, payload_padded(out.sent, m, p.payload_bytes)).await?;
            out.sent += 1;
            k += 1;
        }
    }
    Ok(out)
}

/// Groups of `burst` events (one to each of `burst` consecutive users), group g due at
/// g × burst / rate seconds; the thread sleeps until the next group is due, so that small
/// groups are not merged by a timer's 1 ms granularity. Runs on a blocking thread.
fn paced_publisher(
    handle: &tokio::runtime::Handle,
    publisher: &async_nats::Client,
    subjects: &[async_nats::Subject],
    p: &Pace,
    burst: usize,
) -> anyhow::Result<Published> {
    let users = subjects.len() as u64;
    let burst = burst as u64;
    let group_s = burst as f64 / p.rate as f64;
    let started = Instant::now();
    let mut out = Published { sent: 0, measured_from: None, started, groups: 0 };
    // After a stall, don't send more than 50 ms worth at once.
    let cap = ((0.05 / group_s) as u64).max(1);
    // Bounded by the clock: the loop ends once `total` has passed.
    loop {
        let elapsed = started.elapsed();
        if elapsed >= p.total {
            break;
        }
        if out.measured_from.is_none() && elapsed >= p.warmup {
            out.measured_from = Some((Instant::now(), out.sent));
        }
        let m = mark(out.measured_from.is_some());
        let due_groups = (elapsed.as_secs_f64() / group_s) as u64 + 1;
        let mut done = out.sent / burst;
        let mut k = 0;
        while done < due_groups && k < cap {
            let first = out.sent;
            handle.block_on(async {
                for n in first..first + burst {
                    let subject = subjects[(n % users) as usize].clone();
                    publisher.publish(subject, payload_padded(n, m, p.payload_bytes)).await?;
                }
                anyhow::Ok(())
            })?;
            out.sent += burst;
            out.groups += 1;
            done += 1;
            k += 1;
        }
        let next = Duration::from_secs_f64(done as f64 * group_s);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(out)
}
