//! The library against a real nats-server and real bridge processes (docs/protocol.md §1.7):
//! message ids, input errors, modes, presence, retries and their end, flush and close.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use realtime_bridge_producer::{Error, Mode, Options, RealtimeService, SendOptions};
use serde_json::json;

/// The stream a history bridge would create, made here (no bridge needed to store).
async fn create_stream(client: &async_nats::Client, max_message_size: i32) {
    jetstream::new(client.clone())
        .create_stream(jetstream::stream::Config {
            name: "REALTIME".into(),
            subjects: vec!["user.>".into(), "broadcast.>".into()],
            max_message_size,
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_msg_id_sent_twice_is_stored_and_delivered_once() {
    let nats = NatsServer::start();
    let bridge = start_bridge(&nats.url(), &["--history", "on"]);
    let reader = Reader::open(&bridge.base(), "42", "").await;
    let other = Reader::open(&bridge.base(), "43", "").await;
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);

    let once = SendOptions::msg_id("order-7-paid");
    rt.send_event_to_user_with("42", "paid", &json!({"try": 1}), &once).await.unwrap();
    // A service retrying the whole operation: acknowledged (as a duplicate), not stored.
    rt.send_event_to_user_with("42", "paid", &json!({"try": 2}), &once).await.unwrap();
    // Several users with one id: each subject gets its own (`<id>:<subject>`), so both are
    // stored; repeated ids in the list are sent once; sent again, nothing new is stored.
    let both = SendOptions::msg_id("note-1");
    rt.send_event_to_users_with(["42", "43", "42"], "note", &json!({"try": 1}), &both).await.unwrap();
    rt.send_event_to_users_with(vec!["43".to_owned(), "42".to_owned()], "note", &json!({"try": 2}), &both)
        .await
        .unwrap();
    // No length limit of its own: a long id is a header like any other.
    rt.send_event_to_user_with("43", "long_id", &1, &SendOptions::msg_id("x".repeat(300))).await.unwrap();
    rt.send_event_to_users(["42", "43"], "done", &json!(null)).await.unwrap();

    let client = nats_client(&nats).await;
    assert_eq!(stored(&client, "user.42.>").await, 3, "paid once, note once, done");
    assert_eq!(stored(&client, "user.43.>").await, 3, "note once, long_id, done");
    let got = reader.events_until("done", WAIT).await;
    assert_eq!(
        got.iter().map(|g| (g.event.as_str(), g.data.clone())).collect::<Vec<_>>(),
        [("paid", json!({"try": 1})), ("note", json!({"try": 1}))]
    );
    let got = other.events_until("done", WAIT).await;
    assert_eq!(
        got.iter().map(|g| (g.event.as_str(), g.data.clone())).collect::<Vec<_>>(),
        [("note", json!({"try": 1})), ("long_id", json!(1))]
    );
    rt.close().await.unwrap();
}

#[tokio::test]
async fn each_input_error_has_its_code_and_sends_nothing() {
    let nats = NatsServer::start();
    let bridge = start_bridge(&nats.url(), &["--history", "on"]);
    let reader = Reader::open(&bridge.base(), "42", "").await;
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    let long = "x".repeat(129);
    let mut bad_keys = HashMap::new();
    bad_keys.insert((1, 2), 3);
    let big = "x".repeat(262_144 - 2); // 262144 bytes of JSON with its quotes: the limit
    let too_big = "x".repeat(262_144 - 1);
    let ok = json!({"ok": true});

    let cases: Vec<(&str, Result<(), Error>, &str)> = vec![
        ("invalid_user_id", rt.send_event_to_user("a.b", "e", &ok).await, "\"a.b\""),
        ("invalid_user_id", rt.send_event_to_user("", "e", &ok).await, "empty"),
        ("invalid_user_id", rt.send_event_to_user("*", "e", &ok).await, "'*'"),
        ("invalid_user_id", rt.send_event_to_user(&long, "e", &ok).await, "129 characters"),
        ("invalid_user_id", rt.send_event_to_users(["42", "4 3"], "e", &ok).await, "\"4 3\""),
        ("invalid_user_id", rt.get_presence("42>").await.map(drop), "\"42>\""),
        ("invalid_event_name", rt.send_event_to_user("42", "a b", &ok).await, "\"a b\""),
        ("invalid_event_name", rt.broadcast_event(">", &ok).await, "'>'"),
        ("reserved_event", rt.send_event_to_user("42", "end", &ok).await, "\"end\""),
        ("reserved_event", rt.broadcast_event("reset", &ok).await, "\"reset\""),
        ("invalid_data", rt.send_event_to_user("42", "e", &bad_keys).await, "key must be a string"),
        ("too_large", rt.send_event_to_user("42", "e", &too_big).await, "262145 bytes"),
        ("invalid_msg_id", rt.send_event_to_user_with("42", "e", &ok, &SendOptions::msg_id("")).await, "\"\""),
        ("invalid_msg_id", rt.send_event_to_user_with("42", "e", &ok, &SendOptions::msg_id("a\nb")).await, "\"a\\nb\""),
    ];
    for (code, result, names) in cases {
        let e = result.expect_err(code);
        assert_eq!(e.code(), code, "{e}");
        assert!(e.is_input_error(), "{e}");
        assert!(e.to_string().contains(names), "{code}: the error names the input ({names}): {e}");
    }
    // The largest accepted data goes through; an empty list sends nothing and succeeds.
    rt.send_event_to_user("42", "big", &big).await.unwrap();
    rt.send_event_to_users(Vec::<String>::new(), "e", &ok).await.unwrap();
    rt.send_event_to_user("42", "sentinel", &ok).await.unwrap();

    let got = reader.events_until("sentinel", WAIT).await;
    assert_eq!(got.iter().map(|g| g.event.as_str()).collect::<Vec<_>>(), ["big"], "nothing refused was delivered");
    let client = nats_client(&nats).await;
    assert_eq!(stored(&client, ">").await, 2, "nothing refused was stored");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn presence_lists_client_ids_across_two_bridges() {
    let nats = NatsServer::start_plain();
    let a = start_bridge(&nats.url(), &["--history", "off"]);
    let b = start_bridge(&nats.url(), &["--history", "off"]);
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    assert_eq!(rt.mode(), Mode::Core, "no JetStream: core mode");

    let p = rt.get_presence("42").await.unwrap();
    assert_eq!((p.user_id.as_str(), p.connected, p.streams, p.clients.len()), ("42", false, 0, 0));
    assert!(!rt.is_user_connected("42").await.unwrap());

    let _tab = Reader::open(&a.base(), "42", "?clientId=tab-a").await;
    let _phone = Reader::open(&b.base(), "42", "?clientId=phone-b").await;
    let rt2 = rt.clone();
    let ids = eventually("both streams in the presence answer", WAIT, || {
        let rt = rt2.clone();
        async move { rt.get_connected_clients("42").await.ok().filter(|ids| ids.len() == 2) }
    })
    .await;
    assert_eq!(ids, ["tab-a", "phone-b"], "oldest first");
    assert!(rt.is_user_connected("42").await.unwrap());
    let p = rt.get_presence("42").await.unwrap();
    assert_eq!(p.streams, 2);
    assert_ne!(p.clients[0].instance, p.clients[1].instance, "served by two bridges");
    assert!(p.clients.iter().all(|c| c.since.ends_with('Z')), "{p:?}");
    assert!(!rt.is_user_connected("43").await.unwrap());
    rt.close().await.unwrap();
    assert_eq!(rt.get_presence("42").await.unwrap_err().code(), "closed");
}

#[tokio::test]
async fn presence_without_a_bridge_is_no_bridge() {
    let nats = NatsServer::start_plain();
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    let started = Instant::now();
    let e = rt.get_presence("42").await.unwrap_err();
    assert_eq!(e.code(), "no_bridge", "{e}");
    assert!(e.to_string().contains("42"), "{e}");
    assert_eq!(rt.is_user_connected("42").await.unwrap_err().code(), "no_bridge");
    assert_eq!(rt.get_connected_clients("42").await.unwrap_err().code(), "no_bridge");
    // No responders: known at once, not after presence_timeout.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn core_mode_delivers_to_a_live_bridge() {
    let nats = NatsServer::start_plain();
    let bridge = start_bridge(&nats.url(), &["--history", "off"]);
    let reader = Reader::open(&bridge.base(), "42", "").await;
    let all = Reader::open(&bridge.base(), "43", "").await;
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    assert_eq!(rt.mode(), Mode::Core);
    rt.send_event_to_user("42", "hello", &json!({"text": "hi"})).await.unwrap();
    rt.send_event_to_users(["42", "43"], "both", &1).await.unwrap();
    rt.broadcast_event("news", &"all").await.unwrap();
    rt.flush().await.unwrap();
    // Live mode keeps order per kind only (user events, broadcasts): one sentinel of each.
    rt.send_event_to_users(["42", "43"], "sentinel", &0).await.unwrap();
    rt.broadcast_event("sentinel_b", &0).await.unwrap();
    for (r, want) in [(&reader, vec!["both", "hello", "news"]), (&all, vec!["both", "news"])] {
        let got = eventually("both sentinels", WAIT, || {
            let got = r.got();
            let done = ["sentinel", "sentinel_b"].iter().all(|s| got.iter().any(|g| g.event == *s));
            async move { done.then_some(got) }
        })
        .await;
        let mut names: Vec<&str> =
            got.iter().map(|g| g.event.as_str()).filter(|e| !e.starts_with("sentinel")).collect();
        names.sort_unstable();
        assert_eq!(names, want);
        if let Some(hello) = got.iter().find(|g| g.event == "hello") {
            assert_eq!(hello.data, json!({"text": "hi"}));
        }
    }
    // Mode core is core even when a stream exists (here: none, and no JetStream at all).
    let forced = RealtimeService::with_client(rt.client().clone(), Options::default().with_mode(Mode::Core)).await;
    assert_eq!(forced.unwrap().mode(), Mode::Core);
    rt.close().await.unwrap();
}

#[tokio::test]
async fn auto_mode_follows_a_stream_created_after_connect() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    let options = Options::default().with_auto_recheck(Duration::from_millis(200));
    let rt = RealtimeService::with_client(client.clone(), options).await.unwrap();
    assert_eq!(rt.mode(), Mode::Core, "no stream yet");
    rt.send_event_to_user("42", "before", &0).await.unwrap();
    // On the server before any stream exists (so never stored): `start_bridge` blocks this
    // test's only thread, and a core send still in the client's buffer would otherwise go
    // out after the bridge created the stream.
    rt.flush().await.unwrap();

    let bridge = start_bridge(&nats.url(), &["--history", "on"]);
    let reader = Reader::open(&bridge.base(), "42", "").await;
    let rt2 = rt.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    // Each send may be the one that looks again (at most every 200 ms).
    eventually("the service to switch to JetStream", WAIT, || {
        let (rt, counter) = (rt2.clone(), Arc::clone(&counter));
        async move {
            rt.send_event_to_user("42", "probe", &0).await.unwrap();
            counter.fetch_add(1, Ordering::Relaxed);
            (rt.mode() == Mode::JetStream).then_some(())
        }
    })
    .await;
    rt.send_event_to_user("42", "after", &json!({"acked": true})).await.unwrap();
    // Acknowledged: stored before the send resolved, no waiting needed.
    assert!(stored(&client, "user.42.after").await == 1);
    let got = reader.events_until("after", WAIT).await;
    assert!(got.iter().all(|g| g.event == "probe"), "{got:?}");
    println!("switched after {} probe sends", sent.load(Ordering::Relaxed));
    rt.close().await.unwrap();
    assert!(client.connection_state() == async_nats::connection::State::Connected, "a given client stays open");
}

#[tokio::test]
async fn jetstream_mode_refuses_to_start_without_the_stream() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    let e =
        RealtimeService::with_client(client.clone(), Options::default().with_mode(Mode::JetStream)).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert!(e.to_string().contains("\"REALTIME\""), "names the stream: {e}");
    // Another stream name: the same refusal names it.
    let e = RealtimeService::with_client(
        client.clone(),
        Options::default().with_mode(Mode::JetStream).with_stream("EVENTS"),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("\"EVENTS\""), "{e}");
    // Without JetStream at all: refused too (no responders).
    let plain = NatsServer::start_plain();
    let e = RealtimeService::with_client(nats_client(&plain).await, Options::default().with_mode(Mode::JetStream))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    // With the stream: acknowledged publishing.
    create_stream(&client, -1).await;
    let rt = RealtimeService::with_client(client.clone(), Options::default().with_mode(Mode::JetStream)).await.unwrap();
    rt.broadcast_event("hello", &1).await.unwrap();
    assert_eq!(stored(&client, "broadcast.hello").await, 1);
}

#[tokio::test]
async fn a_jetstream_error_answer_fails_at_once_and_no_stream_retries_until_timeout() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, 100).await;
    // Mode jetstream: with the stream gone it keeps retrying (auto would switch to core).
    let options = Options::default().with_mode(Mode::JetStream).with_publish_timeout(Duration::from_millis(1500));
    let rt = RealtimeService::with_client(client.clone(), options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);

    // Over the stream's message size: JetStream answers with an error, not retried.
    let started = Instant::now();
    let e = rt.send_event_to_user("42", "big", &"x".repeat(200)).await.unwrap_err();
    assert_eq!(e.code(), "unavailable", "{e}");
    assert!(e.to_string().contains("user.42.big"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1), "at once, not after retries: {:?}", started.elapsed());

    // The stream gone: every attempt gets "no responders", sent again with backoff until
    // publish_timeout.
    jetstream::new(client.clone()).delete_stream("REALTIME").await.unwrap();
    let started = Instant::now();
    let e = rt.send_event_to_user("42", "lost", &1).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), "timeout", "{e}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}: {e}");
    assert_eq!(rt.mode(), Mode::JetStream, "mode jetstream never switches");
    println!("no stream: {e} after {took:?}");
}

