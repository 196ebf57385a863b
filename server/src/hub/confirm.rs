//! Confirming new subscriptions, in batches.
//!
//! A new channel may promise its streams "no gap" only once NATS has its subscription (a
//! round trip after subscribing proves it) and, in history mode, once it knows where the
//! history store ended at that moment (everything after is re-published to the
//! subscription). Done channel by channel, a reconnect storm of N users is N round trips
//! and N JetStream stream-info requests at once: JetStream queues its API requests and the
//! last channels wait past their deadline, so their clients get 503. One round trip and one
//! stream read prove the same for every subscription made before the round trip began, so
//! channels that wait at the same time share them: a storm costs a few batches, not N.
//! The periodic position checks of idle channels (all started together by a storm, so all
//! due together) and the fills after a NATS reconnect use the same batches.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Hub, SUBSCRIBE_CONFIRM_TIMEOUT};

/// What one batch found; every channel of the batch gets the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Confirmation {
    /// NATS answered the round trip in time: every subscription made before it is active.
    pub(super) round_trip: bool,
    /// History mode: the history store's last sequence, read after the round trip; `None`
    /// in live mode, when the round trip failed, or when the store could not be read.
    pub(super) last: Option<u64>,
}

/// Channels waiting for the next batch.
#[derive(Debug, Default)]
pub(super) struct Confirmations {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Those who asked since the running batch began (they need a round trip that starts
    /// after their subscription, so they cannot join a batch already under way).
    waiters: Vec<oneshot::Sender<Confirmation>>,
    /// A batch task is running; it takes the waiters when its current batch ends.
    running: bool,
}

impl Pending {
    /// Adds a waiter; true when no batch task runs and the caller must start one.
    fn join(&mut self, waiter: oneshot::Sender<Confirmation>) -> bool {
        self.waiters.push(waiter);
        !std::mem::replace(&mut self.running, true)
    }

    /// The next batch, or `None` (and the task stops) when nobody waits.
    fn next_batch(&mut self) -> Option<Vec<oneshot::Sender<Confirmation>>> {
        if self.waiters.is_empty() {
            self.running = false;
            return None;
        }
        Some(std::mem::take(&mut self.waiters))
    }
}

impl Hub {
    /// Waits until NATS has confirmed every subscription this task made before calling, and
    /// (history mode) reads the history store's last sequence after that, sharing the work
    /// with every channel asking at the same time.
    pub(super) async fn confirm(self: &Arc<Self>) -> Confirmation {
        let (tx, rx) = oneshot::channel();
        let start = self.confirmations.pending.lock().unwrap_or_else(|p| p.into_inner()).join(tx);
        if start {
            // Its own task: a channel whose user leaves (its task aborted) must not stop the
            // batch the others wait for.
            let hub = Arc::clone(self);
            tokio::spawn(async move { hub.run_confirmations().await });
        }
        rx.await.unwrap_or(Confirmation { round_trip: false, last: None })
    }

    async fn run_confirmations(self: Arc<Self>) {
        loop {
            let Some(batch) = self.confirmations.pending.lock().unwrap_or_else(|p| p.into_inner()).next_batch() else {
                return;
            };
            let round_trip = matches!(
                tokio::time::timeout(SUBSCRIBE_CONFIRM_TIMEOUT, crate::nats::round_trip(&self.client)).await,
                Ok(Ok(()))
            );
            // Bounded by the JetStream request timeout. Read only once the round trip proved
            // the subscriptions: a store end read before then says nothing about what they
            // will receive, and a channel that took it for its start would skip whatever is
            // stored until NATS gets to them (seen in a storm on a loaded machine).
            let last = match &self.history {
                Some(_) if !round_trip => None,
                Some(history) => match history.bounds().await {
                    Ok((_, last)) => Some(last),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the history stream's state");
                        None
                    }
                },
                None => None,
            };
            tracing::debug!(channels = batch.len(), round_trip, ?last, "subscriptions confirmed");
            self.metrics.confirmation_batches.inc();
            let outcome = Confirmation { round_trip, last };
            for waiter in batch {
                // A waiter that gave up (its user left) no longer listens.
                let _ = waiter.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_waiter_starts_the_task_and_later_ones_wait_for_the_next_batch() {
        let mut p = Pending::default();
        let (a, _ra) = oneshot::channel();
        let (b, _rb) = oneshot::channel();
        let (c, _rc) = oneshot::channel();
        assert!(p.join(a), "nobody runs a batch yet");
        assert!(!p.join(b), "one task at a time");
        assert_eq!(p.next_batch().map(|w| w.len()), Some(2));
        // Asked while that batch runs: it gets the next one, not this one.
        assert!(!p.join(c));
        assert_eq!(p.next_batch().map(|w| w.len()), Some(1));
        assert!(p.next_batch().is_none());
        assert!(!p.running, "the task stops when nobody waits");
        let (d, _rd) = oneshot::channel();
        assert!(p.join(d), "and the next waiter starts a new one");
    }
}
