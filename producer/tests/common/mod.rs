//! What the producer library's tests share: a real nats-server and real bridge processes
//! from the workspace's test kit, an SSE reader built on an independent parser
//! (eventsource-stream) that resumes with its cursor when the bridge cuts it, and counts
//! read from the JetStream stream itself.
//!
//! The bridge is the `realtime-bridge` binary: `RB_BIN` when set, else the one cargo built
//! next to these tests (`cargo test --workspace` builds it; with `-p
//! realtime-bridge-producer` alone, run `cargo build -p realtime-bridge` first).
//!
//! Every wait is bounded; nothing sleeps to synchronise.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

pub use testkit::{eventually, BridgeBuilder, BridgeProcess, NatsServer, WAIT};

/// The bridge binary (see the module docs).
pub fn bridge_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RB_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/realtime-bridge
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).map(|d| d.join("realtime-bridge")).unwrap();
    assert!(
        bin.is_file(),
        "no bridge binary at {}: run `cargo build -p realtime-bridge` (or set RB_BIN)",
        bin.display()
    );
    bin
}

/// `realtime-bridge serve --no-auth` on `nats_url` with `extra` flags; its log is checked for
/// panics when it is dropped.
pub fn start_bridge(nats_url: &str, extra: &[&str]) -> BridgeProcess {
    BridgeBuilder::new(bridge_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--nats-url", nats_url, "--no-auth", "--log-format", "json"])
        .args(extra)
        .env("RUST_LOG", "info")
        .fail_on_panic()
        .start()
}

/// A plain NATS connection to `nats`.
pub async fn nats_client(nats: &NatsServer) -> async_nats::Client {
    tokio::time::timeout(WAIT, async_nats::connect(nats.url())).await.expect("NATS connect in time").unwrap()
}

/// Messages the stream `REALTIME` holds on subjects matching `filter` (per-subject counts
/// from the JetStream API, summed); 0 when the stream does not exist.
pub async fn stored(client: &async_nats::Client, filter: &str) -> u64 {
    let js = jetstream::new(client.clone());
    let Ok(stream) = js.get_stream("REALTIME").await else { return 0 };
    let mut subjects = stream.info_with_subjects(filter).await.unwrap();
    let mut total = 0;
    while let Some(s) = subjects.next().await {
        total += s.unwrap().1 as u64;
    }
    total
}

/// One event as a stream delivered it: the event name and the envelope's `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub event: String,
    pub data: Value,
}

/// A user's stream read in a task of its own with eventsource-stream: every event is kept;
/// when the bridge ends or cuts the stream, it opens it again with its last cursor
/// (`Last-Event-ID`), as a browser would.
pub struct Reader {
    got: Arc<Mutex<Vec<Got>>>,
    reconnects: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Opens `{base}/v1/users/{user}/events{query}` and returns once it answered 200 (so
    /// an event published afterwards reaches it).
    pub async fn open(base: &str, user: &str, query: &str) -> Self {
        let url = format!("{base}/v1/users/{user}/events{query}");
        let http = reqwest::Client::new();
        let first = tokio::time::timeout(WAIT, http.get(&url).send()).await.expect("stream answered in time").unwrap();
        assert_eq!(first.status(), 200, "stream refused: {}", first.text().await.unwrap_or_default());
        let got = Arc::new(Mutex::new(Vec::new()));
        let reconnects = Arc::new(Mutex::new(0));
        let (sink, count) = (Arc::clone(&got), Arc::clone(&reconnects));
        let task = tokio::spawn(async move {
            let mut resp = first;
            let mut last_id = String::new();
            loop {
                let mut events = resp.bytes_stream().eventsource();
                while let Some(Ok(e)) = events.next().await {
                    if !e.id.is_empty() {
                        last_id = e.id.clone();
                    }
                    if e.event == "end" {
                        break;
                    }
                    let env: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                    sink.lock().unwrap().push(Got { event: e.event, data: env["data"].clone() });
                }
                *count.lock().unwrap() += 1;
                let mut req = http.get(&url);
                if !last_id.is_empty() {
                    req = req.header("Last-Event-ID", last_id.as_str());
                }
                resp = match req.send().await {
                    Ok(r) if r.status() == 200 => r,
                    _ => return,
                };
            }
        });
        Self { got, reconnects, task }
    }

    /// Everything received so far.
    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// How many times the stream was opened again.
    pub fn reconnects(&self) -> u32 {
        *self.reconnects.lock().unwrap()
    }

    /// Waits (bounded by `timeout`) until at least `n` events arrived; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Got> {
        let got = Arc::clone(&self.got);
        eventually(&format!("{n} events on the stream"), timeout, || {
            let v = got.lock().unwrap().clone();
            async move { (v.len() >= n).then_some(v) }
        })
        .await
    }

