//! Attacks on a running bridge, one test each: what an outside review reproduced against
//! the bridge, performed again here against a real nats-server and a real bridge (in this
//! process, on 127.0.0.1:0), each checking the bridge now holds.
//!
//! - `limits`: unbounded inputs (event lists, request targets, slow bodies, connection
//!   floods, publish fan-out).
//! - `csrf`: cross-site publishing and over-broad tokens.
//! - `forged`: messages published on the bridge's own subjects.
//! - `lifetime`: streams that outlive their token, control frame names used by producers.
//! - `misc`: smaller holes (amplification, presence spoofing, encodings, hosts, leaks).

#![allow(clippy::unwrap_used, missing_debug_implementations)]

#[path = "../common/mod.rs"]
mod common;

mod csrf;
mod forged;
mod lifetime;
mod limits;
mod misc;

use std::time::Duration;

use common::raw::Conn;
use common::*;
use realtime_bridge::config::HistoryMode;

/// A bridge with `test_config` changed by `tweak`, and its nats-server; returns once the
/// bridge answers `/readyz` (its subscriptions and, in history mode, the stream exist).
pub async fn bridge(tweak: impl FnOnce(&mut realtime_bridge::Config)) -> (NatsServer, InProcessBridge) {
    let (nats, bridge) = common::raw::start(tweak).await;
    let url = format!("{}/readyz", bridge.base());
    eventually("the bridge is ready", WAIT, || async {
        let status = reqwest::get(url.as_str()).await.ok()?.status();
        (status == 200 || status == 403).then_some(())
    })
    .await;
    (nats, bridge)
}

/// The same in history mode.
pub async fn history_bridge(tweak: impl FnOnce(&mut realtime_bridge::Config)) -> (NatsServer, InProcessBridge) {
    bridge(|c| {
        c.history.mode = HistoryMode::On;
        tweak(c);
    })
    .await
}

/// Sends `request` on a new connection and reads the whole answer (the bridge closes or the
/// body is complete); returns the status and the body.
pub async fn raw_request(bridge: &InProcessBridge, request: &[u8]) -> (u16, String) {
    let mut conn = Conn::connect(bridge.addr).await;
    conn.send(request).await;
    let head = conn.head().await;
    let len: usize = head.header("content-length").map_or(0, |v| v.parse().unwrap());
    conn.read_until("the body", |b| b.len() >= len).await;
    (head.status, String::from_utf8_lossy(&conn.buf[..len]).into_owned())
}

/// The `code` of a JSON error body, checking it is one.
pub fn error_code(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert!(v["error"].is_string(), "no error sentence: {body}");
    v["code"].as_str().unwrap_or_else(|| panic!("no code: {body}")).to_owned()
}

/// The subjects `sub` received until `sentinel` (published on `client` after everything
/// else, so it arrives last) shows up.
pub async fn received_until_sentinel(
    client: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    sentinel: &str,
) -> Vec<String> {
    publish(client, sentinel, "0").await;
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, futures::StreamExt::next(sub)).await.expect("sentinel in time").unwrap();
        if msg.subject.as_str() == sentinel {
            return got;
        }
        got.push(msg.subject.to_string());
    }
}

/// JetStream API requests the server has handled so far (its monitoring endpoint).
pub async fn jetstream_api_requests(nats: &NatsServer) -> u64 {
    let url = format!("http://127.0.0.1:{}/jsz", nats.monitor_port);
    let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    v["api"]["total"].as_u64().unwrap()
}

/// `POST /v1/publish` with `headers` (name, value) and `body`; returns status and body.
pub async fn post(base: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("{base}/v1/publish")).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(WAIT, req.send()).await.expect("answer in time").unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// A short wait used only to let something *not* happen (never to synchronise).
pub const QUIET: Duration = Duration::from_millis(300);
