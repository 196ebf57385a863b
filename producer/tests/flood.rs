//! The flood test: N events (default 20000, `FLOOD_EVENTS`) sent through the library at once
//! to one user of a history-mode bridge. Every send must resolve, the stream must hold exactly
//! N messages of that user, and a reader of the user's stream (opened before the flood,
//! resuming with its cursor if the bridge cuts it as slow) must get every event exactly once.
//!
//! Then, as a measurement only, the same N as bare core-NATS publishes to another user with
//! no window and no acknowledgement, and how many of those the stream stored.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use realtime_bridge_producer::{Mode, RealtimeService};

fn flood_events() -> u64 {
    std::env::var("FLOOD_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_stored_and_delivered_exactly_once() {
    let n = flood_events();
    let nats = NatsServer::start();
    let bridge = start_bridge(&nats.url(), &["--history", "on"]);
    let reader = Reader::open(&bridge.base(), "flood", "").await;
    let rt = RealtimeService::connect(nats.url()).await.unwrap();
    assert_eq!(rt.mode(), Mode::JetStream, "a history-mode bridge's stream is found");
    let window = rt.options().max_in_flight;

    let started = Instant::now();
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.send_event_to_user("flood", "tick", &serde_json::json!({ "n": i })).await })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, s) in sends.into_iter().enumerate() {
        if let Err(e) = s.await.unwrap() {
            failed.push(format!("{i}: {e}"));
        }
    }
    let took = started.elapsed();
    assert!(failed.is_empty(), "{} sends failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(5)]);
    println!(
        "acked publish (rust): {n} events in {:.2} s = {:.0} events/s (maxInFlight={window})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    let client = nats_client(&nats).await;
    assert_eq!(stored(&client, "user.flood.>").await, n, "the stream holds every acknowledged event once");
    // 200 events/s at least for the reader (a loaded 2-core machine), never less than a minute.
    let budget = WAIT.max(Duration::from_secs(60)).max(Duration::from_millis(n * 5));
    let got = reader.wait_for(n as usize, budget).await;
    let counts = counts_of_n(&got);
    let missing: Vec<u64> = (0..n).filter(|i| !counts.contains_key(i)).take(10).collect();
    let twice: Vec<(&u64, &u32)> = counts.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(missing.is_empty() && twice.is_empty(), "missing {missing:?}, more than once {twice:?}");
    assert_eq!(got.len() as u64, n, "nothing else on the stream");
    println!("reader: {} events, reopened {} times", got.len(), reader.reconnects());

    // Baseline: bare core publishes, nobody waiting for JetStream.
    let core = nats_client(&nats).await;
    let payloads: Vec<bytes::Bytes> =
        (0..n).map(|i| serde_json::to_vec(&serde_json::json!({ "n": i })).unwrap().into()).collect();
    let started = Instant::now();
    for p in payloads {
        core.publish("user.baseline.tick", p).await.unwrap();
    }
    core.flush().await.unwrap();
    let took = started.elapsed();
    let stored_core = settled_count(&client, "user.baseline.>", n).await;
    println!(
        "core publish (rust): {n} events in {:.2} s = {:.0} events/s, stored {stored_core} of {n}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    rt.close().await.unwrap();
}

/// The stream's count on `filter` once it reached `n` or stopped growing for a second
/// (bounded by a minute): JetStream may still be storing what the server accepted.
async fn settled_count(client: &async_nats::Client, filter: &str, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let c = stored(client, filter).await;
        if c >= n || Instant::now() >= deadline {
            return c;
        }
        if c != last {
            (last, since) = (c, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(1) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
