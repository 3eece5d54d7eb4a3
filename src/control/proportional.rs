//! The proportional rate policy: the scale set continuously from the queue depth
//! and its trend, on injected time.
//!
//! A velocity-form PI controller on the depth fraction `x` (depth / capacity),
//! aiming at `target` between the watermarks. At every fresh depth `x` seen `dt`
//! after the previous one `x0`:
//!
//! ```text
//! error = x - target, less the deadband (0 within it)
//! step  = ki * error * dt + kp * (x - x0)      (the depth's error and its trend)
//! next  = clamp(now - clamp(step, -slew_up*dt, slew_down*dt), floor, 1)
//! ```
//!
//! where `now` is the scale in force at that moment; the scale then moves
//! linearly to `next` over `dt` (the expected time to the next depth), so it
//! never falls faster than `slew_down` nor rises faster than `slew_up` per second. The same shape as PIE's drop
//! probability update (an integral term on the error and a proportional term on
//! its change), and, like TCP's AIMD or Gradient2, a cut reacts to the trend
//! while recovery is gradual. The velocity form has no separate integrator, so
//! clamping the scale is the anti-windup: nothing accumulates while the scale
//! sits at 1 or at the floor.
//!
//! The scale is 0 only at HARD (applied at once, as the step policy does); it
//! never goes below `floor` otherwise, and never above 1.

use crate::level::Level;
use std::time::Duration;

/// The proportional policy's tuning (see `docs/policy.md` for why these values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProportionalTuning {
    /// Depth fraction the controller aims at (strictly between the watermarks).
    pub target: f64,
    /// Scale per unit of depth fraction per second of error (the integral gain).
    pub ki: f64,
    /// Scale per unit of change of the depth fraction (the trend gain).
    pub kp: f64,
    /// Most the scale may fall per second (a cut is quick, as in AIMD).
    pub slew_down: f64,
    /// Most the scale may rise per second (recovery is gradual).
    pub slew_up: f64,
    /// Least scale outside HARD (the providers are never paused outside HARD).
    pub floor: f64,
    /// Depth errors smaller than this (as a fraction) do not move the scale:
    /// a queue steady near the target leaves the scale where it is.
    pub deadband: f64,
    /// Longest gap between two depths that counts in full; longer silences
    /// count as this long (a store silent for minutes is no reason for a jump).
    pub max_gap: Duration,
}

impl Default for ProportionalTuning {
    fn default() -> Self {
        ProportionalTuning {
            target: 0.6,
            ki: 0.2,
            kp: 4.0,
            slew_down: 0.25,
            slew_up: 0.2,
            floor: 0.05,
            deadband: 0.02,
            max_gap: Duration::from_secs(10),
        }
    }
}

/// Why a tuning was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuningError {
    #[error(
        "proportional target {target} must lie strictly between the watermarks {soft} and {hard}"
    )]
    Target { target: f64, soft: f64, hard: f64 },
    #[error("proportional {name} must be a finite number in {range}, got {value}")]
    OutOfRange {
        name: &'static str,
        range: &'static str,
        value: f64,
    },
}

/// Where between the watermarks the default target lies (0: at SOFT, 1: at HARD).
pub(super) const TARGET_BETWEEN: f64 = 0.25;

impl ProportionalTuning {
    /// The default gains with the target a quarter of the way from the SOFT
    /// watermark to the HARD one (0.6 for the default 0.5 and 0.9).
    pub fn for_watermarks(soft_at: f64, hard_at: f64) -> Self {
        ProportionalTuning {
            target: soft_at + TARGET_BETWEEN * (hard_at - soft_at),
            ..ProportionalTuning::default()
        }
    }

    /// Checks every gain and that `target` lies between `soft_at` and `hard_at`.
    pub fn validate(&self, soft_at: f64, hard_at: f64) -> Result<(), TuningError> {
        if !(self.target > soft_at && self.target < hard_at) {
            return Err(TuningError::Target {
                target: self.target,
                soft: soft_at,
                hard: hard_at,
            });
        }
        let checks = [
            ("ki", "(0, 100]", self.ki, self.ki > 0.0 && self.ki <= 100.0),
            ("kp", "[0, 100]", self.kp, (0.0..=100.0).contains(&self.kp)),
            (
                "slew_down",
                "(0, 10]",
                self.slew_down,
                self.slew_down > 0.0 && self.slew_down <= 10.0,
            ),
            (
                "slew_up",
                "(0, 10]",
                self.slew_up,
                self.slew_up > 0.0 && self.slew_up <= 10.0,
            ),
            (
                "floor",
                "(0, 1)",
                self.floor,
                self.floor > 0.0 && self.floor < 1.0,
            ),
            (
                "deadband",
                "[0, 0.2]",
                self.deadband,
                (0.0..=0.2).contains(&self.deadband),
            ),
        ];
        for (name, range, value, ok) in checks {
            if !(value.is_finite() && ok) {
                return Err(TuningError::OutOfRange { name, range, value });
            }
        }
        Ok(())
    }
}

