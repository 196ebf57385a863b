//! `failover`: history mode, streams spread over several bridges, a publisher storing
//! numbered events (JetStream, acknowledged) round-robin over the users without pause; one
//! bridge is killed (SIGKILL) mid-run, its clients reconnect to the next bridge with their
//! last `id:` as `Last-Event-ID` (a resume). Once the publisher stopped and everything
//! arrived (bounded wait), each stream's numbers tell what it lost and got twice; a resume
//! across bridges should give neither.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::json;

use super::{bridge_metrics, nats, payload_padded, round2, secs, user_subject};
use crate::fleet::{sent_to, Fleet, FleetSpec, Record};
use crate::harness::Setup;
use crate::report::Report;
use crate::Common;

#[derive(Debug, Clone, Args)]
pub(crate) struct FailoverArgs {
    #[arg(long, default_value_t = 3_000)]
    streams: usize,
    /// Events per second, over all users.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds into the publishing when the bridge is killed.
    #[arg(long, default_value_t = 4.0)]
    kill_at: f64,
    /// Which bridge to kill (0-based).
    #[arg(long, default_value_t = 0)]
    kill: usize,
    /// Seconds to wait, once publishing stopped, for every stream to get its events (the
    /// killed bridge's streams must all have resumed elsewhere first).
    #[arg(long, default_value_t = 180.0)]
    drain_timeout: f64,
}

pub(crate) async fn failover(
    setup: &Setup,
    common: &Common,
    mut a: FailoverArgs,
    r: &mut Report,
) -> anyhow::Result<()> {
    if setup.history != "on" {
        bail!("failover needs --history on (resuming is what it checks)");
    }
    if setup.bridges.len() < 2 || !setup.started_bridge {
        bail!("failover needs at least two bridges started by the bench (--bridges 3)");
    }
    if common.quick {
        a.streams = a.streams.min(60);
        a.rate = a.rate.min(300);
        a.duration = a.duration.min(2.0);
        a.kill_at = a.kill_at.min(0.8);
        a.drain_timeout = a.drain_timeout.min(30.0);
    }
    let n = a.streams.max(1);
    let users = n;
    let total_time = secs(a.duration);
    let mut spec = FleetSpec::new(setup.bridges.clone(), n, Record::Seq, common.workers_for(setup, n));
    spec.resume = true;
    spec.reconnect_secs = Some(a.duration + 60.0);
    let (mut fleet, opened) = Fleet::open(&spec).await?;
    opened.require_all(n)?;

    // Acknowledged publishes, a batch per millisecond tick: an event JetStream did not
    // store would be a publisher's loss, not the bridge's, so any failed ack ends the run.
    let client = nats(&setup.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let subjects: Vec<async_nats::Subject> = (0..users).map(user_subject).collect();
    let rate = a.rate.max(1);
    let mut sent: u64 = 0;
    let mut killed_at: Option<Instant> = None;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let max_ticks = total_time.as_millis() as u64 + 60_000;
    for _ in 0..max_ticks {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= total_time {
            break;
        }
        if killed_at.is_none() && elapsed >= secs(a.kill_at) {
            setup.kill_bridge(a.kill)?;
            killed_at = Some(Instant::now());
        }
        let due = ((elapsed.as_secs_f64() * rate as f64) as u64).min(sent + (rate / 20).max(1));
        let mut acks = Vec::new();
        while sent < due {
            let user = (sent % users as u64) as usize;
            let k = sent / users as u64;
            let extra = format!(",\"k\":{k}");
            acks.push(js.publish(subjects[user].clone(), payload_padded(sent, &extra, 0)).await?);
            sent += 1;
        }
        for ack in acks {
            ack.await?;
        }
    }
    let published = sent;
    let stopped = Instant::now();
    // Every stream has one user of its own: it should get exactly what its user was sent.
    let expected: u64 = (0..n).map(|i| sent_to(i, users, published)).sum();
    let drain_limit = secs(a.drain_timeout);
    let mut received = fleet.events().await?;
    while received < expected && stopped.elapsed() < drain_limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        received = fleet.events().await?;
    }
    let drained = stopped.elapsed();
    // A late duplicate would come right after; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seq = fleet.seq(published).await?;
    let snap = fleet.snap_all().await?;
    let (ended, reconnects, reopen_failed) = (snap.ended, snap.reconnects, snap.reopen_failed);
    bridge_metrics(setup, r).await;
    r.set("streams", json!(n));
    r.set("users", json!(users));
    r.set("workers", json!(fleet.worker_count()));
    r.set("published", json!(published));
    r.set("rate_target", json!(rate));
    r.set("killed_bridge", json!(a.kill));
    r.set("killed_at_s", json!(killed_at.map(|t| round2((t - started).as_secs_f64()))));
    r.set("streams_ended", json!(ended));
    r.set("reconnects", json!(reconnects));
    r.set("reopen_failed", json!(reopen_failed));
    // Streams still reconnecting when the wait ended: what they miss is counted as lost.
    r.set("not_resumed", json!(ended.saturating_sub(reconnects)));
    r.set("reconnect_mean_ms", json!(round2(snap.reconnect_mean_ms)));
    r.set("reconnect_max_ms", json!(round2(snap.reconnect_max_ms)));
    r.set("expected", json!(expected));
    r.set("received", json!(seq.received));
    r.set("lost", json!(seq.lost));
    r.set("duplicated", json!(seq.duplicated));
    r.set("out_of_order", json!(seq.out_of_order));
    r.set("streams_with_loss", json!(seq.streams_with_loss));
    r.set("streams_with_duplicates", json!(seq.streams_with_duplicates));
    r.set("drain_s", json!(round2(drained.as_secs_f64())));
    r.table(
        "events per stream (every stream its own user)",
        &["what", "count"],
        vec![
            vec!["published".into(), published.to_string()],
            vec!["received".into(), seq.received.to_string()],
            vec!["lost".into(), seq.lost.to_string()],
            vec!["duplicated".into(), seq.duplicated.to_string()],
            vec!["streams that reconnected".into(), ended.to_string()],
            vec!["streams with a loss".into(), seq.streams_with_loss.to_string()],
            vec!["streams with a duplicate".into(), seq.streams_with_duplicates.to_string()],
        ],
    );
    fleet.close().await;
    Ok(())
}
