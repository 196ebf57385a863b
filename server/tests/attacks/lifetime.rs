//! Streams that outlive their token, and control frame names used by producers.

use std::time::Duration;

use realtime_bridge::auth::{sign_hs256, unix_now, Claims, Scopes};

use crate::common::raw::{bearer, stream_get, Conn, HEALTHZ};
use crate::common::*;
use crate::*;

/// A token for `user` whose `exp` is `exp_in` seconds from now (negative: already past,
/// but within the bridge's 30 s leeway).
fn token_expiring(user: &str, exp_in: i64) -> String {
    let exp = unix_now().saturating_add_signed(exp_in);
    let claims = Claims { sub: Some(user.into()), exp, rb_admin: false, rb_scope: Scopes::default() };
    sign_hs256(SECRET, &claims).unwrap()
}

/// Reads events until one named `end`; returns its reason.
async fn end_reason(sse: &mut SseClient) -> String {
    loop {
        let e = sse.next().await;
        if e.event == "end" {
            return envelope(&e)["reason"].as_str().unwrap().to_owned();
        }
    }
}

/// The reproduction: a stream opened with a short-lived token still delivered events long
/// after the token expired. Now it ends with `end` / `token_expired` once `exp` plus the
/// leeway has passed (checked at the next heartbeat), and a client back with a fresh token
/// and its cursor misses nothing.
#[tokio::test]
async fn a_stream_ends_when_its_token_expires_and_resumes_without_loss() {
    let (nats, bridge) = history_bridge(|c| c.heartbeat = Duration::from_millis(200)).await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    // Expired 28 s ago: accepted for 2 more seconds (30 s leeway).
    let short = token_expiring("77", -28);
    let mut sse = SseClient::open(&bridge.base(), "77", "", Some(&short)).await;
    js.publish("user.77.before", "1".into()).await.unwrap().await.unwrap();
    let before = sse.next().await;
    assert_eq!(before.event, "before");
    assert_eq!(end_reason(&mut sse).await, "token_expired");
    sse.expect_end(WAIT).await;
    assert_eq!(metric(&bridge.base(), r#"realtime_bridge_streams_cut_total{reason="token_expired"}"#).await, 1.0);
    // The same token is refused now.
    assert_eq!(open_raw(&bridge.base(), "77", "", Some(&short)).await.status(), 401);

    // Published while the client fetches a new token: delivered on resume, once.
    js.publish("user.77.meanwhile", "2".into()).await.unwrap().await.unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/users/77/events", bridge.base()))
        .bearer_auth(token("77"))
        .header("last-event-id", before.id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut events =
        futures::StreamExt::map(eventsource_stream::Eventsource::eventsource(resp.bytes_stream()), |r| r.unwrap());
    let next = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut events)).await.unwrap().unwrap();
    assert_eq!((next.event.as_str(), envelope(&next)["data"].as_u64()), ("meanwhile", Some(2)));
}

#[tokio::test]
async fn a_stream_ends_after_the_max_lifetime() {
    let (_nats, bridge) = bridge(|c| {
        c.heartbeat = Duration::from_millis(200);
        c.limits.max_stream_lifetime = Some(Duration::from_secs(1));
    })
    .await;
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    assert_eq!(end_reason(&mut sse).await, "max_lifetime");
    sse.expect_end(WAIT).await;
}

/// On shutdown every stream gets `end` / `shutdown` as its last frame, on both connection
/// paths, so clients reconnect elsewhere at once.
#[tokio::test]
async fn streams_end_with_an_end_frame_on_shutdown() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let mut fresh = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    // A stream on a keep-alive connection that served something first (hyper's path).
    let mut reused = Conn::connect(bridge.addr).await;
    reused.send(HEALTHZ.as_bytes()).await;
    let head = reused.head().await;
    assert_eq!(head.status, 200);
    reused.read_until("healthz body", |b| b.len() >= 3).await;
    reused.buf.clear();
    reused.send(stream_get("43", "1.1", &[&bearer("43")]).as_bytes()).await;
    reused.expect_stream().await;

    let stopping = tokio::spawn(bridge.stop());
    assert_eq!(end_reason(&mut fresh).await, "shutdown");
    fresh.expect_end(WAIT).await;
    reused.expect_closed().await;
    let body = String::from_utf8(reused.body()).unwrap();
    assert!(body.ends_with("event: end\ndata: {\"reason\":\"shutdown\"}\n\n"), "{body:?}");
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

/// `end` and `reset` are the stream's own frames: a producer's event with either name is
/// skipped and counted, live and in a catch-up, and refused by the HTTP publish.
#[tokio::test]
async fn producers_cannot_send_control_frames() {
    let (nats, bridge) = history_bridge(|_| {}).await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    js.publish("user.42.end", r#"{"reason":"shutdown"}"#.into()).await.unwrap().await.unwrap();
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    js.publish("broadcast.reset", r#"{"reason":"unknown_cursor"}"#.into()).await.unwrap().await.unwrap();
    js.publish("user.42.after", "1".into()).await.unwrap().await.unwrap();
    assert_eq!(sse.next().await.event, "after");
    // From history too.
    let mut resumed = SseClient::open(&bridge.base(), "42", "?lastEventId=0:0", Some(&token("42"))).await;
    assert_eq!(resumed.next().await.event, "after");
    let dropped = metric(&bridge.base(), r#"realtime_bridge_events_dropped_total{reason="reserved_event"}"#).await;
    assert!(dropped >= 2.0, "{dropped}");

    let auth = format!("Bearer {}", token_with("svc", false, &["publish"]));
    let (status, body) = post(
        &bridge.base(),
        &[("authorization", auth.as_str()), ("content-type", "application/json")],
        r#"{"users":["42"],"event":"end","data":{}}"#,
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "invalid_event_name"), "{body}");
    assert!(body.contains("reserved"), "{body}");
}
