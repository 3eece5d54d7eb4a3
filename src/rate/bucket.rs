//! A token bucket whose rate and burst follow a live scale factor.

use std::time::Duration;

/// Why a bucket could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BucketError {
    #[error("rate must be a finite number > 0 tokens/s, got {0}")]
    Rate(f64),
    #[error("burst must be a finite number >= 1 token, got {0}")]
    Burst(f64),
}

/// The least a bucket holds while it is not paused: workers take whole tokens,
/// so a share smaller than one token would never grant anything. The price is
/// at most `1 - burst x scale` tokens beyond the share, once per window.
pub const MIN_CAPACITY: f64 = 1.0;

/// Why tokens were not granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Throttle {
    /// Enough tokens will have accumulated after this wait, at the current rate.
    RetryAfter(Duration),
    /// Paused (scale 0) or asking for more than the current burst: no wait
    /// at the current scale will do.
    Paused,
}

/// Token bucket: at most `burst x scale` tokens saved (but never less than
/// [`MIN_CAPACITY`] while the scale is above 0), refilled at `rate x scale` per
/// second, so over any window W it grants at most
/// `max(burst x scale, 1) + rate x scale x W` while the scale holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    base_rate: f64,
    base_burst: f64,
    scale: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at scale 1 at time `now`.
    pub fn try_new(rate: f64, burst: f64, now: Duration) -> Result<Self, BucketError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BucketError::Rate(rate));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(BucketError::Burst(burst));
        }
        Ok(TokenBucket {
            base_rate: rate,
            base_burst: burst,
            scale: 1.0,
            tokens: burst,
            last: now,
        })
    }

    pub fn base_rate(&self) -> f64 {
        self.base_rate
    }

    pub fn base_burst(&self) -> f64 {
        self.base_burst
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn rate(&self) -> f64 {
        self.base_rate * self.scale
    }

    pub fn capacity(&self) -> f64 {
        if self.scale > 0.0 {
            (self.base_burst * self.scale).max(MIN_CAPACITY)
        } else {
            0.0
        }
    }

    /// Tokens saved at `now`.
    pub fn available(&mut self, now: Duration) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn refill(&mut self, now: Duration) {
        // Time never runs backwards here; a stale `now` simply adds nothing.
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate()).min(self.capacity());
        self.last = self.last.max(now);
    }

    /// Changes the scale (clamped to [0, 1]) from `now` on. What was saved
    /// beyond the new burst is dropped, so a pause (scale 0) keeps nothing.
    pub fn set_scale(&mut self, scale: f64, now: Duration) {
        self.refill(now);
        self.scale = if scale.is_nan() {
            0.0
        } else {
            scale.clamp(0.0, 1.0)
        };
        self.tokens = self.tokens.min(self.capacity());
    }

    /// Takes `n` tokens at `now` if they are there.
    pub fn try_acquire(&mut self, n: f64, now: Duration) -> Result<(), Throttle> {
        self.check(n, now)?;
        self.tokens -= n;
        Ok(())
    }

    /// Whether `n` tokens are there at `now`, without taking them.
    pub fn check(&mut self, n: f64, now: Duration) -> Result<(), Throttle> {
        self.refill(now);
        if n <= self.tokens {
            return Ok(());
        }
        if self.rate() <= 0.0 || n > self.capacity() {
            return Err(Throttle::Paused);
        }
        let wait = (n - self.tokens) / self.rate();
        Err(Throttle::RetryAfter(Duration::from_secs_f64(wait)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grants_the_burst_then_the_rate() {
        let mut bucket = TokenBucket::try_new(60.0, 100.0, ms(0)).expect("valid");
        for _ in 0..100 {
            assert!(bucket.try_acquire(1.0, ms(0)).is_ok());
        }
        match bucket.try_acquire(1.0, ms(0)) {
            Err(Throttle::RetryAfter(wait)) => {
                assert!((wait.as_secs_f64() - 1.0 / 60.0).abs() < 1e-9)
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        assert!(bucket.try_acquire(1.0, ms(17)).is_ok());
    }

    #[test]
    fn a_pause_grants_nothing_and_keeps_no_burst() {
        let mut bucket = TokenBucket::try_new(60.0, 100.0, ms(0)).expect("valid");
        bucket.set_scale(0.0, ms(0));
        assert_eq!(bucket.try_acquire(1.0, ms(60_000)), Err(Throttle::Paused));
        bucket.set_scale(1.0, ms(60_000));
        // The saved burst did not survive: only what accrued since the resume.
        assert!(bucket.try_acquire(1.0, ms(60_000)).is_err());
        assert!(bucket.available(ms(61_000)) <= 60.0 + 1e-9);
    }

    #[test]
    fn soft_halves_rate_and_burst() {
        let mut bucket = TokenBucket::try_new(60.0, 100.0, ms(0)).expect("valid");
        bucket.set_scale(0.5, ms(0));
        assert_eq!(bucket.rate(), 30.0);
        assert_eq!(bucket.available(ms(0)), 50.0);
        assert_eq!(bucket.try_acquire(51.0, ms(0)), Err(Throttle::Paused));
    }

    #[test]
    fn refuses_nonsense() {
        assert!(TokenBucket::try_new(0.0, 10.0, ms(0)).is_err());
        assert!(TokenBucket::try_new(f64::NAN, 10.0, ms(0)).is_err());
        assert!(TokenBucket::try_new(f64::INFINITY, 10.0, ms(0)).is_err());
        assert!(TokenBucket::try_new(10.0, 0.5, ms(0)).is_err());
    }

    proptest! {
        /// Over every window [a, b] of a random acquire sequence, grants stay
        /// within burst + rate x (b - a).
        #[test]
        fn never_grants_more_than_burst_plus_rate_times_window(
            rate in 0.5f64..500.0,
            burst in 1.0f64..200.0,
            scale in prop_oneof![Just(1.0), Just(0.5), 0.0f64..=1.0],
            attempts in proptest::collection::vec((0u64..50_000, 1u32..5), 1..300),
        ) {
            let mut bucket = TokenBucket::try_new(rate, burst, Duration::ZERO).expect("valid");
            bucket.set_scale(scale, Duration::ZERO);
            let mut now = Duration::ZERO;
            let mut grants: Vec<(f64, f64)> = Vec::new();
            for (gap_us, n) in attempts {
                now += Duration::from_micros(gap_us);
                if bucket.try_acquire(f64::from(n), now).is_ok() {
                    grants.push((now.as_secs_f64(), f64::from(n)));
                }
            }
            let eff_rate = rate * scale;
            let eff_burst = if scale > 0.0 { (burst * scale).max(MIN_CAPACITY) } else { 0.0 };
            for (i, (start, _)) in grants.iter().enumerate() {
                let mut total = 0.0;
                for (t, n) in &grants[i..] {
                    total += n;
                    let bound = eff_burst + eff_rate * (t - start) + 1e-6;
                    prop_assert!(total <= bound, "{} granted in {}s, bound {}", total, t - start, bound);
                }
            }
        }

        /// Scale changes mid-stream never let the total exceed the initial
        /// burst plus what the scaled rates accrued.
        #[test]
        fn scale_changes_never_over_grant(
            steps in proptest::collection::vec((0u64..20_000, 0.0f64..=1.0, 1u32..4), 1..300),
        ) {
            let (rate, burst) = (60.0, 100.0);
            let mut bucket = TokenBucket::try_new(rate, burst, Duration::ZERO).expect("valid");
            let (mut now, mut accrued, mut granted) = (Duration::ZERO, 0.0, 0.0);
            for (gap_us, scale, n) in steps {
                let gap = Duration::from_micros(gap_us);
                accrued += bucket.rate() * gap.as_secs_f64();
                now += gap;
                bucket.set_scale(scale, now);
                if bucket.try_acquire(f64::from(n), now).is_ok() {
                    granted += f64::from(n);
                }
                prop_assert!(granted <= burst + accrued + 1e-6);
                prop_assert!((0.0..=1.0).contains(&bucket.scale()));
            }
        }
    }
}
