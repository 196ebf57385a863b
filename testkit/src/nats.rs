//! nats-server processes on 127.0.0.1: one server on ports chosen by the OS (JetStream with
//! its own store, no JetStream, or a configuration file), or a JetStream cluster.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::process::{free_ports, http_get_local};
use crate::wait::wait_until;
use crate::{NATS_SERVER_HINT, START_TIMEOUT, WAIT};

/// A real nats-server on 127.0.0.1, client and monitoring ports chosen by the OS
/// (`-p -1 -m -1`) and read back from its ports file; killed on Drop. It can be stopped
/// and started again on the same ports (and store).
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// What it runs with besides address, ports and ports file: JetStream and its store,
    /// nothing, or a configuration file and a log file.
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    pub port: u16,
    pub monitor_port: u16,
}

impl NatsServer {
    /// JetStream on, its store in a temporary directory.
    pub fn try_start() -> anyhow::Result<Self> {
        let dir = temp_dir()?;
        let args = vec!["-js".into(), "-sd".into(), dir.path().join("store").into()];
        Self::spawn_in(dir, args, Vec::new())
    }

    /// [`NatsServer::try_start`], panicking on failure.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Without JetStream (core NATS only).
    pub fn try_start_plain() -> anyhow::Result<Self> {
        Self::spawn_in(temp_dir()?, Vec::new(), Vec::new())
    }

    /// [`NatsServer::try_start_plain`], panicking on failure.
    pub fn start_plain() -> Self {
        Self::try_start_plain().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `nats-server -c` on a copy of `conf`, with `env` set (the `$VAR`s the configuration
    /// reads). The copy's `store_dir` line points into a temporary directory (nats-server
    /// refuses `-sd` beside one); the server logs to [`NatsServer::log_text`].
    pub fn try_start_with_config(conf: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = temp_dir()?;
        let text = std::fs::read_to_string(conf).with_context(|| format!("cannot read {}", conf.display()))?;
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
        if replaced != 1 {
            bail!("{} should have one store_dir line (it has {replaced})", conf.display());
        }
        let copy = dir.path().join("nats-server.conf");
        std::fs::write(&copy, lines.join("\n"))?;
        let args = vec!["-c".into(), copy.into(), "-l".into(), dir.path().join("nats-server.log").into()];
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::spawn_in(dir, args, env).with_context(|| format!("nats-server -c {}", conf.display()))
    }

    /// [`NatsServer::try_start_with_config`], panicking on failure.
    pub fn start_with_config(conf: &Path, env: &[(&str, &str)]) -> Self {
        Self::try_start_with_config(conf, env).unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn spawn_in(dir: tempfile::TempDir, args: Vec<OsString>, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let (child, port, monitor_port) = spawn(dir.path(), &args, &env, None)?;
        Ok(Self { child: Some(child), dir, args, env, port, monitor_port })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `nats://user:password@127.0.0.1:port`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
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
        let (child, port, monitor_port) =
            spawn(self.dir.path(), &self.args, &self.env, Some((self.port, self.monitor_port)))
                .unwrap_or_else(|e| panic!("{e:#}"));
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
            std::fs::remove_dir_all(&store).unwrap_or_else(|e| panic!("cannot remove {}: {e}", store.display()));
        }
        self.restart();
    }

    /// What the server logged so far: its log file when it has one (a configuration-file
    /// server), else its stderr.
    pub fn log_text(&self) -> String {
        let log = self.dir.path().join("nats-server.log");
        std::fs::read_to_string(&log)
            .or_else(|_| std::fs::read_to_string(self.dir.path().join("nats-server.stderr")))
            .unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("rb-nats").tempdir()?)
}

/// Runs nats-server in `dir` and waits (bounded) for its ports file. With fixed `ports` (a
/// restart), a server that exits at once is started again for a while: the old socket may
/// not be released yet.
fn spawn(
    dir: &Path,
    args: &[OsString],
    env: &[(String, String)],
    ports: Option<(u16, u16)>,
) -> anyhow::Result<(Child, u16, u16)> {
    let ports_dir = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports_dir);
    std::fs::create_dir_all(&ports_dir)?;
    let (p, m) = ports.map_or(("-1".to_owned(), "-1".to_owned()), |(p, m)| (p.to_string(), m.to_string()));
    let stderr_path = dir.join("nats-server.stderr");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let stderr = OpenOptions::new().create(true).append(true).open(&stderr_path)?;
        let mut child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &p, "-m", &m])
            .args(args)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot run nats-server: {NATS_SERVER_HINT}"))?;
        let file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        let started = wait_until("nats-server to write its ports file", START_TIMEOUT, || {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    return Ok(Some(Ok((port_of(&v["nats"][0])?, port_of(&v["monitoring"][0])?))));
                }
            }
            Ok(child.try_wait()?.map(Err))
        });
        match started {
            Ok(Ok((port, monitor))) => return Ok((child, port, monitor)),
            Ok(Err(_)) if ports.is_some() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(Err(status)) => {
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let log = std::fs::read_to_string(dir.join("nats-server.log")).unwrap_or_default();
                bail!("nats-server exited at start ({status}): {err}{log}");
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
}

/// The port of a URL in a ports file (`nats://127.0.0.1:4222`).
fn port_of(v: &serde_json::Value) -> anyhow::Result<u16> {
    let s = v.as_str().ok_or_else(|| anyhow!("the ports file lists no URL: {v}"))?;
    let port = s.rsplit(':').next().unwrap_or_default().trim_end_matches('/');
    port.parse().with_context(|| format!("no port in {s:?}"))
}

// ---------------------------------------------------------------------------------------
// A JetStream cluster: N nodes, each with its own store, joined by routes on ports chosen
// up front so that a node can be killed and started again on the same ports and store.

/// One node of a [`NatsCluster`].
#[derive(Debug)]
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
#[derive(Debug)]
pub struct NatsCluster {
    dir: tempfile::TempDir,
    pub name: String,
    pub nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits (bounded) until every one reports JetStream healthy.
    pub fn start(n: usize) -> Self {
        assert!(n >= 1);
        let dir = tempfile::Builder::new().prefix("rb-nats-cluster").tempdir().expect("a temporary directory");
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
        std::fs::create_dir_all(&node_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", node_dir.display()));
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
                .unwrap_or_else(|e| panic!("cannot run nats-server ({e}): {NATS_SERVER_HINT}"));
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

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
    }
}
