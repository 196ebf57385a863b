//! The processes a benchmark runs against, from the workspace's test kit (`testkit`): a
//! nats-server (JetStream on, own temp store, ports chosen by the OS and read back from
//! `--ports_file_dir`) and a bridge process (`serve --listen 127.0.0.1:0 --no-auth
//! --log-format json`, address read from its JSON "listening" log line, inherited `RB_*`
//! variables passed on: they are how a run sets the bridge's other flags). Both are killed
//! on Drop, so a panic or an early return leaves nothing running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use testkit::{BridgeBuilder, BridgeProcess, NatsCluster, NatsServer};

/// Bridge log lines kept for error messages.
const KEEP_LOG_LINES: usize = 200;

/// Starts `realtime-bridge serve` without auth on `nats_url`, with `--history` and `extra`.
fn start_bridge(bin: &Path, nats_url: &str, history: &str, extra: &[String]) -> anyhow::Result<BridgeProcess> {
    BridgeBuilder::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--no-auth", "--log-format", "json"])
        .args(["--history", history])
        .args(extra)
        .env("RUST_LOG", "info")
        .keep_log_lines(KEEP_LOG_LINES)
        // BENCHMARKS.md sets bridge flags this way (`RB_SUBSCRIBE=shared realtime-bridge-bench ...`).
        .inherit_rb_env()
        .try_start()
}

/// Where the `realtime-bridge` binary is: `--bridge-bin`, `RB_BRIDGE_BIN`, else next to this
/// executable (target/release/realtime-bridge-bench → target/release/realtime-bridge).
pub(crate) fn bridge_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RB_BRIDGE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow!("executable without a directory"))?;
    for candidate in [dir.join("realtime-bridge"), dir.join("../realtime-bridge")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no realtime-bridge binary next to {}: run `cargo build --release -p realtime-bridge`, or pass --bridge-bin",
        exe.display()
    )
}

/// Everything a benchmark talks to, and the processes it owns (killed when this is dropped).
#[derive(Debug)]
pub(crate) struct Setup {
    /// What the benchmark's own NATS clients connect to (a comma-separated list for a cluster).
    pub(crate) nats_url: String,
    /// Every bridge; streams are spread round-robin over them.
    pub(crate) bridges: Vec<SocketAddr>,
    /// Every bridge's pid when known, in the order of `bridges`.
    pub(crate) bridge_pids: Vec<u32>,
    /// The nats-server's pid when started here (the first node's for a cluster).
    pub(crate) nats_pid: Option<u32>,
    pub(crate) history: String,
    pub(crate) started_nats: bool,
    pub(crate) started_bridge: bool,
    /// NATS nodes (1 unless `--nats-cluster`).
    pub(crate) nats_nodes: usize,
    // Drop order: the bridges before NATS.
    bridge_processes: Vec<BridgeProcess>,
    _nats: Option<NatsServer>,
    _cluster: Option<NatsCluster>,
}

#[derive(Debug, Clone)]
pub(crate) struct SetupArgs {
    pub(crate) nats_url: Option<String>,
    pub(crate) bridge_url: Option<String>,
    pub(crate) bridge_pid: Option<u32>,
    pub(crate) bridge_bin: Option<PathBuf>,
    pub(crate) history: String,
    pub(crate) heartbeat: String,
    /// Bridge processes to start (ignored with `bridge_url`).
    pub(crate) bridges: usize,
    /// Start a 3-node JetStream cluster instead of one nats-server.
    pub(crate) nats_cluster: bool,
    /// `--history-replicas` for the bridges (None: the bridge's default).
    pub(crate) history_replicas: Option<u8>,
}

/// Nodes of the cluster `--nats-cluster` starts.
const CLUSTER_NODES: usize = 3;

