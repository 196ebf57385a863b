//! The streams of a run, held either by this process or by worker processes.
//!
//! One process may hold at most ~19,900 sockets here (open-file hard limit 20,000), so a
//! run of more streams re-executes this binary as `worker` children, each holding a slice
//! of the streams (stream `i` globally: user `u<i / per_user>`, bridge `i % bridges`). A
//! worker reads commands from stdin and answers with JSON lines on stdout; it exits when
//! its stdin closes, so a coordinator that dies leaves no worker behind, and every worker
//! is also killed when its handle is dropped. Both kinds record the same things through the
//! same [`Recorder`], so a run reads the same figures whichever holds its streams.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use hdrhistogram::Histogram;
use realtime_bridge_wire::SseEvent;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{self, field_u64, Sink, StreamPlan, StreamStats};
use crate::report;

/// The event name every benchmark publishes (as in `runs`).
const EVENT: &str = "bench";
/// How long workers may take to start and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to answer a command (a large report included).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening all streams may take (as in `runs`).
const OPEN_ALL_TIMEOUT: Duration = Duration::from_secs(600);

/// What the streams record of the `bench` events they receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// Nothing but a count.
    Count,
    /// Publish→receipt latency of events marked `"m":1` (the measured window).
    Latency,
    /// Per round `"r":k`, each stream's publish→receipt latency.
    Broadcast { rounds: usize },
    /// Per stream, the per-user numbers `"k":n` received (for lost and duplicated events).
    Seq,
}

impl Record {
    fn as_arg(self) -> String {
        match self {
            Self::Count => "count".into(),
            Self::Latency => "latency".into(),
            Self::Broadcast { rounds } => format!("broadcast:{rounds}"),
            Self::Seq => "seq".into(),
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "count" => Self::Count,
            "latency" => Self::Latency,
            "seq" => Self::Seq,
            other => match other.strip_prefix("broadcast:") {
                Some(n) => Self::Broadcast { rounds: n.parse().context("broadcast:<rounds>")? },
                None => bail!("unknown record kind {other:?}"),
            },
        })
    }
}

/// What a run wants of its streams.
#[derive(Debug, Clone)]
pub(crate) struct FleetSpec {
    pub(crate) bridges: Vec<SocketAddr>,
    pub(crate) streams: usize,
    pub(crate) per_user: usize,
    /// Streams opening at the same time, over all processes (`usize::MAX`: all at once).
    pub(crate) open_concurrency: usize,
    pub(crate) open_timeout: Duration,
    /// Reopen streams the bridge ends for this many seconds after opening.
    pub(crate) reconnect_secs: Option<f64>,
    /// Reopen with `Last-Event-ID` on the next bridge (see [`StreamPlan::resume`]).
    pub(crate) resume: bool,
    pub(crate) record: Record,
    /// Worker processes (0: the streams live in this process).
    pub(crate) workers: usize,
}

impl FleetSpec {
    pub(crate) fn new(bridges: Vec<SocketAddr>, streams: usize, record: Record, workers: usize) -> Self {
        Self {
            bridges,
            streams,
            per_user: 1,
            open_concurrency: 256,
            open_timeout: Duration::from_secs(30),
            reconnect_secs: None,
            resume: false,
            record,
            workers,
        }
    }
}

/// The sink of every stream of a process.
#[derive(Debug)]
pub(crate) struct Recorder {
    record: Record,
    events: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    /// Per round, the latency (ns) of each receipt.
    rounds: Vec<Mutex<Vec<u64>>>,
    /// Streams a round must reach before it counts as complete (the streams that opened).
    expected: AtomicUsize,
    /// A worker says on stdout when a round reached all its streams.
    announce_rounds: bool,
    /// Per stream of this process, the per-user numbers it received, in order.
    seq: Vec<Mutex<Vec<u32>>>,
}

