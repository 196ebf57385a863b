//! The acknowledgement protocol seen from JetStream's side: a real nats-server holds a stream
//! `REALTIME` (so the library chooses JetStream mode), but not on `user.fake.>`, where a test
//! responder plays JetStream instead. It records every attempt with its `Nats-Msg-Id` and
//! decides when (and whether) to acknowledge, which a real JetStream never lets a test do:
//!
//! - a lost acknowledgement is sent again with the same id, and the send resolves on the
//!   acknowledgement of the second attempt;
//! - at most `max_in_flight` messages wait for their acknowledgement at once.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use realtime_bridge_producer::{Mode, Options, RealtimeService, SendOptions};

/// One publish attempt as the responder received it.
#[derive(Debug, Clone)]
struct Attempt {
    msg_id: String,
    reply: String,
}

/// Plays JetStream on `user.fake.>`: records attempts; acknowledges according to `policy`.
struct FakeJetStream {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    client: async_nats::Client,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy)]
enum Policy {
    /// The first attempt of each id gets no answer (its acknowledgement "lost"); later
    /// attempts are acknowledged as duplicates.
    LoseFirst,
    /// Nothing is answered here; the test answers with [`FakeJetStream::ack`].
    Hold,
}

impl FakeJetStream {
    async fn start(nats: &NatsServer, policy: Policy) -> Self {
        let client = nats_client(nats).await;
        let mut sub = client.subscribe("user.fake.>").await.unwrap();
        // The server has the subscription once our own echo came back.
        let inbox = client.new_inbox();
        let mut echo = client.subscribe(inbox.clone()).await.unwrap();
        client.publish(inbox, Bytes::new()).await.unwrap();
        tokio::time::timeout(WAIT, echo.next()).await.unwrap().unwrap();

        let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
        let (sink, answer) = (Arc::clone(&attempts), client.clone());
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let msg_id =
                    m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string()).unwrap_or_default();
                let reply = m.reply.map(|r| r.to_string()).unwrap_or_default();
                let seen_before = {
                    let mut a = sink.lock().unwrap();
                    let seen = a.iter().any(|x| x.msg_id == msg_id);
                    a.push(Attempt { msg_id, reply: reply.clone() });
                    seen
                };
                if matches!(policy, Policy::LoseFirst) && seen_before {
                    answer.publish(reply, ack(true)).await.unwrap();
                }
            }
        });
        Self { attempts, client, task }
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    async fn wait_attempts(&self, n: usize) -> Vec<Attempt> {
        let attempts = Arc::clone(&self.attempts);
        eventually(&format!("{n} publish attempts"), WAIT, || {
            let a = attempts.lock().unwrap().clone();
            async move { (a.len() >= n).then_some(a) }
        })
        .await
    }

    async fn ack(&self, attempt: &Attempt) {
        self.client.publish(attempt.reply.clone(), ack(false)).await.unwrap();
    }
}

impl Drop for FakeJetStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JetStream publish acknowledgement.
fn ack(duplicate: bool) -> Bytes {
    format!(r#"{{"stream":"REALTIME","seq":1,"duplicate":{duplicate}}}"#).into()
}

/// A JetStream server whose stream `REALTIME` exists (so the library picks JetStream) but
/// leaves `user.fake.>` to the test's responder.
async fn nats_with_stream() -> NatsServer {
    let nats = NatsServer::start();
    jetstream::new(nats_client(&nats).await)
        .create_stream(jetstream::stream::Config {
            name: "REALTIME".into(),
            subjects: vec!["user.real.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    nats
}

#[tokio::test]
async fn a_lost_acknowledgement_is_retried_with_the_same_id() {
    let nats = nats_with_stream().await;
    let fake = FakeJetStream::start(&nats, Policy::LoseFirst).await;
    let ack_timeout = Duration::from_millis(300);
    let rt = RealtimeService::with_client(nats_client(&nats).await, Options::default().with_ack_timeout(ack_timeout))
        .await
        .unwrap();
    assert_eq!(rt.mode(), Mode::JetStream);

    let started = Instant::now();
    rt.send_event_to_user("fake", "tick", &1).await.unwrap();
    let took = started.elapsed();
    let a = fake.attempts();
    assert_eq!(a.len(), 2, "one lost, one acknowledged: {a:?}");
    assert_eq!(a[0].msg_id, a[1].msg_id, "the retry carries the first attempt's id");
    assert!(!a[0].msg_id.is_empty(), "every message carries an id");
    assert!(took >= ack_timeout, "resolved only after the second attempt: {took:?}");

    // A caller's id is the one retried; several users: `<id>:<subject>` each.
    rt.send_event_to_user_with("fake", "paid", &1, &SendOptions::msg_id("order-7")).await.unwrap();
    let ids: Vec<String> = fake.attempts()[2..].iter().map(|a| a.msg_id.clone()).collect();
    assert_eq!(ids, ["order-7", "order-7"]);
    rt.send_event_to_users_with(["fake"], "one", &1, &SendOptions::msg_id("n-1")).await.unwrap();
    assert_eq!(fake.attempts()[4].msg_id, "n-1", "one user: the id as given");
}

#[tokio::test]
async fn at_most_max_in_flight_messages_wait_for_their_acknowledgement() {
    let nats = nats_with_stream().await;
    let fake = FakeJetStream::start(&nats, Policy::Hold).await;
    let window = 8;
    let rt = RealtimeService::with_client(nats_client(&nats).await, Options::default().with_max_in_flight(window))
        .await
        .unwrap();
    let total = 50;
    let sends: Vec<_> = (0..total)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.send_event_to_user("fake", "tick", &serde_json::json!({ "n": i })).await })
        })
        .collect();

    let first = fake.wait_attempts(window).await;
    // The window is full: nothing more is published while no acknowledgement comes (the
    // only check here that waits for something not to happen; bounded, 300 ms).
    tokio::time::timeout(Duration::from_millis(300), fake.wait_attempts(window + 1)).await.unwrap_err();
    assert_eq!(fake.attempts().len(), window);
    // One acknowledgement frees one slot: exactly one more message goes out.
    fake.ack(&first[0]).await;
    fake.wait_attempts(window + 1).await;
    tokio::time::timeout(Duration::from_millis(300), fake.wait_attempts(window + 2)).await.unwrap_err();

    // Acknowledge everything as it comes: every send resolves, each message was sent once.
    let mut acked = 1;
    while acked < total {
        let a = fake.wait_attempts(acked + 1).await;
        for attempt in &a[acked..] {
            fake.ack(attempt).await;
        }
        acked = a.len();
    }
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let a = fake.attempts();
    assert_eq!(a.len(), total, "no retries were needed");
    let mut ids: Vec<&str> = a.iter().map(|x| x.msg_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "one id per message");
}
