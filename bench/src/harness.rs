//! The processes a benchmark runs against, from the workspace's test kit (`testkit`): a
//! nats-server (JetStream on, own temp store, ports chosen by the OS and read back from
//! `--ports_file_dir`) and a bridge process (`serve --listen 127.0.0.1:0 --no-auth
//! --log-format json`, address read from its JSON "listening" log line, inherited `RB_*`
//! variables passed on: they are how a run sets the bridge's other flags). Both are killed
//! on Drop, so a panic or an early return leaves nothing running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use testkit::{BridgeBuilder, BridgeProcess, NatsServer};

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
    pub(crate) nats_url: String,
    pub(crate) bridge: SocketAddr,
    /// The bridge's pid when known (started here, or `--bridge-pid`), for its RSS.
    pub(crate) bridge_pid: Option<u32>,
    /// The nats-server's pid when started here.
    pub(crate) nats_pid: Option<u32>,
    pub(crate) history: String,
    pub(crate) started_nats: bool,
    pub(crate) started_bridge: bool,
    // Drop order: the bridge before NATS.
    bridge_process: Option<BridgeProcess>,
    _nats: Option<NatsServer>,
}

#[derive(Debug, Clone)]
pub(crate) struct SetupArgs {
    pub(crate) nats_url: Option<String>,
    pub(crate) bridge_url: Option<String>,
    pub(crate) bridge_pid: Option<u32>,
    pub(crate) bridge_bin: Option<PathBuf>,
    pub(crate) history: String,
    pub(crate) heartbeat: String,
}

impl Setup {
    pub(crate) fn start(args: &SetupArgs) -> anyhow::Result<Self> {
        let nats = match &args.nats_url {
            Some(_) => None,
            None => Some(NatsServer::try_start()?),
        };
        let nats_url = args.nats_url.clone().or_else(|| nats.as_ref().map(NatsServer::url)).unwrap_or_default();
        let (bridge, bridge_process) = match &args.bridge_url {
            Some(url) => (parse_http_url(url)?, None),
            None => {
                let bin = bridge_bin(args.bridge_bin.as_deref())?;
                let extra = vec!["--heartbeat".to_owned(), args.heartbeat.clone()];
                let p = start_bridge(&bin, &nats_url, &args.history, &extra)?;
                (p.addr, Some(p))
            }
        };
        let bridge_pid = bridge_process.as_ref().map(BridgeProcess::pid).or(args.bridge_pid);
        Ok(Self {
            nats_url,
            bridge,
            bridge_pid,
            nats_pid: nats.as_ref().and_then(NatsServer::pid),
            history: args.history.clone(),
            started_nats: nats.is_some(),
            started_bridge: bridge_process.is_some(),
            bridge_process,
            _nats: nats,
        })
    }

    pub(crate) fn bridge_log_tail(&self) -> String {
        self.bridge_process.as_ref().map(BridgeProcess::log_tail).unwrap_or_default()
    }
}

/// `http://127.0.0.1:8080` (a trailing `/` allowed) → its socket address. Loopback only.
pub(crate) fn parse_http_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("--bridge-url must start with http://"))?;
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