impl Recorder {
    fn new(record: Record, streams: usize, announce_rounds: bool) -> Self {
        let rounds = match record {
            Record::Broadcast { rounds } => rounds,
            _ => 0,
        };
        let seq = if record == Record::Seq { streams } else { 0 };
        Self {
            record,
            events: AtomicU64::new(0),
            latency: Mutex::new(report::histogram()),
            rounds: (0..rounds).map(|_| Mutex::new(Vec::new())).collect(),
            expected: AtomicUsize::new(usize::MAX),
            announce_rounds,
            seq: (0..seq).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn round_len(&self, r: usize) -> usize {
        self.rounds.get(r).map_or(0, |v| lock(v).len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sink for Recorder {
    fn on_event(&self, stream: usize, event: &SseEvent, now: u64) {
        if event.event != EVENT {
            return;
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        let text = &event.data;
        match self.record {
            Record::Count => {}
            Record::Latency => {
                if field_u64(text, "m") == Some(1) {
                    if let Some(t) = field_u64(text, "bench_t") {
                        let _ = lock(&self.latency).record(now.saturating_sub(t).max(1));
                    }
                }
            }
            Record::Broadcast { .. } => {
                let (Some(t), Some(r)) = (field_u64(text, "bench_t"), field_u64(text, "r")) else { return };
                let Some(round) = usize::try_from(r).ok().and_then(|r| self.rounds.get(r)) else { return };
                let len = {
                    let mut v = lock(round);
                    v.push(now.saturating_sub(t).max(1));
                    v.len()
                };
                if self.announce_rounds && len == self.expected.load(Ordering::Relaxed) {
                    emit(&json!({"t": "round", "r": r}));
                }
            }
            Record::Seq => {
                if let (Some(k), Some(slot)) = (field_u64(text, "k"), self.seq.get(stream)) {
                    lock(slot).push(u32::try_from(k).unwrap_or(u32::MAX));
                }
            }
        }
    }
}

/// How the streams opened (first tries only; reopenings are counted apart).
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenSummary {
    pub(crate) opened: usize,
    pub(crate) failed: usize,
    /// First-try failures by HTTP status or kind of failure.
    pub(crate) failures: BTreeMap<String, usize>,
    /// From the first open (the `go` to workers) until every stream opened or failed.
    pub(crate) settled: Duration,
    /// From the first open until the last successful one.
    pub(crate) last_open: Duration,
    pub(crate) open_mean_ms: f64,
    pub(crate) open_max_ms: f64,
    /// Per worker: (streams, settled seconds, failures).
    pub(crate) per_worker: Vec<Value>,
}

impl OpenSummary {
    fn from_stats(stats: &StreamStats, settled: Duration) -> Self {
        let opened = stats.opened.load(Ordering::Relaxed);
        Self {
            opened,
            failed: stats.failed.load(Ordering::Relaxed),
            failures: stats.failures(),
            settled,
            last_open: Duration::from_micros(stats.last_open_us.load(Ordering::Relaxed)),
            open_mean_ms: stats.open_us_sum.load(Ordering::Relaxed) as f64 / opened.max(1) as f64 / 1000.0,
            open_max_ms: stats.open_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            per_worker: Vec::new(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "opened": self.opened,
            "failed": self.failed,
            "failures": self.failures,
            "settled_us": u64::try_from(self.settled.as_micros()).unwrap_or(u64::MAX),
            "last_open_us": u64::try_from(self.last_open.as_micros()).unwrap_or(u64::MAX),
            "open_mean_ms": self.open_mean_ms,
            "open_max_ms": self.open_max_ms,
        })
    }

    /// Fails unless every stream opened (what every run but `storm` needs).
    pub(crate) fn require_all(&self, n: usize) -> anyhow::Result<()> {
        if self.opened < n {
            bail!("{} of {n} streams failed to open ({:?})", n - self.opened, self.failures);
        }
        Ok(())
    }
}

/// Lost and duplicated events over every stream (`Record::Seq`).
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqSummary {
    pub(crate) streams: usize,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) streams_with_loss: usize,
    pub(crate) streams_with_duplicates: usize,
}

impl SeqSummary {
    fn add(&mut self, o: &Self) {
        self.streams += o.streams;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.streams_with_loss += o.streams_with_loss;
        self.streams_with_duplicates += o.streams_with_duplicates;
    }

    fn to_json(&self) -> Value {
        json!({
            "streams": self.streams, "received": self.received, "lost": self.lost,
            "duplicated": self.duplicated, "out_of_order": self.out_of_order,
            "streams_with_loss": self.streams_with_loss, "streams_with_duplicates": self.streams_with_duplicates,
        })
    }

    fn from_json(v: &Value) -> Self {
        let u = |k: &str| v[k].as_u64().unwrap_or(0);
        Self {
            streams: u("streams") as usize,
            received: u("received"),
            lost: u("lost"),
            duplicated: u("duplicated"),
            out_of_order: u("out_of_order"),
            streams_with_loss: u("streams_with_loss") as usize,
            streams_with_duplicates: u("streams_with_duplicates") as usize,
        }
    }
}

/// How many events user `u` was sent when `total` were sent round-robin over `users`.
pub(crate) fn sent_to(u: usize, users: usize, total: u64) -> u64 {
    let users = users.max(1) as u64;
    total / users + u64::from((u as u64) < total % users)
}

/// The streams' counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snap {
    pub(crate) events: u64,
    pub(crate) ended: usize,
    pub(crate) reconnects: usize,
    pub(crate) reopen_failed: usize,
    /// From a stream's end to its reopening: mean and worst, in milliseconds.
    pub(crate) reconnect_mean_ms: f64,
    pub(crate) reconnect_max_ms: f64,
}

/// Streams held by this process.
#[derive(Debug)]
pub(crate) struct LocalFleet {
    /// Dropping it aborts every stream.
    _streams: JoinSet<()>,
    stats: Arc<StreamStats>,
    rec: Arc<Recorder>,
    /// Global number of the first stream, streams per user (to know each stream's user).
    first: usize,
    per_user: usize,
}

impl LocalFleet {
    fn start(spec: &FleetSpec, first: usize, count: usize, announce_rounds: bool) -> Self {
        let per_user = spec.per_user.max(1);
        let users: Vec<String> = (first..first + count).map(|i| format!("u{}", i / per_user)).collect();
        let rec = Arc::new(Recorder::new(spec.record, count, announce_rounds));
        let stats = Arc::new(StreamStats::default());
        let plan = StreamPlan {
            bridges: spec.bridges.clone(),
            first,
            open_concurrency: spec.open_concurrency,
            open_timeout: spec.open_timeout,
            reconnect_until: spec.reconnect_secs.map(|s| Instant::now() + OPEN_ALL_TIMEOUT + secs(s)),
            resume: spec.resume,
        };
        let set = client::spawn_streams(&plan, users, Arc::clone(&rec) as Arc<dyn Sink>, Arc::clone(&stats));
        Self { _streams: set, stats, rec, first, per_user }
    }

    async fn settle(&self, n: usize) -> anyhow::Result<OpenSummary> {
        let settled = client::wait_settled(&self.stats, n, OPEN_ALL_TIMEOUT).await?;
        let summary = OpenSummary::from_stats(&self.stats, settled);
        self.rec.expected.store(summary.opened, Ordering::Relaxed);
        Ok(summary)
    }

    fn seq(&self, users: usize, total: u64) -> SeqSummary {
        let mut s = SeqSummary::default();
        for (i, slot) in self.rec.seq.iter().enumerate() {
            let got = lock(slot);
            let user = (self.first + i) / self.per_user;
            let sent = sent_to(user, users, total);
            let distinct: BTreeSet<u32> = got.iter().copied().collect();
            let in_range = distinct.iter().filter(|&&k| u64::from(k) < sent).count() as u64;
            let lost = sent - in_range.min(sent);
            let dup = got.len() as u64 - distinct.len() as u64;
            s.streams += 1;
            s.received += got.len() as u64;
            s.lost += lost;
            s.duplicated += dup;
            s.out_of_order += got.windows(2).filter(|w| w[1] < w[0]).count() as u64;
            s.streams_with_loss += usize::from(lost > 0);
            s.streams_with_duplicates += usize::from(dup > 0);
        }
        s
    }

    fn snap(&self) -> Value {
        json!({
            "t": "snap",
            "events": self.rec.events.load(Ordering::Relaxed),
            "ended": self.stats.ended.load(Ordering::Relaxed),
            "reconnects": self.stats.reconnects.load(Ordering::Relaxed),
            "reopen_failed": self.stats.reopen_failed.load(Ordering::Relaxed),
            "reconnect_us_sum": self.stats.reconnect_us_sum.load(Ordering::Relaxed),
            "reconnect_us_max": self.stats.reconnect_us_max.load(Ordering::Relaxed),
        })
    }
}

/// A worker child: its stdin for commands, its stdout lines parsed.
#[derive(Debug)]
pub(crate) struct Worker {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Rounds this worker said all its streams got.
    rounds_done: BTreeSet<u64>,
    streams: usize,
    index: usize,
}

impl Worker {
    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The next line of kind `t` (bounded); round announcements met on the way are kept.
    async fn expect(&mut self, t: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .map_err(|_| anyhow!("worker {} sent no {t:?} within {timeout:?}", self.index))?
                .ok_or_else(|| anyhow!("worker {} exited before sending {t:?}", self.index))?;
            match line["t"].as_str() {
                Some(k) if k == t => return Ok(line),
                Some("round") => {
                    self.rounds_done.insert(line["r"].as_u64().unwrap_or(u64::MAX));
                }
                Some("error") => bail!("worker {}: {}", self.index, line["msg"]),
                _ => bail!("worker {}: unexpected line {line}", self.index),
            }
        }
    }

    /// Takes the round announcements that arrived so far, without waiting.
    fn drain_rounds(&mut self) -> anyhow::Result<()> {
        while let Ok(line) = self.lines.try_recv() {
            match line["t"].as_str() {
                Some("round") => {
                    self.rounds_done.insert(line["r"].as_u64().unwrap_or(u64::MAX));
                }
                _ => bail!("worker {}: unexpected line {line}", self.index),
            }
        }
        Ok(())
    }
}

/// The streams of a run.
#[derive(Debug)]
pub(crate) enum Fleet {
    Local(LocalFleet),
    Remote { workers: Vec<Worker>, users: usize },
}

/// How many worker processes a run of `streams` streams uses: `--workers` if given; else
/// none (today's single-process run) with one bridge on one NATS and few enough streams
/// for this process, and enough to keep each under `--streams-per-worker` otherwise.
pub(crate) fn workers_for(
    explicit: Option<usize>,
    bridges: usize,
    nats_nodes: usize,
    streams: usize,
    per: usize,
) -> usize {
    if let Some(w) = explicit {
        return w;
    }
    let per = per.max(1);
    if bridges > 1 || nats_nodes > 1 || streams > per {
        streams.div_ceil(per).max(1)
    } else {
        0
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

impl Fleet {
    /// Opens the streams (workers all start opening at the same moment) and waits, bounded,
    /// until each opened or failed.
    pub(crate) async fn open(spec: &FleetSpec) -> anyhow::Result<(Self, OpenSummary)> {
        let n = spec.streams.max(1);
        let users = n.div_ceil(spec.per_user.max(1));
        if spec.workers == 0 {
            let local = LocalFleet::start(spec, 0, n, false);
            let summary = local.settle(n).await?;
            return Ok((Self::Local(local), summary));
        }
        let w = spec.workers.min(n);
        let exe = std::env::current_exe().context("cannot find this executable to start workers")?;
        let addrs = spec.bridges.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let mut workers = Vec::with_capacity(w);
        let mut first = 0;
        // --open-concurrency counts the opens in flight over all processes, as with one.
        let per_worker_concurrency = match spec.open_concurrency {
            usize::MAX => usize::MAX,
            c => c.div_ceil(w).max(1),
        };
        for index in 0..w {
            let count = n / w + usize::from(index < n % w);
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("worker")
                .args(["--addrs", &addrs])
                .args(["--first", &first.to_string(), "--count", &count.to_string()])
                .args(["--per-user", &spec.per_user.max(1).to_string()])
                .args(["--open-concurrency", &per_worker_concurrency.to_string()])
                .args(["--open-timeout", &spec.open_timeout.as_secs_f64().to_string()])
                .args(["--record", &spec.record.as_arg()])
                .args(["--source-net", &client::source_net().to_string()]);
            if let Some(s) = spec.reconnect_secs {
                cmd.args(["--reconnect-secs", &s.to_string()]);
            }
            if spec.resume {
                cmd.arg("--resume");
            }
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
            let mut child = cmd.spawn().context("cannot start a worker process")?;
            let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout pipe"))?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let v = serde_json::from_str::<Value>(&line)
                        .unwrap_or_else(|_| json!({"t": "error", "msg": format!("not JSON: {line}")}));
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            });
            workers.push(Worker { child, stdin, lines: rx, rounds_done: BTreeSet::new(), streams: count, index });
            first += count;
        }
        for wk in &mut workers {
            wk.expect("ready", READY_TIMEOUT).await?;
        }
        // Every worker fires at once: a storm is all streams of all processes together.
        let go = Instant::now();
        for wk in &mut workers {
            wk.send("go").await?;
        }
        let mut summary = OpenSummary::default();
        let mut sum_open_ms = 0.0;
        for wk in &mut workers {
            let v = wk.expect("open", OPEN_ALL_TIMEOUT + Duration::from_secs(30)).await?;
            let opened = v["opened"].as_u64().unwrap_or(0) as usize;
            summary.opened += opened;
            summary.failed += v["failed"].as_u64().unwrap_or(0) as usize;
            if let Some(f) = v["failures"].as_object() {
                for (k, c) in f {
                    *summary.failures.entry(k.clone()).or_default() += c.as_u64().unwrap_or(0) as usize;
                }
            }
            summary.last_open = summary.last_open.max(Duration::from_micros(v["last_open_us"].as_u64().unwrap_or(0)));
            sum_open_ms += v["open_mean_ms"].as_f64().unwrap_or(0.0) * opened as f64;
            summary.open_max_ms = summary.open_max_ms.max(v["open_max_ms"].as_f64().unwrap_or(0.0));
            summary.per_worker.push(json!({
                "streams": wk.streams,
                "opened": opened,
                "settled_s": (v["settled_us"].as_f64().unwrap_or(0.0) / 1e4).round() / 100.0,
                "failures": v["failures"],
            }));
        }
        summary.settled = go.elapsed();
        summary.open_mean_ms = sum_open_ms / summary.opened.max(1) as f64;
        Ok((Self::Remote { workers, users }, summary))
    }

    /// `bench` events received by every stream so far.
    pub(crate) async fn events(&mut self) -> anyhow::Result<u64> {
        Ok(self.snap().await?.0)
    }

    /// (events, streams ended, reconnects, reopenings that failed), summed.
    pub(crate) async fn snap(&mut self) -> anyhow::Result<(u64, usize, usize, usize)> {
        let s = self.snap_all().await?;
        Ok((s.events, s.ended, s.reconnects, s.reopen_failed))
    }

    /// Every counter of the streams, summed over the processes.
    pub(crate) async fn snap_all(&mut self) -> anyhow::Result<Snap> {
        let vals = match self {
            Self::Local(l) => vec![l.snap()],
            Self::Remote { workers, .. } => {
                for wk in workers.iter_mut() {
                    wk.send("snap").await?;
                }
                let mut vals = Vec::new();
                for wk in workers.iter_mut() {
                    vals.push(wk.expect("snap", ANSWER_TIMEOUT).await?);
                }
                vals
            }
        };
        let sum = |k: &str| vals.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum::<u64>();
        Ok(Snap {
            events: sum("events"),
            ended: sum("ended") as usize,
            reconnects: sum("reconnects") as usize,
            reopen_failed: sum("reopen_failed") as usize,
            reconnect_mean_ms: sum("reconnect_us_sum") as f64 / sum("reconnects").max(1) as f64 / 1000.0,
            reconnect_max_ms: vals.iter().map(|v| v["reconnect_us_max"].as_u64().unwrap_or(0)).max().unwrap_or(0)
                as f64
                / 1000.0,
        })
    }

    /// Waits (bounded) until round `r` reached every open stream; false on timeout.
    pub(crate) async fn wait_round(&mut self, r: usize, timeout: Duration) -> anyhow::Result<bool> {
        let started = Instant::now();
        loop {
            let done = match self {
                Self::Local(l) => l.rec.round_len(r) >= l.rec.expected.load(Ordering::Relaxed),
                Self::Remote { workers, .. } => {
                    for wk in workers.iter_mut() {
                        wk.drain_rounds()?;
                    }
                    workers.iter().all(|wk| wk.rounds_done.contains(&(r as u64)))
                }
            };
            if done {
                return Ok(true);
            }
            if started.elapsed() > timeout {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The latency histogram of the measured window, over every stream.
    pub(crate) async fn latency(&mut self) -> anyhow::Result<Histogram<u64>> {
        match self {
            Self::Local(l) => Ok(lock(&l.rec.latency).clone()),
            Self::Remote { workers, .. } => {
                let mut h = report::histogram();
                for wk in workers.iter_mut() {
                    wk.send("latency").await?;
                    let v = wk.expect("latency", ANSWER_TIMEOUT).await?;
                    for pair in v["hist"].as_array().into_iter().flatten() {
                        if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                            let _ = h.record_n(value.max(1), count);
                        }
                    }
                }
                Ok(h)
            }
        }
    }

    /// Per broadcast round, the latency (ns) of each receipt, over every stream.
    pub(crate) async fn rounds(&mut self) -> anyhow::Result<Vec<Vec<u64>>> {
        match self {
            Self::Local(l) => Ok(l.rec.rounds.iter().map(|v| lock(v).clone()).collect()),
            Self::Remote { workers, .. } => {
                let mut all: Vec<Vec<u64>> = Vec::new();
                for wk in workers.iter_mut() {
                    wk.send("rounds").await?;
                    let v = wk.expect("rounds", ANSWER_TIMEOUT).await?;
                    for (r, lats) in v["rounds"].as_array().into_iter().flatten().enumerate() {
                        if all.len() <= r {
                            all.resize_with(r + 1, Vec::new);
                        }
                        all[r].extend(lats.as_array().into_iter().flatten().filter_map(Value::as_u64));
                    }
                }
                Ok(all)
            }
        }
    }

    /// Lost and duplicated events per stream, `total` having been sent round-robin over the users.
    pub(crate) async fn seq(&mut self, total: u64) -> anyhow::Result<SeqSummary> {
        match self {
            Self::Local(l) => {
                let users = (l.first + l.rec.seq.len()).div_ceil(l.per_user);
                Ok(l.seq(users, total))
            }
            Self::Remote { workers, users } => {
                let mut s = SeqSummary::default();
                let users = *users;
                for wk in workers.iter_mut() {
                    wk.send(&format!("seq {users} {total}")).await?;
                    let v = wk.expect("seq", ANSWER_TIMEOUT).await?;
                    s.add(&SeqSummary::from_json(&v));
                }
                Ok(s)
            }
        }
    }

    /// RSS of the processes holding the streams (this one, or the workers summed), KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        match self {
            Self::Local(_) => crate::harness::rss_kib(std::process::id()).unwrap_or(0),
            Self::Remote { workers, .. } => {
                workers.iter().filter_map(|w| w.child.id()).filter_map(crate::harness::rss_kib).sum()
            }
        }
    }

    /// Worker processes (0 when the streams are in this process).
    pub(crate) fn worker_count(&self) -> usize {
        match self {
            Self::Local(_) => 0,
            Self::Remote { workers, .. } => workers.len(),
        }
    }

    /// Closes every stream: workers are told to quit and, failing that within a few
    /// seconds, killed.
    pub(crate) async fn close(self) {
        match self {
            Self::Local(l) => drop(l),
            Self::Remote { mut workers, .. } => {
                for wk in &mut workers {
                    let _ = wk.send("quit").await;
                }
                for wk in &mut workers {
                    if tokio::time::timeout(Duration::from_secs(5), wk.child.wait()).await.is_err() {
                        let _ = wk.child.kill().await;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The worker side.

/// `worker` (hidden): holds a slice of a run's streams for a coordinator.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// The bridges, comma-separated `IP:port`.
    #[arg(long)]
    addrs: String,
    /// Global number of this worker's first stream.
    #[arg(long)]
    first: usize,
    #[arg(long)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    per_user: usize,
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    #[arg(long, default_value_t = 30.0)]
    open_timeout: f64,
    #[arg(long)]
    record: String,
    #[arg(long)]
    source_net: u8,
    #[arg(long)]
    reconnect_secs: Option<f64>,
    #[arg(long)]
    resume: bool,
}

/// One JSON line on stdout (the coordinator reads nothing else from a worker's stdout).
fn emit(v: &Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The worker's life: `ready`, wait for `go`, open, report, then answer commands until
/// `quit` or the end of stdin.
pub(crate) async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    client::set_source_net(a.source_net);
    let bridges = a
        .addrs
        .split(',')
        .map(|s| s.parse::<SocketAddr>().with_context(|| format!("--addrs: {s:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if bridges.iter().any(|b| !b.ip().is_loopback()) {
        bail!("--addrs must be loopback addresses");
    }
    let spec = FleetSpec {
        bridges,
        streams: a.count,
        per_user: a.per_user,
        open_concurrency: a.open_concurrency,
        open_timeout: secs(a.open_timeout),
        reconnect_secs: a.reconnect_secs,
        resume: a.resume,
        record: Record::parse(&a.record)?,
        workers: 0,
    };
    // stdin is watched all the time: when it closes (the coordinator quit or died, even
    // while streams are still opening) this process ends at once, streams and all.
    let (tx, mut commands) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if tx.send(line).is_err() {
                return;
            }
        }
        std::process::exit(0);
    });
    emit(&json!({"t": "ready"}));
    match commands.recv().await {
        Some(l) if l.trim() == "go" => {}
        Some(l) => bail!("expected go, got {l:?}"),
        None => return Ok(()),
    }
    let fleet = LocalFleet::start(&spec, a.first, a.count, true);
    let summary = fleet.settle(a.count).await?;
    let mut open = summary.to_json();
    open["t"] = json!("open");
    emit(&open);
    // Bounded by the coordinator: it quits, closes stdin or dies (stdin closes then too).
    while let Some(line) = commands.recv().await {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("snap") => emit(&fleet.snap()),
            Some("latency") => {
                let h = lock(&fleet.rec.latency).clone();
                let pairs: Vec<[u64; 2]> =
                    h.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect();
                emit(&json!({"t": "latency", "hist": pairs}));
            }
            Some("rounds") => {
                let rounds: Vec<Vec<u64>> = fleet.rec.rounds.iter().map(|v| lock(v).clone()).collect();
                emit(&json!({"t": "rounds", "rounds": rounds}));
            }
            Some("seq") => {
                let users: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                let total: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let mut v = fleet.seq(users, total).to_json();
                v["t"] = json!("seq");
                emit(&v);
            }
            Some("quit") => break,
            _ => emit(&json!({"t": "error", "msg": format!("unknown command {line:?}")})),
        }
    }
    drop(fleet);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spreads_sent_events_round_robin() {
        assert_eq!((0..3).map(|u| sent_to(u, 3, 7)).collect::<Vec<_>>(), vec![3, 2, 2]);
        assert_eq!(sent_to(5, 10, 0), 0);
        assert_eq!(workers_for(None, 1, 1, 19_000, 17_000), 2);
        assert_eq!(workers_for(None, 1, 1, 1_000, 17_000), 0);
        assert_eq!(workers_for(None, 3, 1, 51_000, 17_000), 3);
        assert_eq!(workers_for(None, 3, 1, 100, 17_000), 1);
        assert_eq!(workers_for(Some(2), 1, 1, 100, 17_000), 2);
        for r in [Record::Count, Record::Latency, Record::Seq, Record::Broadcast { rounds: 4 }] {
            assert_eq!(Record::parse(&r.as_arg()).unwrap(), r);
        }
    }
}
