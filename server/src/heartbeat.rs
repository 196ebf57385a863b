//! Heartbeats spread over the `--heartbeat` interval.
//!
//! One ticker task serves every stream, as before (a timer per stream would cost memory on
//! every idle stream), but streams are split over [`SLOTS`] `watch` channels that tick in
//! turn, `interval / SLOTS` apart: each stream still gets exactly one heartbeat per
//! interval, and a bridge writes only a slot's share of its streams' heartbeats at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Slots the streams are spread over. With one tick for all, a bridge holding ~17,000
/// streams wrote every heartbeat in the same instant, and events queued behind that burst
/// for hundreds of milliseconds. 32 slots cut a burst to 1/32 of the streams (about 530 of
/// 17,000) for one ticker wake-up every `interval / 32` (~470 ms at the default 15 s); more
/// would add wake-ups for bursts already small next to an event's ordinary latency.
pub(crate) const SLOTS: usize = 32;

/// The streams' side: hands each new stream the receiver of its slot.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    slots: Box<[watch::Receiver<()>]>,
    /// Streams handed a slot so far: round robin keeps the slots evenly filled.
    next: AtomicUsize,
}

impl Heartbeats {
    /// Starts the ticker for heartbeats every `every`; the task ends once `self` is dropped
    /// (at the latest with the last stream).
    pub(crate) fn start(every: Duration) -> (Self, JoinHandle<()>) {
        let (senders, slots): (Vec<_>, Vec<_>) = (0..SLOTS).map(|_| watch::channel(())).unzip();
        let task = tokio::spawn(tick(senders, every));
        (Self { slots: slots.into(), next: AtomicUsize::new(0) }, task)
    }

    /// The heartbeat of a new stream: it changes once per interval, from the next tick of
    /// the stream's slot on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        let slot = slot_of(self.next.fetch_add(1, Ordering::Relaxed));
        let mut rx = self.slots[slot].clone();
        rx.mark_unchanged();
        rx
    }
}

/// The slot of the `n`th stream.
fn slot_of(n: usize) -> usize {
    n % SLOTS
}

/// Ticks slot `n % SLOTS` at tick `n` (see [`tick_at`]) until every receiver is gone.
async fn tick(senders: Vec<watch::Sender<()>>, every: Duration) {
    let mut base = Instant::now();
    for n in 1u64.. {
        let Some(at) = tick_at(base, every, n) else {
            // An interval of centuries: no heartbeat is ever due.
            return std::future::pending().await;
        };
        tokio::time::sleep_until(at).await;
        // Behind by more than a slot's spacing (a starved runtime, a suspended process):
        // shift the schedule instead of firing the missed slots at once, which would bring
        // back the burst slots exist to avoid, and would shorten those slots' intervals.
        let late = Instant::now().saturating_duration_since(at);
        if late > every / SLOTS as u32 {
            base += late;
        }
        let slot = (n % SLOTS as u64) as usize;
        if senders[slot].send(()).is_err() {
            return;
        }
    }
}

/// When tick `n` is due for a ticker started at `base`: `base + every * n / SLOTS`, computed
/// exactly so that a slot's ticks (`n`, `n + SLOTS`, ...) are exactly `every` apart.
/// `None` past what an `Instant` can hold.
fn tick_at(base: Instant, every: Duration, n: u64) -> Option<Instant> {
    let nanos = every.as_nanos().checked_mul(u128::from(n))? / SLOTS as u128;
    base.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_tick_in_turn_evenly_once_per_interval() {
        let base = Instant::now();
        for every in
            [Duration::from_secs(15), Duration::from_millis(800), Duration::from_millis(333), Duration::from_nanos(7)]
        {
            let at = |n| tick_at(base, every, n).unwrap() - base;
            // Slot 0 ticks first at one whole interval, as the single ticker did.
            assert_eq!(at(SLOTS as u64), every);
            for n in 1..4 * SLOTS as u64 {
                // The same slot again exactly one interval later: never more often, never less.
                assert_eq!(at(n + SLOTS as u64) - at(n), every, "{every:?} tick {n}");
                // Consecutive slots a slot's spacing apart, to the nanosecond.
                let gap = at(n + 1) - at(n);
                let spacing = every / SLOTS as u32;
                assert!(gap >= spacing && gap <= spacing + Duration::from_nanos(1), "{every:?} tick {n}: {gap:?}");
            }
        }
        // An interval no `Instant` reaches: no tick rather than a panic.
        assert_eq!(tick_at(base, Duration::MAX, 2), None);
    }

    #[test]
    fn streams_fill_the_slots_in_turn() {
        let slots: Vec<usize> = (0..2 * SLOTS).map(slot_of).collect();
        assert_eq!(slots[..SLOTS], (0..SLOTS).collect::<Vec<_>>());
        assert_eq!(slots[SLOTS..], slots[..SLOTS]);
    }

    #[tokio::test]
    async fn a_new_stream_waits_for_its_slots_next_tick() {
        let (heartbeats, task) = Heartbeats::start(Duration::from_millis(1600));
        let mut first = heartbeats.subscribe();
        let mut second = heartbeats.subscribe();
        assert!(!first.has_changed().unwrap(), "nothing ticked yet");
        // Slot 1 ticks 50 ms in, slot 0 at 1.6 s.
        tokio::time::timeout(Duration::from_secs(5), second.changed()).await.unwrap().unwrap();
        assert!(!first.has_changed().unwrap(), "slot 0 ticks a whole interval in, after slot 1");
        tokio::time::timeout(Duration::from_secs(5), first.changed()).await.unwrap().unwrap();
        // A stream opened now does not see the tick that already happened in its slot.
        let mut third = heartbeats.subscribe();
        assert_eq!(slot_of(2), 2);
        assert!(!third.has_changed().unwrap());
        tokio::time::timeout(Duration::from_secs(5), third.changed()).await.unwrap().unwrap();
        drop((heartbeats, first, second, third));
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
