//! Level -> scale policy and the optional linear recovery ramp.

use crate::level::Level;
use std::time::Duration;

/// How the scale follows the queue: `--policy step|proportional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePolicy {
    /// One scale per level (1.0 / 0.5 / 0.0 by default).
    #[default]
    Step,
    /// Continuous, from the depth and its trend; 0 only at HARD.
    Proportional,
}

impl RatePolicy {
    pub const ALL: [RatePolicy; 2] = [RatePolicy::Step, RatePolicy::Proportional];

    pub fn as_str(self) -> &'static str {
        match self {
            RatePolicy::Step => "step",
            RatePolicy::Proportional => "proportional",
        }
    }
}

impl std::fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RatePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RatePolicy::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("expected step or proportional, got {s:?}"))
    }
}

/// Rate scale factor for each level; defaults 1.0 / 0.5 / 0.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalePolicy {
    pub ok: f64,
    pub soft: f64,
    pub hard: f64,
}

/// Why a scale policy was refused; names the offending option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScalePolicyError {
    #[error("{name} must be within [0, 1], got {value}")]
    OutOfRange { name: &'static str, value: f64 },
    #[error("scales must not rise with severity: ok {ok} >= soft {soft} >= hard {hard}")]
    NotMonotonic { ok: f64, soft: f64, hard: f64 },
}

impl Default for ScalePolicy {
    fn default() -> Self {
        ScalePolicy {
            ok: 1.0,
            soft: 0.5,
            hard: 0.0,
        }
    }
}

impl ScalePolicy {
    /// Validates each factor in [0, 1] and that a worse level never allows more.
    pub fn try_new(ok: f64, soft: f64, hard: f64) -> Result<Self, ScalePolicyError> {
        for (name, value) in [("scale-ok", ok), ("scale-soft", soft), ("scale-hard", hard)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ScalePolicyError::OutOfRange { name, value });
            }
        }
        if soft > ok || hard > soft {
            return Err(ScalePolicyError::NotMonotonic { ok, soft, hard });
        }
        Ok(ScalePolicy { ok, soft, hard })
    }

    pub fn scale_for(&self, level: Level) -> f64 {
        match level {
            Level::Ok => self.ok,
            Level::Soft => self.soft,
            Level::Hard => self.hard,
        }
    }
}

/// The scale in force: falls at once, rises linearly over `ramp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampedScale {
    from: f64,
    to: f64,
    since: Duration,
    ramp: Duration,
}

impl RampedScale {
    pub fn new(initial: f64, ramp: Duration) -> Self {
        RampedScale {
            from: initial,
            to: initial,
            since: Duration::ZERO,
            ramp,
        }
    }

    /// The scale at `now`, always within [min(from, to), max(from, to)].
    pub fn at(&self, now: Duration) -> f64 {
        if self.ramp.is_zero() || self.to <= self.from {
            return self.to;
        }
        let progress = now.saturating_sub(self.since).as_secs_f64() / self.ramp.as_secs_f64();
        if progress >= 1.0 {
            self.to
        } else {
            self.from + (self.to - self.from) * progress
        }
    }

    /// The target the scale is heading to.
    pub fn target(&self) -> f64 {
        self.to
    }

    /// True while a rise is still in progress at `now`.
    pub fn is_ramping(&self, now: Duration) -> bool {
        self.at(now) < self.to
    }

    /// Aims at `target`: a fall applies at once, a rise starts a ramp from the
    /// scale in force now.
    pub fn retarget(&mut self, target: f64, now: Duration) {
        if target == self.to {
            return;
        }
        let current = self.at(now);
        self.from = if target < current { target } else { current };
        self.to = target;
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rate_policies_parse_by_name() {
        assert_eq!("step".parse(), Ok(RatePolicy::Step));
        assert_eq!("Proportional".parse(), Ok(RatePolicy::Proportional));
        assert!("pid".parse::<RatePolicy>().is_err());
        assert_eq!(RatePolicy::default(), RatePolicy::Step);
    }

    #[test]
    fn default_policy_is_the_documented_one() {
        let policy = ScalePolicy::default();
        assert_eq!(policy.scale_for(Level::Ok), 1.0);
        assert_eq!(policy.scale_for(Level::Soft), 0.5);
        assert_eq!(policy.scale_for(Level::Hard), 0.0);
    }

    #[test]
    fn refuses_scales_outside_the_unit_interval_or_rising_with_severity() {
        assert!(ScalePolicy::try_new(1.1, 0.5, 0.0).is_err());
        assert!(ScalePolicy::try_new(1.0, -0.1, 0.0).is_err());
        assert!(ScalePolicy::try_new(1.0, f64::NAN, 0.0).is_err());
        assert!(ScalePolicy::try_new(0.5, 0.8, 0.0).is_err());
        assert!(ScalePolicy::try_new(1.0, 0.5, 0.6).is_err());
        assert!(ScalePolicy::try_new(1.0, 0.5, 0.0).is_ok());
    }

    #[test]
    fn ramp_falls_at_once_and_rises_linearly() {
        let secs = Duration::from_secs;
        let mut scale = RampedScale::new(1.0, secs(10));
        scale.retarget(0.0, secs(1));
        assert_eq!(scale.at(secs(1)), 0.0);
        scale.retarget(1.0, secs(2));
        assert_eq!(scale.at(secs(2)), 0.0);
        assert!((scale.at(secs(7)) - 0.5).abs() < 1e-9);
        assert_eq!(scale.at(secs(12)), 1.0);
        assert!(!scale.is_ramping(secs(12)));
    }

    #[test]
    fn a_fall_during_a_rise_applies_at_once() {
        let secs = Duration::from_secs;
        let mut scale = RampedScale::new(0.0, secs(10));
        scale.retarget(1.0, secs(0));
        scale.retarget(0.5, secs(8));
        assert_eq!(scale.at(secs(8)), 0.5);
    }

    proptest! {
        #[test]
        fn scale_stays_in_the_unit_interval(
            ramp_ms in 0u64..20_000,
            steps in proptest::collection::vec((0.0f64..=1.0, 0u64..5_000), 1..50),
        ) {
            let mut scale = RampedScale::new(1.0, Duration::from_millis(ramp_ms));
            let mut now = Duration::ZERO;
            for (target, dt) in steps {
                now += Duration::from_millis(dt);
                scale.retarget(target, now);
                let value = scale.at(now);
                prop_assert!((0.0..=1.0).contains(&value));
                prop_assert!(value <= target, "never above the target just set");
            }
        }
    }
}
