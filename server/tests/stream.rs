//! End-to-end: real nats-server, the bridge on 127.0.0.1:0, real SSE read by an independent parser.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::{Stream, StreamExt};

#[tokio::test]
async fn user_event_and_broadcast_reach_the_stream_with_envelope() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let client = nats.client().await;
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;

    publish(&client, "user.42.message_new", r#"{"text":"hi"}"#).await;
    let e = sse.next().await;
    assert_eq!(e.event, "message_new");
    let env = envelope(&e);
    assert_eq!(env["event"], "message_new");
    assert_eq!(env["data"]["text"], "hi");
    assert_eq!(env["userId"], "42");
    assert_eq!(env["id"].as_str().unwrap(), e.id);
    let ts = env["timestamp"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 24, "timestamp {ts}");

    publish(&client, "broadcast.system_alert", r#""maintenance""#).await;
    let e = sse.next().await;
    assert_eq!(e.event, "system_alert");
    let env = envelope(&e);
    assert_eq!(env["data"], "maintenance");
    assert!(env.get("userId").is_none(), "broadcasts carry no userId");

    // Another user's events never show up here.
    publish(&client, "user.43.message_new", "1").await;
    expect_sentinel_next(&mut sse, &client, "user.42.sentinel").await;
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// Helpers local to this file.
// ---------------------------------------------------------------------------------------

/// A raw body stream, read without any SSE parser.
type RawBody = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

async fn open_raw_body(base: &str, user: &str, query: &str) -> RawBody {
    let resp = open_raw(base, user, query, Some(&token(user))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Box::pin(resp.bytes_stream())
}

/// Reads `body` into `buf` until `done(buf)`, failing after `d` (or if the body ends or errors).
async fn read_until(body: &mut RawBody, buf: &mut Vec<u8>, what: &str, d: Duration, done: impl Fn(&[u8]) -> bool) {
    let deadline = tokio::time::Instant::now() + d;
    while !done(buf) {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => panic!("body error while waiting for {what}: {e}"),
            Ok(None) => panic!("body ended while waiting for {what}; got {:?}", String::from_utf8_lossy(buf)),
            Err(_) => panic!("timed out after {d:?} waiting for {what}; got {:?}", String::from_utf8_lossy(buf)),
        }
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

async fn publish_bytes(client: &async_nats::Client, subject: &str, payload: Bytes) {
    client.publish(subject.to_owned(), payload).await.unwrap();
    client.flush().await.unwrap();
}

/// Core NATS is fire-and-forget: after a reconnect, publish `subject` again and again
/// until `sse` gets an event named `event` (bounded by [`WAIT`]).
async fn publish_until_delivered(
    client: &async_nats::Client,
    sse: &mut SseClient,
    subject: &str,
    event: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let mut n = 0u32;
    loop {
        assert!(
            Instant::now() < deadline,
            "no {event} delivered within {WAIT:?} after publishing {n} times on {subject}"
        );
        n += 1;
        // A publish while the client itself is still reconnecting may fail: try again.
        if client.publish(subject.to_owned(), format!(r#"{{"n":{n}}}"#).into()).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(500), client.flush()).await;
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(e)) = tokio::time::timeout_at(until, sse.next_within(Duration::from_millis(200))).await {
            if e.event == event {
                return envelope(&e);
            }
        }
    }
}

const DROPPED_INVALID_JSON: &str = r#"realtime_bridge_events_dropped_total{reason="invalid_json"}"#;
const DROPPED_TOO_LARGE: &str = r#"realtime_bridge_events_dropped_total{reason="too_large"}"#;
const DROPPED_INVALID_SUBJECT: &str = r#"realtime_bridge_events_dropped_total{reason="invalid_subject"}"#;
const DROPPED_SLOW_CLIENT: &str = r#"realtime_bridge_events_dropped_total{reason="slow_client"}"#;
const CUT_SLOW_CLIENT: &str = r#"realtime_bridge_streams_cut_total{reason="slow_client"}"#;
const CUT_WRITE_STALLED: &str = r#"realtime_bridge_streams_cut_total{reason="write_stalled"}"#;
const OPEN_STREAMS: &str = "realtime_bridge_open_streams";
const NATS_CONNECTED: &str = "realtime_bridge_nats_connected";

// ---------------------------------------------------------------------------------------
// 1. `events=` filter
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn events_filter_passes_only_listed_user_events_and_broadcasts() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let base = bridge.base();
    let client = nats.client().await;
    let mut filtered = SseClient::open(&base, "42", "?events=message_new,system_alert", Some(&token("42"))).await;
    // Control: an unfiltered stream of the same user proves the skipped events were really delivered by NATS.
    let mut all = SseClient::open(&base, "42", "", Some(&token("42"))).await;

    // User events: a non-matching one, then a matching one.
    publish(&client, "user.42.typing_start", r#"{"n":1}"#).await;
    publish(&client, "user.42.message_new", r#"{"n":2}"#).await;
    let e = filtered.next().await;
    assert_eq!(e.event, "message_new");
    assert_eq!(envelope(&e)["data"]["n"], 2);
    assert_eq!(all.next().await.event, "typing_start");
    assert_eq!(all.next().await.event, "message_new");

    // Broadcasts: the same rule.
    publish(&client, "broadcast.maintenance", r#"{"n":3}"#).await;
    publish(&client, "broadcast.system_alert", r#"{"n":4}"#).await;
    let e = filtered.next().await;
    assert_eq!(e.event, "system_alert");
    assert_eq!(envelope(&e)["data"]["n"], 4);
    assert!(envelope(&e).get("userId").is_none());
    assert_eq!(all.next().await.event, "maintenance");
    assert_eq!(all.next().await.event, "system_alert");

    // Names are matched whole, not by prefix or case-insensitively.
    publish(&client, "user.42.message", r#"{"n":5}"#).await;
    publish(&client, "user.42.message_new_v2", r#"{"n":6}"#).await;
    publish(&client, "user.42.Message_New", r#"{"n":7}"#).await;
    publish(&client, "broadcast.system_alerts", r#"{"n":8}"#).await;
    publish(&client, "user.42.message_new", r#"{"n":9}"#).await;
    let e = filtered.next().await;
    assert_eq!(e.event, "message_new");
    assert_eq!(envelope(&e)["data"]["n"], 9);
    // The unfiltered control stream gets all five. A user's events keep their order; a
    // broadcast comes through another subscription and may interleave (docs/protocol.md §5.2).
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(all.next().await.event);
    }
    let users: Vec<&str> = got.iter().map(String::as_str).filter(|e| *e != "system_alerts").collect();
    assert_eq!(users, ["message", "message_new_v2", "Message_New", "message_new"], "got {got:?}");
    assert!(got.iter().any(|e| e == "system_alerts"), "got {got:?}");

    // Nothing else passed the filter: a stray broadcast would come before this one.
    expect_sentinel_next(&mut filtered, &client, "broadcast.system_alert").await;
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. Preamble and heartbeats, on the raw bytes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stream_starts_with_default_retry_line() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let mut body = open_raw_body(&bridge.base(), "42", "").await;
    let mut buf = Vec::new();
    read_until(&mut body, &mut buf, "the retry line", WAIT, |b| b.len() >= 13).await;
    assert_eq!(&buf[..13], b"retry: 2000\n\n", "got {:?}", String::from_utf8_lossy(&buf));

    // The preamble comes before the first event.
    let client = nats.client().await;
    publish(&client, "user.42.hello", "1").await;
    read_until(&mut body, &mut buf, "the first event", WAIT, |b| b.ends_with(b"\n\n") && b.len() > 13).await;
    let rest = std::str::from_utf8(&buf[13..]).unwrap();
    assert!(rest.starts_with("id: "), "an event frame follows the preamble: {rest:?}");
    assert!(rest.contains("\nevent: hello\n"), "{rest:?}");
    drop(body);
    bridge.stop().await;
}

#[tokio::test]
async fn stream_uses_configured_retry_and_sends_heartbeats() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.retry_ms = 750;
    config.heartbeat = Duration::from_millis(200);
    let bridge = InProcessBridge::start(config).await;
    let mut body = open_raw_body(&bridge.base(), "42", "").await;
    let mut buf = Vec::new();
    read_until(&mut body, &mut buf, "the retry line", WAIT, |b| b.len() >= 12).await;
    assert_eq!(&buf[..12], b"retry: 750\n\n", "got {:?}", String::from_utf8_lossy(&buf));

    // Two heartbeats (200 ms apart) within a bounded wait; nothing but heartbeats on an idle stream.
    read_until(&mut body, &mut buf, "two `: hb` comments", WAIT, |b| count(&b[12..], b": hb\n") >= 2).await;
    let rest = std::str::from_utf8(&buf[12..]).unwrap();
    assert!(
        rest.split(": hb\n").all(|piece| piece.chars().all(|c| c == '\n')),
        "an idle stream carries only heartbeat comments: {rest:?}"
    );
    drop(body);
    bridge.stop().await;
}

/// With one tick for every stream, a bridge holding thousands of streams wrote all their
/// heartbeats in the same instant and events waited behind that burst. The streams' heartbeats
/// now come at offsets spread over the interval, each stream still getting one per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_of_many_streams_are_spread_over_the_interval() {
    const STREAMS: usize = 32;
    const EVERY: Duration = Duration::from_millis(800);
    // The first heartbeat may have waited unread while the other streams opened: its arrival
    // says little, so the timing is taken from the ones after it.
    const BEATS: usize = 4;
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.heartbeat = EVERY;
    let bridge = InProcessBridge::start(config).await;
    let mut bodies = Vec::new();
    for i in 0..STREAMS {
        bodies.push(open_raw_body(&bridge.base(), &format!("u{i}"), "").await);
    }

    // Every stream read at once, each in its own task, noting when each heartbeat arrives.
    let t0 = tokio::time::Instant::now();
    let deadline = t0 + EVERY * (BEATS as u32 + 1) + WAIT;
    let readers: Vec<_> = bodies
        .into_iter()
        .map(|mut body| {
            tokio::spawn(async move {
                let (mut buf, mut beats) = (Vec::new(), Vec::new());
                while beats.len() < BEATS {
                    match tokio::time::timeout_at(deadline, body.next()).await {
                        Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                        other => panic!("{} heartbeats by the deadline, then {other:?}", beats.len()),
                    }
                    let now = tokio::time::Instant::now();
                    beats.resize(count(&buf, b": hb\n").min(BEATS), now);
                }
                beats
            })
        })
        .collect();
    let mut beats = Vec::new();
    for r in readers {
        beats.push(r.await.unwrap());
    }
    bridge.stop().await;

    // Each stream: a heartbeat within an interval, then one per interval (with room for a
    // loaded machine, far from the half or double interval a mistake would give).
    let ms = |d: Duration| d.as_millis();
    for (i, b) in beats.iter().enumerate() {
        let gaps: Vec<u128> = b[1..].windows(2).map(|w| ms(w[1] - w[0])).collect();
        println!("stream {i:2}: heartbeats {} and {} ms in, then every {gaps:?} ms", ms(b[0] - t0), ms(b[1] - t0));
        assert!(b[0] - t0 <= EVERY + EVERY / 2, "stream {i}: first heartbeat read {:?} in", b[0] - t0);
        for g in gaps {
            assert!((600..=1200).contains(&g), "stream {i}: heartbeats {g} ms apart, not one per {EVERY:?}");
        }
    }
    // Across streams: where in the interval each stream's heartbeat falls. All at one instant
    // would leave a hole of almost the whole interval; spread, no hole exceeds a quarter of it.
    let mut phases: Vec<u128> = beats.iter().map(|b| ms(b[1] - t0) % ms(EVERY)).collect();
    phases.sort_unstable();
    let hole = phases.windows(2).map(|w| w[1] - w[0]).chain([phases[0] + ms(EVERY) - phases[STREAMS - 1]]).max();
    let distinct = 1 + phases.windows(2).filter(|w| w[1] - w[0] >= 10).count();
    println!(
        "heartbeat offsets in the {EVERY:?} interval (ms): {phases:?}; largest hole {hole:?} ms, {distinct} distinct"
    );
    assert!(hole.unwrap() <= ms(EVERY) / 4, "heartbeats bunched: offsets {phases:?}");
    assert!(distinct >= 8, "heartbeats at {distinct} distinct offsets only: {phases:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Bad payloads and subjects are counted and skipped; nothing dies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_payloads_are_skipped_counted_and_do_not_close_the_stream() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.max_event_bytes = 1024;
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;
    let mut sse = SseClient::open(&base, "42", "", Some(&token("42"))).await;

    // Valid JSON of exactly 1024 bytes is within the limit; 1025 bytes is not.
    let exactly = format!("\"{}\"", "x".repeat(1022));
    let too_big = format!("\"{}\"", "x".repeat(1023));
    assert_eq!((exactly.len(), too_big.len()), (1024, 1025));

    publish(&client, "user.42.bad", "not json").await;
    publish(&client, "user.42.bad", &too_big).await;
    // Well-formed JSON syntax, but not UTF-8 (inside a string): "one UTF-8 JSON value" says no.
    publish_bytes(&client, "user.42.bad", Bytes::from_static(b"\"\xff\xfe\"")).await;
    publish(&client, "user.42.good", r#"{"ok":true}"#).await;
    let e = sse.next().await;
    assert_eq!(e.event, "good", "the next event is the valid one; got {:?}", e.data);
    assert_eq!(envelope(&e)["data"]["ok"], true);
    // The user's messages are handled in order by one task: the counts are final now.
    assert_eq!(metric(&base, DROPPED_INVALID_JSON).await, 2.0);
    assert_eq!(metric(&base, DROPPED_TOO_LARGE).await, 1.0);

    publish(&client, "user.42.limit", &exactly).await;
    let e = sse.next().await;
    assert_eq!(e.event, "limit");
    assert_eq!(envelope(&e)["data"].as_str().unwrap().len(), 1022);

    // The stream stays open, and the server keeps serving new streams.
    expect_sentinel_next(&mut sse, &client, "user.42.sentinel").await;
    assert_eq!(status_of(&format!("{base}/healthz")).await, Some(200));
    let mut other = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    publish(&client, "user.43.message_new", r#"{"text":"still here"}"#).await;
    assert_eq!(envelope(&other.next().await)["data"]["text"], "still here");
    publish(&client, "broadcast.system_alert", "\"both\"").await;
    assert_eq!(other.next().await.event, "system_alert");
    assert_eq!(sse.next().await.event, "system_alert");
    bridge.stop().await;
}

/// Subjects the bridge's subscriptions match (`user.42.*`, `broadcast.*`) but whose event
/// token is not `[A-Za-z0-9_-]{1,128}`. async-nats 0.51 only refuses whitespace (and an
/// empty subject) on publish, and nats-server routes any non-wildcard token, so a
/// non-ASCII token (`héllo`), a 129-character one, a `:` and a `*` inside a token all
/// reach the bridge.
#[tokio::test]
async fn invalid_subjects_are_counted_and_skipped() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let base = bridge.base();
    let client = nats.client().await;
    let mut sse = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    assert_eq!(metric(&base, DROPPED_INVALID_SUBJECT).await, 0.0);

    publish(&client, "user.42.héllo", "1").await;
    publish(&client, &format!("user.42.{}", "e".repeat(129)), "1").await;
    publish(&client, "user.42.a:b", "1").await;
    publish(&client, "broadcast.a*b", "1").await; // `*` inside a token is a literal, not a wildcard
    publish(&client, "user.42.after_bad_subjects", "1").await;
    let e = sse.next().await;
    assert_eq!(e.event, "after_bad_subjects", "got {:?}", e.data);
    // A 128-character event name is fine.
    let longest = "e".repeat(128);
    publish(&client, &format!("user.42.{longest}"), "2").await;
    assert_eq!(sse.next().await.event, longest);
    eventually("4 invalid_subject drops", WAIT, || {
        let base = base.clone();
        async move { (metric(&base, DROPPED_INVALID_SUBJECT).await == 4.0).then_some(()) }
    })
    .await;
    assert!(sse.next_within(Duration::from_millis(300)).await.is_none());
    assert_eq!(metric(&base, DROPPED_INVALID_JSON).await, 0.0);

    let mut other = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    publish(&client, "broadcast.system_alert", "1").await;
    assert_eq!(other.next().await.event, "system_alert");
    assert_eq!(sse.next().await.event, "system_alert");
    bridge.stop().await;
}

#[tokio::test]
async fn pretty_printed_json_payload_is_one_event_whose_data_parses() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let client = nats.client().await;
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;

    // LF, CRLF and a lone CR (all JSON whitespace), and a string holding an escaped newline.
    publish(&client, "user.42.pretty", "{\n  \"text\": \"multi\\nline\",\r\n  \"list\": [1,\r 2]\n}").await;
    let e = sse.next().await;
    assert_eq!(e.event, "pretty");
    let env = envelope(&e);
    assert_eq!(env["data"]["text"], "multi\nline");
    assert_eq!(env["data"]["list"][1], 2);
    assert_eq!(env["userId"], "42");
    assert_eq!(env["event"], "pretty");
    assert!(sse.next_within(Duration::from_millis(300)).await.is_none(), "one payload, one event");

    publish(&client, "broadcast.pretty_b", "[\n  1,\n  2\n]").await;
    let e = sse.next().await;
    assert_eq!(envelope(&e)["data"], serde_json::json!([1, 2]));
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. One NATS subscription per connected user, shared and released
// ---------------------------------------------------------------------------------------

async fn sub_counts(nats: &NatsServer) -> (usize, usize, usize) {
    (
        nats.subscriptions_on("user.42.*").await,
        nats.subscriptions_on("user.43.*").await,
        nats.subscriptions_on("broadcast.*").await,
    )
}

#[tokio::test]
async fn one_nats_subscription_per_user_shared_by_streams_and_released_with_the_last() {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let base = bridge.base();
    let client = nats.client().await;

    let mut a1 = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    let mut a2 = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    let mut b = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    // A 200 means the subscription was confirmed; the monitoring view should agree right away.
    assert_eq!(sub_counts(&nats).await, (1, 1, 1), "(user.42.*, user.43.*, broadcast.*)");
    assert_eq!(metric(&base, OPEN_STREAMS).await, 3.0);
    assert_eq!(metric(&base, "realtime_bridge_connected_users").await, 2.0);

    publish(&client, "user.42.ping", r#"{"n":1}"#).await;
    let (e1, e2) = (a1.next().await, a2.next().await);
    assert_eq!(e1.event, "ping");
    assert_eq!(e1.id, e2.id, "both streams get the same framed event");
    assert_eq!(e1.data, e2.data);
    assert!(b.next_within(Duration::from_millis(300)).await.is_none(), "43 does not get 42's event");

    // One of 42's streams goes: the shared subscription stays.
    drop(a1);
    eventually("open streams back to 2", WAIT, || {
        let base = base.clone();
        async move { (metric(&base, OPEN_STREAMS).await == 2.0).then_some(()) }
    })
    .await;
    assert_eq!(sub_counts(&nats).await, (1, 1, 1));
    publish(&client, "user.42.ping", r#"{"n":2}"#).await;
    assert_eq!(envelope(&a2.next().await)["data"]["n"], 2);

    // The last one goes: the subscription is released; 43's remains.
    drop(a2);
    eventually("user.42.* unsubscribed", WAIT, || async {
        (nats.subscriptions_on("user.42.*").await == 0).then_some(())
    })
    .await;
    assert_eq!(sub_counts(&nats).await, (0, 1, 1));
    assert_eq!(metric(&base, OPEN_STREAMS).await, 1.0);
    assert_eq!(metric(&base, "realtime_bridge_connected_users").await, 1.0);
    publish(&client, "user.43.ping", r#"{"n":3}"#).await;
    assert_eq!(envelope(&b.next().await)["data"]["n"], 3);

    // Coming back subscribes again, once.
    let mut a3 = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    assert_eq!(sub_counts(&nats).await, (1, 1, 1));
    publish(&client, "user.42.ping", r#"{"n":4}"#).await;
    assert_eq!(envelope(&a3.next().await)["data"]["n"], 4);
    bridge.stop().await;
}

#[tokio::test]
async fn shared_subscription_dispatches_each_event_to_its_user_only() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.subscribe = realtime_bridge::config::UserSubscription::Shared;
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;

    let mut a = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    let mut a_filtered = SseClient::open(&base, "42", "?events=pong", Some(&token("42"))).await;
    let mut b = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    // One wildcard subscription for every user, none per user.
    assert_eq!(nats.subscriptions_on("user.*.*").await, 1);
    assert_eq!(sub_counts(&nats).await, (0, 0, 1), "(user.42.*, user.43.*, broadcast.*)");
    assert_eq!(metric(&base, "realtime_bridge_connected_users").await, 2.0);

    publish(&client, "user.44.ping", r#"{"n":0}"#).await; // nobody here: ignored
    publish(&client, "user.43.ping", r#"{"n":1}"#).await;
    publish(&client, "user.42.ping", r#"{"n":2}"#).await;
    publish(&client, "user.42.pong", r#"{"n":3}"#).await;
    let e = b.next().await;
    assert_eq!(
        (e.event.as_str(), envelope(&e)["data"]["n"].as_i64(), envelope(&e)["userId"].as_str()),
        ("ping", Some(1), Some("43"))
    );
    let e = a.next().await;
    assert_eq!(
        (e.event.as_str(), envelope(&e)["data"]["n"].as_i64(), envelope(&e)["userId"].as_str()),
        ("ping", Some(2), Some("42"))
    );
    assert_eq!(envelope(&a.next().await)["data"]["n"], 3);
    assert_eq!(envelope(&a_filtered.next().await)["data"]["n"], 3, "the filter applies as usual");
    assert!(b.next_within(Duration::from_millis(300)).await.is_none(), "43 gets only its own event");

    // Users come and go; the one subscription stays, and a returning user gets events at once.
    drop((a, a_filtered));
    eventually("user 42 gone", WAIT, || {
        let base = base.clone();
        async move { (metric(&base, "realtime_bridge_connected_users").await == 1.0).then_some(()) }
    })
    .await;
    assert_eq!(nats.subscriptions_on("user.*.*").await, 1);
    let mut again = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    publish(&client, "user.42.ping", r#"{"n":4}"#).await;
    assert_eq!(envelope(&again.next().await)["data"]["n"], 4);
    // A bad payload for a connected user is counted and skipped, as with per-user subscriptions.
    publish(&client, "user.42.ping", "not json").await;
    publish(&client, "user.42.ping", r#"{"n":5}"#).await;
    assert_eq!(envelope(&again.next().await)["data"]["n"], 5);
    assert_eq!(metric(&base, r#"realtime_bridge_events_dropped_total{reason="invalid_json"}"#).await, 1.0);
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// 5. NATS goes away and comes back
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn nats_restart_mid_stream_keeps_the_same_stream_delivering() {
    nats_restart_mid_stream(realtime_bridge::config::UserSubscription::PerUser).await;
}

#[tokio::test]
async fn nats_restart_mid_stream_keeps_delivering_with_the_shared_subscription() {
    nats_restart_mid_stream(realtime_bridge::config::UserSubscription::Shared).await;
}

async fn nats_restart_mid_stream(subscribe: realtime_bridge::config::UserSubscription) {
    let shared = subscribe == realtime_bridge::config::UserSubscription::Shared;
    let mut nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.subscribe = subscribe;
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;
    let mut sse = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    assert_eq!(status_of(&format!("{base}/readyz")).await, Some(200));
    assert_eq!(metric(&base, NATS_CONNECTED).await, 1.0);

    publish(&client, "user.42.before", r#"{"n":0}"#).await;
    assert_eq!(sse.next().await.event, "before");
    drop(client);

    nats.stop();
    wait_status(&format!("{base}/readyz"), 503, WAIT).await;
    assert_eq!(metric(&base, NATS_CONNECTED).await, 0.0);
    assert_eq!(status_of(&format!("{base}/healthz")).await, Some(200), "healthz does not depend on NATS");
    // The stream stays open while NATS is away.
    assert!(sse.next_within(Duration::from_millis(200)).await.is_none());

    nats.restart();
    wait_status(&format!("{base}/readyz"), 200, WAIT).await;
    assert_eq!(metric(&base, NATS_CONNECTED).await, 1.0);
    assert!(metric(&base, "realtime_bridge_nats_connects_total").await >= 2.0);
    assert!(metric(&base, "realtime_bridge_nats_disconnects_total").await >= 1.0, "the lost connection is counted");

    // Same SseClient, no reconnect: the user's and the broadcast subscriptions were restored.
    let client = nats.client().await;
    let env = publish_until_delivered(&client, &mut sse, "user.42.after", "after").await;
    assert_eq!(env["userId"], "42");
    let env = publish_until_delivered(&client, &mut sse, "broadcast.after_b", "after_b").await;
    assert!(env.get("userId").is_none());
    let per_user = usize::from(!shared);
    assert_eq!(sub_counts(&nats).await, (per_user, 0, 1), "restored once each, not duplicated");
    assert_eq!(nats.subscriptions_on("user.*.*").await, usize::from(shared));
    bridge.stop().await;
}

#[tokio::test]
async fn bridge_started_while_nats_is_down_becomes_ready_and_delivers() {
    let mut nats = NatsServer::start();
    nats.stop();
    let bridge = InProcessBridge::start(test_config(&nats.url())).await;
    let base = bridge.base();

    wait_status(&format!("{base}/healthz"), 200, WAIT).await;
    assert_eq!(status_of(&format!("{base}/readyz")).await, Some(503));
    assert_eq!(metric(&base, NATS_CONNECTED).await, 0.0);

    // A stream opened while NATS is down is served (it gets events once NATS is there).
    let mut early = tokio::time::timeout(WAIT, SseClient::open(&base, "42", "", Some(&token("42"))))
        .await
        .expect("a stream opens while NATS is down");

    nats.restart();
    wait_status(&format!("{base}/readyz"), 200, WAIT).await;
    assert_eq!(metric(&base, NATS_CONNECTED).await, 1.0);

    let client = nats.client().await;
    publish_until_delivered(&client, &mut early, "user.42.hello", "hello").await;
    publish_until_delivered(&client, &mut early, "broadcast.hello_all", "hello_all").await;
    let mut late = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    publish(&client, "user.43.hello", r#"{"n":1}"#).await;
    assert_eq!(late.next().await.event, "hello");
    assert_eq!(sub_counts(&nats).await, (1, 1, 1));
    bridge.stop().await;
}

// ---------------------------------------------------------------------------------------
// 6. Shutdown ends every stream
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_ends_every_open_stream_and_is_not_held_up() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    // Far above WAIT: if the open bodies held graceful shutdown up, `stop()` would time out.
    config.shutdown_grace = Duration::from_secs(60);
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;
    let mut a = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    let mut b = SseClient::open(&base, "42", "?events=system_alert", Some(&token("42"))).await;
    let mut c = SseClient::open(&base, "43", "", Some(&token("43"))).await;
    let mut raw = open_raw_body(&base, "44", "").await;
    publish(&client, "broadcast.system_alert", "1").await;
    for s in [&mut a, &mut b, &mut c] {
        assert_eq!(s.next().await.event, "system_alert");
    }

    let started = Instant::now();
    let raw_end = async {
        // The raw body must end cleanly (terminating chunk), not with a transport error.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, raw.next()).await {
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("raw body ended with an error: {e}"),
                Ok(None) => break,
                Err(_) => panic!("raw body still open after {WAIT:?}"),
            }
        }
    };
    tokio::join!(bridge.stop(), a.expect_end(WAIT), b.expect_end(WAIT), c.expect_end(WAIT), raw_end);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(status_of(&format!("{base}/healthz")).await, None, "no longer accepting");
}

// ---------------------------------------------------------------------------------------
// 7. Slow clients are cut off
// ---------------------------------------------------------------------------------------

fn slow_config(nats: &NatsServer) -> realtime_bridge::Config {
    let mut config = test_config(&nats.url());
    config.queue_len = 16;
    config.heartbeat = Duration::from_millis(200);
    config
}

/// docs/protocol.md §5.5: a client that cannot keep up is cut off. A client that stopped
/// reading is the extreme case: its stream must be cut within a bounded time, on either
/// connection path.
async fn never_reading_client_is_cut_off(keep_alive: bool) {
    let nats = NatsServer::start();
    let bridge = InProcessBridge::start(slow_config(&nats)).await;
    let base = bridge.base();
    let client = nats.client().await;
    // Head and `retry:` read, then never another byte.
    let stalled = common::raw::open_unread_stream(bridge.addr, "42", keep_alive).await;
    let mut healthy = SseClient::open(&base, "43", "", Some(&token("43"))).await;

    let filled = fill_until_stalled(&base, &client, "user.42.bulk").await;
    flood(&client, "user.42.bulk", 5000 - filled.min(4900)).await;

    // Other users are unaffected.
    publish(&client, "user.43.ping", "1").await;
    assert_eq!(healthy.next_within(WAIT).await.map(|e| e.event).as_deref(), Some("ping"));

    let deadline = Duration::from_secs(20);
    let started = Instant::now();
    let mut last = (0.0, 0.0);
    while started.elapsed() < deadline {
        // Nothing polls the stream of a full socket, so the cut comes from the write-stall
        // guard (three heartbeats without progress), not from the ring.
        let cut = metric_or_zero(&base, CUT_WRITE_STALLED).await;
        let open = metric(&base, OPEN_STREAMS).await;
        last = (cut, open);
        if cut >= 1.0 && open <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last.0 >= 1.0 && last.1 <= 1.0,
        "the stalled stream of user 42 (keep-alive: {keep_alive}) was not cut off within {deadline:?} (filled \
         its socket with {filled} events, then {} more): streams_cut{{write_stalled}}={}, open_streams={} (only \
         user 43's should remain)",
        5000 - filled.min(4900),
        last.0,
        last.1
    );
    assert_eq!(presence_streams(&base, "42").await, 0.0);
    drop(stalled);
    bridge.stop().await;
}

/// A stream request on a new connection: the bridge writes it itself (conn.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_that_never_reads_is_cut_off() {
    never_reading_client_is_cut_off(false).await;
}

/// A stream request after another request on a keep-alive connection: hyper serves it, and
/// the cut comes from `StallGuard` around the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_that_never_reads_is_cut_off_on_a_keep_alive_connection() {
    never_reading_client_is_cut_off(true).await;
}

/// The part of the cut-off that works through the body: once a stalled client reads
/// again, the stream sees it lagged past `queue_len` and ends (after the bytes already in
/// the socket), counting the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_off_once_it_reads_again() {
    let nats = NatsServer::start();
    let mut config = slow_config(&nats);
    // Long enough that the write-stall guard (3 heartbeats) stays out of this test.
    config.heartbeat = Duration::from_secs(20);
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;
    let (stalled, total) = stall_then_flood(&base, &client, 64).await;
    assert_eq!(metric(&base, OPEN_STREAMS).await, 1.0);

    let frames = read_until_cut(stalled).await;
    assert!(frames < total, "a cut stream misses events; got all {frames}");
    assert!(metric_or_zero(&base, CUT_SLOW_CLIENT).await >= 1.0);
    assert!(metric(&base, DROPPED_SLOW_CLIENT).await >= 1.0);
    eventually("no open stream left", WAIT, || {
        let base = base.clone();
        async move { (metric(&base, OPEN_STREAMS).await == 0.0).then_some(()) }
    })
    .await;
    bridge.stop().await;
}

/// The ring bounds how many frames a stream may lag; `queue_bytes` bounds their size: with
/// room for 1024 frames but only 32 KiB, a client that stops reading while 64 events of
/// 4 KiB arrive is cut off (as slow) when it reads again, long before the ring is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_cut_off_by_bytes_behind_not_only_by_frame_count() {
    let nats = NatsServer::start();
    let mut config = test_config(&nats.url());
    config.queue_len = 1024;
    config.queue_bytes = 32 * 1024;
    config.heartbeat = Duration::from_secs(20);
    let bridge = InProcessBridge::start(config).await;
    let base = bridge.base();
    let client = nats.client().await;
    let (stalled, total) = stall_then_flood(&base, &client, 64).await;

    let frames = read_until_cut(stalled).await;
    assert!(frames < total, "a cut stream misses events; got all {frames}");
    assert!(metric_or_zero(&base, CUT_SLOW_CLIENT).await >= 1.0);
    bridge.stop().await;
}

/// Opens a stream for user 42 that is never read, fills its socket, then publishes `more`
/// events of 4 KiB; returns the response (unread) and how many events were published.
async fn stall_then_flood(base: &str, client: &async_nats::Client, more: u64) -> (reqwest::Response, u64) {
    let stalled = open_raw(base, "42", "", Some(&token("42"))).await;
    assert_eq!(stalled.status(), 200);
    let filled = fill_until_stalled(base, client, "user.42.bulk").await;
    flood(client, "user.42.bulk", more).await;
    let total = filled + more;
    eventually("every event received from NATS", WAIT, || {
        let base = base.to_owned();
        async move { (metric(&base, "realtime_bridge_events_received_total").await >= total as f64).then_some(()) }
    })
    .await;
    (stalled, total)
}

/// Reads a stalled stream again until the bridge ends it; returns the frames read.
async fn read_until_cut(stalled: reqwest::Response) -> u64 {
    let mut body: RawBody = Box::pin(stalled.bytes_stream());
    let mut frames = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => frames += count(&chunk, b"\nevent: bulk\n") as u64,
            Ok(Some(Err(_)) | None) => return frames,
            Err(_) => panic!("stream not cut off after the client read {frames} frames"),
        }
    }
}

/// Open streams of `user`, as `GET /v1/presence/{user}` counts them.
async fn presence_streams(base: &str, user: &str) -> f64 {
    let url = format!("{base}/v1/presence/{user}");
    let resp =
        reqwest::Client::new().get(url).bearer_auth(token_with("svc", false, &["presence"])).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["streams"].as_f64().unwrap()
}

// ---------------------------------------------------------------------------------------
// Subscription confirmed before the stream opens (found while running the tests above)
// ---------------------------------------------------------------------------------------

/// A TCP proxy to nats-server that delays the bridge→NATS direction by `delay` (a constant
/// latency line, order kept); NATS→bridge is passed through at once. It models a bridge a
/// few milliseconds away from NATS, or a busy nats-server that reads a connection late.
struct LatencyProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    async fn start(nats_port: u16, delay: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", nats_port)).await else { continue };
                let (mut down_r, mut down_w) = down.into_split();
                let (mut up_r, mut up_w) = up.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                });
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match down_r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some((at, chunk)) = rx.recv().await {
                        tokio::time::sleep_until(at).await; // simulated latency, not synchronisation
                        if up_w.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// hub.rs promises (and every test above relies on it): once the client sees the stream
/// open, an event published for its user is not missed, because `attach` waits until "the
/// server has confirmed the subscription". With 150 ms between the bridge and NATS, the
/// first event published right after the 200 must still arrive.
#[tokio::test]
async fn event_published_right_after_the_stream_opened_is_delivered_despite_nats_latency() {
    let nats = NatsServer::start();
    let proxy = LatencyProxy::start(nats.port, Duration::from_millis(150)).await;
    let bridge = InProcessBridge::start(test_config(&proxy.url())).await;
    let base = bridge.base();
    wait_status(&format!("{base}/readyz"), 200, WAIT).await;
    let client = nats.client().await; // the producer talks to NATS directly

    let mut sse = SseClient::open(&base, "42", "", Some(&token("42"))).await;
    publish(&client, "user.42.first", r#"{"n":1}"#).await;
    let got = sse.next_within(Duration::from_secs(3)).await.map(|e| e.event);
    if got.is_none() {
        // The proxy and the subscription do work: a later event arrives.
        publish_until_delivered(&client, &mut sse, "user.42.second", "second").await;
    }
    assert_eq!(
        got.as_deref(),
        Some("first"),
        "the event published just after the stream opened was lost: the bridge's SUB had not reached \
         nats-server yet (async-nats `flush()` only empties the local write buffer, it waits for no PONG)"
    );
    bridge.stop().await;
}
