//! Chaos test of the delivery guarantees in history mode (docs/protocol.md §5):
//! nothing lost, nothing duplicated, nothing out of order, whatever happens to the bridges
//! and to NATS while events flow.
//!
//! Two tests, each a whole run with real processes on 127.0.0.1:
//! - `chaos_single_nats`: one nats-server (JetStream, file store), two bridge processes.
//! - `chaos_nats_cluster`: a 3-node JetStream cluster, the history stream replicated 3 times
//!   (`--history-replicas 3`), bridges given all three URLs.
//!
//! In each run a publisher (async-nats, JetStream publish, every ack awaited so each event's
//! stream sequence is known; about 3 % of the events published a second time with the same
//! `Nats-Msg-Id`, which must be delivered once) spreads events over the users at a steady
//! rate, with about 1 % broadcasts. Every user has a client task holding an SSE stream
//! (reqwest; events read with eventsource-stream and, in step, the SDK's own parser
//! `realtime_bridge_wire::SseParser`, which also gives the spec's "last event ID" (cursor)
//! including `id:`-only blocks); it records every event and every so often (0.5-4 s, or one
//! time in four 4-20 s, as a long-open tab) drops its connection and reconnects with its last
//! cursor (`Last-Event-ID`) to a random bridge among the current ones, retrying others with
//! backoff when one refuses or is gone. Meanwhile a chaos task SIGKILLs a bridge and starts a
//! new one (on a new port) several times, and kills (SIGKILL) and restarts NATS once on the
//! same port and store. In the cluster that is the node most bridges are connected to, made
//! the stream leader first or moved away from it first (a seeded coin): either a leader
//! election under load, or a leader that keeps storing while the bridges fail over.
//! Once the publisher is done, the test waits (bounded) until every client has caught up,
//! then prints per user: published, delivered, lost, duplicated, out-of-order (user events
//! must arrive with strictly increasing envelope ids; broadcasts are checked the same way on
//! their own), wrong (an event that was not published for this user, or a different payload)
//! and resets; and fails unless lost, duplicated, out-of-order, wrong and resets are all 0.
//! The last line is a one-line summary. Bridge logs, node logs and every client's connection
//! timeline are written to `target/tmp/chaos/<test>-<seed>/`.
//!
//! The short form (the defaults: 20 users, 2,000 events) runs with the README's test command
//! (`scripts/test.sh`, `cargo test --workspace`). The long form is run by hand: 100 users
//! and 20,000 events, published at 500 a second (about 40 s of publishing per topology),
//! with five bridge SIGKILLs instead of three besides the one NATS restart:
//!
//! ```text
//! CHAOS_USERS=100 CHAOS_EVENTS=20000 cargo test -p realtime-bridge --test chaos -- --nocapture
//! ```
//!
//! Knobs (environment variables):
//!
//! | variable | default | what |
//! | --- | --- | --- |
//! | `CHAOS_USERS` | 20 | users (one client each) |
//! | `CHAOS_EVENTS` | 2000 | events published (broadcasts included) |
//! | `CHAOS_RATE` | events/10, within 200..=500 | events per second |
//! | `CHAOS_KILLS` | max(3, events/4000) | bridge SIGKILLs (NATS is restarted once besides) |
//! | `CHAOS_SEED` | random (printed) | seed of every random choice: users, kills, reconnects |
//! | `CHAOS_DRAIN_SECS` | 20 | how long clients may take to catch up after the last publish |
//! | `CHAOS_LOG` | `info` | `RUST_LOG` of the bridges |
//!
//! To run one topology only, name its test: `... --test chaos chaos_nats_cluster -- --nocapture`.
//! `CHAOS_SEED` replays the same plan (who gets which event, which bridge is killed, when each
//! client reconnects and where); thread timing still differs from run to run.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use common::{BridgeProcess, BridgeProcessExt, NatsCluster, NatsServer, SECRET, WAIT};
use eventsource_stream::Eventsource;
use futures::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use realtime_bridge_wire::SseParser;
use tokio_util::sync::CancellationToken;

/// Both tests load the whole (2-core) machine: never run them at the same time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_single_nats() {
    let _serial = SERIAL.lock().await;
    run(Topology::Single).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nats_cluster() {
    let _serial = SERIAL.lock().await;
    run(Topology::Cluster).await;
}

// ---------------------------------------------------------------------------------------
// Parameters

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Single,
    Cluster,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Clone)]
struct Params {
    users: usize,
    events: usize,
    rate: f64,
    kills: usize,
    seed: u64,
    drain: Duration,
    log: String,
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value"))
        }
        _ => default,
    }
}

impl Params {
    fn from_env() -> Self {
        let users: usize = env_or("CHAOS_USERS", 20);
        let events: usize = env_or("CHAOS_EVENTS", 2000);
        assert!(users >= 1 && events >= 10, "CHAOS_USERS >= 1 and CHAOS_EVENTS >= 10");
        let rate: f64 = env_or("CHAOS_RATE", (events as f64 / 10.0).clamp(200.0, 500.0));
        assert!(rate > 0.0, "CHAOS_RATE > 0");
        Self {
            users,
            events,
            rate,
            kills: env_or("CHAOS_KILLS", (events / 4000).max(3)),
            seed: env_or("CHAOS_SEED", rand::random::<u64>() % 1_000_000_000),
            drain: Duration::from_secs(env_or("CHAOS_DRAIN_SECS", 20)),
            log: env_or("CHAOS_LOG", "info".to_owned()),
        }
    }

    fn publish_time(&self) -> Duration {
        Duration::from_secs_f64(self.events as f64 / self.rate)
    }
}

