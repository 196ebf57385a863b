//! `publish`: how fast a service can publish, and how much of it is kept. N events `{"n": i}`
//! sent through the producer library (`realtime-bridge-producer`), acknowledged by JetStream
//! one by one within its in-flight window (each `--windows` value a run of its own, to its own
//! user), against the same N as bare core-NATS publishes in the same process (no window, no
//! acknowledgement). For each: events/s until the last send resolved (core: until the flush),
//! and how many the stream stored. No SSE stream is open: this measures the publishing side
//! (the bridge's delivery is what `throughput` measures).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use clap::Args;
use futures::StreamExt;
use realtime_bridge_producer::{Options, RealtimeService};
use serde_json::json;

use super::{nats, round2};
use crate::harness::Setup;
use crate::report::Report;
use crate::Common;

#[derive(Debug, Clone, Args)]
pub(crate) struct PublishArgs {
    /// Events per run.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// The library's in-flight windows (`max_in_flight`) to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "256,1024")]
    windows: Vec<usize>,
    /// Events of the core-publish baseline (default: --events); a bigger flood shows whether
    /// core publishing loses events.
    #[arg(long)]
    core_events: Option<u64>,
    /// The bridge's stream (`--stream-name`).
    #[arg(long, default_value = "REALTIME")]
    stream: String,
}

/// Sending tasks per library run; each keeps up to a window's worth of sends started, so the
/// library's window, not the number of futures, is what bounds the messages in flight.
const TASKS: u64 = 4;

pub(crate) async fn publish(setup: &Setup, common: &Common, mut a: PublishArgs, r: &mut Report) -> anyhow::Result<()> {
    if common.quick {
        a.events = a.events.min(2_000);
        a.core_events = a.core_events.map(|n| n.min(2_000));
    }
    let n = a.events.max(1);
    let core_n = a.core_events.unwrap_or(n).max(1);
    let client = nats(&setup.nats_url).await?;
    let mut rows = Vec::new();
    for &window in &a.windows {
        let user = format!("acked_w{window}");
        let options = Options::default().with_max_in_flight(window).with_stream(a.stream.clone());
        let rt = RealtimeService::with_client(nats(&setup.nats_url).await?, options)
            .await
            .context("the producer library could not start")?;
        let mode = rt.mode();
        let started = Instant::now();
        let workers: Vec<_> = (0..TASKS)
            .map(|t| {
                let (rt, user) = (rt.clone(), user.clone());
                tokio::spawn(async move {
                    let mut failed = 0u64;
                    let mut first_error = None;
                    let mut sends = futures::stream::iter((t..n).step_by(TASKS as usize))
                        .map(|i| {
                            let (rt, user) = (rt.clone(), user.clone());
                            async move { rt.send_event_to_user(&user, "bench", &json!({ "n": i })).await }
                        })
                        .buffer_unordered(window);
                    while let Some(res) = sends.next().await {
                        if let Err(e) = res {
                            failed += 1;
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                    (failed, first_error)
                })
            })
            .collect();
        let mut failed = 0;
        let mut first_error = None;
        for w in workers {
            let (f, e) = w.await?;
            failed += f;
            first_error = first_error.or(e);
        }
        let took = started.elapsed();
        rt.close().await.ok();
        let stored = settled_count(&client, &a.stream, &format!("user.{user}.>"), n).await?;
        let rate = n as f64 / took.as_secs_f64();
        println!(
            "acked publish (rust): {n} events in {:.2} s = {rate:.0} events/s (maxInFlight={window}), \
             mode {mode}, stored {stored} of {n}, failed {failed}",
            took.as_secs_f64()
        );
        if let Some(e) = first_error {
            println!("  first failure: {e}");
        }
        r.set(&format!("acked_w{window}_events_per_s"), json!(rate.round()));
        r.set(&format!("acked_w{window}_stored"), json!(stored));
        r.set(&format!("acked_w{window}_failed"), json!(failed));
        rows.push(vec![
            format!("library, window {window} ({mode})"),
            n.to_string(),
            format!("{:.2}", took.as_secs_f64()),
            format!("{rate:.0}"),
            stored.to_string(),
        ]);
    }

    let core = nats(&setup.nats_url).await?;
    let payloads: Vec<bytes::Bytes> =
        (0..core_n).map(|i| serde_json::to_vec(&json!({ "n": i })).map(Into::into)).collect::<Result<_, _>>()?;
    let started = Instant::now();
    for p in payloads {
        core.publish("user.core.bench", p).await?;
    }
    core.flush().await?;
    let took = started.elapsed();
    let stored = settled_count(&client, &a.stream, "user.core.>", core_n).await?;
    let rate = core_n as f64 / took.as_secs_f64();
    println!(
        "core publish (rust): {core_n} events in {:.2} s = {rate:.0} events/s, stored {stored} of {core_n}",
        took.as_secs_f64()
    );
    r.set("events", json!(n));
    r.set("core_events", json!(core_n));
    r.set("core_events_per_s", json!(rate.round()));
    r.set("core_stored", json!(stored));
    r.set("core_s", json!(round2(took.as_secs_f64())));
    rows.push(vec![
        "core publish, no window".into(),
        core_n.to_string(),
        format!("{:.2}", took.as_secs_f64()),
        format!("{rate:.0}"),
        stored.to_string(),
    ]);
    r.table("publishing", &["how", "events", "s", "events/s", "stored"], rows);
    Ok(())
}

/// What the stream holds on `filter` once it reached `n` or stopped growing for two seconds
/// (JetStream may still be storing what the server took), bounded by two minutes. 0 without
/// a stream (a live-mode bridge).
async fn settled_count(client: &async_nats::Client, stream: &str, filter: &str, n: u64) -> anyhow::Result<u64> {
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let Ok(s) = js.get_stream(stream).await else { return Ok(0) };
        let mut subjects = s.info_with_subjects(filter).await?;
        let mut count = 0u64;
        while let Some(entry) = subjects.next().await {
            count += entry?.1 as u64;
        }
        if count >= n || Instant::now() >= deadline {
            return Ok(count);
        }
        if count != last {
            (last, since) = (count, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(2) {
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
