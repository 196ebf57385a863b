//! Async helpers that talk to running processes over HTTP (reqwest) and NATS (async-nats).
//! They panic on what a test should not see (a refused request, a missing series).

use std::time::Duration;

use crate::metrics::sample;
use crate::wait::eventually;
use crate::{NatsServer, WAIT};

/// Status of `GET url`, or `None` if the request failed (each attempt bounded to 3 s).
pub async fn status_of(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().expect("a reqwest client");
    client.get(url).send().await.ok().map(|r| r.status().as_u16())
}

/// Waits (bounded by `timeout`) until `GET url` answers `status`.
pub async fn wait_status(url: &str, status: u16, timeout: Duration) {
    eventually(&format!("GET {url} -> {status}"), timeout, || async move {
        (status_of(url).await == Some(status)).then_some(())
    })
    .await;
}

/// `POST {base}/v1/publish` with a Bearer `token` and a JSON `body`.
pub async fn post_publish(base: &str, token: &str, body: &serde_json::Value) -> reqwest::Response {
    let req = reqwest::Client::new().post(format!("{base}/v1/publish")).bearer_auth(token).json(body);
    tokio::time::timeout(WAIT, req.send()).await.expect("publish answered in time").expect("publish answered")
}

/// [`post_publish`], returning the status and the JSON body (`null` if it is not JSON).
pub async fn post_publish_status(base: &str, token: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let resp = post_publish(base, token, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// `GET {base}/v1/presence/{user}` with `token`; panics unless 200.
pub async fn presence_http(base: &str, user: &str, token: &str) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/presence/{user}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("presence answered");
    assert_eq!(resp.status(), 200, "presence refused");
    resp.json().await.expect("presence answers JSON")
}

async fn metrics_text(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/metrics")).await.expect("/metrics answered");
    resp.text().await.expect("/metrics text")
}

/// The value of an unlabelled or labelled sample on `{base}/metrics`, e.g.
/// `realtime_bridge_events_dropped_total{reason="invalid_json"}`; panics if absent.
pub async fn metric(base: &str, series: &str) -> f64 {
    let text = metrics_text(base).await;
    sample(&text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Like [`metric`], but a series that does not exist yet reads as 0 (labelled counters
/// are created when first counted).
pub async fn metric_or_zero(base: &str, series: &str) -> f64 {
    sample(&metrics_text(base).await, series).unwrap_or(0.0)
}

/// Waits (bounded by [`WAIT`]) until [`metric`] reads `value`.
pub async fn wait_metric(base: &str, series: &str, value: f64) {
    eventually(
        &format!("{series} == {value}"),
        WAIT,
        || async move { (metric(base, series).await == value).then_some(()) },
    )
    .await;
}

impl NatsServer {
    /// A NATS client connected to this server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to nats-server")
    }

    /// Subscriptions on the server whose subject is `subject` (from the monitoring endpoint).
    pub async fn subscriptions_on(&self, subject: &str) -> usize {
        let url = format!("http://127.0.0.1:{}/subsz?subs=1&limit=100000", self.monitor_port);
        let v: serde_json::Value = reqwest::get(url).await.expect("subsz answered").json().await.expect("subsz JSON");
        v["subscriptions_list"].as_array().map_or(0, |subs| subs.iter().filter(|s| s["subject"] == subject).count())
    }
}
