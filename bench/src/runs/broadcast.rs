//! `broadcast`: rounds of one `broadcast.<event>` message, stamped with its publish time, to N
//! open streams: per round the time until the last stream got it (the fan-out's cost), and
//! the latency of every single receipt, over every bridge of the run. No plain NATS baseline: one NATS subscriber would get
//! the message once; a round that does not reach every stream within 30 s counts as missed.

use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;

use super::{bridge_metrics, event_name, nats, payload, round2};
use crate::fleet::{Fleet, FleetSpec, Record};
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

pub(crate) async fn broadcast(
    setup: &Setup,
    common: &Common,
    mut a: BroadcastArgs,
    r: &mut Report,
) -> anyhow::Result<()> {
    if common.quick {
        a.streams = a.streams.min(100 * setup.bridges.len());
        a.rounds = a.rounds.min(5);
        a.interval_ms = a.interval_ms.min(100);
    }
    let n = a.streams.max(1);
    let rounds = a.rounds.max(1);
    let mut spec = FleetSpec::new(setup.bridges.clone(), n, Record::Broadcast { rounds }, common.workers_for(setup, n));
    spec.per_user = a.streams_per_user;
    spec.open_concurrency = a.open_concurrency;
    let (mut fleet, opened) = Fleet::open(&spec).await?;
    opened.require_all(n)?;
    let open_time = opened.settled;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publisher = nats(&setup.nats_url).await?;
    let round_timeout = Duration::from_secs(30);
    for round in 0..rounds {
        publisher
            .publish(
                realtime_bridge_wire::subject::broadcast_subject(&event_name()),
                payload(round as u64, Some(round)),
            )
            .await?;
        publisher.flush().await?;
        // Bounded wait for every stream to get this round.
        fleet.wait_round(round, round_timeout).await?;
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    // Per round: the slowest receipt when every stream got it, else the streams missed.
    let receipts = fleet.rounds().await?;
    let (_, ended, _, _) = fleet.snap().await?;
    let mut last = report::histogram();
    let mut per_stream = report::histogram();
    let mut missed = 0usize;
    for lats in &receipts {
        for &l in lats {
            let _ = per_stream.record(l);
        }
        if lats.len() < n {
            missed += n - lats.len();
        } else if let Some(&max) = lats.iter().max() {
            let _ = last.record(max);
        }
    }
    missed += n * rounds.saturating_sub(receipts.len());
    bridge_metrics(setup, r).await;
    r.set("streams", json!(n));
    r.set("rounds", json!(rounds));
    if fleet.worker_count() > 0 {
        r.set("workers", json!(fleet.worker_count()));
    }
    r.set("open_all_s", json!(round2(open_time.as_secs_f64())));
    r.set("last_stream", json!(percentiles(&last)));
    r.set("last_stream_p50_ms", json!(ms(last.value_at_quantile(0.5))));
    r.set("last_stream_p99_ms", json!(ms(last.value_at_quantile(0.99))));
    r.set("last_stream_max_ms", json!(ms(last.max())));
    r.set("per_stream", json!(percentiles(&per_stream)));
    r.set("missed", json!(missed));
    r.set("streams_ended", json!(ended));
    let row = |name: &str, h: &Histogram<u64>| {
        let q = |x: f64| format!("{:.3}", ms(h.value_at_quantile(x)));
        vec![name.to_owned(), h.len().to_string(), q(0.5), q(0.99), format!("{:.3}", ms(h.max()))]
    };
    r.table(
        "broadcast → receipt (ms)",
        &["what", "samples", "p50", "p99", "max"],
        vec![row("last stream of a round", &last), row("any stream", &per_stream)],
    );
    fleet.close().await;
    Ok(())
}
