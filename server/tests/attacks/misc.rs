//! Smaller holes: amplification onto JetStream, presence spoofing, encodings, hosts, leaks.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use crate::common::raw::{bearer, stream_get, Conn};
use crate::common::*;
use crate::*;

/// The reproduction: 100 anonymous `GET /readyz` cost 200 JetStream API requests.
#[tokio::test]
async fn readyz_does_not_amplify_onto_jetstream() {
    let (nats, bridge) = history_bridge(|_| {}).await;
    let client = reqwest::Client::new();
    let before = jetstream_api_requests(&nats).await;
    let started = Instant::now();
    for _ in 0..50 {
        let r = client.get(format!("{}/readyz", bridge.base())).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let used = jetstream_api_requests(&nats).await - before;
    // One check a second at most, each one request.
    let allowed = started.elapsed().as_secs() + 1;
    assert!(used <= allowed, "50 readiness checks cost {used} JetStream API requests (allowed {allowed})");
}

/// JetStream API requests handled so far and consumers on the history stream (from the
/// monitoring endpoint, which costs no API request itself).
async fn api_and_consumers(nats: &NatsServer) -> (u64, u64) {
    let url = format!("http://127.0.0.1:{}/jsz?accounts=true&streams=true", nats.monitor_port);
    let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let consumers = v["account_details"][0]["stream_detail"][0]["state"]["consumer_count"].as_u64().unwrap_or(0);
    (v["api"]["total"].as_u64().unwrap(), consumers)
}

/// The reproduction: a resume cost ~9 JetStream API requests.
#[tokio::test]
async fn a_resume_costs_few_jetstream_requests() {
    let (nats, bridge) = history_bridge(|_| {}).await;
    let js = async_nats::jetstream::new(nats.client().await);
    // The user's channel exists already (another tab, which gets the events), so only the
    // resume itself is counted.
    let mut tab = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    for i in 0..3 {
        js.publish("user.42.e", format!("{i}").into()).await.unwrap().await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(tab.next().await.event, "e");
    }
    let (before, _) = api_and_consumers(&nats).await;
    let mut sse = SseClient::open(&bridge.base(), "42", "?lastEventId=0:0", Some(&token("42"))).await;
    for _ in 0..3 {
        assert_eq!(sse.next().await.event, "e");
    }
    // The catch-up's consumer is deleted once it is read: wait for that request to land.
    let after = eventually("the catch-up's consumer is deleted", WAIT, || async {
        let (api, consumers) = api_and_consumers(&nats).await;
        (consumers == 0).then_some(api)
    })
    .await;
    // Stream info, consumer create, consumer delete.
    assert!(after - before <= 4, "a resume cost {} JetStream API requests", after - before);
}

#[tokio::test]
async fn an_encoded_slash_is_not_a_second_stream_url() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/users/42%2Fevents", bridge.base()))
        .bearer_auth(token("42"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(&resp.text().await.unwrap()), "not_found");
}

/// The reproduction (by reading): with `--no-auth` on loopback any `Host` was answered, so a
/// page whose name resolves to 127.0.0.1 (DNS rebinding) could read every stream.
#[tokio::test]
async fn no_auth_answers_only_loopback_host_names() {
    let (_nats, bridge) = bridge(|c| c.auth = realtime_bridge::auth::Auth::Disabled).await;
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example"] {
        let req = format!("GET /v1/users/42/events HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (status, body) = raw_request(&bridge, req.as_bytes()).await;
        assert_eq!((status, error_code(&body).as_str()), (403, "host_not_allowed"), "{host}: {body}");
        let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, _) = raw_request(&bridge, req.as_bytes()).await;
        assert_eq!(status, 403, "{host}");
    }
    let port = bridge.addr.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "app.localhost".into(), "[::1]:1".into()] {
        let mut conn = Conn::connect(bridge.addr).await;
        conn.send(format!("GET /v1/users/42/events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await;
        conn.expect_stream().await;
    }
}

/// JSON allows U+2028/U+2029 raw in strings; clients that split lines on them would see
/// injected fields. They reach the wire escaped, and the JSON is the same.
#[tokio::test]
async fn line_separators_reach_the_wire_escaped() {
    let (nats, bridge) = bridge(|_| {}).await;
    let client = nats.client().await;
    let (mut conn, _) = open_stream(&bridge, "42").await;
    let payload = "{\"t\":\"a\u{2028}event: x\u{2029}data: y\u{85}\"}";
    publish(&client, "user.42.msg", payload).await;
    conn.read_body_until("the event", |b| {
        crate::common::raw::find(b, b"event: msg\n").is_some_and(|_| b.ends_with(b"\n\n"))
    })
    .await;
    let raw = conn.body();
    for sep in ["\u{2028}", "\u{2029}", "\u{85}"] {
        assert!(crate::common::raw::find(&raw, sep.as_bytes()).is_none(), "{sep:?} raw in {:?}", conn.text());
    }
    let text = String::from_utf8(raw).unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let env: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(env["data"]["t"], "a\u{2028}event: x\u{2029}data: y\u{85}");
}

async fn open_stream(bridge: &InProcessBridge, user: &str) -> (Conn, crate::common::raw::Head) {
    let mut conn = Conn::connect(bridge.addr).await;
    conn.send(stream_get(user, "1.1", &[&bearer(user)]).as_bytes()).await;
    let head = conn.expect_stream().await;
    (conn, head)
}

#[tokio::test]
async fn a_client_that_keeps_sending_into_its_stream_is_cut_off() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let (mut conn, _) = open_stream(&bridge, "42").await;
    // Pipelined garbage a legitimate client never sends, more than the bridge discards.
    for _ in 0..16 {
        tokio::io::AsyncWriteExt::write_all(&mut conn.sock, &[b'x'; 1024]).await.unwrap();
    }
    conn.expect_closed().await;
}

