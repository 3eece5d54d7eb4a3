//! The provider's own pushback: a factor cut at once, a hold until the
//! retry-after, then a linear climb back to 1.

use super::rule::PushbackPolicy;
use std::time::Duration;

/// What the provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushbackKind {
    /// IBKR error 162 and the like: a pacing rule was broken.
    PacingViolation,
    /// An HTTP 429 (usually with Retry-After).
    RateLimited,
}

impl PushbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushbackKind::PacingViolation => "pacing_violation",
            PushbackKind::RateLimited => "rate_limited",
        }
    }
}

/// One pushback report from a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushback {
    pub provider: String,
    /// The class pushed back; None: the whole provider.
    pub class: Option<String>,
    pub kind: PushbackKind,
    /// The provider's retry-after; None: the policy's `hold`.
    pub retry_after: Option<Duration>,
}

/// The back-off of one class (or of a whole provider).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Backoff {
    /// The factor right after the last cut.
    cut_to: f64,
    /// Nothing is granted before this; the climb starts here.
    hold_until: Duration,
    pub(super) reports: u64,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff {
            cut_to: 1.0,
            hold_until: Duration::ZERO,
            reports: 0,
        }
    }

    /// The factor at `now`: the cut value during the hold, then climbing by
    /// 1.0 per `recovery`, up to 1.
    pub(super) fn factor(&self, now: Duration, policy: &PushbackPolicy) -> f64 {
        if now <= self.hold_until {
            return self.cut_to;
        }
        let climbed = (now - self.hold_until).as_secs_f64() / policy.recovery.as_secs_f64();
        (self.cut_to + climbed).min(1.0)
    }

    /// The end of the hold, if it is still on at `now`.
    pub(super) fn held_until(&self, now: Duration) -> Option<Duration> {
        (now < self.hold_until).then_some(self.hold_until)
    }

    /// Whether the back-off is over (factor back at 1, no hold).
    pub(super) fn recovered(&self, now: Duration, policy: &PushbackPolicy) -> bool {
        self.held_until(now).is_none() && self.factor(now, policy) >= 1.0
    }

    /// Applies one report at `now`: the factor is cut from where it stands.
    pub(super) fn report(&mut self, now: Duration, hold: Duration, policy: &PushbackPolicy) {
        let current = self.factor(now, policy);
        self.cut_to = (current * policy.decrease).max(policy.floor);
        self.hold_until = self.hold_until.max(now + hold);
        self.reports += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_once_holds_then_recovers_linearly() {
        let policy = PushbackPolicy {
            decrease: 0.5,
            floor: 0.1,
            hold: Duration::from_secs(10),
            recovery: Duration::from_secs(100),
        };
        let mut backoff = Backoff::new();
        let s = Duration::from_secs;
        backoff.report(s(0), s(5), &policy);
        assert_eq!(backoff.factor(s(0), &policy), 0.5);
        assert_eq!(backoff.held_until(s(4)), Some(s(5)));
        assert_eq!(backoff.held_until(s(5)), None);
        assert!((backoff.factor(s(30), &policy) - 0.75).abs() < 1e-9);
        // A second report cuts from where the factor stands.
        backoff.report(s(30), s(0), &policy);
        assert!((backoff.factor(s(30), &policy) - 0.375).abs() < 1e-9);
        for _ in 0..10 {
            backoff.report(s(30), s(0), &policy);
        }
        assert_eq!(backoff.factor(s(30), &policy), 0.1);
        assert!(backoff.recovered(s(200), &policy));
    }
}
