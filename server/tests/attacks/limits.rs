//! Unbounded inputs: event lists, request targets, slow bodies, connection floods, fan-out.

use std::time::Duration;

use futures::StreamExt;

use crate::common::raw::{bearer, Conn};
use crate::common::*;
use crate::*;

/// `n` distinct valid event names (`e0`, `e1`, ...).
fn names(n: usize) -> String {
    (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>().join(",")
}

#[tokio::test]
async fn a_long_events_list_is_refused_and_says_the_limit() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let t = token("42");
    let resp = open_raw(&bridge.base(), "42", &format!("?events={}", names(65)), Some(&t)).await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert_eq!(error_code(&body), "too_many_events");
    assert!(body.contains("64") && body.contains("--max-filter-events"), "{body}");
    // Duplicates do not count twice, and the limit itself is fine.
    let list = format!("{},e0,e1", names(64));
    let _s = SseClient::open(&bridge.base(), "42", &format!("?events={list}"), Some(&t)).await;
}

/// The reproduction: resuming with a cursor and thousands of names made the catch-up consumer
/// carry two filter subjects per name, which nats-server checks pairwise. Whatever the list,
/// JetStream now gets the user's and the broadcast subjects, and the stream filters.
#[tokio::test]
async fn a_resume_never_hands_jetstream_more_than_two_filter_subjects() {
    let (nats, bridge) = history_bridge(|c| c.limits.max_filter_events = 500).await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    for (subject, n) in [("user.42.e1", 1), ("user.42.other", 2), ("broadcast.e3", 3), ("user.43.e1", 4)] {
        js.publish(subject, format!("{{\"n\":{n}}}").into()).await.unwrap().await.unwrap();
    }
    let (_c, mut creates) = subscriber(&nats, "$JS.API.CONSUMER.CREATE.>").await;

    let query = format!("?events={}&lastEventId=0:0", names(500));
    let mut sse = SseClient::open(&bridge.base(), "42", &query, Some(&token("42"))).await;
    // The catch-up delivers what the filter wants, in stored order, and nothing else.
    let first = sse.next().await;
    assert_eq!((first.event.as_str(), envelope(&first)["data"]["n"].as_u64()), ("e1", Some(1)));
    let second = sse.next().await;
    assert_eq!((second.event.as_str(), envelope(&second)["data"]["n"].as_u64()), ("e3", Some(3)));

    let msg = tokio::time::timeout(WAIT, creates.next()).await.expect("a consumer was created").unwrap();
    let req: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    let config = &req["config"];
    let filters = config["filter_subjects"].as_array().map_or(0, Vec::len)
        + usize::from(config["filter_subject"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(filters <= 2, "{filters} filter subjects handed to JetStream: {config}");
}

#[tokio::test]
async fn request_targets_past_the_limit_are_414_on_both_connection_paths() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let long = format!("?x={}", "a".repeat(9 * 1024));
    let auth = bearer("42");
    // A head under 16 KiB: the bridge's own connection path.
    let req = format!("GET /v1/users/42/events{long} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n\r\n");
    let (status, body) = raw_request(&bridge, req.as_bytes()).await;
    assert_eq!((status, error_code(&body).as_str()), (414, "uri_too_long"), "{body}");
    assert!(body.contains("--max-request-target"), "{body}");
    // Over 16 KiB (a big cookie): hyper's path, same answer.
    let cookie = format!("Cookie: big={}", "c".repeat(20 * 1024));
    let req = format!("GET /v1/users/42/events{long} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n{cookie}\r\n\r\n");
    let (status, body) = raw_request(&bridge, req.as_bytes()).await;
    assert_eq!((status, error_code(&body).as_str()), (414, "uri_too_long"), "{body}");
    // Any path.
    let req = format!("GET /healthz{long} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (status, _) = raw_request(&bridge, req.as_bytes()).await;
    assert_eq!(status, 414);
}

/// The reproduction: an unauthenticated POST announcing a large body stayed open, and
/// `Expect: 100-continue` got `100 Continue` without a token.
#[tokio::test]
async fn publish_is_refused_from_its_head_before_any_body_byte() {
    let (_nats, bridge) = bridge(|_| {}).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut conn = Conn::connect(bridge.addr).await;
        let head = format!(
            "POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{expect}Content-Length: 500000\r\n\r\n"
        );
        conn.send(head.as_bytes()).await;
        let answer = conn.head().await;
        assert_eq!(answer.status, 401, "{expect:?}: {}", answer.text);
    }
}

#[tokio::test]
async fn a_trickled_publish_body_gets_408() {
    let (_nats, bridge) = bridge(|c| c.limits.request_timeout = Duration::from_millis(500)).await;
    let mut conn = Conn::connect(bridge.addr).await;
    let t = token_with("svc", false, &["publish"]);
    let head = format!(
        "POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"users\""
    );
    conn.send(head.as_bytes()).await;
    let answer = conn.head().await;
    assert_eq!(answer.status, 408, "{}", answer.text);
    let len: usize = answer.header("content-length").unwrap().parse().unwrap();
    conn.read_until("the body", |b| b.len() >= len).await;
    let body = String::from_utf8_lossy(&conn.buf).into_owned();
    assert_eq!(error_code(&body), "request_timeout");
    assert!(body.contains("--request-timeout"), "{body}");
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_at_once() {
    let (_nats, bridge) = bridge(|c| c.max_connections = Some(3)).await;
    // Three silent connections hold every place (each waits for its head).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Conn::connect(bridge.addr).await);
    }
    let client = reqwest::Client::new();
    let mut refused = Conn::connect(bridge.addr).await;
    let head = refused.head().await;
    assert_eq!(head.status, 503, "{}", head.text);
    head.expect_header("retry-after", "1");
    refused.expect_closed().await;
    assert_eq!(error_code(&String::from_utf8_lossy(&refused.buf)), "unavailable");
    // One leaves: its place is given back and requests are served again.
    drop(held.pop());
    let base = bridge.base();
    let refused_count = eventually("a place is free", WAIT, || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("realtime_bridge_connections_refused_total "))
                .map(|v| v.trim().parse::<f64>().unwrap())
        }
    })
    .await;
    // At least the one above (a probe that raced the freed place may add its own).
    assert!(refused_count >= 1.0, "{refused_count}");
}

