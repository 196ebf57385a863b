//! `idle`: the bridge's RSS (read from /proc through its pid) before and after opening N idle
//! streams, and after closing them again: bytes per idle stream, the baseline being the
//! bridge's own RSS before the streams; also how long opening them all took. With
//! `--max-bytes-per-stream` it flags a run over that budget (the run then exits 1).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use realtime_bridge_wire::SseEvent;
use serde_json::json;

use super::{bridge_metrics, round2, secs, stream_users, OPEN_ALL_TIMEOUT};
use crate::client::{self, Sink, StreamPlan, StreamStats};
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
