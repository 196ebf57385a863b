//! `storm`: every stream opens at once (each process holding streams fires all its opens
//! together, workers on the same signal), first try only, no retry: how long until every
//! stream is open, and how many were refused, by HTTP status (503 when a bridge cannot get
//! its NATS subscription confirmed in time, or is at its connection limit) or by kind of
//! failure (timeout, reset). What a deploy or a network blip does: everyone reconnects.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{bridge_metrics, round2};
use crate::fleet::{Fleet, FleetSpec, Record};
use crate::harness::Setup;
use crate::report::Report;
use crate::Common;

#[derive(Debug, Clone, Args)]
pub(crate) struct StormArgs {
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    #[arg(long, default_value_t = 1)]
    streams_per_user: usize,
    /// How long one open may take before it counts as a timeout, in seconds.
    #[arg(long, default_value_t = 60.0)]
    open_timeout: f64,
    /// Seconds to keep the opened streams before closing them (to read the bridges' gauges).
    #[arg(long, default_value_t = 1.0)]
    hold: f64,
}

pub(crate) async fn storm(setup: &Setup, common: &Common, mut a: StormArgs, r: &mut Report) -> anyhow::Result<()> {
    if common.quick {
        a.streams = a.streams.min(200 * setup.bridges.len());
        a.open_timeout = a.open_timeout.min(20.0);
        a.hold = a.hold.min(0.2);
    }
    let n = a.streams.max(1);
    let mut spec = FleetSpec::new(setup.bridges.clone(), n, Record::Count, common.workers_for(setup, n));
    spec.per_user = a.streams_per_user;
    spec.open_concurrency = usize::MAX;
    spec.open_timeout = Duration::from_secs_f64(a.open_timeout.clamp(0.1, 3600.0));
    let (fleet, o) = Fleet::open(&spec).await?;
    tokio::time::sleep(Duration::from_secs_f64(a.hold.clamp(0.0, 3600.0))).await;
    bridge_metrics(setup, r).await;
    let workers = fleet.worker_count();
    fleet.close().await;

    let refused_503 = o.failures.get("503").copied().unwrap_or(0);
    r.set("streams", json!(n));
    r.set("users", json!(n.div_ceil(a.streams_per_user.max(1))));
    r.set("workers", json!(workers));
    r.set("opened", json!(o.opened));
    r.set("failed", json!(o.failed));
    r.set("refused_503", json!(refused_503));
    r.set("failures", json!(o.failures));
    // Until the last stream opened, when they all did; else until the last success.
    r.set("all_open", json!(o.opened == n));
    r.set("last_open_s", json!(round2(o.last_open.as_secs_f64())));
    r.set("settled_s", json!(round2(o.settled.as_secs_f64())));
    r.set("open_mean_ms", json!(round2(o.open_mean_ms)));
    r.set("open_max_ms", json!(round2(o.open_max_ms)));
    r.set("open_timeout_s", json!(a.open_timeout));
    if !o.per_worker.is_empty() {
        r.set("per_worker", json!(o.per_worker));
    }
    let mut rows = vec![vec!["opened".to_owned(), o.opened.to_string()]];
    rows.extend(o.failures.iter().map(|(k, v)| vec![format!("failed: {k}"), v.to_string()]));
    r.table("first try of every stream", &["outcome", "streams"], rows);
    Ok(())
}
