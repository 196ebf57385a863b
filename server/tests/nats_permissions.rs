//! The NATS permissions shipped in `deploy/nats/nats-server.conf`, on a real nats-server
//! started with that file and real bridge processes logged in as `bridge`:
//!
//! - every feature of the bridge works with the `bridge` user's permissions (history with
//!   resume and gap fill, live mode, `--subscribe shared`, presence over two bridges,
//!   `POST /v1/publish`, `/readyz`), and services work as `producer`;
//! - `producer` cannot forge the bridge's traffic (`rt.>`, `_RB.>`), answer presence
//!   requests, read the bridge's inboxes, or have the bridge answer onto its subjects.
//!
//! Each refusal has its control: a user without restrictions (`admin`, added to a copy of the
//! file for these tests only) does the same thing and it is observed.
//!
//! Also the bridge's NATS login: the URL, `--nats-user` with `--nats-password-file`, and
//! `--nats-creds` on a nats-server in operator (JWT) mode; bad values stop start-up, and the
//! password is never shown.
//!
//! Every test has its own nats-server; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

const BRIDGE_PASSWORD: &str = "bridge-pw-Zq3";
const PRODUCER_PASSWORD: &str = "producer-pw-K8v";
const ADMIN_PASSWORD: &str = "admin-pw-T5m";
const NOBODY_PASSWORD: &str = "nobody-pw-R2x";

/// The configuration as shipped.
fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf")
}

/// nats-server with the shipped configuration, plus two users that exist only here: `admin`
/// (no restrictions: the controls) and `nobody` (may publish nothing but its own inbox).
fn start_nats() -> NatsServer {
    let text = std::fs::read_to_string(shipped_config()).unwrap();
    let anchor = "    users = [\n";
    assert_eq!(text.matches(anchor).count(), 1, "the shipped configuration has one users list");
    let extra = "      { user: admin, password: $RB_TEST_ADMIN_PASSWORD }\n      \
                 { user: nobody, password: $RB_TEST_NOBODY_PASSWORD, permissions: { publish: \"_INBOX.>\", subscribe: \"_INBOX.>\" } }\n";
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats-server.conf");
    std::fs::write(&conf, text.replacen(anchor, &format!("{anchor}{extra}"), 1)).unwrap();
    NatsServer::start_with_config(
        &conf,
        &[
            ("RB_NATS_BRIDGE_PASSWORD", BRIDGE_PASSWORD),
            ("RB_NATS_PRODUCER_PASSWORD", PRODUCER_PASSWORD),
            ("RB_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RB_TEST_NOBODY_PASSWORD", NOBODY_PASSWORD),
        ],
    )
}