/// Answers every `_RB.presence.count.*` query as each of `instances` with `streams`.
async fn fake_count_replies(client: async_nats::Client, instances: Vec<String>, streams: u64) {
    let mut queries = client.subscribe("_RB.presence.count.*").await.unwrap();
    client.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = queries.next().await {
            let Some(reply) = msg.reply else { continue };
            for id in &instances {
                let body = serde_json::json!({ "instance": id, "streams": streams }).to_string();
                client.publish(reply.clone(), body.into()).await.unwrap();
            }
        }
    });
}

/// The reproduction: fake peers (hellos) and fake count replies made a presence query take
/// 750 ms and report a million streams for a user with none; in a debug build two huge
/// counts overflowed. Now sums saturate, only announced peers count, a peer that never
/// answers stops being waited for, and NATS requests are answered concurrently.
#[tokio::test]
async fn presence_holds_against_fake_peers() {
    let (nats, bridge) = bridge(|_| {}).await;
    let client = nats.client().await;
    let p = token_with("svc", false, &["presence"]);
    let http = reqwest::Client::new();
    let ask = |user: &'static str| {
        let (http, p, base) = (http.clone(), p.clone(), bridge.base());
        async move {
            let started = Instant::now();
            let r = http.get(format!("{base}/v1/presence/{user}")).bearer_auth(p).send().await.unwrap();
            assert_eq!(r.status(), 200);
            (r.json::<serde_json::Value>().await.unwrap(), started.elapsed())
        }
    };

    // Two announced peers answering u64::MAX each, one stray instance nobody announced.
    for id in ["fakeA", "fakeB", "silent"] {
        client.publish("_RB.presence.hello", Bytes::from(id)).await.unwrap();
    }
    // Junk hellos are ignored.
    client.publish("_RB.presence.hello", Bytes::from("a.b*")).await.unwrap();
    client.publish("_RB.presence.hello", Bytes::from("x".repeat(1000))).await.unwrap();
    client.flush().await.unwrap();
    fake_count_replies(client.clone(), vec!["fakeA".into(), "fakeB".into(), "stray".into()], u64::MAX).await;
    let (v, _) = eventually("the fake peers are known", WAIT, || async {
        let (v, took) = ask("42").await;
        (v["streams"].as_u64() == Some(u64::MAX)).then_some((v, took))
    })
    .await;
    assert_eq!(v["connected"], true);

    // `silent` never answers: waited for twice, then no more.
    let mut took = Vec::new();
    for _ in 0..4 {
        took.push(ask("42").await.1);
    }
    assert!(took[3] < Duration::from_millis(500), "queries still wait for a silent peer: {took:?}");

    // Concurrent NATS requests are answered side by side, not one after the other.
    client.publish("_RB.presence.hello", Bytes::from("silent2")).await.unwrap();
    client.flush().await.unwrap();
    let started = Instant::now();
    let asks = (0..6).map(|_| client.request("realtime.presence.43", Bytes::new()));
    for r in futures::future::join_all(asks).await {
        let v: serde_json::Value = serde_json::from_slice(&r.unwrap().payload).unwrap();
        assert_eq!(v["userId"], "43");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "6 requests took {:?}", started.elapsed());
}

/// 503 bodies say what failed, never the NATS or JetStream error text.
#[tokio::test]
async fn unavailable_answers_do_not_leak_jetstream_errors() {
    let (nats, bridge) = history_bridge(|_| {}).await;
    let js = async_nats::jetstream::new(nats.client().await);
    js.delete_stream("REALTIME").await.unwrap();
    let url = format!("{}/readyz", bridge.base());
    let body = eventually("readyz sees the stream gone", WAIT, || async {
        let r = reqwest::get(url.as_str()).await.ok()?;
        (r.status() == 503).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert_eq!(error_code(&body), "unavailable");
    for leak in ["not found", "10059", "REALTIME", "stream"] {
        assert!(!body.contains(leak), "{leak:?} in {body}");
    }
}