impl Setup {
    pub(crate) fn start(args: &SetupArgs) -> anyhow::Result<Self> {
        let (nats, cluster) = match (&args.nats_url, args.nats_cluster) {
            (Some(_), _) => (None, None),
            (None, false) => (Some(NatsServer::try_start()?), None),
            (None, true) => {
                // The test kit's cluster panics when it cannot start; make that an error.
                let cluster = std::panic::catch_unwind(|| NatsCluster::start(CLUSTER_NODES))
                    .map_err(|_| anyhow!("the {CLUSTER_NODES}-node NATS cluster did not start"))?;
                (None, Some(cluster))
            }
        };
        let nats_url = match (&args.nats_url, &nats, &cluster) {
            (Some(url), _, _) => url.clone(),
            (None, Some(n), _) => n.url(),
            (None, None, Some(c)) => c.urls(),
            (None, None, None) => String::new(),
        };
        let mut processes = Vec::new();
        let bridges = match &args.bridge_url {
            Some(urls) => urls.split(',').map(parse_http_url).collect::<anyhow::Result<Vec<_>>>()?,
            None => {
                let bin = bridge_bin(args.bridge_bin.as_deref())?;
                let mut extra = vec!["--heartbeat".to_owned(), args.heartbeat.clone()];
                if let Some(r) = args.history_replicas {
                    extra.extend(["--history-replicas".to_owned(), r.to_string()]);
                }
                for i in 0..args.bridges.max(1) {
                    // Spread over the cluster: bridge i starts on node i (it learns the
                    // others from the server and fails over to them by itself).
                    let url = match &cluster {
                        Some(c) => c.nodes[i % c.nodes.len()].url(),
                        None => nats_url.clone(),
                    };
                    let p = start_bridge(&bin, &url, &args.history, &extra)
                        .with_context(|| format!("bridge {} of {}", i + 1, args.bridges.max(1)))?;
                    processes.push(p);
                }
                processes.iter().map(|p| p.addr).collect()
            }
        };
        if bridges.is_empty() {
            bail!("no bridge");
        }
        let bridge_pids: Vec<u32> = if processes.is_empty() {
            args.bridge_pid.into_iter().collect()
        } else {
            processes.iter().map(BridgeProcess::pid).collect()
        };
        Ok(Self {
            nats_url,
            bridges,
            bridge_pids,
            nats_pid: nats.as_ref().and_then(NatsServer::pid),
            history: args.history.clone(),
            started_nats: nats.is_some() || cluster.is_some(),
            started_bridge: !processes.is_empty(),
            nats_nodes: cluster.as_ref().map_or(1, |c| c.nodes.len()),
            bridge_processes: processes,
            _nats: nats,
            _cluster: cluster,
        })
    }

    pub(crate) fn bridge_log_tail(&self) -> String {
        self.bridge_processes
            .iter()
            .enumerate()
            .map(|(i, p)| format!("[bridge {i}]\n{}", p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills bridge `i` (SIGKILL), as a crash or a lost machine would.
    pub(crate) fn kill_bridge(&self, i: usize) -> anyhow::Result<()> {
        let p = self.bridge_processes.get(i).ok_or_else(|| anyhow!("no bridge {i} started here"))?;
        let status = std::process::Command::new("kill").arg("-KILL").arg(p.pid().to_string()).status()?;
        if !status.success() {
            bail!("kill -KILL {} failed", p.pid());
        }
        Ok(())
    }
}

/// `http://127.0.0.1:8080` (a trailing `/` allowed) → its socket address. Loopback only.
/// `--bridge-url` takes a comma-separated list of them.
pub(crate) fn parse_http_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.trim().strip_prefix("http://").ok_or_else(|| anyhow!("--bridge-url must start with http://"))?;
    let hostport = rest.trim_end_matches('/');
    let addr: SocketAddr = hostport.parse().with_context(|| format!("--bridge-url: {hostport:?} is not IP:port"))?;
    if !addr.ip().is_loopback() {
        bail!("--bridge-url must be a loopback address (got {addr})");
    }
    Ok(addr)
}

/// Resident set size of a process in KiB (VmRSS from /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (children inherit it).
/// Returns (soft, hard) afterwards.
pub(crate) fn raise_nofile() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::Resource::NOFILE.get().unwrap_or((0, 0))
}

/// The 1-minute load average, for the record.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
