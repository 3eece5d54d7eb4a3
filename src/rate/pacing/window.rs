//! An exact sliding window: every grant kept with its time until it ages out.

use std::collections::VecDeque;
use std::time::Duration;

/// The grants of the last `window`, oldest first. A grant at `t` counts in
/// every window `[a, a + window)` that contains `t`, so it stops counting at
/// `t + window`. Holds at most `count` entries (each is at least one token).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlidingWindow {
    grants: VecDeque<(Duration, u64)>,
    used: u64,
}

impl SlidingWindow {
    /// Forgets grants that no longer count at `now`.
    pub fn prune(&mut self, now: Duration, window: Duration) {
        while let Some(&(at, tokens)) = self.grants.front() {
            if at + window > now {
                break;
            }
            self.grants.pop_front();
            self.used -= tokens;
        }
    }

    /// Tokens counted at `now` (after [`prune`](Self::prune)).
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// When the last grant stops counting.
    pub fn expires_at(&self, window: Duration) -> Option<Duration> {
        self.grants.back().map(|(at, _)| *at + window)
    }

    /// The earliest time at which `cost` more tokens fit within `capacity`,
    /// `now` when they fit already; None when they never can (`cost` above
    /// `capacity`). Call after `prune(now)`.
    pub fn fits_at(
        &self,
        cost: u64,
        capacity: u64,
        window: Duration,
        now: Duration,
    ) -> Option<Duration> {
        if cost > capacity {
            return None;
        }
        let mut used = self.used;
        if used + cost <= capacity {
            return Some(now);
        }
        for &(at, tokens) in &self.grants {
            used -= tokens;
            if used + cost <= capacity {
                return Some((at + window).max(now));
            }
        }
        Some(now)
    }

    /// Records a grant of `tokens` at `now` (times never go backwards here:
    /// a stale `now` is recorded at the newest time seen).
    pub fn record(&mut self, tokens: u64, now: Duration) {
        let at = self.grants.back().map_or(now, |(last, _)| now.max(*last));
        match self.grants.back_mut() {
            Some((last, n)) if *last == at => *n += tokens,
            _ => self.grants.push_back((at, tokens)),
        }
        self.used += tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_stops_counting_one_window_later() {
        let w = Duration::from_secs(10);
        let mut window = SlidingWindow::default();
        window.record(3, Duration::from_secs(1));
        window.record(2, Duration::from_secs(4));
        window.prune(Duration::from_secs(5), w);
        assert_eq!(window.used(), 5);
        assert_eq!(
            window.fits_at(1, 5, w, Duration::from_secs(5)),
            Some(Duration::from_secs(11))
        );
        assert_eq!(
            window.fits_at(4, 5, w, Duration::from_secs(5)),
            Some(Duration::from_secs(14))
        );
        assert_eq!(window.fits_at(6, 5, w, Duration::from_secs(5)), None);
        window.prune(Duration::from_secs(11), w);
        assert_eq!(window.used(), 2);
    }
}