    /// Waits for `n` events, then for one more `sentinel` event sent by the caller's
    /// `send`: what arrives before the sentinel is everything that was delivered (nothing
    /// unwanted can still be on its way once an event sent after it arrived).
    pub async fn events_until(&self, sentinel: &str, timeout: Duration) -> Vec<Got> {
        let got = Arc::clone(&self.got);
        let sentinel = sentinel.to_owned();
        eventually(&format!("the sentinel event {sentinel:?}"), timeout, || {
            let v = got.lock().unwrap().clone();
            let s = sentinel.clone();
            async move { v.iter().position(|g| g.event == s).map(|i| v[..i].to_vec()) }
        })
        .await
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts of each `n` in `{"n": i}` events.
pub fn counts_of_n(got: &[Got]) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for g in got {
        if let Some(n) = g.data["n"].as_u64() {
            *m.entry(n).or_insert(0) += 1;
        }
    }
    m
}

/// A TCP relay between one NATS client and the server that can hold the server's side back:
/// once armed with a marker, it stops relaying to the client when the client sends the
/// marker (before the server sees it), until released. A test can so act after a request
/// left and before its answer arrives, without racing the server.
pub struct HoldingRelay {
    /// Where the client connects (`nats://127.0.0.1:<port>`).
    pub port: u16,
    marker: Arc<Mutex<Option<Vec<u8>>>>,
    holding: tokio::sync::watch::Sender<bool>,
    seen: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingRelay {
    /// Relays the first connection it accepts to the NATS server on `server_port`.
    pub async fn start(server_port: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let marker: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
        let (holding, mut hold_rx) = tokio::sync::watch::channel(false);
        let seen = Arc::new(tokio::sync::Notify::new());
        let (armed, hold_tx, found) = (Arc::clone(&marker), holding.clone(), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let upstream = async move {
                // The tail of what came before, so a marker split across two reads is found.
                let mut window: Vec<u8> = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match from_client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let hit = {
                        let mut m = armed.lock().unwrap();
                        let hit = m.as_ref().is_some_and(|mk| {
                            window.extend_from_slice(&buf[..n]);
                            let hit = window.windows(mk.len()).any(|w| w == mk.as_slice());
                            let keep = window.len().saturating_sub(mk.len());
                            window.drain(..keep);
                            hit
                        });
                        if hit {
                            *m = None;
                        }
                        hit
                    };
                    if hit {
                        // Before the server has the request: its answer cannot slip through.
                        hold_tx.send_replace(true);
                        found.notify_one();
                    }
                    if to_server.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            let downstream = async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match from_server.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if hold_rx.wait_for(|held| !*held).await.is_err() {
                        return;
                    }
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            };
            tokio::join!(upstream, downstream);
        });
        Self { port, marker, holding, seen, task }
    }

    /// The URL a client connects to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Holds the server's side back as soon as the client sends `marker` (once).
    pub fn arm(&self, marker: &str) {
        *self.marker.lock().unwrap() = Some(marker.as_bytes().to_vec());
    }

    /// Waits (bounded) until the armed marker went by: the server's side is held from then.
    pub async fn wait_held(&self, timeout: Duration) {
        tokio::time::timeout(timeout, self.seen.notified()).await.expect("the client to send the marker in time");
    }

    /// Relays the server's side again, what was held first.
    pub fn release(&self) {
        self.holding.send_replace(false);
    }
}

impl Drop for HoldingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns once the server has processed everything `client` sent before (a subscription just
/// made included): `Client::flush` only writes to the socket, so another connection's publish
/// could still reach the server first.
pub async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(WAIT, echo.next()).await.expect("a round trip to the NATS server in time").unwrap();
}