const USER_EVENTS: [&str; 4] = ["message_new", "transaction_completed", "notification_created", "typing_start"];
const BROADCAST_EVENT: &str = "system_alert";
const STREAM: &str = "REALTIME";
/// A client drops its connection after a random time in this range (ms) and resumes...
const DROP_AFTER_MS: (u64, u64) = (500, 4000);
/// ...or, one time in four, holds it longer (as a browser tab does), so a stream lives
/// through NATS and other bridges' trouble instead of resuming from history.
const HOLD_AFTER_MS: (u64, u64) = (4000, 20_000);
/// Backoff of a client whose connection attempt failed.
const BACKOFF_MS: (u64, u64) = (50, 1000);
/// Publishes in flight at once (each awaits its ack).
const IN_FLIGHT: usize = 64;

fn user_name(i: usize) -> String {
    format!("u{i:03}")
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// The plan (all from the seed) and what the publisher got back

#[derive(Debug, Clone)]
struct Planned {
    /// Serial number, carried in the payload as `n`.
    n: u64,
    /// `None`: a broadcast.
    user: Option<usize>,
    event: &'static str,
    /// Published a second time with the same `Nats-Msg-Id`.
    twice: bool,
}

fn plan(p: &Params, rng: &mut StdRng) -> Vec<Planned> {
    let every = 100; // about 1 % broadcasts, at least a few in any run
    (0..p.events)
        .map(|i| {
            let broadcast = i % every == every / 2 || (p.events < 5 * every && i % (p.events / 5).max(1) == 3);
            let user = if broadcast { None } else { Some(rng.random_range(0..p.users)) };
            let event = if broadcast { BROADCAST_EVENT } else { USER_EVENTS[rng.random_range(0..USER_EVENTS.len())] };
            Planned { n: i as u64, user, event, twice: rng.random_bool(0.03) }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Published {
    planned: Planned,
    seq: u64,
    /// The second publish was stored as a new message (JetStream did not deduplicate).
    second_seq: Option<u64>,
    /// When its (first) ack came, in seconds since the run started.
    acked_at: f64,
}

fn subject_of(p: &Planned) -> String {
    match p.user {
        Some(u) => format!("user.{}.{}", user_name(u), p.event),
        None => format!("broadcast.{}", p.event),
    }
}

fn payload_of(p: &Planned) -> Bytes {
    let v = match p.user {
        Some(u) => serde_json::json!({ "n": p.n, "u": user_name(u) }),
        None => serde_json::json!({ "n": p.n, "b": true }),
    };
    Bytes::from(v.to_string())
}

/// Publishes with `Nats-Msg-Id: msg_id` until acknowledged (bounded): `(sequence, duplicate)`.
async fn publish_acked(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: &Bytes,
) -> Result<(u64, bool), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(50);
    let mut last_err;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        let attempt = async {
            let ack = js
                .publish_with_headers(subject.to_owned(), headers, payload.clone())
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(ack) => return Ok((ack.sequence, ack.duplicate)),
            Err(e) => last_err = e,
        }
        if Instant::now() > deadline {
            return Err(format!("{subject} ({msg_id}) not acknowledged within 60 s: {last_err}"));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Publishes the plan at `rate` events per second, `IN_FLIGHT` at a time.
async fn publish_all(
    js: jetstream::Context,
    plan: Vec<Planned>,
    rate: f64,
    run_id: String,
    progress: Arc<Mutex<usize>>,
    t0: Instant,
) -> Result<Vec<Published>, String> {
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = tokio::task::JoinSet::new();
    for planned in plan {
        tick.tick().await;
        let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
        let js = js.clone();
        let msg_id = format!("{run_id}-{}", planned.n);
        let progress = Arc::clone(&progress);
        tasks.spawn(async move {
            let subject = subject_of(&planned);
            let payload = payload_of(&planned);
            let (seq, _) = publish_acked(&js, &subject, &msg_id, &payload).await?;
            let acked_at = secs(t0);
            let mut second_seq = None;
            if planned.twice {
                let (again, duplicate) = publish_acked(&js, &subject, &msg_id, &payload).await?;
                if !duplicate || again != seq {
                    second_seq = Some(again);
                }
            }
            drop(permit);
            *progress.lock().unwrap() += 1;
            Ok::<_, String>(Published { planned, seq, second_seq, acked_at })
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.map_err(|e| e.to_string())??);
    }
    out.sort_by_key(|p| p.seq);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The NATS side

enum Nats {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Nats {
    fn urls(&self) -> String {
        match self {
            Self::Single(s) => s.url(),
            Self::Cluster(c) => c.urls(),
        }
    }
}

/// Bridges: the live ones (clients pick among them) and the killed ones (kept for their logs).
#[derive(Default)]
struct Fleet {
    live: Vec<(usize, BridgeProcess)>,
    dead: Vec<(usize, BridgeProcess)>,
    started: usize,
}

impl Fleet {
    fn bases(&self) -> Vec<String> {
        self.live.iter().map(|(_, p)| p.base()).collect()
    }
}

fn bridge_args(urls: &str, topology: Topology) -> Vec<String> {
    let replicas = if topology == Topology::Cluster { "3" } else { "1" };
    [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--nats-url",
        urls,
        "--log-format",
        "json",
        "--jwt-secret",
        SECRET,
        "--history",
        "on",
        "--history-replicas",
        replicas,
        "--heartbeat",
        "2s",
        "--retry",
        "500",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn start_bridge(fleet: &Arc<Mutex<Fleet>>, args: &[String], log: &str) -> (usize, String) {
    let (args, log) = (args.to_vec(), log.to_owned());
    let p = tokio::task::spawn_blocking(move || BridgeProcess::start_args(&args, &[("RUST_LOG", log.as_str())]))
        .await
        .unwrap();
    let base = p.base();
    let mut f = fleet.lock().unwrap();
    f.started += 1;
    let id = f.started;
    f.live.push((id, p));
    (id, base)
}

/// Waits (bounded) until every live bridge answers `/readyz` 200; returns how long it took.
async fn bridges_ready(fleet: &Arc<Mutex<Fleet>>, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let http = reqwest::Client::new();
    while start.elapsed() < timeout {
        let bases = fleet.lock().unwrap().bases();
        let mut all = true;
        for b in &bases {
            let ok = tokio::time::timeout(Duration::from_secs(1), http.get(format!("{b}/readyz")).send())
                .await
                .is_ok_and(|r| r.is_ok_and(|r| r.status() == 200));
            all &= ok;
        }
        if all {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The chaos: bridge kills spread over the publishing time, one NATS bounce in the middle.
#[allow(clippy::too_many_arguments)]
async fn chaos(
    p: Params,
    nats: Arc<Mutex<Nats>>,
    fleet: Arc<Mutex<Fleet>>,
    args: Vec<String>,
    client: async_nats::Client,
    t0: Instant,
    t_pub: Instant,
    mut rng: StdRng,
) -> Vec<String> {
    let mut done = Vec::new();
    // `true`: the NATS bounce, in the middle of the bridge kills.
    let mut steps = vec![false; p.kills];
    steps.insert(p.kills / 2, true);
    let span = p.publish_time();
    let count = steps.len();
    for (step, is_nats) in steps.into_iter().enumerate() {
        let at = span.mul_f64((step + 1) as f64 / (count + 1) as f64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(t_pub + at)).await;
        if is_nats {
            let line = bounce_nats(&nats, &fleet, &client, &mut rng, t0).await;
            println!("{line}");
            done.push(line);
            continue;
        }
        // A bridge: SIGKILL, a moment with one bridge only, then a new one on a new port.
        let (id, mut victim) = {
            let mut f = fleet.lock().unwrap();
            let i = rng.random_range(0..f.live.len());
            f.live.remove(i)
        };
        let addr = victim.addr;
        victim.signal("KILL");
        let gone = victim.wait_exit_async(WAIT).await;
        assert!(gone.is_some(), "bridge #{id} did not die after SIGKILL");
        fleet.lock().unwrap().dead.push((id, victim));
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        let (new_id, base) = start_bridge(&fleet, &args, &p.log).await;
        let line =
            format!("[{:6.1}s] chaos: SIGKILL bridge #{id} ({addr}); started bridge #{new_id} at {base}", secs(t0));
        println!("{line}");
        done.push(line);
    }
    done
}

async fn bounce_nats(
    nats: &Arc<Mutex<Nats>>,
    fleet: &Arc<Mutex<Fleet>>,
    client: &async_nats::Client,
    rng: &mut StdRng,
    t0: Instant,
) -> String {
    let fallback = rng.random_range(0..3usize);
    // Either the node is also the stream leader (a new one must be elected and the
    // republished flow moves) or it is not (the leader keeps storing while the bridges
    // reconnect elsewhere, so they must fill what they missed): a seeded coin decides.
    let make_leader = rng.random_bool(0.5);
    // (Blocking HTTP to the monitoring ports: off the async workers.)
    let what = tokio::task::block_in_place(|| match &*nats.lock().unwrap() {
        Nats::Single(_) => None,
        Nats::Cluster(c) => {
            // The node most bridges are connected to, so that they must fail over.
            let conns: Vec<usize> = (0..c.nodes.len()).map(|i| c.connections_named(i, "realtime-bridge")).collect();
            let most = conns.iter().copied().max().unwrap_or(0);
            let target = if most == 0 { fallback } else { conns.iter().position(|n| *n == most).unwrap_or(fallback) };
            Some((target, c.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(), conns[target]))
        }
    });
    let mut leader_note = String::new();
    if let Some((target, names, _)) = &what {
        let leader_now = || {
            let n = nats.lock().unwrap();
            let Nats::Cluster(c) = &*n else { unreachable!() };
            c.stream_leader(STREAM)
        };
        let wanted = |l: Option<usize>| l.is_some() && (l == Some(*target)) == make_leader;
        let before = tokio::task::block_in_place(leader_now);
        if wanted(before) {
            leader_note = format!("{} the stream leader", if make_leader { "already" } else { "not" });
        } else {
            let preferred = if make_leader { *target } else { (*target + 1) % names.len() };
            let req = serde_json::json!({ "placement": { "preferred": names[preferred] } }).to_string();
            let subject = format!("$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}");
            let answer = tokio::time::timeout(Duration::from_secs(5), client.request(subject, req.into())).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut now = tokio::task::block_in_place(leader_now);
            while !wanted(now) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                now = tokio::task::block_in_place(leader_now);
            }
            leader_note = if wanted(now) {
                format!("stream leader moved {} it first", if make_leader { "to" } else { "away from" })
            } else {
                let answer = match answer {
                    Ok(Ok(m)) => String::from_utf8_lossy(&m.payload).into_owned(),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timeout".into(),
                };
                format!("could not move the stream leader (now {now:?}; stepdown answered {answer})")
            };
        }
    }
    let nats = Arc::clone(nats);
    let target = what.as_ref().map(|w| w.0);
    let done = tokio::task::spawn_blocking(move || {
        let mut n = nats.lock().unwrap();
        match &mut *n {
            Nats::Single(s) => {
                s.stop();
                std::thread::sleep(Duration::from_secs(1));
                s.restart();
                "nats-server killed (SIGKILL), down 1 s, restarted on its port and store".to_owned()
            }
            Nats::Cluster(c) => {
                let victim = target.unwrap_or(0);
                c.stop_node(victim);
                std::thread::sleep(Duration::from_secs(2));
                c.start_node(victim);
                let start = Instant::now();
                c.wait_healthy(victim, Duration::from_secs(60));
                format!("down 2 s, restarted; healthy after {:.1}s", start.elapsed().as_secs_f64())
            }
        }
    })
    .await
    .unwrap();
    let what = match what {
        None => done,
        Some((target, names, conns)) => {
            format!(
                "cluster node {} ({conns} bridge connections, {leader_note}) killed (SIGKILL), {done}",
                names[target]
            )
        }
    };
    let ready = bridges_ready(fleet, Duration::from_secs(30)).await;
    format!(
        "[{:6.1}s] chaos: {what}; bridges ready {}",
        secs(t0),
        ready.map_or("NOT within 30 s".to_owned(), |d| format!("after {:.1}s", d.as_secs_f64()))
    )
}

// ---------------------------------------------------------------------------------------
// Clients

/// One delivered event.
#[derive(Debug, Clone)]
struct Got {
    id: u64,
    n: u64,
    event: String,
    /// Index of the connection (in `UserLog::conns`) that delivered it.
    conn: usize,
}

/// One connection attempt of a client.
#[derive(Debug, Clone)]
struct Conn {
    at: f64,
    bridge: String,
    sent: Option<String>,
    status: String,
    events: u32,
    last_cursor: Option<String>,
    end: String,
    ended_at: f64,
}

#[derive(Debug, Default)]
struct UserLog {
    cursor: Option<String>,
    user_events: Vec<Got>,
    broadcasts: Vec<Got>,
    seen_user: HashSet<u64>,
    seen_broadcast: HashSet<u64>,
    resets: Vec<String>,
    /// Anything malformed: bad JSON, parsers disagreeing, wrong user id.
    problems: Vec<String>,
    conns: Vec<Conn>,
}

struct ClientCtx {
    user: String,
    token: String,
    fleet: Arc<Mutex<Fleet>>,
    log: Arc<Mutex<UserLog>>,
    stop: CancellationToken,
    http: reqwest::Client,
    t0: Instant,
}

async fn client(ctx: ClientCtx, mut rng: StdRng) {
    let mut backoff = BACKOFF_MS.0;
    // Bounded by `stop`, which the test always cancels (after the bounded drain).
    while !ctx.stop.is_cancelled() {
        let bases = ctx.fleet.lock().unwrap().bases();
        if bases.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let base = bases[rng.random_range(0..bases.len())].clone();
        let cursor = ctx.log.lock().unwrap().cursor.clone();
        let mut req = ctx.http.get(format!("{base}/v1/users/{}/events", ctx.user)).bearer_auth(&ctx.token);
        if let Some(c) = &cursor {
            req = req.header("Last-Event-ID", c);
        }
        let conn = {
            let mut log = ctx.log.lock().unwrap();
            log.conns.push(Conn {
                at: secs(ctx.t0),
                bridge: base.clone(),
                sent: cursor.clone(),
                status: String::new(),
                events: 0,
                last_cursor: None,
                end: String::new(),
                ended_at: 0.0,
            });
            log.conns.len() - 1
        };
        let sent = tokio::select! {
            () = ctx.stop.cancelled() => break,
            r = tokio::time::timeout(Duration::from_secs(5), req.send()) => r,
        };
        let failed = match sent {
            Ok(Ok(resp)) if resp.status() == 200 => {
                backoff = BACKOFF_MS.0;
                ctx.log.lock().unwrap().conns[conn].status = "200".into();
                let end = read_stream(&ctx, resp, conn, &mut rng).await;
                // Ended by the server or the network (a killed bridge): back off a little
                // before the next attempt, as a browser would; a drop of our own: at once.
                let server_ended = !end.starts_with("client dropped");
                let mut log = ctx.log.lock().unwrap();
                log.conns[conn].end = end;
                log.conns[conn].ended_at = secs(ctx.t0);
                server_ended
            }
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16().to_string();
                let body = tokio::time::timeout(Duration::from_secs(2), resp.text()).await.ok().and_then(Result::ok);
                let mut log = ctx.log.lock().unwrap();
                log.conns[conn].status = status;
                log.conns[conn].end = body.unwrap_or_default();
                log.conns[conn].ended_at = secs(ctx.t0);
                true
            }
            Ok(Err(e)) => {
                let mut log = ctx.log.lock().unwrap();
                log.conns[conn].status = "error".into();
                log.conns[conn].end = e.to_string();
                log.conns[conn].ended_at = secs(ctx.t0);
                true
            }
            Err(_) => {
                let mut log = ctx.log.lock().unwrap();
                log.conns[conn].status = "timeout".into();
                log.conns[conn].ended_at = secs(ctx.t0);
                true
            }
        };
        if failed {
            let wait = rng.random_range(backoff / 2..=backoff);
            backoff = (backoff * 2).min(BACKOFF_MS.1);
            tokio::select! {
                () = ctx.stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
    }
}

/// Reads one open stream until the client drops it, the server ends it, or `stop`.
/// Returns why it ended.
async fn read_stream(ctx: &ClientCtx, resp: reqwest::Response, conn: usize, rng: &mut StdRng) -> String {
    let mut body = resp.bytes_stream();
    // eventsource-stream reads the same bytes as the SDK's parser, chunk by chunk, so both
    // are always at the same point: a chunk's events are recorded before the cursor moves.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
    let mut es = rx.eventsource();
    let mut wire = SseParser::new();
    let range = if rng.random_bool(0.25) { HOLD_AFTER_MS } else { DROP_AFTER_MS };
    let drop_after = Duration::from_millis(rng.random_range(range.0..range.1));
    let drop_at = tokio::time::sleep(drop_after);
    tokio::pin!(drop_at);
    loop {
        let chunk = tokio::select! {
            () = ctx.stop.cancelled() => return "stopped".into(),
            () = &mut drop_at => return format!("client dropped it after {:.1}s", drop_after.as_secs_f64()),
            c = body.next() => c,
        };
        let bytes = match chunk {
            Some(Ok(b)) => b,
            Some(Err(e)) => return format!("read error: {e}"),
            None => return "ended by the server".into(),
        };
        let mut from_wire = Vec::new();
        wire.push(&bytes, &mut from_wire);
        tx.unbounded_send(Ok(bytes)).unwrap();
        let mut from_es = Vec::new();
        while let Some(Some(item)) = es.next().now_or_never() {
            match item {
                Ok(e) => from_es.push(e),
                Err(e) => return format!("eventsource-stream error: {e}"),
            }
        }
        let mut log = ctx.log.lock().unwrap();
        if from_es.len() != from_wire.len() {
            let p = format!("conn {conn}: parsers disagree: {} events vs {}", from_es.len(), from_wire.len());
            log.problems.push(p);
        }
        for (e, w) in from_es.iter().zip(&from_wire) {
            if e.event != w.event || e.data != w.data || e.id != w.id.clone().unwrap_or_default() {
                let p = format!("conn {conn}: parsers disagree: {e:?} vs {w:?}");
                log.problems.push(p);
            }
            record(&mut log, &ctx.user, conn, &e.event, &e.data, secs(ctx.t0));
        }
        // The spec's last event ID, which `id:`-only blocks move too.
        if let Some(id) = wire.last_event_id() {
            log.cursor = Some(id.to_owned());
            log.conns[conn].last_cursor = Some(id.to_owned());
        }
    }
}

fn record(log: &mut UserLog, user: &str, conn: usize, event: &str, data: &str, at: f64) {
    if event == "reset" {
        log.resets.push(format!("conn {conn} at {at:.1}s: {data}"));
        return;
    }
    log.conns[conn].events += 1;
    let env: serde_json::Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => {
            log.problems.push(format!("conn {conn}: data is not JSON ({e}): {data}"));
            return;
        }
    };
    let Some(id) = env["id"].as_str().and_then(|s| s.parse::<u64>().ok()) else {
        log.problems.push(format!("conn {conn}: envelope without a numeric id: {data}"));
        return;
    };
    let n = env["data"]["n"].as_u64().unwrap_or(u64::MAX);
    if env["event"] != event {
        log.problems.push(format!("conn {conn}: SSE event {event:?} but envelope {data}"));
    }
    let got = Got { id, n, event: event.to_owned(), conn };
    match env.get("userId") {
        None => {
            log.seen_broadcast.insert(id);
            log.broadcasts.push(got);
        }
        Some(u) => {
            if u != user {
                log.problems.push(format!("conn {conn}: an event of user {u} on {user}'s stream: {data}"));
            }
            log.seen_user.insert(id);
            log.user_events.push(got);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The check

#[derive(Debug, Default, Clone)]
struct Tally {
    published: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    wrong: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.published += o.published;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.wrong += o.wrong;
    }
}

/// Compares what a client got (in arrival order) with what was published for it.
/// `expected`: stream sequence → published event. Returns the tally and the lost sequences.
fn check(got: &[Got], expected: &HashMap<u64, &Published>, notes: &mut Vec<String>) -> (Tally, Vec<u64>) {
    let mut t = Tally {
        published: expected.values().map(|p| p.planned.n).collect::<HashSet<_>>().len(),
        delivered: got.len(),
        ..Tally::default()
    };
    let mut ids = HashSet::new();
    let mut serials = HashSet::new();
    let mut max = 0;
    for g in got {
        if !ids.insert(g.id) {
            t.duplicated += 1;
            notes.push(format!("id {} delivered again (conn {})", g.id, g.conn));
            continue;
        }
        match expected.get(&g.id) {
            None => {
                t.wrong += 1;
                notes.push(format!(
                    "id {} (n={}, {}) was not published for this stream (conn {})",
                    g.id, g.n, g.event, g.conn
                ));
            }
            Some(p) => {
                if p.planned.n != g.n || p.planned.event != g.event {
                    t.wrong += 1;
                    notes.push(format!(
                        "id {}: got n={} {} but published n={} {}",
                        g.id, g.n, g.event, p.planned.n, p.planned.event
                    ));
                }
                if !serials.insert(p.planned.n) {
                    t.duplicated += 1;
                    notes.push(format!(
                        "n={} delivered twice under another id ({}): Nats-Msg-Id duplicate stored?",
                        p.planned.n, g.id
                    ));
                }
            }
        }
        if g.id < max {
            t.out_of_order += 1;
            notes.push(format!("id {} after {} (conn {})", g.id, max, g.conn));
        } else {
            max = g.id;
        }
    }
    let mut lost: Vec<u64> = expected.keys().filter(|id| !ids.contains(id)).copied().collect();
    lost.sort_unstable();
    // A deduplication failure stores one event under two ids; getting either is enough.
    lost.retain(|id| {
        let n = expected[id].planned.n;
        !serials.contains(&n)
    });
    t.lost = lost.len();
    (t, lost)
}

struct Row {
    user: String,
    users: Tally,
    broadcasts: Tally,
    resets: usize,
    problems: usize,
    conns: usize,
    refused: usize,
    lost: Vec<u64>,
    notes: Vec<String>,
}

impl Row {
    fn bad(&self) -> bool {
        let (u, b) = (&self.users, &self.broadcasts);
        u.lost
            + u.duplicated
            + u.out_of_order
            + u.wrong
            + b.lost
            + b.duplicated
            + b.out_of_order
            + b.wrong
            + self.resets
            + self.problems
            > 0
    }
}

// ---------------------------------------------------------------------------------------
// The run

async fn run(topology: Topology) {
    let p = Params::from_env();
    let budget = p.publish_time() * 4 + p.drain + Duration::from_secs(180);
    match tokio::time::timeout(budget, run_inner(topology, p.clone())).await {
        Ok(()) => {}
        Err(_) => panic!("chaos {} did not finish within {budget:?} (seed {})", topology.name(), p.seed),
    }
}

async fn run_inner(topology: Topology, p: Params) {
    let t0 = Instant::now();
    let name = topology.name();
    println!(
        "chaos {name}: seed {} (replay with CHAOS_SEED={}), {} users, {} events at {}/s, {} bridge kills, 1 NATS restart",
        p.seed, p.seed, p.users, p.events, p.rate, p.kills
    );
    let mut rng = StdRng::seed_from_u64(p.seed);
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos").join(format!("{name}-{}", p.seed));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();

    // NATS and two bridges.
    let nats = tokio::task::spawn_blocking(move || match topology {
        Topology::Single => Nats::Single(NatsServer::start()),
        Topology::Cluster => Nats::Cluster(NatsCluster::start(3)),
    })
    .await
    .unwrap();
    let urls = nats.urls();
    let nats = Arc::new(Mutex::new(nats));
    println!("[{:6.1}s] NATS up: {urls}", secs(t0));
    let args = bridge_args(&urls, topology);
    let fleet = Arc::new(Mutex::new(Fleet::default()));
    for _ in 0..2 {
        let (id, base) = start_bridge(&fleet, &args, &p.log).await;
        println!("[{:6.1}s] bridge #{id} at {base}", secs(t0));
    }
    assert!(bridges_ready(&fleet, Duration::from_secs(30)).await.is_some(), "bridges not ready");

    // Clients: each must hold a cursor before anything is published.
    let users: Vec<String> = (0..p.users).map(user_name).collect();
    let logs: Vec<Arc<Mutex<UserLog>>> = users.iter().map(|_| Arc::default()).collect();
    let stop = CancellationToken::new();
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).build().unwrap();
    let mut clients = tokio::task::JoinSet::new();
    for (i, user) in users.iter().enumerate() {
        let ctx = ClientCtx {
            user: user.clone(),
            token: common::token(user),
            fleet: Arc::clone(&fleet),
            log: Arc::clone(&logs[i]),
            stop: stop.clone(),
            http: http.clone(),
            t0,
        };
        clients
            .spawn(client(ctx, StdRng::seed_from_u64(p.seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(i as u64 + 1)))));
    }
    common::eventually("every client to hold a cursor", Duration::from_secs(30), || {
        let all = logs.iter().all(|l| l.lock().unwrap().cursor.is_some());
        async move { all.then_some(()) }
    })
    .await;
    println!("[{:6.1}s] {} clients connected, each with a cursor", secs(t0), p.users);

    // Publisher and chaos, side by side.
    let pub_client = async_nats::ConnectOptions::new()
        .name("chaos-publisher")
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
        .connect(urls.split(',').map(|u| u.parse().unwrap()).collect::<Vec<async_nats::ServerAddr>>())
        .await
        .unwrap();
    let mut js = jetstream::new(pub_client.clone());
    js.set_timeout(Duration::from_secs(2));
    let the_plan = plan(&p, &mut rng);
    let progress = Arc::new(Mutex::new(0usize));
    let t_pub = Instant::now();
    let publisher = tokio::spawn(publish_all(
        js.clone(),
        the_plan,
        p.rate,
        format!("chaos-{}-{}", p.seed, rand::random::<u32>()),
        Arc::clone(&progress),
        t0,
    ));
    let chaos_rng = StdRng::seed_from_u64(rng.random());
    let chaos_task = tokio::spawn(chaos(
        p.clone(),
        Arc::clone(&nats),
        Arc::clone(&fleet),
        args.clone(),
        pub_client.clone(),
        t0,
        t_pub,
        chaos_rng,
    ));

    // How many JetStream consumers the stream has (catch-ups and gap fills create them).
    let max_consumers = Arc::new(Mutex::new(0usize));
    let monitor = {
        let (js, max_consumers, stop) = (js.clone(), Arc::clone(&max_consumers), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), js.get_stream(STREAM)).await {
                    let n = s.cached_info().state.consumer_count;
                    let mut m = max_consumers.lock().unwrap();
                    *m = (*m).max(n);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Progress while publishing.
    let mut publisher = publisher;
    let published = loop {
        tokio::select! {
            r = &mut publisher => break r.unwrap(),
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                let delivered: usize = logs.iter().map(|l| { let l = l.lock().unwrap(); l.user_events.len() + l.broadcasts.len() }).sum();
                let refused: usize = logs.iter().map(|l| l.lock().unwrap().conns.iter().filter(|c| !c.status.is_empty() && c.status != "200").count()).sum();
                println!(
                    "[{:6.1}s] published {}/{}, delivered {delivered}, refused attempts {refused}, stream consumers max {}",
                    secs(t0),
                    *progress.lock().unwrap(),
                    p.events,
                    *max_consumers.lock().unwrap()
                );
            }
        }
    };
    let chaos_done = chaos_task.await.unwrap();
    let published = match published {
        Ok(v) => v,
        Err(e) => panic!("publisher failed: {e}"),
    };
    let publish_secs = t_pub.elapsed().as_secs_f64();
    println!("[{:6.1}s] publisher done: {} events acknowledged in {publish_secs:.1}s", secs(t0), published.len());

    // Expected per user, and the broadcasts (every user gets every one).
    let mut expected_user: Vec<HashMap<u64, &Published>> = vec![HashMap::new(); p.users];
    let mut expected_broadcast: HashMap<u64, &Published> = HashMap::new();
    let mut dedup_failures = 0;
    for e in &published {
        let target = match e.planned.user {
            Some(u) => &mut expected_user[u],
            None => &mut expected_broadcast,
        };
        target.insert(e.seq, e);
        if let Some(s) = e.second_seq {
            dedup_failures += 1;
            target.insert(s, e);
        }
    }
    let sent_twice = published.iter().filter(|e| e.planned.twice).count();

    // Bounded wait for every client to have everything.
    let t_drain = Instant::now();
    let caught_up = |logs: &[Arc<Mutex<UserLog>>]| {
        logs.iter()
            .enumerate()
            .filter(|(i, l)| {
                let l = l.lock().unwrap();
                !(expected_user[*i].keys().all(|id| l.seen_user.contains(id))
                    && expected_broadcast.keys().all(|id| l.seen_broadcast.contains(id)))
            })
            .count()
    };
    let mut behind = caught_up(&logs);
    while behind > 0 && t_drain.elapsed() < p.drain {
        tokio::time::sleep(Duration::from_millis(100)).await;
        behind = caught_up(&logs);
    }
    let drain_secs = t_drain.elapsed().as_secs_f64();
    println!(
        "[{:6.1}s] {} after {drain_secs:.1}s",
        secs(t0),
        if behind == 0 {
            "every client caught up".to_owned()
        } else {
            format!("{behind} clients still behind (deadline)")
        }
    );
    // A moment more, so a late duplicate would be seen too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let joined = tokio::time::timeout(WAIT, async { while clients.join_next().await.is_some() {} }).await;
    assert!(joined.is_ok(), "client tasks did not stop");
    let _ = tokio::time::timeout(WAIT, monitor).await;

    // Tally.
    let mut rows = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let l = logs[i].lock().unwrap();
        let mut notes = Vec::new();
        let (ut, mut lost) = check(&l.user_events, &expected_user[i], &mut notes);
        let (bt, blost) = check(&l.broadcasts, &expected_broadcast, &mut notes);
        lost.extend(blost);
        notes.extend(l.problems.iter().cloned());
        notes.extend(l.resets.iter().map(|r| format!("reset: {r}")));
        for seq in lost.iter().take(5) {
            notes.push(explain_loss(
                *seq,
                &l,
                expected_user[i].get(seq).or_else(|| expected_broadcast.get(seq)).copied(),
            ));
        }
        rows.push(Row {
            user: user.clone(),
            users: ut,
            broadcasts: bt,
            resets: l.resets.len(),
            problems: l.problems.len(),
            conns: l.conns.iter().filter(|c| c.status == "200").count(),
            refused: l.conns.iter().filter(|c| c.status != "200").count(),
            lost,
            notes,
        });
    }

    // Lost events still in the stream? (Tells a bridge bug from a storage loss.)
    let mut lost_all: Vec<u64> = rows.iter().flat_map(|r| r.lost.iter().copied()).collect();
    lost_all.sort_unstable();
    lost_all.dedup();
    let mut in_stream = 0;
    let mut not_in_stream = Vec::new();
    if !lost_all.is_empty() {
        if let Ok(stream) = js.get_stream(STREAM).await {
            for seq in lost_all.iter().take(50) {
                match tokio::time::timeout(Duration::from_secs(2), stream.get_raw_message(*seq)).await {
                    Ok(Ok(_)) => in_stream += 1,
                    _ => not_in_stream.push(*seq),
                }
            }
        }
    }

    // Files for the investigation: bridge logs, node logs, client timelines.
    let (n_bridges, warn_lines) = write_artifacts(&out_dir, &fleet, &nats, &users, &logs, &published, &rows);

    // The table.
    let mut out = String::new();
    let _ = writeln!(out, "\nchaos {name}: per user (pub = user events + broadcasts published for the user; conns = streams opened, refused = failed attempts)");
    let _ = writeln!(
        out,
        "{:<6} {:>7} {:>7} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>7}",
        "user", "pub", "deliv", "lost", "dup", "ooo", "wrong", "resets", "conns", "refused"
    );
    let mut total_u = Tally::default();
    let mut total_b = Tally::default();
    let (mut resets, mut problems, mut conns, mut refused) = (0, 0, 0, 0);
    for r in &rows {
        let mut t = r.users.clone();
        t.add(&r.broadcasts);
        let _ = writeln!(
            out,
            "{:<6} {:>7} {:>7} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>7}  {}",
            r.user,
            t.published,
            t.delivered,
            t.lost,
            t.duplicated,
            t.out_of_order,
            t.wrong + r.problems,
            r.resets,
            r.conns,
            r.refused,
            if r.bad() { "FAIL" } else { "ok" }
        );
        total_u.add(&r.users);
        total_b.add(&r.broadcasts);
        resets += r.resets;
        problems += r.problems;
        conns += r.conns;
        refused += r.refused;
    }
    let mut total = total_u.clone();
    total.add(&total_b);
    let _ = writeln!(
        out,
        "{:<6} {:>7} {:>7} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>7}",
        "TOTAL",
        total.published,
        total.delivered,
        total.lost,
        total.duplicated,
        total.out_of_order,
        total.wrong + problems,
        resets,
        conns,
        refused
    );
    let _ = writeln!(
        out,
        "  user events: published {} (distinct), delivered {}, lost {}, duplicated {}, out-of-order {}, wrong {}",
        total_u.published, total_u.delivered, total_u.lost, total_u.duplicated, total_u.out_of_order, total_u.wrong
    );
    let _ = writeln!(
        out,
        "  broadcasts:  {} published x {} users = {}, delivered {}, lost {}, duplicated {}, out-of-order {}, wrong {}",
        expected_broadcast.values().map(|e| e.planned.n).collect::<HashSet<_>>().len(),
        p.users,
        total_b.published,
        total_b.delivered,
        total_b.lost,
        total_b.duplicated,
        total_b.out_of_order,
        total_b.wrong
    );
    let _ =
        writeln!(out, "  Nats-Msg-Id: {sent_twice} events published twice, {dedup_failures} stored twice by JetStream");
    let _ = writeln!(
        out,
        "  JetStream consumers on the stream: at most {} at once (server default limit 1000)",
        *max_consumers.lock().unwrap()
    );
    let _ = writeln!(out, "  chaos: {}", chaos_done.len());
    for c in &chaos_done {
        let _ = writeln!(out, "    {c}");
    }
    let _ = writeln!(
        out,
        "  bridges: {n_bridges} processes over the run, {warn_lines} WARN/ERROR log lines; files in {}",
        out_dir.display()
    );
    if !lost_all.is_empty() {
        let _ = writeln!(
            out,
            "  lost sequences: {} distinct (first {:?}); of the first {} checked, {} are still in the stream, {} are not: {:?}",
            lost_all.len(),
            &lost_all[..lost_all.len().min(20)],
            lost_all.len().min(50),
            in_stream,
            not_in_stream.len(),
            &not_in_stream[..not_in_stream.len().min(20)]
        );
    }
    let bad_rows: Vec<&Row> = rows.iter().filter(|r| r.bad()).collect();
    for r in bad_rows.iter().take(5) {
        let _ = writeln!(out, "  {}:", r.user);
        for note in r.notes.iter().take(8) {
            let _ = writeln!(out, "    {note}");
        }
    }
    let pass = total.lost == 0
        && total.duplicated == 0
        && total.out_of_order == 0
        && total.wrong == 0
        && resets == 0
        && problems == 0
        && behind == 0;
    let summary = format!(
        "chaos {name}: {} seed={} users={} published={} ({} of them broadcasts, x {} users) delivered={} lost={} duplicated={} out-of-order={} wrong={} resets={} bridge-kills={} {}=1 in {:.1}s",
        if pass { "PASS" } else { "FAIL" },
        p.seed,
        p.users,
        published.len(),
        expected_broadcast.len(),
        p.users,
        total.delivered,
        total.lost,
        total.duplicated,
        total.out_of_order,
        total.wrong + problems,
        resets,
        p.kills,
        if topology == Topology::Cluster { "nats-node-restarts" } else { "nats-restarts" },
        secs(t0)
    );
    let _ = writeln!(out, "{summary}");
    print!("{out}");
    let _ = std::fs::write(out_dir.join("report.txt"), &out);
    drop(nats);
    assert!(pass, "{summary}\n(details above and in {})", out_dir.display());
}

/// Where a lost event should have come from: the connection that was open when it was
/// stored and what it delivered around it.
fn explain_loss(seq: u64, log: &UserLog, published: Option<&Published>) -> String {
    let Some(p) = published else { return format!("lost {seq}") };
    let kind_events = if p.planned.user.is_some() { &log.user_events } else { &log.broadcasts };
    let before = kind_events.iter().filter(|g| g.id < seq).map(|g| (g.id, g.conn)).max();
    let after = kind_events.iter().filter(|g| g.id > seq).map(|g| (g.id, g.conn)).min();
    let conn = |c: usize| {
        let c = &log.conns[c];
        format!("{} {:.2}-{:.2}s", c.bridge.trim_start_matches("http://"), c.at, c.ended_at)
    };
    format!(
        "lost {seq} ({} n={}, acked at {:.2}s): delivered before it {}, after it {}",
        subject_of(&p.planned),
        p.planned.n,
        p.acked_at,
        before.map_or("nothing".into(), |(id, c)| format!("{id} on conn {c} ({})", conn(c))),
        after.map_or("nothing".into(), |(id, c)| format!("{id} on conn {c} ({})", conn(c))),
    )
}

/// Writes bridge logs, cluster node logs and client timelines; returns (bridges, WARN+ lines).
fn write_artifacts(
    dir: &std::path::Path,
    fleet: &Arc<Mutex<Fleet>>,
    nats: &Arc<Mutex<Nats>>,
    users: &[String],
    logs: &[Arc<Mutex<UserLog>>],
    published: &[Published],
    rows: &[Row],
) -> (usize, usize) {
    let f = fleet.lock().unwrap();
    let mut warn = 0;
    let mut n = 0;
    for (id, p) in f.live.iter().chain(f.dead.iter()) {
        let text = p.logs();
        warn += text.lines().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).count();
        let _ = std::fs::write(dir.join(format!("bridge-{id}-{}.log", p.addr.port())), text);
        n += 1;
    }
    if let Nats::Cluster(c) = &*nats.lock().unwrap() {
        for i in 0..c.nodes.len() {
            let _ = std::fs::copy(c.log_path(i), dir.join(format!("nats-{}.log", c.nodes[i].name)));
        }
    }
    let mut text = String::new();
    for (i, user) in users.iter().enumerate() {
        let l = logs[i].lock().unwrap();
        let _ = writeln!(text, "== {user}: {} user events, {} broadcasts", l.user_events.len(), l.broadcasts.len());
        for (k, c) in l.conns.iter().enumerate() {
            let ids: Vec<String> = l
                .user_events
                .iter()
                .map(|g| (g, 'u'))
                .chain(l.broadcasts.iter().map(|g| (g, 'b')))
                .filter(|(g, _)| g.conn == k)
                .map(|(g, kind)| format!("{kind}{}", g.id))
                .collect();
            let _ = writeln!(
                text,
                "  conn {k} at {:.2}s -> {} sent={:?} status={} events={} last_cursor={:?} ended {:.2}s: {} | {}",
                c.at,
                c.bridge,
                c.sent,
                c.status,
                c.events,
                c.last_cursor,
                c.ended_at,
                c.end,
                ids.join(" ")
            );
        }
        for note in &rows[i].notes {
            let _ = writeln!(text, "  ! {note}");
        }
        if !rows[i].lost.is_empty() {
            let _ = writeln!(text, "  ! lost: {:?}", rows[i].lost);
        }
    }
    let _ = std::fs::write(dir.join("clients.txt"), text);
    let mut pubs = String::new();
    for e in published {
        let _ = writeln!(
            pubs,
            "{} n={} {} twice={} second={:?}",
            e.seq,
            e.planned.n,
            subject_of(&e.planned),
            e.planned.twice,
            e.second_seq
        );
    }
    let _ = std::fs::write(dir.join("published.txt"), pubs);
    (n, warn)
}
