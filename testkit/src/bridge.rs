//! The `realtime-bridge` binary as a child process (`serve --listen 127.0.0.1:0 ...
//! --log-format json`): its address is read from its JSON "listening" log line, its stderr
//! is captured line by line, and it is killed on Drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::START_TIMEOUT;

/// Removes every inherited `RB_*` variable from `cmd` (the bridge reads its settings from
/// them), so the machine's environment cannot change what a run checks.
pub fn clear_rb_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("RB_")) {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A `Command` for the bridge binary `bin` with `args`, every inherited `RB_*` variable
/// removed, then `env` set.
pub fn bridge_command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    clear_rb_env(&mut cmd);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// How to start a [`BridgeProcess`]: the binary, its arguments (which must include
/// `--listen 127.0.0.1:0 --log-format json` or the like: the address is read from the log),
/// extra environment, and how its log is kept.
#[derive(Debug, Clone)]
pub struct BridgeBuilder {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    keep_log_lines: Option<usize>,
    fail_on_panic: bool,
    /// Tests never let the developer's `RB_*` variables change what they check; the
    /// benchmark passes them on on purpose (`RB_SUBSCRIBE=shared realtime-bridge-bench ...`).
    inherit_rb_env: bool,
}

impl BridgeBuilder {
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            env: Vec::new(),
            keep_log_lines: None,
            fail_on_panic: false,
            inherit_rb_env: false,
        }
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `key` for the process (after the inherited `RB_*` variables were removed).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Keeps only the last `n` log lines (a long run); by default every line is kept.
    pub fn keep_log_lines(mut self, n: usize) -> Self {
        self.keep_log_lines = Some(n);
        self
    }

    /// On Drop, panic if the process logged a panic (a panic in a task neither stops the
    /// process nor changes its exit code), unless the thread is already panicking.
    pub fn fail_on_panic(mut self) -> Self {
        self.fail_on_panic = true;
        self
    }

    /// Passes the inherited `RB_*` variables on to the bridge (the benchmark's documented way
    /// to set a bridge flag); by default they are removed.
    pub fn inherit_rb_env(mut self) -> Self {
        self.inherit_rb_env = true;
        self
    }

    /// The command this starts (inherited `RB_*` variables removed unless asked otherwise).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        if !self.inherit_rb_env {
            clear_rb_env(&mut cmd);
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the process and waits (bounded by [`START_TIMEOUT`]) until it logs "listening".
    pub fn try_start(self) -> anyhow::Result<BridgeProcess> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("cannot run the bridge {}", self.bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        let keep = self.keep_log_lines;
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut logs = lock(&sink);
                if keep.is_some_and(|n| logs.len() >= n) {
                    logs.pop_front();
                }
                logs.push_back(line);
            }
        });
        let mut process = BridgeProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            reader: Some(reader),
            fail_on_panic: false,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                process.addr = addr;
                process.fail_on_panic = self.fail_on_panic;
                Ok(process)
            }
            Err(_) => {
                process.kill();
                bail!("the bridge did not log \"listening\" within {START_TIMEOUT:?}; its log:\n{}", process.logs());
            }
        }
    }

    /// [`BridgeBuilder::try_start`], panicking on failure.
    pub fn start(self) -> BridgeProcess {
        self.try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// A running bridge process on 127.0.0.1; its stderr (JSON logs) is copied into memory by
/// a thread. Killed (SIGKILL) and reaped on Drop.
#[derive(Debug)]
pub struct BridgeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<VecDeque<String>>>,
    /// The thread copying stderr into `logs`; joined on Drop so the last lines are seen.
    reader: Option<std::thread::JoinHandle<()>>,
    fail_on_panic: bool,
}

impl BridgeProcess {
    /// `http://{addr}`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line kept so far, joined with newlines.
    pub fn logs(&self) -> String {
        lock(&self.logs).iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The last 20 log lines (for error reports).
    pub fn log_tail(&self) -> String {
        let logs = lock(&self.logs);
        logs.iter().skip(logs.len().saturating_sub(20)).cloned().collect::<Vec<_>>().join("\n")
    }

    /// Sends a signal by name (TERM, INT, KILL) with the system `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(ok.success(), "kill -{sig} {} failed", self.child.id());
    }

    /// Waits (bounded, blocking) for the process to exit; returns how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().expect("try_wait on the bridge") {
                return Some((s, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits (bounded, without blocking the async runtime) for the process to exit.
    pub async fn wait_exit_async(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().expect("try_wait on the bridge") {
                return Some((s, start.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// Kills the process, reaps it and waits for the last log lines.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        if self.fail_on_panic && !std::thread::panicking() {
            let logs = self.logs();
            if logs.contains("panicked at") {
                panic!("the bridge process panicked; logs:\n{logs}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address in the bridge's JSON "listening" log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}
