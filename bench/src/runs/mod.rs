//! The benchmarks, one module each (named after its subcommand), and what they share:
//! the event name they publish, the bounds on opening streams, the payload that carries its
//! publish time, the NATS connection they open and the bridge's own counters from /metrics.

mod broadcast;
mod failover;
mod idle;
mod latency;
mod publish;
mod storm;
mod throughput;

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::client::{self, now_nanos};
use crate::harness::Setup;
use crate::report::Report;

pub(crate) use broadcast::{broadcast, BroadcastArgs};
pub(crate) use failover::{failover, FailoverArgs};
pub(crate) use idle::{idle, IdleArgs};
pub(crate) use latency::{latency, LatencyArgs};
pub(crate) use publish::{publish, PublishArgs};
pub(crate) use storm::{storm, StormArgs};
pub(crate) use throughput::{throughput, ThroughputArgs};

/// The event name every benchmark publishes.
const EVENT: &str = "bench";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `u0, u0, u1, u1, ...`: `per_user` streams for each user, `n` streams in all.
/// The bench's user ids are `u<n>`; subjects and paths are built from them by the wire
/// crate, like the server builds its own.
#[allow(clippy::expect_used)] // `u<n>` is always a valid id
fn user_id(n: usize) -> realtime_bridge_wire::UserId {
    realtime_bridge_wire::UserId::parse(&format!("u{n}")).expect("a valid user id")
}

/// `user.u<n>.*`, or its JetStream re-published copy `rt.user.u<n>.*`.
fn user_wildcard(n: usize, republished: bool) -> String {
    let subject = realtime_bridge_wire::subject::user_wildcard(&user_id(n));
    if republished {
        realtime_bridge_wire::subject::republished(&subject)
    } else {
        subject
    }
}

/// The bench's one event name, validated.
#[allow(clippy::expect_used)] // a constant that is a valid name
fn event_name() -> realtime_bridge_wire::EventName {
    realtime_bridge_wire::EventName::parse(EVENT).expect("a valid event name")
}

/// `user.u<n>.bench`.
fn user_subject(n: usize) -> async_nats::Subject {
    async_nats::Subject::from(realtime_bridge_wire::subject::user_subject(&user_id(n), &event_name()))
}

fn payload(n: u64, round: Option<usize>) -> bytes::Bytes {
    match round {
        Some(r) => format!("{{\"bench_t\":{},\"r\":{r},\"n\":{n}}}", now_nanos()),
        None => format!("{{\"bench_t\":{},\"n\":{n}}}", now_nanos()),
    }
    .into()
}

/// `{"bench_t":<now>,"n":<n><extra>}`, padded with a `"pad"` string to at least `size` bytes.
fn payload_padded(n: u64, extra: &str, size: usize) -> bytes::Bytes {
    let mut s = format!("{{\"bench_t\":{},\"n\":{n}{extra}", now_nanos());
    // `,"pad":""}` is 10 bytes.
    if s.len() + 10 < size {
        s.push_str(",\"pad\":\"");
        s.extend(std::iter::repeat_n('x', size - s.len() - 2));
        s.push('"');
    }
    s.push('}');
    s.into()
}

async fn nats(url: &str) -> anyhow::Result<async_nats::Client> {
    // A cluster's URLs come comma-separated, which async-nats takes only as a list.
    let servers = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("not a NATS URL (list): {url}"))?;
    async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 16)
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))
}

/// Bridge figures from /metrics, summed over every bridge: events dropped and streams cut
/// (by any reason), and with several bridges also how the open streams are spread.
async fn bridge_metrics(setup: &Setup, report: &mut Report) {
    let families = [
        ("bridge_events_received", "realtime_bridge_events_received_total"),
        ("bridge_events_delivered", "realtime_bridge_events_delivered_total"),
        ("bridge_events_dropped", "realtime_bridge_events_dropped_total"),
        ("bridge_replayed_events", "realtime_bridge_replayed_events_total"),
        ("bridge_streams_cut", "realtime_bridge_streams_cut_total"),
        ("bridge_nats_connects", "realtime_bridge_nats_connects_total"),
        ("bridge_open_streams", "realtime_bridge_open_streams"),
        ("bridge_head_timeouts", "realtime_bridge_head_timeouts_total"),
        ("bridge_nats_slow_consumer", "realtime_bridge_nats_slow_consumer_total"),
    ];
    let mut sums = vec![0.0; families.len()];
    let mut open_each = Vec::new();
    let mut refused = 0.0;
    let mut reached = 0;
    for &addr in &setup.bridges {
        match client::metrics_text(addr).await {
            Ok(text) => {
                reached += 1;
                for (sum, (_, family)) in sums.iter_mut().zip(families) {
                    *sum += client::metric_sum(&text, family);
                }
                open_each.push(client::metric_sum(&text, "realtime_bridge_open_streams"));
                refused += client::metric_sum(&text, "realtime_bridge_connections_refused_total");
            }
            // A bridge killed on purpose (failover) has no metrics any more.
            Err(e) => report.set("bridge_metrics_error", json!(e.to_string())),
        }
    }
    if reached == 0 {
        return;
    }
    for (sum, (key, _)) in sums.iter().zip(families) {
        report.set(key, json!(sum));
    }
    if setup.bridges.len() > 1 {
        report.set("bridge_open_streams_each", json!(open_each));
        report.set("bridge_connections_refused", json!(refused));
    }
}
