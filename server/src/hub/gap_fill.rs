//! The decisions that keep a history-mode channel complete (docs/architecture.md, "A
//! channel's `upto`"), as pure functions of where the channel stands: sequence numbers,
//! NATS connection counts and the time. `history_feed.rs` asks them what to do and does
//! the reading and pushing.

use std::time::Duration;

use tokio::time::Instant;

/// A new subscription may miss what is stored before its interest reaches the NATS server
/// of the history store (in a cluster that takes a moment). If no event arrives by then,
/// the channel checks history once for anything it missed.
pub(super) const VERIFY_AFTER: Duration = Duration::from_millis(500);

/// After a failed read of history, how soon a channel tries again.
pub(super) const FILL_RETRY: Duration = Duration::from_secs(1);

/// What a channel does with a re-published message at some sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// At or below the channel's position: already pushed, filled, or stored before the
    /// channel existed. Skipped.
    Duplicate,
    /// Past what the history store is known to hold: anyone allowed to publish on the
    /// re-publish subjects could have sent it, so the store is asked first.
    Check,
    /// Not known to be gap-free up to it: the stored events `from..=to` (maybe none) are
    /// read and pushed first, then the message.
    FillFirst { from: u64, to: u64 },
    /// Pushed at once.
    Push,
}

/// The step for a message at `seq`, given the channel's position `upto`, whether `seq` is
/// known to be stored, and whether the channel is `synced` (gap-free up to the live flow).
///
/// `contiguous`: the subscription receives every stored message (the shared dispatch), so
/// the next one must be `upto + 1` and any jump is a loss (NATS reconnected, the client
/// dropped messages, a message was never re-published) to fill from the store. A channel of
/// one user's events cannot tell: their sequences have other users' events in between.
pub(super) fn step(seq: u64, upto: u64, known_stored: bool, synced: bool, contiguous: bool) -> Step {
    if seq <= upto {
        Step::Duplicate
    } else if !known_stored {
        Step::Check
    } else if !synced || (contiguous && seq != upto + 1) {
        Step::FillFirst { from: upto + 1, to: seq - 1 }
    } else {
        Step::Push
    }
}

/// What a fill up to the history store's `last` sequence does from position `upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ToEnd {
    /// The store's last sequence is behind the channel, yet it was not re-created: the
    /// position cannot be right, and every channel starts over.
    Backwards,
    /// Read and push `from..=to` (nothing if `from > to`).
    Read { from: u64, to: u64 },
}

pub(super) fn to_end(upto: u64, last: u64) -> ToEnd {
    if last < upto {
        ToEnd::Backwards
    } else {
        ToEnd::Read { from: upto + 1, to: last }
    }
}

/// Whether a history-mode channel is known gap-free right up to the live flow, and over
/// which NATS connection (async-nats counts connections in its statistics).
#[derive(Debug)]
pub(super) struct SyncState {
    /// The connection count the channel last saw.
    generation: u64,
    synced: bool,
}

impl SyncState {
    /// A channel just subscribed over the connection numbered `generation`: not synced yet.
    pub(super) fn new(generation: u64) -> Self {
        Self { generation, synced: false }
    }

    pub(super) fn is_synced(&self) -> bool {
        self.synced
    }

    /// A message arrived after `connects` connections. True if it is the first one over a
    /// new connection: NATS may have come back without its store, and the message's
    /// sequence, counted again from 1, would pass for a duplicate, so the channel fills up
    /// to the end of the store before looking at it.
    pub(super) fn first_over_new_connection(&mut self, connects: u64) -> bool {
        if connects == self.generation {
            return false;
        }
        self.generation = connects;
        true
    }

    /// NATS says it reconnected (after `connects` connections). True if the gap the
    /// disconnection left must be filled; false when a message over the new connection
    /// arrived first and filled it already.
    pub(super) fn reconnected(&mut self, connects: u64) -> bool {
        let filled = self.synced && connects == self.generation;
        self.generation = connects;
        !filled
    }

    /// A fill finished at `now`, `ok` if history could be read: the channel is synced if it
    /// was, else it tries again at the returned time.
    pub(super) fn filled(&mut self, ok: bool, now: Instant) -> Option<Instant> {
        self.synced = ok;
        (!ok).then(|| retry_at(now))
    }

    /// The periodic confirmation of the position finished (`ok` if history could be read).
    /// No retry of its own: an unsynced channel's pending retry timer takes over.
    pub(super) fn confirmed(&mut self, ok: bool) {
        self.synced = ok;
    }