/// The reproduction: 5,000 copies of one user in one request were all published.
#[tokio::test]
async fn publish_fan_out_is_deduplicated_and_bounded() {
    let (nats, bridge) = bridge(|c| c.limits.max_publish_bytes = 4096).await;
    let (client, mut sub) = subscriber(&nats, "user.>").await;
    let t = token_with("svc", false, &["publish"]);
    let auth = format!("Bearer {t}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    let body = serde_json::json!({ "users": vec!["42"; 5000], "event": "spam", "data": {"x": 1} }).to_string();
    let (status, answer) = post(&bridge.base(), &headers, &body).await;
    assert_eq!((status, answer.as_str()), (202, r#"{"published":1}"#));
    assert_eq!(received_until_sentinel(&client, &mut sub, "user.sentinel.done").await, ["user.42.spam"]);

    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let body = serde_json::json!({ "users": many, "event": "spam", "data": 1 }).to_string();
    let (status, answer) = post(&bridge.base(), &headers, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("1000") && answer.contains("--max-publish-users"), "{answer}");

    // 10 users × 500 bytes is over the 4 KiB this bridge allows per request.
    let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
    let body = serde_json::json!({ "users": users, "event": "big", "data": "x".repeat(498) }).to_string();
    let (status, answer) = post(&bridge.base(), &headers, &body).await;
    assert_eq!((status, error_code(&answer).as_str()), (413, "payload_too_large"), "{answer}");
    assert!(answer.contains("--max-publish-bytes"), "{answer}");
    assert!(received_until_sentinel(&client, &mut sub, "user.sentinel.done").await.is_empty());
}
