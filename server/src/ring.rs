//! A bounded broadcast ring that holds memory only for frames some receiver still needs.
//!
//! Every connected user has a ring, and most users are idle most of the time. tokio's
//! `broadcast` channel allocates all its slots up front (32 bytes each: 8 KiB for the 256
//! frames a user's burst may need), which measured as the largest single cost of an idle
//! stream. This ring starts empty, grows with what is unread, and gives a slot back as soon
//! as every receiver has taken it, so an idle user's ring costs a few dozen bytes. The
//! semantics are tokio's: a receiver starts at the next frame sent, and one that falls more
//! than `capacity` frames behind learns how many it missed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

/// A bounded broadcast ring; cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    inner: RwLock<Inner<T>>,
    /// Wakes receivers waiting for the next frame.
    sent: Notify,
    capacity: usize,
}

#[derive(Debug)]
struct Inner<T> {
    /// Position of `slots[0]`; positions count every frame ever sent.
    head: u64,
    slots: VecDeque<Slot<T>>,
    /// Live receivers: each new slot waits for this many takes.
    receivers: usize,
}

#[derive(Debug)]
struct Slot<T> {
    value: T,
    /// Receivers that have not taken it yet; at 0 the slot can go.
    unread: AtomicUsize,
}

impl<T> Inner<T> {
    fn tail(&self) -> u64 {
        self.head + self.slots.len() as u64
    }

    /// Drops the slots every receiver has taken, and the buffer once it is empty and large.
    fn prune(&mut self) {
        while self.slots.front().is_some_and(|s| s.unread.load(Ordering::Acquire) == 0) {
            self.slots.pop_front();
            self.head += 1;
        }
        if self.slots.is_empty() && self.slots.capacity() > 8 {
            self.slots = VecDeque::new();
        }
    }
}

/// The receiver fell this many frames behind; it continues from the oldest one kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lagged(pub(crate) u64);

impl<T: Clone> Ring<T> {
    /// `capacity` (at least 1) frames are kept for a receiver that lags behind.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner { head: 0, slots: VecDeque::new(), receivers: 0 }),
            sent: Notify::new(),
            capacity: capacity.max(1),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner<T>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `value` to every current receiver. With none, it is dropped at once.
    pub(crate) fn send(&self, value: T) {
        {
            let mut inner = self.write();
            if inner.receivers == 0 {
                return;
            }
            if inner.slots.len() >= self.capacity {
                // The oldest frame goes even if someone has not read it: that one lags.
                inner.slots.pop_front();
                inner.head += 1;
            }
            let unread = AtomicUsize::new(inner.receivers);
            inner.slots.push_back(Slot { value, unread });
        }
        self.sent.notify_waiters();
    }

    /// A receiver that gets every frame sent from now on.
    pub(crate) fn subscribe(self: &Arc<Self>) -> Receiver<T> {
        let mut inner = self.write();
        inner.receivers += 1;
        Receiver { ring: Arc::clone(self), next: inner.tail() }
    }
}

/// One reader of a [`Ring`]; gives its unread slots back when dropped.
#[derive(Debug)]
pub(crate) struct Receiver<T: Clone> {
    ring: Arc<Ring<T>>,
    /// Position of the next frame to take.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// The next frame, waiting for it if needed. Cancel-safe: nothing is taken unless returned.
    pub(crate) async fn recv(&mut self) -> Result<T, Lagged> {
        // A frame already waiting needs no registration with the notifier.
        if let Some(r) = take(&self.ring, &mut self.next) {
            return r;
        }
        loop {
            // Registered before looking, so a send in between still wakes us.
            let sent = self.ring.sent.notified();
            let mut sent = std::pin::pin!(sent);
            sent.as_mut().enable();
            if let Some(r) = take(&self.ring, &mut self.next) {
                return r;
            }
            sent.await;
        }
    }

