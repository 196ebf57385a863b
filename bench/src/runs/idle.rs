//! `idle`: the bridge's RSS (read from /proc through its pid) before and after opening N idle
//! streams, and after closing them again: bytes per idle stream, the baseline being the
//! bridge's own RSS before the streams; also how long opening them all took. With several
//! bridges (`--bridges`), the sum of their RSS, each bridge's own figures in a table. With
//! `--max-bytes-per-stream` it flags a run over that budget (the run then exits 1).

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::json;

use super::{bridge_metrics, round2, secs};
use crate::fleet::{Fleet, FleetSpec, Record};
use crate::harness::{self, Setup};
use crate::report::Report;
use crate::Common;

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

/// Every bridge's RSS (KiB) in the order of `pids`; an error names the one that could not be read.
fn rss_all(pids: &[u32]) -> anyhow::Result<Vec<u64>> {
    pids.iter().map(|&p| harness::rss_kib(p).with_context(|| format!("cannot read VmRSS of bridge pid {p}"))).collect()
}

pub(crate) async fn idle(setup: &Setup, common: &Common, mut a: IdleArgs, r: &mut Report) -> anyhow::Result<()> {
    if common.quick {
        a.streams = a.streams.min(100 * setup.bridges.len());
        a.settle = a.settle.min(0.5);
    }
    let n = a.streams.max(1);
    if setup.bridge_pids.len() != setup.bridges.len() {
        bail!("idle needs every bridge's pid for its RSS: pass --bridge-pid with --bridge-url");
    }
    tokio::time::sleep(secs(a.settle)).await;
    let before_each = rss_all(&setup.bridge_pids)?;

    let mut spec = FleetSpec::new(setup.bridges.clone(), n, Record::Count, common.workers_for(setup, n));
    spec.per_user = a.streams_per_user;
    spec.open_concurrency = a.open_concurrency;
    let (fleet, opened) = Fleet::open(&spec).await?;
    opened.require_all(n)?;
    let open_time = opened.settled;
    tokio::time::sleep(secs(a.settle)).await;
    let after_each = rss_all(&setup.bridge_pids)?;
    bridge_metrics(setup, r).await;
    let bench_rss = harness::rss_kib(std::process::id()).unwrap_or(0);
    let workers_rss = fleet.rss_kib();
    let workers = fleet.worker_count();
    fleet.close().await;
    tokio::time::sleep(secs(a.settle)).await;
    let after_close_each: Vec<u64> = setup.bridge_pids.iter().map(|&p| harness::rss_kib(p).unwrap_or(0)).collect();
    let (before, after, after_close): (u64, u64, u64) =
        (before_each.iter().sum(), after_each.iter().sum(), after_close_each.iter().sum());

    let per_stream = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    let mean_open_ms = opened.open_mean_ms;
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
    r.set("open_max_ms", json!(round2(opened.open_max_ms)));
    r.set("bench_rss_kib", json!(bench_rss));
    if workers > 0 {
        r.set("workers", json!(workers));
        r.set("workers_rss_kib", json!(workers_rss));
    }
    if setup.bridges.len() > 1 {
        r.set("rss_before_each_kib", json!(before_each));
        r.set("rss_after_each_kib", json!(after_each));
        let rows = (0..setup.bridges.len())
            .map(|i| {
                vec![
                    format!("bridge {i} ({})", setup.bridges[i]),
                    before_each[i].to_string(),
                    after_each[i].to_string(),
                    after_close_each[i].to_string(),
                ]
            })
            .collect();
        r.table("each bridge (RSS KiB)", &["bridge", "before", "with streams", "after closing"], rows);
    }
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