/// Stream-info requests for `REALTIME` the service's connection made, counted up to a
/// marker it publishes last: one connection's messages arrive in order, so every lookup
/// made before the marker has arrived when the marker has.
async fn lookups_before_marker(rt: &RealtimeService, lookups: &mut async_nats::Subscriber) -> usize {
    rt.client().publish(LOOKUP_SUBJECT, "marker".into()).await.unwrap();
    rt.client().flush().await.unwrap();
    let mut n = 0;
    loop {
        let m = tokio::time::timeout(WAIT, lookups.next()).await.expect("the marker in time").unwrap();
        if m.payload.as_ref() == b"marker" {
            return n;
        }
        n += 1;
    }
}

/// The JetStream API subject of a stream lookup (what `auto` mode requests).
const LOOKUP_SUBJECT: &str = "$JS.API.STREAM.INFO.REALTIME";

#[tokio::test]
async fn auto_mode_follows_a_deleted_stream_to_core() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, -1).await;
    // The service's connection runs through a relay: a core subscriber already on the
    // subject would itself be a responder to the JetStream attempt (no "no responders"
    // then), so the test subscribes while the service's lookup is on its way, its answer
    // held by the relay.
    let relay = HoldingRelay::start(nats.port).await;
    let rt_client = tokio::time::timeout(WAIT, async_nats::connect(relay.url())).await.unwrap().unwrap();
    let options = Options::default().with_publish_timeout(Duration::from_secs(20));
    let rt = RealtimeService::with_client(rt_client, options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);
    rt.send_event_to_user("42", "kept", &json!({"n": 0})).await.unwrap();
    assert_eq!(stored(&client, "user.42.kept").await, 1, "acknowledged, so stored");

    // History turned off: the bridge's stream is gone.
    jetstream::new(client.clone()).delete_stream("REALTIME").await.unwrap();
    relay.arm(LOOKUP_SUBJECT);
    let started = Instant::now();
    let rt2 = rt.clone();
    let first = tokio::spawn(async move {
        rt2.send_event_to_user_with("42", "first", &json!({"n": 1}), &SendOptions::msg_id("first-1")).await
    });
    // Its JetStream attempt got "no responders": the service looks the stream up.
    relay.wait_held(WAIT).await;
    let mut sub = client.subscribe("user.42.>").await.unwrap();
    round_trip(&client).await;
    relay.release();
    tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .expect("resolved long before publish_timeout (20 s)")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(rt.mode(), Mode::Core);
    rt.send_event_to_user("42", "second", &json!({"n": 2})).await.unwrap();
    rt.broadcast_event("third", &json!({"n": 3})).await.unwrap();
    rt.send_event_to_users(["42", "43"], "fourth", &json!({"n": 4})).await.unwrap();
    rt.flush().await.unwrap();

    for (event, n, id) in [("first", 1, Some("first-1")), ("second", 2, None), ("fourth", 4, None)] {
        let m = tokio::time::timeout(WAIT, sub.next()).await.expect("a core message in time").unwrap();
        assert_eq!(m.subject.as_str(), format!("user.42.{event}"));
        assert!(m.reply.is_none(), "published with core NATS, not a JetStream attempt: {m:?}");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(), json!({"n": n}));
        let got_id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_owned());
        assert_eq!(got_id.as_deref(), id, "core messages carry the caller's id only");
    }
    assert_eq!(rt.mode(), Mode::Core);
    println!("switched to core in {took:?}");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn auto_mode_counts_an_attempt_a_live_bridge_took_as_sent() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, -1).await;
    let options =
        Options::default().with_ack_timeout(Duration::from_secs(1)).with_publish_timeout(Duration::from_secs(20));
    let rt = RealtimeService::with_client(nats_client(&nats).await, options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);

    // History turned off: the stream is gone and a live bridge serves user 42. It subscribes
    // to the user's subject, so a JetStream attempt never gets "no responders": it reaches
    // the bridge as a plain message (delivered) and nobody acknowledges it.
    jetstream::new(client.clone()).delete_stream("REALTIME").await.unwrap();
    let bridge = start_bridge(&nats.url(), &["--history", "off"]);
    let reader = Reader::open(&bridge.base(), "42", "").await;
    let mut lookups = client.subscribe(LOOKUP_SUBJECT).await.unwrap();
    round_trip(&client).await;

    let started = Instant::now();
    let sends: Vec<_> = (0..3)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.send_event_to_user("42", "first", &json!({ "n": i })).await })
        })
        .collect();
    let all = futures::future::join_all(sends);
    for r in tokio::time::timeout(Duration::from_secs(5), all).await.expect("resolved long before publish_timeout") {
        r.unwrap().unwrap();
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "after the ack timeout (1 s), not before: {took:?}");
    assert_eq!(rt.mode(), Mode::Core);
    rt.send_event_to_user("42", "second", &json!({"n": 3})).await.unwrap();
    rt.send_event_to_user("42", "sentinel", &0).await.unwrap();

    // Everything sent before the sentinel arrived before it: each event exactly once (a
    // resend after the lost acknowledgement would be a second copy).
    let got = reader.events_until("sentinel", WAIT).await;
    assert_eq!(counts_of_n(&got), (0..4).map(|n| (n, 1)).collect::<HashMap<_, _>>(), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(lookups_before_marker(&rt, &mut lookups).await, 1, "one lookup, shared by the three sends");
    println!("counted as sent after {took:?}");
    rt.close().await.unwrap();
}