/// The proportional controller's state: a linear segment of the scale, the
/// last depth seen, and whether HARD holds it at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Proportional {
    tuning: ProportionalTuning,
    from: f64,
    to: f64,
    since: Duration,
    until: Duration,
    last: Option<(Duration, f64)>,
    hard: bool,
}

impl Proportional {
    /// Starts at full scale with no depth seen.
    pub fn new(tuning: ProportionalTuning) -> Self {
        Proportional {
            tuning,
            from: 1.0,
            to: 1.0,
            since: Duration::ZERO,
            until: Duration::ZERO,
            last: None,
            hard: false,
        }
    }

    pub fn tuning(&self) -> &ProportionalTuning {
        &self.tuning
    }

    /// The scale in force at `now`: 0 at HARD, otherwise in [floor, 1].
    pub fn at(&self, now: Duration) -> f64 {
        if self.hard {
            return 0.0;
        }
        if now >= self.until || self.until <= self.since {
            return self.to;
        }
        let progress =
            now.saturating_sub(self.since).as_secs_f64() / (self.until - self.since).as_secs_f64();
        self.from + (self.to - self.from) * progress.clamp(0.0, 1.0)
    }

    /// Where the scale is heading.
    pub fn target(&self) -> f64 {
        if self.hard { 0.0 } else { self.to }
    }

    /// True while the scale is still moving at `now`.
    pub fn is_moving(&self, now: Duration) -> bool {
        !self.hard && now < self.until && self.from != self.to
    }

    /// Follows the level in force: HARD holds the scale at 0 at once; leaving
    /// HARD restarts from the floor (and climbs from there as the depth allows).
    pub fn set_level(&mut self, level: Level, now: Duration) {
        let hard = level == Level::Hard;
        if hard == self.hard {
            return;
        }
        self.hard = hard;
        if !hard {
            self.hold(self.tuning.floor, now);
        }
    }

    /// A fresh depth fraction `x` at `now`: one controller step.
    pub fn observe(&mut self, x: f64, now: Duration) {
        let x = if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let t = self.tuning;
        let Some((at, x0)) = self.last else {
            self.last = Some((now, x));
            return;
        };
        if now <= at {
            // The same instant again (or time running back): take the newer depth
            // as the reference without acting twice on one moment.
            self.last = Some((at, x));
            return;
        }
        self.last = Some((now, x));
        let dt = (now - at).min(t.max_gap);
        let secs = dt.as_secs_f64();
        let error = x - t.target;
        let error = error.signum() * (error.abs() - t.deadband).max(0.0);
        let step = t.ki * error * secs + t.kp * (x - x0);
        let current = self.at(now);
        if self.hard {
            return;
        }
        // A positive step cuts the scale.
        let step = step.clamp(-t.slew_up * secs, t.slew_down * secs);
        let next = (current - step).clamp(t.floor, 1.0);
        self.from = current;
        self.to = next;
        self.since = now;
        self.until = now + dt;
    }