    /// Looks at the next frame without taking it; `None` if there is none (or the receiver
    /// fell behind, which the next `recv` reports).
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let inner = self.ring.read();
        let at = self.next.checked_sub(inner.head)?;
        inner.slots.get(usize::try_from(at).ok()?).map(|slot| f(&slot.value))
    }

    /// Frames sent that this receiver has not taken yet.
    pub(crate) fn len(&self) -> u64 {
        self.ring.read().tail().saturating_sub(self.next)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn take<T: Clone>(ring: &Ring<T>, next: &mut u64) -> Option<Result<T, Lagged>> {
    let last = {
        let inner = ring.read();
        if *next < inner.head {
            let missed = inner.head - *next;
            *next = inner.head;
            return Some(Err(Lagged(missed)));
        }
        let slot = inner.slots.get(usize::try_from(*next - inner.head).ok()?)?;
        *next += 1;
        let value = slot.value.clone();
        let last = slot.unread.fetch_sub(1, Ordering::AcqRel) == 1;
        if !last {
            return Some(Ok(value));
        }
        value
    };
    // Everyone has it now: free what is no longer needed.
    ring.write().prune();
    Some(Ok(last))
}

impl<T: Clone> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut inner = self.ring.write();
        inner.receivers -= 1;
        let from = usize::try_from(self.next.saturating_sub(inner.head)).unwrap_or(usize::MAX);
        for slot in inner.slots.iter().skip(from) {
            slot.unread.fetch_sub(1, Ordering::AcqRel);
        }
        inner.prune();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_receiver_gets_every_frame_from_its_start() {
        let ring = Ring::new(8);
        ring.send(0); // nobody listens: dropped
        let mut a = ring.subscribe();
        ring.send(1);
        let mut b = ring.subscribe();
        ring.send(2);
        assert_eq!(a.recv().await, Ok(1));
        assert_eq!(a.recv().await, Ok(2));
        assert_eq!(b.recv().await, Ok(2));
        assert!(a.is_empty() && b.is_empty());
    }

    #[tokio::test]
    async fn peek_shows_the_next_frame_without_taking_it() {
        let ring = Ring::new(2);
        let mut rx = ring.subscribe();
        assert_eq!(rx.peek(|v: &u32| *v), None, "nothing sent yet");
        ring.send(7);
        ring.send(8);
        assert_eq!(rx.peek(|v| *v), Some(7));
        assert_eq!(rx.peek(|v| *v), Some(7), "peeking takes nothing");
        assert_eq!(rx.recv().await, Ok(7));
        assert_eq!(rx.peek(|v| *v), Some(8));
        ring.send(9);
        ring.send(10);
        assert_eq!(rx.peek(|v| *v), None, "fell behind: the next recv says so");
        assert_eq!(rx.recv().await, Err(Lagged(1)));
        assert_eq!(rx.peek(|v| *v), Some(9));
    }

    #[tokio::test]
    async fn slots_are_freed_once_everyone_read_them() {
        let ring = Ring::new(8);
        let mut a = ring.subscribe();
        let mut b = ring.subscribe();
        for i in 0..5 {
            ring.send(i);
        }
        assert_eq!(ring.read().slots.len(), 5);
        for _ in 0..5 {
            a.recv().await.unwrap();
        }
        assert_eq!(ring.read().slots.len(), 5, "b has not read them");
        for _ in 0..3 {
            b.recv().await.unwrap();
        }
        assert_eq!(ring.read().slots.len(), 2);
        drop(b);
        assert_eq!(ring.read().slots.len(), 0, "a dropped receiver gives its unread slots back");
        assert_eq!(ring.read().slots.capacity(), 8, "a small buffer is kept");
        ring.send(9);
        assert_eq!(a.recv().await, Ok(9));
        // A burst grows the buffer; once drained it is given back.
        let ring = Ring::new(64);
        let mut a = ring.subscribe();
        for i in 0..20 {
            ring.send(i);
        }
        assert!(ring.read().slots.capacity() >= 20);
        for _ in 0..20 {
            a.recv().await.unwrap();
        }
        assert_eq!(ring.read().slots.capacity(), 0);
    }

    #[tokio::test]
    async fn a_lagging_receiver_learns_how_many_it_missed() {
        let ring = Ring::new(4);
        let mut slow = ring.subscribe();
        let mut fast = ring.subscribe();
        for i in 0..10 {
            ring.send(i);
            assert_eq!(fast.recv().await, Ok(i));
        }
        assert_eq!(slow.len(), 10);
        assert_eq!(slow.recv().await, Err(Lagged(6)));
        for i in 6..10 {
            assert_eq!(slow.recv().await, Ok(i));
        }
        assert!(ring.read().slots.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let ring = Ring::new(4);
        let mut rx = ring.subscribe();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        ring.send(7);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(got, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_and_receivers_lose_nothing_within_capacity() {
        let ring = Ring::new(100_000);
        let receivers: Vec<_> = (0..4).map(|_| ring.subscribe()).collect();
        let readers: Vec<_> = receivers
            .into_iter()
            .map(|mut rx| {
                tokio::spawn(async move {
                    let mut got = Vec::with_capacity(10_000);
                    for _ in 0..10_000 {
                        got.push(rx.recv().await.unwrap());
                    }
                    got
                })
            })
            .collect();
        for i in 0..10_000u64 {
            ring.send(i);
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for r in readers {
            // Every value, once, in the order sent (a sum would let a reordering pass).
            let got = tokio::time::timeout(Duration::from_secs(10), r).await.unwrap().unwrap();
            assert!(got.iter().copied().eq(0..10_000u64), "out of order or missing: {:?}", &got[..20]);
        }
        assert!(ring.read().slots.is_empty());
    }
}
