//! Reconnection delays: exponential growth, capped, with jitter.
//!
//! Pure arithmetic (the random number is passed in), so it is tested natively.

/// Backoff settings (docs/protocol.md §6.1: `backoff: {initialMs, maxMs, multiplier, jitter}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry, in milliseconds.
    pub initial_ms: f64,
    /// Upper bound of any delay, in milliseconds.
    pub max_ms: f64,
    /// Growth factor from one retry to the next (values below 1 are taken as 1).
    pub multiplier: f64,
    /// Fraction of the delay that is randomised, in `[0, 1]`: the delay is drawn
    /// uniformly from `[base * (1 - jitter), base]`, so clients that lost the
    /// same server do not all come back at the same instant.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial_ms: 500.0, max_ms: 30_000.0, multiplier: 2.0, jitter: 0.5 }
    }
}

/// Replaces a NaN, infinite or negative value by `default`.
fn sane(v: f64, default: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        default
    }
}

impl Backoff {
    /// The same settings with out-of-range values replaced by the defaults or clamped,
    /// so that no option given from JavaScript can produce a NaN or negative delay.
    pub fn sanitized(self) -> Backoff {
        let d = Backoff::default();
        let initial_ms = sane(self.initial_ms, d.initial_ms);
        let max_ms = sane(self.max_ms, d.max_ms).max(initial_ms);
        let multiplier = sane(self.multiplier, d.multiplier).max(1.0);
        let jitter = sane(self.jitter, d.jitter).min(1.0);
        Backoff { initial_ms, max_ms, multiplier, jitter }
    }

    /// The un-jittered delay before retry number `attempt` (0 for the first retry):
    /// `min(maxMs, initialMs * multiplier^attempt)`.
    pub fn base_ms(&self, attempt: u32) -> f64 {
        let b = self.sanitized();
        // powi with a large exponent saturates to +inf, which min() caps.
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        (b.initial_ms * b.multiplier.powi(exp)).min(b.max_ms)
    }

    /// The delay before retry number `attempt`, given `random` uniform in `[0, 1)`
    /// (values outside are clamped), rounded to whole milliseconds.
    ///
    /// ```
    /// use realtime_bridge_sdk::backoff::Backoff;
    /// let b = Backoff::default(); // 500 ms, x2, capped at 30 s, jitter 0.5
    /// assert_eq!(b.delay_ms(0, 0.0), 500);
    /// assert_eq!(b.delay_ms(2, 0.5), 1500); // base 2000, minus half of the 50% band
    /// assert_eq!(b.delay_ms(20, 0.0), 30_000);
    /// ```
    pub fn delay_ms(&self, attempt: u32, random: f64) -> u32 {
        let b = self.sanitized();
        let base = self.base_ms(attempt);
        let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.0 };
        let d = base * (1.0 - b.jitter * r);
        // Saturating float-to-int cast; the max is at most ~49 days anyway.
        d.round() as u32
    }

    /// [`Backoff::delay_ms`] with the server's `retry:` (`floor_ms`) as its floor: never less
    /// than the floor, and when the floor is the larger, drawn from `[floor, floor × (1 +
    /// jitter)]` with the same `random`, so clients sent the same `retry:` still spread out.
    ///
    /// ```
    /// use realtime_bridge_sdk::backoff::Backoff;
    /// let b = Backoff { initial_ms: 10.0, ..Backoff::default() }; // jitter 0.5
    /// assert_eq!(b.delay_with_floor_ms(0, 0.0, 3000.0), 3000.0);
    /// assert_eq!(b.delay_with_floor_ms(0, 0.5, 3000.0), 3750.0);
    /// assert_eq!(b.delay_with_floor_ms(20, 0.0, 3000.0), 30_000.0); // the backoff is larger
    /// ```
    pub fn delay_with_floor_ms(&self, attempt: u32, random: f64, floor_ms: f64) -> f64 {
        let r = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.0 };
        let floor = floor_ms * (1.0 + self.jitter.clamp(0.0, 1.0) * r);
        f64::from(self.delay_ms(attempt, r)).max(floor.round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_grow_exponentially_then_cap() {
        let b = Backoff::default();
        let bases: Vec<f64> = (0..9).map(|a| b.base_ms(a)).collect();
        assert_eq!(bases, [500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 30000.0, 30000.0, 30000.0]);
        assert_eq!(b.base_ms(u32::MAX), 30000.0);
    }

    #[test]
    fn server_retry_is_a_floor() {
        let b = Backoff { initial_ms: 10.0, ..Backoff::default() };
        for i in 0..100 {
            let r = f64::from(i) / 100.0;
            let d = b.delay_with_floor_ms(0, r, 3000.0);
            assert!((3000.0..=4500.0).contains(&d), "{d}");
            // No floor (or a smaller one): the backoff as before.
            assert_eq!(b.delay_with_floor_ms(3, r, 0.0), f64::from(b.delay_ms(3, r)));
        }
        assert_eq!(b.delay_with_floor_ms(u32::MAX, 0.0, 3000.0), 30_000.0);
    }

    #[test]
    fn jitter_bounds() {
        let b = Backoff::default();
        assert_eq!(b.delay_ms(0, 0.0), 500);
        assert_eq!(b.delay_ms(0, 0.999_999), 250);
        assert_eq!(b.delay_ms(3, 0.5), 3000);
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay_ms(2, 0.7), 2000);
    }

    #[test]
    fn bad_values_are_sanitised() {
        let b = Backoff { initial_ms: f64::NAN, max_ms: -1.0, multiplier: 0.5, jitter: 7.0 };
        let s = b.sanitized();
        assert_eq!(s.initial_ms, 500.0);
        assert_eq!(s.max_ms, 30000.0);
        assert_eq!(s.multiplier, 1.0);
        assert_eq!(s.jitter, 1.0);
        assert_eq!(b.delay_ms(5, f64::NAN), 500);
        // max below initial: initial wins (a constant delay).
        let c = Backoff { initial_ms: 100.0, max_ms: 10.0, ..Backoff::default() };
        assert_eq!(c.delay_ms(4, 0.0), 100);
    }

    proptest! {
        #[test]
        fn delay_is_within_jitter_band_and_cap(
            initial in 0.0f64..10_000.0,
            max in 0.0f64..100_000.0,
            mult in 1.0f64..4.0,
            jitter in 0.0f64..=1.0,
            attempt in 0u32..100,
            r in 0.0f64..1.0,
        ) {
            let b = Backoff { initial_ms: initial, max_ms: max, multiplier: mult, jitter };
            let base = b.base_ms(attempt);
            // The base is exactly the documented formula (max below initial: initial wins)...
            let expected = (initial * mult.powi(i32::try_from(attempt).unwrap_or(i32::MAX))).min(max.max(initial));
            prop_assert!((base - expected).abs() <= 1e-9 * expected.max(1.0), "base {} vs {}", base, expected);
            // ...and jitter only ever shortens it, by at most `jitter` of it.
            let d = f64::from(b.delay_ms(attempt, r));
            prop_assert!(d <= base + 0.5, "delay {} above its base {}", d, base);
            prop_assert!(d >= base * (1.0 - jitter) - 0.5);
        }

        #[test]
        fn base_is_monotonic(mult in 1.0f64..4.0, attempt in 0u32..60) {
            let b = Backoff { multiplier: mult, ..Backoff::default() };
            prop_assert!(b.base_ms(attempt) <= b.base_ms(attempt + 1));
        }
    }
}