#[tokio::test]
async fn a_send_that_made_no_attempt_when_the_stream_is_found_gone_goes_out_with_core() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, -1).await;
    // One slot: the second send waits for it while the first one's attempt is unanswered.
    let options = Options::default()
        .with_max_in_flight(1)
        .with_ack_timeout(Duration::from_secs(1))
        .with_publish_timeout(Duration::from_secs(20));
    let rt = RealtimeService::with_client(nats_client(&nats).await, options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);
    jetstream::new(client.clone()).delete_stream("REALTIME").await.unwrap();
    // Stands in for a live bridge: a plain subscriber of the subject.
    let mut sub = client.subscribe("user.42.>").await.unwrap();
    round_trip(&client).await;

    let started = Instant::now();
    let (a, b) = (rt.clone(), rt.clone());
    let both = futures::future::join(
        tokio::spawn(async move { a.send_event_to_user("42", "x", &json!({"n": 1})).await }),
        tokio::spawn(async move { b.send_event_to_user("42", "x", &json!({"n": 2})).await }),
    );
    let (first, second) = tokio::time::timeout(Duration::from_secs(5), both).await.expect("both resolved in time");
    first.unwrap().unwrap();
    second.unwrap().unwrap();
    let took = started.elapsed();
    // The first send's attempt timed out (1 s) and its lookup switched to core; the second,
    // still without an attempt, went out with core at once instead of timing out in turn.
    assert!(took < Duration::from_millis(1800), "{took:?}");
    assert_eq!(rt.mode(), Mode::Core);
    rt.send_event_to_user("42", "sentinel", &0).await.unwrap();
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, sub.next()).await.expect("a message in time").unwrap();
        if m.subject.as_str() == "user.42.sentinel" {
            break;
        }
        got.push((serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(), m.reply.is_some()));
    }
    // The first one's JetStream attempt (with a reply subject), counted as sent; the
    // second one's core publish; nothing twice.
    assert_eq!(got, [(json!({"n": 1}), true), (json!({"n": 2}), false)]);
    println!("both sent in {took:?}");
}

