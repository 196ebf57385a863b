//! `throughput`: publishers saturate `user.<id>.<event>` (batches round-robin over the users,
//! a flush, or in history mode a batch of JetStream acks, between batches) while every SSE
//! stream reads its user's events. Events/s delivered to the streams over the measured window
//! (after a warm-up) are compared with a plain NATS subscriber set in the same run (one
//! subscription per user on the same subjects, one connection); in history mode also with
//! subscribers on JetStream's re-publish (`rt.user.<id>.*`, what the bridge reads), to tell
//! JetStream's share from the bridge's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::json;
use tokio::task::JoinSet;

use super::{bridge_metrics, nats, payload, round2, secs, user_subject, user_wildcard};
use crate::fleet::{Fleet, FleetSpec, Record};
use crate::harness::Setup;
use crate::report::Report;
use crate::Common;

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
    /// History mode: core publishes (a flush per batch) instead of acknowledged ones, to
    /// overload JetStream and measure what it re-publishes to the bridge and whether the
    /// bridge delivers all of it. At the end the run waits for the streams to have every
    /// event the store kept (bounded) and reports stored vs delivered.
    #[arg(long)]
    core: bool,
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
        let mut sub = nats_sub.subscribe(user_wildcard(u, false)).await?;
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
            let mut sub = nats_sub.subscribe(user_wildcard(u, true)).await?;
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
    let mut spec = FleetSpec::new(setup.bridges.clone(), streams, Record::Count, common.workers_for(setup, streams));
    spec.per_user = a.streams_per_user;
    spec.reconnect_secs = Some(total);
    let (mut fleet, opened) = Fleet::open(&spec).await?;
    opened.require_all(streams)?;
    let open_time = opened.settled;

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
        let subjects: Vec<async_nats::Subject> = (0..users).map(user_subject).collect();
        let deadline = Instant::now() + secs(total) + Duration::from_secs(5);
        // History mode: JetStream publishes, a batch of acks awaited before the next batch
        // (fire-and-forget publishes would outrun JetStream, which then stores little or
        // nothing). Live mode: core publishes, a flush (round trip) between batches.
        let js = (history && !a.core).then(|| async_nats::jetstream::new(client.clone()));
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
    // The streams' count first: with workers it takes a round trip to each.
    let b0 = fleet.events().await?;
    let snap = || {
        (
            Instant::now(),
            published.load(Ordering::Relaxed),
            nats_count.load(Ordering::Relaxed),
            republished.load(Ordering::Relaxed),
        )
    };
    let (t0, p0, n0, j0) = snap();
    tokio::time::sleep(secs(a.duration)).await;
    let b1 = fleet.events().await?;
    let (t1, p1, n1, j1) = snap();
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
    r.set("publish", json!(if history && !a.core { "jetstream_acked" } else { "core_flush_per_batch" }));
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
    if history && a.core {
        // Every stream was open before the first publish: each must end up with every event
        // of its user the store kept, once.
        // The store may still be taking in the last core publishes: it is read again with each
        // look at the deliveries, not once before them.
        let per_user = a.streams_per_user.max(1) as u64;
        let (mut got, mut last_change) = (0, Instant::now());
        let deadline = Instant::now() + Duration::from_secs(60);
        let stored = loop {
            let stored = stored_messages(&setup.nats_url).await?;
            let now = fleet.events().await?;
            if now != got {
                (got, last_change) = (now, Instant::now());
            }
            if got == stored * per_user
                || Instant::now() >= deadline
                || last_change.elapsed() >= Duration::from_secs(10)
            {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let want = stored * per_user;
        r.set("stored", json!(stored));
        r.set("delivered_total", json!(got));
        r.set("all_delivered", json!(got == want));
        rows.push(vec!["stored by JetStream (whole run)".into(), stored.to_string(), String::new()]);
        rows.push(vec!["delivered to the streams (whole run)".into(), got.to_string(), String::new()]);
    }
    let (_, ended, reconnects, reopen_failed) = fleet.snap().await?;
    r.set("streams_ended", json!(ended));
    r.set("stream_reconnects", json!(reconnects));
    r.set("stream_reopen_failed", json!(reopen_failed));
    if fleet.worker_count() > 0 {
        r.set("workers", json!(fleet.worker_count()));
    }
    bridge_metrics(setup, r).await;
    r.table("throughput (events/s over the measured window)", &["path", "events/s", "vs NATS"], rows);
    fleet.close().await;
    tasks.abort_all();
    Ok(())
}

/// Messages the history stream holds now (the bridges' default stream name).
async fn stored_messages(url: &str) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(nats(url).await?);
    let mut stream = js.get_stream("REALTIME").await?;
    Ok(stream.info().await?.state.messages)
}
