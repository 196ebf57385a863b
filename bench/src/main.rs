//! `realtime-bridge-bench`: drives a real nats-server and a real bridge process over
//! loopback and measures throughput, latency, idle memory, broadcast fan-out and publishing, each
//! against plain NATS in the same run where that makes sense. Every subcommand prints
//! human tables and, as its last line, one JSON object with every figure.
//!
//! `--bridges N` (and `--nats-cluster`) measure the way deployments scale: several bridge
//! processes on one NATS, the streams spread over them and held by worker processes (this
//! binary again, `worker`), since one process here may hold at most 20,000 open files.

mod client;
mod fleet;
mod harness;
mod report;
mod runs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "realtime-bridge-bench", version, about = "Benchmarks for the Realtime Bridge against plain NATS")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// History mode of the bridge this run starts (`--history` of `serve`). With
    /// --bridge-url it only labels the results.
    #[arg(long, global = true, default_value = "on", value_parser = ["on", "off"])]
    pub(crate) history: String,
    /// Measure an already running bridge (started with --no-auth), e.g. http://127.0.0.1:8080,
    /// instead of starting one. Loopback only.
    #[arg(long, global = true)]
    pub(crate) bridge_url: Option<String>,
    /// With --bridge-url: that bridge's pid, so `idle` can read its RSS.
    #[arg(long, global = true)]
    pub(crate) bridge_pid: Option<u32>,
    /// NATS to use; by default a nats-server with JetStream is started in a temp dir.
    #[arg(long, global = true)]
    pub(crate) nats_url: Option<String>,
    /// The realtime-bridge binary (default: next to this executable, or $RB_BRIDGE_BIN).
    #[arg(long, global = true)]
    pub(crate) bridge_bin: Option<PathBuf>,
    /// `--heartbeat` of the bridge this run starts.
    #[arg(long, global = true, default_value = "15s")]
    pub(crate) heartbeat: String,
    /// Tiny sizes: the whole run takes a few seconds (a smoke test of the harness).
    #[arg(long, global = true)]
    pub(crate) quick: bool,
    /// Bridge processes to start on the same NATS; streams are spread round-robin over them.
    #[arg(long, global = true, default_value_t = 1)]
    pub(crate) bridges: usize,
    /// Start a 3-node JetStream cluster instead of one nats-server; bridge i connects to node
    /// i % 3.
    #[arg(long, global = true)]
    pub(crate) nats_cluster: bool,
    /// `--history-replicas` of the bridges (default: 3 with --nats-cluster, else the bridge's own).
    #[arg(long, global = true)]
    pub(crate) history_replicas: Option<u8>,
    /// Worker processes holding the streams (default: none for one bridge on one NATS and
    /// at most --streams-per-worker streams, else enough to stay under it).
    #[arg(long, global = true)]
    pub(crate) workers: Option<usize>,
    /// Most streams one worker process holds (the open-file hard limit here is 20,000).
    #[arg(long, global = true, default_value_t = 17_000)]
    pub(crate) streams_per_worker: usize,
}