#[tokio::test]
async fn concurrent_sends_share_one_lookup_when_the_stream_is_gone() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, -1).await;
    let options = Options::default().with_publish_timeout(Duration::from_secs(20));
    let rt = RealtimeService::with_client(nats_client(&nats).await, options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);
    let mut lookups = client.subscribe(LOOKUP_SUBJECT).await.unwrap();
    round_trip(&client).await;

    jetstream::new(client.clone()).delete_stream("REALTIME").await.unwrap();
    let mut sends: Vec<_> = (0..20)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.send_event_to_user(format!("u{i}"), "tick", &json!({ "n": i })).await })
        })
        .collect();
    let rt2 = rt.clone();
    sends.push(tokio::spawn(async move { rt2.send_event_to_users(["a", "b", "c"], "tick", &1).await }));
    let all = futures::future::join_all(sends);
    for r in tokio::time::timeout(Duration::from_secs(5), all).await.expect("all resolved long before publish_timeout")
    {
        r.unwrap().unwrap();
    }
    assert_eq!(rt.mode(), Mode::Core);
    assert_eq!(lookups_before_marker(&rt, &mut lookups).await, 1, "one lookup, shared by every send");
}

#[tokio::test]
async fn no_responders_while_the_stream_exists_keeps_jetstream_and_looks_at_most_once_a_second() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    // The stream exists but does not take users' events: each attempt gets "no responders",
    // as when a stream has no leader for a while.
    jetstream::new(client.clone())
        .create_stream(jetstream::stream::Config {
            name: "REALTIME".into(),
            subjects: vec!["broadcast.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let options = Options::default().with_publish_timeout(Duration::from_millis(3500));
    let rt = RealtimeService::with_client(nats_client(&nats).await, options).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);
    let mut lookups = client.subscribe(LOOKUP_SUBJECT).await.unwrap();
    round_trip(&client).await;

    let started = Instant::now();
    let e = rt.send_event_to_user("42", "x", &1).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), "timeout", "{e}");
    assert_eq!(rt.mode(), Mode::JetStream, "the stream was found: nothing changes");
    let n = lookups_before_marker(&rt, &mut lookups).await;
    // About six attempts in 3.5 s (backoff from 100 ms), but one lookup a second at most.
    assert!(n >= 1 && n as u64 <= took.as_secs() + 1, "{n} lookups in {took:?}");
    // The broadcast the stream takes still goes through JetStream.
    rt.broadcast_event("hello", &1).await.unwrap();
    assert_eq!(stored(&client, "broadcast.hello").await, 1);
    println!("{n} lookups in {took:?}");
}

