//! `broadcast`: rounds of one `broadcast.<event>` message, stamped with its publish time, to N
//! open streams: per round the time until the last stream got it (the fan-out's cost), and
//! the latency of every single receipt. No plain NATS baseline: one NATS subscriber would get
//! the message once; a round that does not reach every stream within 30 s counts as missed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use realtime_bridge_wire::SseEvent;
use serde_json::json;

use super::{bridge_metrics, event_name, nats, payload, round2, stream_users, EVENT, OPEN_ALL_TIMEOUT};
use crate::client::{self, field_u64, Sink, StreamPlan, StreamStats};
use crate::harness::Setup;
use crate::report::{self, ms, percentiles, Report};
use crate::Common;

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
        publisher
            .publish(
                realtime_bridge_wire::subject::broadcast_subject(&event_name()),
                payload(round as u64, Some(round)),
            )
            .await?;
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
