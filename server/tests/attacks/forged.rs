//! Messages published on the bridge's own subjects by someone else than JetStream.

use async_nats::HeaderMap;

use crate::common::*;
use crate::*;

const HUGE: &str = "18446744073709551000";

/// Publishes a copy on `rt.<subject>` that looks like JetStream's re-publish.
async fn forge(client: &async_nats::Client, subject: &str, seq: &str) {
    let mut h = HeaderMap::new();
    h.insert("Nats-Sequence", seq);
    h.insert("Nats-Time-Stamp", "2030-01-01T00:00:00Z");
    h.insert("Nats-Subject", subject);
    client.publish_with_headers(format!("rt.{subject}"), h, r#"{"forged":true}"#.into()).await.unwrap();
    client.flush().await.unwrap();
}

/// The reproduction: one forged `rt.broadcast.*` message with a huge `Nats-Sequence` reached
/// every stream, then real broadcasts were dropped as duplicates and every cursor was
/// poisoned.
#[tokio::test]
async fn a_forged_sequence_is_dropped_and_real_events_still_flow() {
    let (nats, bridge) = history_bridge(|_| {}).await;
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;

    forge(&client, "broadcast.evil", HUGE).await;
    forge(&client, "user.42.evil", HUGE).await;
    // A sequence the stream does not hold yet, but only just: checked too.
    let next = js.get_stream("REALTIME").await.unwrap().cached_info().state.last_sequence + 5;
    forge(&client, "user.42.evil", &next.to_string()).await;
    js.publish("broadcast.real", r#"{"n":1}"#.into()).await.unwrap().await.unwrap();
    js.publish("user.42.real", r#"{"n":2}"#.into()).await.unwrap().await.unwrap();

    let mut got = Vec::new();
    while got.len() < 2 {
        let e = sse.next().await;
        assert_ne!(e.event, "evil", "a forged event was delivered: {}", e.data);
        assert!(!e.id.contains(HUGE), "a forged sequence reached the cursor: {}", e.id);
        got.push(e.event);
    }
    assert_eq!(got, ["real", "real"]);
    assert_eq!(metric(&bridge.base(), r#"realtime_bridge_events_dropped_total{reason="forged"}"#).await, 3.0);

    // A new stream starts from a real position.
    let resp = open_raw(&bridge.base(), "43", "", Some(&token("43"))).await;
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut body)).await.unwrap().unwrap().unwrap();
    let text = String::from_utf8_lossy(&first).into_owned();
    assert!(text.contains("id: ") && !text.contains(HUGE), "{text:?}");
}

/// The control: with `--trust-republished` (for deployments whose NATS permissions keep
/// everyone but JetStream off `rt.>`), the same forgery is taken as JetStream's. This shows
/// the check above is what stops it.
#[tokio::test]
async fn with_trust_republished_the_forgery_is_taken() {
    let (nats, bridge) = history_bridge(|c| c.history.trust_republished = true).await;
    let client = nats.client().await;
    let mut sse = SseClient::open(&bridge.base(), "42", "", Some(&token("42"))).await;
    forge(&client, "user.42.evil", HUGE).await;
    let e = sse.next().await;
    assert_eq!(e.event, "evil");
    assert!(e.id.starts_with(HUGE), "{}", e.id);
}