#[tokio::test]
async fn close_waits_for_sends_in_flight_and_refuses_new_ones() {
    let nats = NatsServer::start();
    let client = nats_client(&nats).await;
    create_stream(&client, -1).await;
    let options = Options::default().with_max_in_flight(4);
    let rt = RealtimeService::connect_with(nats.url(), async_nats::ConnectOptions::new(), options).await.unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let total = 2000u64;
    let sends: Vec<_> = (0..total)
        .map(|i| {
            let (rt, ok, closed) = (rt.clone(), Arc::clone(&ok), Arc::clone(&closed));
            tokio::spawn(async move {
                match rt.send_event_to_user("42", "tick", &json!({ "n": i })).await {
                    Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) if e.code() == "closed" => closed.fetch_add(1, Ordering::SeqCst),
                    Err(e) => panic!("send {i}: {e}"),
                };
            })
        })
        .collect();
    // Sends are under way (the window of 4 keeps most of them waiting).
    let c = client.clone();
    eventually("the first sends to be stored", WAIT, || {
        let c = c.clone();
        async move { (stored(&c, "user.42.>").await > 0).then_some(()) }
    })
    .await;
    rt.close().await.unwrap();
    let ok_at_close = ok.load(Ordering::SeqCst);
    for s in sends {
        s.await.unwrap();
    }
    assert_eq!(ok.load(Ordering::SeqCst), ok_at_close, "every send started before close had settled");
    assert_eq!(ok_at_close + closed.load(Ordering::SeqCst), total);
    assert!(ok_at_close > 4, "close waited for more than the window: {ok_at_close}");
    assert_eq!(stored(&client, "user.42.>").await, ok_at_close, "each acknowledged send is stored");
    let e = rt.send_event_to_user("42", "late", &1).await.unwrap_err();
    assert_eq!(e.code(), "closed", "{e}");
    rt.close().await.unwrap();
    // The connection it opened is closed: the client takes nothing more.
    let rt_client = rt.client().clone();
    eventually("the service's own connection to close", WAIT, || {
        let c = rt_client.clone();
        async move { c.publish("user.42.after_close", "1".into()).await.is_err().then_some(()) }
    })
    .await;
}