    fn hold(&mut self, value: f64, now: Duration) {
        self.from = value;
        self.to = value;
        self.since = now;
        self.until = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_default_tuning_is_valid_for_the_default_watermarks() {
        assert_eq!(ProportionalTuning::default().validate(0.5, 0.9), Ok(()));
        let outside = ProportionalTuning {
            target: 0.4,
            ..ProportionalTuning::default()
        };
        assert!(outside.validate(0.5, 0.9).is_err());
        let bad = ProportionalTuning {
            slew_up: f64::NAN,
            ..ProportionalTuning::default()
        };
        assert!(bad.validate(0.5, 0.9).is_err());
    }

    #[test]
    fn a_deep_queue_cuts_the_scale_and_a_shallow_one_restores_it() {
        let mut p = Proportional::new(ProportionalTuning::default());
        for s in 0..=60 {
            p.observe(0.85, secs(s));
        }
        let cut = p.at(secs(60));
        assert!(cut < 0.1, "{cut}");
        assert!(cut > 0.0, "never zero outside HARD");
        for s in 61..=120 {
            p.observe(0.1, secs(s));
        }
        assert_eq!(p.at(secs(121)), 1.0);
    }

    #[test]
    fn hard_is_zero_at_once_and_leaving_it_restarts_at_the_floor() {
        let mut p = Proportional::new(ProportionalTuning::default());
        p.observe(0.3, secs(0));
        p.set_level(Level::Hard, secs(1));
        assert_eq!(p.at(secs(1)), 0.0);
        p.observe(0.95, secs(2));
        assert_eq!(p.at(secs(3)), 0.0);
        p.set_level(Level::Soft, secs(4));
        assert_eq!(p.at(secs(4)), 0.05);
    }

    #[test]
    fn the_scale_moves_linearly_between_depths() {
        let mut p = Proportional::new(ProportionalTuning::default());
        p.observe(0.6, secs(0));
        // Rising by 0.1 in 5 s to 0.1 above the target: the trend kp * 0.1 = 0.4
        // plus the integral 0.2 * (0.1 - 0.02) * 5 = 0.08, within the 1.25 the
        // slew allows for a cut over 5 s.
        p.observe(0.7, secs(5));
        assert!((p.target() - 0.52).abs() < 1e-9, "{}", p.target());
        assert!((p.at(Duration::from_millis(7500)) - 0.76).abs() < 1e-9);
        assert!(p.is_moving(secs(7)));
        assert!(!p.is_moving(secs(10)));
    }

    #[test]
    fn the_controller_runs_the_proportional_policy_with_its_levels() {
        use crate::control::{ControlConfig, Controller, Observation, RatePolicy, Source};
        let mut ctl = Controller::new(ControlConfig {
            rate_policy: RatePolicy::Proportional,
            relax_after: Duration::ZERO,
            ..ControlConfig::default()
        });
        let observe = |ctl: &mut Controller, depth: u64, t: u64| {
            ctl.observe(
                Observation {
                    coordinator_id: "c".to_owned(),
                    queue_size: depth,
                    capacity: 10_000,
                    level: None,
                    ts: t as f64,
                    source: Source::Pull,
                    reason: None,
                },
                secs(t),
            );
        };
        observe(&mut ctl, 5000, 0);
        observe(&mut ctl, 5600, 5);
        assert_eq!(ctl.level(), Level::Soft);
        // Rising by 0.06 in 5 s: cut by kp * 0.06 = 0.24, less the integral
        // 0.2 * (0.04 - 0.02) * 5 = 0.02 for being below the target; over 5 s.
        assert!(
            (ctl.target_scale() - 0.78).abs() < 1e-9,
            "{}",
            ctl.target_scale()
        );
        assert_eq!(
            ctl.next_deadline(secs(5)),
            Some(secs(5) + crate::control::RAMP_STEP)
        );
        ctl.tick(Duration::from_millis(7500));
        let halfway = ctl.scale(Duration::from_millis(7500));
        assert!((halfway - 0.89).abs() < 1e-9, "continuous: {halfway}");
        observe(&mut ctl, 9500, 10);
        assert_eq!((ctl.level(), ctl.scale(secs(10))), (Level::Hard, 0.0));
        observe(&mut ctl, 7000, 15);
        assert_eq!(ctl.level(), Level::Soft);
        assert!(ctl.scale(secs(15)) > 0.0, "zero only at HARD");
    }

    /// Depth fractions a store could report, with the gaps between them.
    fn walk() -> impl Strategy<Value = Vec<(f64, u64)>> {
        proptest::collection::vec((0.0f64..=1.0, 1u64..=8_000), 1..80)
    }

    proptest! {
        #[test]
        fn scale_stays_in_the_unit_interval_and_zero_only_at_hard(
            steps in walk(),
            hard_at in proptest::collection::vec(any::<bool>(), 80),
        ) {
            let tuning = ProportionalTuning::default();
            let mut p = Proportional::new(tuning);
            let mut now = Duration::ZERO;
            for (i, (x, gap)) in steps.into_iter().enumerate() {
                now += Duration::from_millis(gap);
                let level = if hard_at[i] { Level::Hard } else { Level::Soft };
                p.set_level(level, now);
                p.observe(x, now);
                for probe in [now, now + Duration::from_millis(gap / 2)] {
                    let scale = p.at(probe);
                    prop_assert!((0.0..=1.0).contains(&scale));
                    prop_assert_eq!(scale == 0.0, level == Level::Hard);
                    if level != Level::Hard {
                        prop_assert!(scale >= tuning.floor);
                    }
                }
            }
        }

        #[test]
        fn slew_is_bounded(steps in walk(), probe_ms in 1u64..2_000) {
            let tuning = ProportionalTuning::default();
            let mut p = Proportional::new(tuning);
            let mut now = Duration::ZERO;
            let mut last = (now, p.at(now));
            for (x, gap) in steps {
                let until = now + Duration::from_millis(gap);
                // Probe the scale between depths, then at the next depth.
                let mut t = now;
                while t < until {
                    t = (t + Duration::from_millis(probe_ms)).min(until);
                    if t == until {
                        p.observe(x, t);
                    }
                    let scale = p.at(t);
                    let dt = (t - last.0).as_secs_f64();
                    prop_assert!(
                        scale - last.1 <= tuning.slew_up * dt + 1e-9,
                        "rose {} -> {} in {} s", last.1, scale, dt
                    );
                    prop_assert!(
                        last.1 - scale <= tuning.slew_down * dt + 1e-9,
                        "fell {} -> {} in {} s", last.1, scale, dt
                    );
                    last = (t, scale);
                }
                now = until;
            }
        }

        #[test]
        fn never_rises_while_the_depth_is_above_target_and_rising(
            start in 0.0f64..=1.0,
            history in walk(),
            rises in proptest::collection::vec((0.0f64..0.05, 100u64..=5_000), 1..40),
        ) {
            let tuning = ProportionalTuning::default();
            let mut p = Proportional::new(tuning);
            let mut now = Duration::ZERO;
            // Any past first, so the scale may be anywhere (even still climbing).
            for (x, gap) in history {
                now += Duration::from_millis(gap);
                p.observe(x, now);
            }
            // Then a depth above the target, held for one step: from here on the
            // depth only rises.
            let mut x = start.max(tuning.target);
            for _ in 0..2 {
                now += Duration::from_millis(500);
                p.observe(x, now);
            }
            let mut last = p.at(now);
            for (rise, gap) in rises {
                let next = now + Duration::from_millis(gap);
                for k in 1..=4u32 {
                    let t = now + (next - now) * k / 4;
                    if k == 4 {
                        x = (x + rise).min(1.0);
                        p.observe(x, t);
                    }
                    let scale = p.at(t);
                    prop_assert!(scale <= last + 1e-12, "rose {} -> {} at depth {}", last, scale, x);
                    last = scale;
                }
                now = next;
            }
        }

        #[test]
        fn at_a_steady_depth_the_scale_settles_without_oscillating(
            // Within the deadband, or far enough out that the integral reaches
            // a bound within the run (0.05 past the deadband: 0.01 per second).
            depth in prop_oneof![0.0f64..=0.53, 0.585f64..=0.615, 0.67f64..=1.0],
            history in walk(),
            period_ms in 200u64..=5_000,
        ) {
            let tuning = ProportionalTuning::default();
            let mut p = Proportional::new(tuning);
            let mut now = Duration::ZERO;
            for (x, gap) in history {
                now += Duration::from_millis(gap);
                p.observe(x, now);
            }
            // Steady from here: after the first step (which still sees the jump
            // to `depth`), the scale moves one way only, then stays put.
            let period = Duration::from_millis(period_ms);
            now += period;
            p.observe(depth, now);
            let mut values = Vec::new();
            for _ in 0..1000 {
                now += period;
                p.observe(depth, now);
                values.push(p.at(now));
            }
            let ups = values.windows(2).filter(|w| w[1] > w[0] + 1e-12).count();
            let downs = values.windows(2).filter(|w| w[1] < w[0] - 1e-12).count();
            prop_assert!(ups == 0 || downs == 0, "{} ups and {} downs", ups, downs);
            let tail = &values[values.len() - 10..];
            prop_assert!(tail.iter().all(|v| (v - tail[0]).abs() < 1e-12), "settled: {:?}", tail);
        }
    }
}