/// A client of one NATS user, with every error the server sent it.
struct User {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl User {
    async fn connect(nats: &NatsServer, user: &str, password: &str) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let client = async_nats::ConnectOptions::new()
            .user_and_password(user.into(), password.into())
            .event_callback(move |ev| {
                let sink = Arc::clone(&sink);
                async move {
                    if let async_nats::Event::ServerError(e) = ev {
                        sink.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        Self { client, errors }
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// Waits (bounded) for the server's permissions violation naming `what`, e.g.
    /// `publish to "rt.broadcast.forged"` or `subscription to "_RB.>"`.
    async fn refused(&self, what: &str) {
        let needle = format!("permissions violation for {what}").to_lowercase();
        let errors = Arc::clone(&self.errors);
        eventually(&format!("NATS to refuse {what}"), WAIT, || {
            let hit = errors.lock().unwrap().iter().any(|e| e.to_lowercase().contains(&needle));
            async move { hit.then_some(()) }
        })
        .await;
    }

    /// Returns once the server has processed everything sent before (own inbox echo).
    async fn round_trip(&self) {
        let inbox = self.client.new_inbox();
        let mut echo = self.client.subscribe(inbox.clone()).await.unwrap();
        self.client.publish(inbox, "".into()).await.unwrap();
        tokio::time::timeout(WAIT, echo.next()).await.expect("own inbox echo in time").unwrap();
    }
}

/// How a bridge process logs in as `bridge`.
enum Login<'a> {
    /// `RB_NATS_URL=nats://bridge:password@...` in its environment.
    Url,
    /// `--nats-user bridge --nats-password-file FILE`.
    PasswordFile(&'a Path),
}

fn start_bridge(nats: &NatsServer, login: Login<'_>, extra: &[&str]) -> BridgeProcess {
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--jwt-secret", SECRET]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let url_with_password = nats.url_as("bridge", BRIDGE_PASSWORD);
    let mut env = Vec::new();
    match login {
        Login::Url => env.push(("RB_NATS_URL", url_with_password.as_str())),
        Login::PasswordFile(file) => {
            args.extend(["--nats-url".into(), nats.url(), "--nats-user".into(), "bridge".into()]);
            args.extend(["--nats-password-file".into(), file.display().to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    BridgeProcess::start_args(&args, &env)
}

/// A bridge process with `extra` flags (its NATS login among them).
fn start_bridge_args(extra: &[&str]) -> BridgeProcess {
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--jwt-secret", SECRET]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    BridgeProcess::start_args(&args, &[])
}

fn password_file(dir: &Path) -> PathBuf {
    let file = dir.join("bridge.password");
    // With the newline an editor or `echo` leaves: not part of the password.
    std::fs::write(&file, format!("{BRIDGE_PASSWORD}\n")).unwrap();
    file
}

/// The bridge ran into no NATS refusal and never logged its password.
fn assert_clean_bridge(name: &str, bridge: &BridgeProcess) {
    let logs = bridge.logs();
    assert!(!logs.contains(BRIDGE_PASSWORD), "{name}: the password reached the logs:\n{logs}");
    assert!(!logs.contains("NATS refused an operation"), "{name}: NATS refused the bridge something:\n{logs}");
    assert!(!logs.to_lowercase().contains("permissions violation"), "{name}: permissions violation:\n{logs}");
}

/// The server's log has no violation by `bridge`. Made to fail first: the producer forges
/// one publish, and the log must show it, so the log is known to be written and read.
async fn assert_no_bridge_violation(nats: &NatsServer) {
    let producer = User::connect(nats, "producer", PRODUCER_PASSWORD).await;
    producer.client.publish("rt.broadcast.probe", "1".into()).await.unwrap();
    producer.refused("publish to \"rt.broadcast.probe\"").await;
    eventually("the server to log the producer's violation", WAIT, || {
        let log = nats.log_text();
        async move { log.lines().any(|l| l.contains("user:producer") && l.contains("Violation")).then_some(()) }
    })
    .await;
    let log = nats.log_text();
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("user:bridge") && l.contains("Violation")).collect();
    assert!(bad.is_empty(), "the bridge hit permission violations:\n{}", bad.join("\n"));
}

/// Presence over HTTP with a presence-scoped token.
async fn presence(base: &str, user: &str) -> Value {
    presence_http(base, user, &token_with("svc", false, &["presence"])).await
}

async fn assert_ready(name: &str, base: &str) {
    let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(resp.status(), 200, "{name} /readyz: {}", resp.text().await.unwrap_or_default());
}

/// The user-stream sequence of a cursor `user:broadcast`.
fn user_seq(id: &str) -> u64 {
    id.split(':').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a cursor: {id:?}"))
}

async fn next_hello(hellos: &mut async_nats::Subscriber) -> String {
    let msg = tokio::time::timeout(WAIT, hellos.next()).await.expect("a hello in time").unwrap();
    String::from_utf8_lossy(&msg.payload).into_owned()
}

async fn js_publish(js: &jetstream::Context, subject: &str, payload: &str) -> u64 {
    let ack = js.publish(subject.to_owned(), payload.to_owned().into()).await.unwrap();
    tokio::time::timeout(WAIT, ack).await.expect("JetStream ack in time").expect("JetStream ack").sequence
}

// ---------------------------------------------------------------------------------------
// 1. History mode as `bridge`, services as `producer`

#[tokio::test]
async fn history_mode_works_with_the_bridge_and_producer_users() {
    let nats = start_nats();
    let dir = tempfile::tempdir().unwrap();
    // One bridge logs in with the URL, the other with a password file.
    let a = start_bridge(&nats, Login::Url, &["--history", "on"]);
    let b = start_bridge(&nats, Login::PasswordFile(&password_file(dir.path())), &["--history", "on"]);
    let producer = User::connect(&nats, "producer", PRODUCER_PASSWORD).await;
    let js = jetstream::new(producer.client.clone());

    // Live delivery of what a producer publishes (JetStream-acked: the ack needs its inbox).
    let mut s1 = SseClient::open(&a.base(), "42", "", Some(&token("42"))).await;
    let seq1 = js_publish(&js, "user.42.message_new", r#"{"n":1}"#).await;
    let e = s1.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("message_new", seq1));
    assert_eq!(envelope(&e)["data"], json!({"n": 1}));
    publish(&producer.client, "broadcast.alert", r#""maintenance""#).await;
    let e = s1.next().await;
    assert_eq!(e.event, "alert");
    let last_id = e.id.clone();
    drop(s1);

    // Resume on the other bridge with Last-Event-ID: what was missed comes from history
    // (an ordered consumer over user.42.* and broadcast.*).
    let seq2 = js_publish(&js, "user.42.message_new", r#"{"n":2}"#).await;
    let seq3 = js_publish(&js, "user.42.message_new", r#"{"n":3}"#).await;
    let mut s2 = SseClient::resume(&b.base(), "42", &last_id, &token("42")).await;
    for (seq, n) in [(seq2, 2), (seq3, 3)] {
        let e = s2.next().await;
        assert_eq!((e.event.as_str(), user_seq(&e.id)), ("message_new", seq), "resumed after {last_id}");
        assert_eq!(envelope(&e)["data"], json!({ "n": n }));
    }

    // POST /v1/publish on either bridge (JetStream-acked into _RB.inbox).
    let resp =
        post_publish(&a.base(), &publisher_token(), &json!({"users": ["42"], "event": "via_http", "data": {"x": 1}}))
            .await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    assert_eq!(s2.next().await.event, "via_http");
    let resp =
        post_publish(&b.base(), &publisher_token(), &json!({"broadcast": true, "event": "news", "data": "b"})).await;
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    assert_eq!(s2.next().await.event, "news");

    // Gap fill: user 43's new channel on B sees its first event after another user's, so it
    // reads the range in between from history (an ordered consumer filtered on user.43.*).
    let mut s43 = SseClient::open(&b.base(), "43", "", Some(&token("43"))).await;
    js_publish(&js, "user.42.message_new", r#"{"n":4}"#).await;
    let seq43 = js_publish(&js, "user.43.message_new", r#"{"n":1}"#).await;
    let e = s43.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("message_new", seq43));
    assert_eq!(user_seq(&s2.next().await.id), seq43 - 1);

    // Presence sums both bridges, over HTTP (either bridge) and over NATS as a producer.
    let _s3 = SseClient::open(&a.base(), "42", "", Some(&token("42"))).await;
    let two = json!({"userId": "42", "connected": true, "streams": 2});
    let (base_a, want) = (a.base(), two.clone());
    eventually("A to count both bridges' streams", WAIT, || {
        let (base_a, want) = (base_a.clone(), want.clone());
        async move { (counts(&presence(&base_a, "42").await) == want).then_some(()) }
    })
    .await;
    assert_eq!(counts(&presence(&b.base(), "42").await), two);
    assert_eq!(counts(&presence_nats(&producer.client, "42").await), two);

    assert_ready("A", &a.base()).await;
    assert_ready("B", &b.base()).await;
    assert!(producer.errors().is_empty(), "the producer was refused something: {:?}", producer.errors());
    assert!(a.logs().contains("bridge:***@127.0.0.1"), "A logs its NATS URL without the password");
    assert_clean_bridge("A", &a);
    assert_clean_bridge("B", &b);
    assert_no_bridge_violation(&nats).await;
}

/// The producer library (crate `realtime-bridge-producer`) as `producer`: it may look the
/// stream up, so it publishes acknowledged through JetStream, receives its acks on `_INBOX`,
/// and asks for presence; `realtime-bridge send` does the same.
#[tokio::test]
async fn the_producer_library_publishes_acked_as_the_producer_user() {
    use realtime_bridge_producer::{Mode, Options, RealtimeService, SendOptions};

    let nats = start_nats();
    let bridge = start_bridge(&nats, Login::Url, &["--history", "on"]);
    let producer = User::connect(&nats, "producer", PRODUCER_PASSWORD).await;
    let rt = RealtimeService::with_client(producer.client.clone(), Options::default()).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream, "the producer may look the stream up");
    let mut s = SseClient::open(&bridge.base(), "42", "?clientId=tab-1", Some(&token("42"))).await;

    rt.send_event_to_user("42", "acked", &json!({"n": 1})).await.unwrap();
    let e = s.next().await;
    assert_eq!((e.event.as_str(), &envelope(&e)["data"]), ("acked", &json!({"n": 1})));
    // Acknowledged means stored: the stream holds it (read as admin).
    let admin = User::connect(&nats, "admin", ADMIN_PASSWORD).await;
    let info = jetstream::new(admin.client.clone()).get_stream("REALTIME").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.state.messages, 1);
    let once = SendOptions::msg_id("perm-1");
    for _ in 0..2 {
        rt.send_event_to_users_with(["42", "43"], "once", &1, &once).await.unwrap();
    }
    assert_eq!(s.next().await.event, "once");
    assert_eq!(rt.get_connected_clients("42").await.unwrap(), ["tab-1"]);

    // `send` as producer, in history mode: acknowledged too.
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("producer.password");
    std::fs::write(&pw, PRODUCER_PASSWORD).unwrap();
    let url = nats.url();
    let args = ["send", "--nats-url", &url, "--nats-user", "producer", "--nats-password-file"];
    let mut args: Vec<&str> = args.to_vec();
    let pw = pw.display().to_string();
    args.extend([pw.as_str(), "--user", "42", "--event", "from_cli", "2"]);
    let ran = run_bin(&args, &[]);
    assert_eq!(ran.code(), Some(0), "send as producer: {}", ran.stderr);
    assert_eq!(s.next().await.event, "from_cli");
    let mut stream = jetstream::new(admin.client.clone()).get_stream("REALTIME").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 4, "acked, once, once (43), from_cli");

    rt.close().await.unwrap();
    assert!(producer.errors().is_empty(), "the producer was refused something: {:?}", producer.errors());
    assert_clean_bridge("bridge", &bridge);
}

// ---------------------------------------------------------------------------------------
// 2. What `producer` may not do, each with its control as `admin`

#[tokio::test]
async fn a_producer_cannot_forge_or_read_the_bridges_traffic() {
    let nats = start_nats();
    let bridge = start_bridge(&nats, Login::Url, &["--history", "on"]);
    let instance = instance_of(&bridge).await;
    let producer = User::connect(&nats, "producer", PRODUCER_PASSWORD).await;
    let admin = User::connect(&nats, "admin", ADMIN_PASSWORD).await;
    let (js, admin_js) = (jetstream::new(producer.client.clone()), jetstream::new(admin.client.clone()));

    // Observers without restrictions: what a producer would see, were it allowed.
    let mut hellos = admin.client.subscribe("_RB.presence.hello").await.unwrap();
    let mut bridge_inbox = admin.client.subscribe("_RB.inbox.>").await.unwrap();
    let mut requests = admin.client.subscribe("realtime.presence.*").await.unwrap();
    admin.round_trip().await;

    let mut s = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    let before = js_publish(&js, "user.42.before", "1").await;
    assert_eq!(s.next().await.event, "before");

    // What permissions cannot stop: a producer's own events may carry a forged
    // Nats-Sequence. The stream appends the real one, and the bridge reads that: the event
    // gets its stored sequence, and later events are not skipped as already delivered.
    let mut forged = async_nats::HeaderMap::new();
    forged.insert("Nats-Sequence", (before + 1000).to_string().as_str());
    forged.insert("Nats-Time-Stamp", "2030-01-01T00:00:00Z");
    let mut stored = Vec::new();
    for subject in ["user.42.own_header", "broadcast.own_header"] {
        let ack = js.publish_with_headers(subject, forged.clone(), "0".into()).await.unwrap();
        stored.push(tokio::time::timeout(WAIT, ack).await.unwrap().unwrap().sequence);
    }
    let e = s.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("own_header", stored[0]), "{}", e.id);
    assert!(!envelope(&e)["timestamp"].as_str().unwrap().starts_with("2030"), "{}", e.data);
    let e = s.next().await;
    assert_eq!(e.event, "own_header");
    // `u:b`: the broadcast's own sequence, and a user position from the user event on (the
    // shared dispatch knows the user had nothing up to the broadcast either).
    let (u, b) = e.id.split_once(':').unwrap_or_else(|| panic!("not a cursor: {:?}", e.id));
    assert_eq!(b.parse::<u64>().ok(), Some(stored[1]), "the broadcast's own sequence: {}", e.id);
    assert!((stored[0]..=stored[1]).contains(&user_seq(&e.id)), "user position {u} in {}", e.id);

    // Forged publishes: the bridge's republished copies (with a sequence far ahead, which
    // would also make the stream skip every real event up to it), its presence traffic,
    // its inbox (a fake count answer), and the JetStream API.
    let forged_seq = (before + 1000).to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Sequence", forged_seq.as_str());
    headers.insert("Nats-Time-Stamp", "2030-01-01T00:00:00Z");
    for subject in ["rt.broadcast.forged", "rt.user.42.forged"] {
        producer.client.publish_with_headers(subject, headers.clone(), r#""forged""#.into()).await.unwrap();
    }
    producer.client.publish("_RB.presence.hello", "fake-peer".into()).await.unwrap();
    producer.client.publish("_RB.presence.bye", instance.clone().into()).await.unwrap();
    producer.client.publish_with_reply("_RB.presence.count.42", producer.client.new_inbox(), "".into()).await.unwrap();
    producer.client.publish("_RB.inbox.fake.1", r#"{"instance":"fake","streams":99}"#.into()).await.unwrap();
    producer.client.publish("$JS.API.STREAM.PURGE.REALTIME", "".into()).await.unwrap();
    for subject in [
        "rt.broadcast.forged",
        "rt.user.42.forged",
        "_RB.presence.hello",
        "_RB.presence.bye",
        "_RB.presence.count.42",
        "_RB.inbox.fake.1",
        "$JS.API.STREAM.PURGE.REALTIME",
    ] {
        producer.refused(&format!("publish to \"{subject}\"")).await;
    }

    // Subscriptions: presence requests (plain or as the bridges' queue group, so it cannot
    // answer them), the bridges' presence traffic and inboxes, the republished copies.
    let mut held = Vec::new();
    for subject in
        ["realtime.presence.*", "realtime.presence.>", "_RB.>", "_RB.presence.count.*", "_RB.inbox.>", "rt.>", ">"]
    {
        held.push(producer.client.subscribe(subject).await.unwrap());
        producer.refused(&format!("subscription to \"{subject}\"")).await;
    }
    held.push(producer.client.queue_subscribe("realtime.presence.*", "realtime-bridge".into()).await.unwrap());
    eventually("NATS to refuse the queue subscription too", WAIT, || {
        let n = producer.errors().iter().filter(|e| e.contains("realtime.presence.*")).count();
        async move { (n >= 2).then_some(()) }
    })
    .await;

    // Requests whose reply subject would have the bridge publish where the producer may not:
    // the bridge ignores them (and NATS would refuse the purge to the bridge too).
    for reply in ["$JS.API.STREAM.PURGE.REALTIME", "_RB.presence.hello", "rt.broadcast.reflected", "user.42.reflected"]
    {
        producer.client.publish_with_reply("realtime.presence.42", reply, "".into()).await.unwrap();
    }
    // Answered in order after those: the bridge took every request before this one.
    let one = json!({"userId": "42", "connected": true, "streams": 1});
    assert_eq!(counts(&presence_nats(&producer.client, "42").await), one);

    // Nothing forged or reflected reached the stream: the next event is the next real one.
    let after = js_publish(&js, "user.42.after", "2").await;
    let e = s.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("after", after), "forged or reflected event first?");
    let kept = admin_js.get_stream("REALTIME").await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(kept, 4, "the stream keeps every event (nothing purged)");
    // The bridge still knows itself alone (no fake peer, no bye taken for real): presence
    // answers from its own count.
    assert_eq!(counts(&presence(&bridge.base(), "42").await), one);

    // Controls, as admin. The producer's request was seen by a subscriber of
    // realtime.presence.*, which could have answered it.
    let req = tokio::time::timeout(WAIT, requests.next()).await.expect("a presence request seen").unwrap();
    assert_eq!(req.subject.as_str(), "realtime.presence.42");
    // The bridge's replies go to _RB.inbox (its own prefix), where a reader sees them: a
    // JetStream ack of POST /v1/publish, for one.
    let resp =
        post_publish(&bridge.base(), &publisher_token(), &json!({"users": ["7"], "event": "ping", "data": 1})).await;
    assert_eq!(resp.status(), 202);
    let seen = tokio::time::timeout(WAIT, bridge_inbox.next()).await.expect("bridge inbox traffic seen").unwrap();
    assert!(seen.subject.starts_with("_RB.inbox."), "{}", seen.subject);
    // A hello from admin is seen, and makes the bridge announce itself at once; every hello
    // seen before the bridge's is from one of them: no fake peer, no reflected answer.
    admin.client.publish("_RB.presence.hello", "control-peer".into()).await.unwrap();
    let mut seen_hellos: Vec<String> = Vec::new();
    loop {
        let h = next_hello(&mut hellos).await;
        seen_hellos.push(h.clone());
        if h == "control-peer" {
            break;
        }
    }
    // Whatever the bridge published there before (a reflected answer) came before this.
    while seen_hellos.last() != Some(&instance) {
        seen_hellos.push(next_hello(&mut hellos).await);
    }
    assert!(seen_hellos.iter().all(|h| *h == instance || h == "control-peer"), "{seen_hellos:?}");
    // The same forgery by a user without restrictions: what only the permissions prevent.
    // With per-user subscriptions a channel sees only its own events, so a re-published copy
    // carrying a sequence the store holds but the channel has not passed yet (here another
    // user's event) reaches its streams.
    let per_user = start_bridge(&nats, Login::Url, &["--history", "on", "--subscribe", "per-user"]);
    let mut p = SseClient::open(&per_user.base(), "42", "", Some(&token("42"))).await;
    let held_seq = js_publish(&js, "user.7.elsewhere", "3").await.to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Sequence", held_seq.as_str());
    admin.client.publish_with_headers("rt.broadcast.forged", headers, r#""forged""#.into()).await.unwrap();
    let e = p.next().await;
    assert_eq!(e.event, "forged", "the control forgery reached the per-user bridge's stream");
    // The shared dispatch (the default in history mode) sees every stored sequence in order:
    // it had passed that one, and drops the copy; the next event is the next real one.
    let real = js_publish(&js, "user.42.real", "4").await;
    let e = s.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("real", real), "the forgery reached the shared dispatch");
    assert!(admin.errors().is_empty(), "admin was refused something: {:?}", admin.errors());

    let log = nats.log_text();
    assert!(log.lines().any(|l| l.contains("user:producer") && l.contains("Publish Violation")), "{log}");
    assert_clean_bridge("bridge", &bridge);
    assert_clean_bridge("per-user bridge", &per_user);
    drop(held);
}

// ---------------------------------------------------------------------------------------
// 3. Live mode, --subscribe shared, and `realtime-bridge send`

#[tokio::test]
async fn live_mode_shared_subscription_and_send_work_with_these_users() {
    let nats = start_nats();
    let dir = tempfile::tempdir().unwrap();
    let live = start_bridge(&nats, Login::PasswordFile(&password_file(dir.path())), &["--history", "off"]);
    let shared = start_bridge(&nats, Login::Url, &["--history", "off", "--subscribe", "shared"]);
    let producer = User::connect(&nats, "producer", PRODUCER_PASSWORD).await;
    let mut streams = [
        SseClient::open(&live.base(), "42", "", Some(&token("42"))).await,
        SseClient::open(&shared.base(), "42", "", Some(&token("42"))).await,
    ];

    publish(&producer.client, "user.42.ping", "1").await;
    publish(&producer.client, "broadcast.hello", "2").await;
    for s in &mut streams {
        // Live mode keeps order per channel only: a user event and a broadcast may swap.
        let mut got = [s.next().await.event, s.next().await.event];
        got.sort();
        assert_eq!(got, ["hello", "ping"]);
    }
    // POST /v1/publish on each (confirmed by a round trip through _RB.inbox).
    for (name, base) in [("live", live.base()), ("shared", shared.base())] {
        let resp = post_publish(
            &base,
            &publisher_token(),
            &json!({"users": ["42"], "event": format!("from_{name}"), "data": 1}),
        )
        .await;
        assert_eq!(resp.status(), 202, "{name}: {}", resp.text().await.unwrap_or_default());
        for s in &mut streams {
            assert_eq!(s.next().await.event, format!("from_{name}"));
        }
    }
    let two = json!({"userId": "42", "connected": true, "streams": 2});
    let client = producer.client.clone();
    eventually("presence over both live bridges", WAIT, || {
        let (client, want) = (client.clone(), two.clone());
        async move { (counts(&presence_nats(&client, "42").await) == want).then_some(()) }
    })
    .await;
    assert_ready("live", &live.base()).await;
    assert_ready("shared", &shared.base()).await;

    // `send` as producer, its password in a file.
    let producer_pw = dir.path().join("producer.password");
    std::fs::write(&producer_pw, PRODUCER_PASSWORD).unwrap();
    let url = nats.url();
    let send = |user: &str, pw: &str, event: &str| {
        let args = ["send", "--nats-url", &url, "--nats-user", user, "--nats-password-file", pw, "--user", "42"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--event", event, "1"]);
        run_bin(&args, &[])
    };
    let ran = send("producer", &producer_pw.display().to_string(), "from_cli");
    assert_eq!(ran.code(), Some(0), "send as producer: {}", ran.stderr);
    for s in &mut streams {
        assert_eq!(s.next().await.event, "from_cli");
    }
    // A user that may not publish events, nor look the history stream up (`send` does that
    // first): `send` reports whichever refusal the server sends first (77), nothing arrives.
    let nobody = dir.path().join("nobody.password");
    std::fs::write(&nobody, NOBODY_PASSWORD).unwrap();
    let ran = send("nobody", &nobody.display().to_string(), "refused");
    assert_eq!(ran.code(), Some(77), "send as nobody: {}", ran.stderr);
    let err = ran.stderr.to_lowercase();
    assert!(
        err.contains("permissions violation for publish to \"user.42.refused\"")
            || (err.contains("permissions violation for publish to \"$js.api.stream.info.realtime\"")
                && err.contains("deploy/nats/readme.md")),
        "{}",
        ran.stderr
    );
    // A wrong password: refused at connect (77), and never echoed.
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password-Q9").unwrap();
    let ran = send("producer", &wrong.display().to_string(), "wrong");
    assert_eq!(ran.code(), Some(77), "send with a wrong password: {}", ran.stderr);
    assert!(
        ran.stderr.contains("refused the connection") && !ran.stderr.contains("not-the-password-Q9"),
        "{}",
        ran.stderr
    );
    publish(&producer.client, "user.42.after_refused", "3").await;
    for s in &mut streams {
        assert_eq!(s.next().await.event, "after_refused", "a refused send reached a stream");
    }

    // A bridge with a wrong password says so, and is not ready.
    let wrong_url = nats.url_as("bridge", "not-the-password-Q9");
    let wrong = BridgeProcess::start_args(
        &["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--jwt-secret", SECRET, "--history", "off"]
            .map(str::to_owned),
        &[("RB_NATS_URL", wrong_url.as_str())],
    );
    eventually("the refused login in the log", WAIT, || {
        let logs = wrong.logs();
        async move { logs.contains("NATS refused the login").then_some(()) }
    })
    .await;
    assert_eq!(reqwest::get(format!("{}/readyz", wrong.base())).await.unwrap().status(), 503);
    assert!(!wrong.logs().contains("not-the-password-Q9"), "{}", wrong.logs());

    assert_clean_bridge("live", &live);
    assert_clean_bridge("shared", &shared);
    assert_no_bridge_violation(&nats).await;
}

// ---------------------------------------------------------------------------------------
// 4. The shipped file: passwords only from the environment

#[test]
fn the_shipped_configuration_takes_its_passwords_from_the_environment() {
    let conf = shipped_config();
    let text = std::fs::read_to_string(&conf).unwrap();
    for line in text.lines().filter(|l| l.contains("password:")) {
        assert!(line.contains("password: $RB_NATS_"), "a password that is not a variable: {line}");
    }
    let test = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new("nats-server");
        cmd.arg("-c")
            .arg(&conf)
            .arg("-t")
            .env_remove("RB_NATS_BRIDGE_PASSWORD")
            .env_remove("RB_NATS_PRODUCER_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_bounded(cmd, WAIT)
    };
    let ran = test(&[("RB_NATS_BRIDGE_PASSWORD", "b")]);
    assert_ne!(ran.code(), Some(0), "started without the producer password");
    assert!(format!("{}{}", ran.stdout, ran.stderr).contains("RB_NATS_PRODUCER_PASSWORD"), "{ran:?}");
    let ran = test(&[("RB_NATS_BRIDGE_PASSWORD", "b"), ("RB_NATS_PRODUCER_PASSWORD", "p")]);
    assert_eq!(ran.code(), Some(0), "{ran:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Credential flags: a bad one stops start-up naming it, and no password is ever shown

#[test]
fn bad_nats_credentials_stop_start_up_naming_the_flag_and_never_show_the_password() {
    const SECRET_PW: &str = "never-shown-pw-W4";
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "pw\n").unwrap();
    let missing = dir.path().join("missing").display().to_string();
    let (empty, good) = (empty.display().to_string(), good.display().to_string());
    let url_with_password = format!("nats://u:{SECRET_PW}@127.0.0.1:1");
    // Every case is otherwise valid (loopback, port 0, an unused NATS): a value wrongly
    // accepted shows up as a bridge that starts (and is killed by run_bin).
    let serve = ["serve", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET];
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec!["--nats-user", "bridge"], vec![], "--nats-password-file"),
        (vec!["--nats-password-file", &good], vec![], "--nats-user"),
        (vec!["--nats-user", "bridge", "--nats-password-file", &missing], vec![], "--nats-password-file"),
        (vec!["--nats-user", "bridge", "--nats-password-file", &empty], vec![], "--nats-password-file"),
        (vec!["--nats-creds", &missing], vec![], "--nats-creds"),
        (vec!["--nats-creds", &good], vec![], "--nats-creds"),
        (vec!["--nats-creds", &good, "--nats-user", "b", "--nats-password-file", &good], vec![], "--nats-creds"),
        (
            vec!["--nats-user", "bridge", "--nats-password-file", &good],
            vec![("RB_NATS_URL", url_with_password.as_str())],
            "--nats-url",
        ),
        (vec!["--nats-url", "nats://u:never-shown-pw-W4@h:notaport"], vec![], "--nats-url"),
    ];
    for (extra, env, flag) in cases {
        let mut args = serve.to_vec();
        args.extend(&extra);
        let ran = run_bin(&args, &env);
        let err = ran.stderr.trim();
        assert_eq!(ran.code(), Some(64), "{extra:?}: {err}");
        assert!(err.contains(flag) && !err.contains('\n'), "{extra:?}: one line naming {flag}: {err}");
        assert!(!err.contains(SECRET_PW), "{extra:?}: the password was shown: {err}");
    }
    // `send` reads the same flags.
    let ran = run_bin(
        &["send", "--nats-user", "u", "--nats-password-file", &missing, "--user", "42", "--event", "e", "1"],
        &[],
    );
    assert_eq!(ran.code(), Some(64), "{}", ran.stderr);
    assert!(ran.stderr.contains("--nats-password-file"), "{}", ran.stderr);
    // --help shows where the URL comes from, not its value.
    let ran = run_bin(&["serve", "--help"], &[("RB_NATS_URL", url_with_password.as_str())]);
    assert_eq!(ran.code(), Some(0));
    assert!(ran.stdout.contains("RB_NATS_URL") && !ran.stdout.contains(SECRET_PW), "{}", ran.stdout);
}

// ---------------------------------------------------------------------------------------
// 6. Decentralized (JWT) authentication with --nats-creds

/// A NATS JWT (ed25519-nkey) with `claims`, issued by `issuer` for `subject`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: Value) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({
        "jti": format!("{name}-{subject}-{iat}"),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signing_input = format!(
        "{}.{}",
        b64(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(&signature))
}

/// A `.creds` file as nsc writes it.
fn creds_file(path: &Path, jwt: &str, seed: &str) {
    std::fs::write(
        path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
}

#[tokio::test]
async fn a_bridge_logs_in_with_a_creds_file() {
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let op_jwt = nats_jwt(&operator, &operator.public_key(), "op", json!({"type": "operator", "version": 2}));
    let limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1});
    let acc_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "REALTIME",
        json!({"type": "account", "version": 2, "limits": limits}),
    );
    let user = |name: &str| {
        let key = nkeys::KeyPair::new_user();
        let jwt = nats_jwt(
            &account,
            &key.public_key(),
            name,
            json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1}),
        );
        let path = dir.path().join(format!("{name}.creds"));
        creds_file(&path, &jwt, &key.seed().unwrap());
        path
    };
    let (bridge_creds, producer_creds) = (user("bridge"), user("producer"));
    // JetStream needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let sys_jwt = nats_jwt(&operator, &system.public_key(), "SYS", json!({"type": "account", "version": 2}));
    let conf = dir.path().join("operator.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: \"{acc_jwt}\"\n  {sys}: \"{sys_jwt}\"\n}}\n\
             jetstream {{\n  store_dir: \"/unused\"\n}}\n",
            sys = system.public_key(),
            acc = account.public_key(),
        ),
    )
    .unwrap();
    let nats = NatsServer::start_with_config(&conf, &[]);

    let creds_arg = bridge_creds.display().to_string();
    let bridge = start_bridge_args(&["--nats-url", &nats.url(), "--nats-creds", &creds_arg, "--history", "on"]);
    let producer = async_nats::ConnectOptions::new()
        .credentials_file(&producer_creds)
        .await
        .unwrap()
        .connect(nats.url())
        .await
        .unwrap();
    let mut s = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    let seq = js_publish(&jetstream::new(producer.clone()), "user.42.creds", "1").await;
    let e = s.next().await;
    assert_eq!((e.event.as_str(), user_seq(&e.id)), ("creds", seq));
    assert_ready("bridge", &bridge.base()).await;
    // Without a valid creds file there is no login: a user the account never signed.
    let stranger = dir.path().join("stranger.creds");
    let key = nkeys::KeyPair::new_user();
    creds_file(
        &stranger,
        &nats_jwt(&nkeys::KeyPair::new_account(), &key.public_key(), "x", json!({"type": "user", "version": 2})),
        &key.seed().unwrap(),
    );
    let ran = run_bin(
        &[
            "send",
            "--nats-url",
            &nats.url(),
            "--nats-creds",
            &stranger.display().to_string(),
            "--user",
            "42",
            "--event",
            "e",
            "1",
        ],
        &[],
    );
    assert_eq!(ran.code(), Some(77), "{}", ran.stderr);
}