    /// The channel's position was dropped (the history store was re-created).
    pub(super) fn lost(&mut self) {
        self.synced = false;
    }

    /// Whether a message past the store's known end is stored could not be told at `now`:
    /// it is held back, and the next fill (at the returned time) reads it if it is real.
    pub(super) fn unsure(&mut self, now: Instant) -> Instant {
        self.synced = false;
        retry_at(now)
    }
}

/// When a channel tries again after a failed read of history at `now`.
pub(super) fn retry_at(now: Instant) -> Instant {
    now + FILL_RETRY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        // Duplicates first, whatever else holds.
        for (known, synced) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(step(5, 5, known, synced, false), Step::Duplicate);
            assert_eq!(step(1, 5, known, synced, false), Step::Duplicate);
        }
        assert_eq!(step(0, 0, true, true, false), Step::Duplicate);
        // A sequence not known to be stored is checked before anything moves.
        assert_eq!(step(6, 5, false, true, false), Step::Check);
        assert_eq!(step(9, 5, false, false, false), Step::Check);
        // Once known stored: a gap is filled first unless synced.
        assert_eq!(step(9, 5, true, false, false), Step::FillFirst { from: 6, to: 8 });
        assert_eq!(step(6, 5, true, false, false), Step::FillFirst { from: 6, to: 5 }, "an empty fill still syncs");
        assert_eq!(step(1, 0, true, false, false), Step::FillFirst { from: 1, to: 0 });
        assert_eq!(step(9, 5, true, true, false), Step::Push);
    }

    #[test]
    fn contiguous_steps_fill_any_jump() {
        // Every stored message comes through: the next one is upto + 1 or something was lost.
        assert_eq!(step(6, 5, true, true, true), Step::Push);
        assert_eq!(step(9, 5, true, true, true), Step::FillFirst { from: 6, to: 8 });
        assert_eq!(step(6, 5, true, false, true), Step::FillFirst { from: 6, to: 5 });
        assert_eq!(step(5, 5, true, true, true), Step::Duplicate);
        assert_eq!(step(9, 5, false, true, true), Step::Check);
    }

    #[test]
    fn fills_to_the_end() {
        assert_eq!(to_end(5, 9), ToEnd::Read { from: 6, to: 9 });
        assert_eq!(to_end(9, 9), ToEnd::Read { from: 10, to: 9 });
        assert_eq!(to_end(0, 0), ToEnd::Read { from: 1, to: 0 });
        assert_eq!(to_end(10, 9), ToEnd::Backwards);
    }

    #[test]
    fn connections() {
        let mut s = SyncState::new(1);
        assert!(!s.first_over_new_connection(1));
        assert!(s.first_over_new_connection(2));
        assert!(!s.first_over_new_connection(2), "only the first message over it");
        // Not synced: the reconnection fills.
        assert!(s.reconnected(2));
        s.confirmed(true);
        // A message over connection 3 came (and filled) before the `Connected` callback.
        assert!(s.first_over_new_connection(3));
        assert!(!s.reconnected(3), "filled already");
        // The callback for a connection no message has come over yet.
        assert!(s.reconnected(4));
        assert!(!s.first_over_new_connection(4));
        s.lost();
        assert!(!s.is_synced());
        assert!(s.reconnected(4), "not synced: fill again");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_fills_retry_a_second_later() {
        let mut s = SyncState::new(0);
        assert!(!s.is_synced());
        let t0 = Instant::now();
        let retry = s.filled(false, t0).expect("a failed fill retries");
        assert!(!s.is_synced());
        assert_eq!(retry - t0, FILL_RETRY);
        // The retry timer the channel arms fires at that time, not before.
        let timer = tokio::time::sleep_until(retry);
        tokio::pin!(timer);
        tokio::time::advance(FILL_RETRY - Duration::from_millis(1)).await;
        assert!(futures::poll!(timer.as_mut()).is_pending());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(futures::poll!(timer.as_mut()).is_ready());
        // Success: synced, no retry.
        assert_eq!(s.filled(true, Instant::now()), None);
        assert!(s.is_synced());
        // A sequence that could not be checked: unsynced, retried a second from now.
        tokio::time::advance(Duration::from_secs(7)).await;
        let now = Instant::now();
        assert_eq!(s.unsure(now), now + FILL_RETRY);
        assert!(!s.is_synced());
        // A failed confirmation leaves the retry to the timer already armed.
        s.confirmed(true);
        s.confirmed(false);
        assert!(!s.is_synced());
        assert!(VERIFY_AFTER < FILL_RETRY);
    }
}