impl Common {
    /// Worker processes for a run of `streams` streams against `setup`.
    pub(crate) fn workers_for(&self, setup: &harness::Setup, streams: usize) -> usize {
        fleet::workers_for(self.workers, setup.bridges.len(), setup.nats_nodes, streams, self.streams_per_worker)
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every stream opened at once (all worker processes together), first try only: time
    /// until all are open and refusals by HTTP status.
    Storm(runs::StormArgs),
    /// History mode, several bridges, a numbered event flow; one bridge is killed (SIGKILL)
    /// and its clients resume on the others: events lost and duplicated per stream.
    Failover(runs::FailoverArgs),
    /// (internal) Holds a slice of a run's streams for the coordinating process.
    #[command(hide = true)]
    Worker(fleet::WorkerArgs),
    /// Publishers saturate user.<id>.<event>; events/s delivered to SSE clients vs a plain
    /// NATS subscriber set (one subscription per user) in the same run.
    Throughput(runs::ThroughputArgs),
    /// Publish→receipt latency at a fixed rate, through the bridge and through plain NATS.
    Latency(runs::LatencyArgs),
    /// Bridge RSS per idle stream, and the time to open them all.
    Idle(runs::IdleArgs),
    /// One broadcast.<event> to N open streams: time until the last stream got it.
    Broadcast(runs::BroadcastArgs),
    /// A service publishing: events/s acknowledged through the producer library (per
    /// in-flight window) vs bare core publishes, and how many the stream stored of each.
    Publish(runs::PublishArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Every run is bounded, whatever its flags; the processes it started die with it.
        let limit = Duration::from_secs(3600);
        match tokio::time::timeout(limit, run(cli)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the run did not finish within {limit:?}")),
        }
    });
    // Don't wait for stream tasks still parked on sockets.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("realtime-bridge-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (soft, hard) = harness::raise_nofile();
    // A worker starts no processes and prints only its own JSON lines.
    let cmd = match cli.cmd {
        Cmd::Worker(a) => return fleet::worker(a).await,
        other => other,
    };
    let cli = Cli { cmd, ..cli };
    let mut report = report::Report::new(match cli.cmd {
        Cmd::Storm(_) => "storm",
        Cmd::Failover(_) => "failover",
        Cmd::Worker(_) => "worker",
        Cmd::Throughput(_) => "throughput",
        Cmd::Latency(_) => "latency",
        Cmd::Idle(_) => "idle",
        Cmd::Broadcast(_) => "broadcast",
        Cmd::Publish(_) => "publish",
    });
    let setup_args = harness::SetupArgs {
        nats_url: cli.common.nats_url.clone(),
        bridge_url: cli.common.bridge_url.clone(),
        bridge_pid: cli.common.bridge_pid,
        bridge_bin: cli.common.bridge_bin.clone(),
        history: cli.common.history.clone(),
        heartbeat: cli.common.heartbeat.clone(),
        bridges: cli.common.bridges,
        nats_cluster: cli.common.nats_cluster,
        history_replicas: cli.common.history_replicas.or(cli.common.nats_cluster.then_some(3)),
    };
    let setup_args_replicas = setup_args.history_replicas;
    let setup = tokio::task::spawn_blocking(move || harness::Setup::start(&setup_args)).await??;
    report.set("history", serde_json::json!(setup.history));
    report.set("bridge", serde_json::json!(if setup.started_bridge { "started" } else { "external" }));
    report.set("nats", serde_json::json!(if setup.started_nats { "started" } else { "external" }));
    report.set("quick", serde_json::json!(cli.common.quick));
    report.set("nofile_limit", serde_json::json!([soft, hard]));
    report.set("loadavg_start", serde_json::json!(harness::loadavg()));
    if setup.bridges.len() > 1 || setup.nats_nodes > 1 {
        report.set("bridges", serde_json::json!(setup.bridges.len()));
        report.set("nats_nodes", serde_json::json!(setup.nats_nodes));
    }
    if let Some(r) = setup_args_replicas {
        report.set("history_replicas", serde_json::json!(r));
    }
    let outcome = match cli.cmd {
        Cmd::Storm(a) => runs::storm(&setup, &cli.common, a, &mut report).await,
        Cmd::Failover(a) => runs::failover(&setup, &cli.common, a, &mut report).await,
        Cmd::Worker(_) => Ok(()),
        Cmd::Throughput(a) => runs::throughput(&setup, &cli.common, a, &mut report).await,
        Cmd::Latency(a) => runs::latency(&setup, &cli.common, a, &mut report).await,
        Cmd::Idle(a) => runs::idle(&setup, &cli.common, a, &mut report).await,
        Cmd::Broadcast(a) => runs::broadcast(&setup, &cli.common, a, &mut report).await,
        Cmd::Publish(a) => runs::publish(&setup, &cli.common, a, &mut report).await,
    };
    if let Err(e) = outcome {
        let tail = setup.bridge_log_tail();
        if !tail.is_empty() {
            eprintln!("bridge log (last lines):\n{tail}");
        }
        return Err(e);
    }
    report.set("loadavg_end", serde_json::json!(harness::loadavg()));
    report.print();
    if report.get("over_budget") == Some(&serde_json::Value::Bool(true)) {
        anyhow::bail!("a stream costs more memory than --max-bytes-per-stream allows (figures above)");
    }
    Ok(())
}
