//! Watermarks and the hysteresis that turns a queue fill fraction into a level.

use crate::level::Level;

/// Fractions of capacity at which the derived level changes.
///
/// Rising edges (`soft_at`, `hard_at`) and falling edges (`hard_release`,
/// `soft_release`) differ so a queue hovering near one mark does not flap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watermarks {
    /// OK -> SOFT when the fill fraction reaches this.
    pub soft_at: f64,
    /// OK/SOFT -> HARD when the fill fraction reaches this.
    pub hard_at: f64,
    /// HARD -> SOFT when the fill fraction falls below this.
    pub hard_release: f64,
    /// SOFT -> OK when the fill fraction falls below this.
    pub soft_release: f64,
}

/// Why a set of watermarks was refused; names the offending option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WatermarkError {
    #[error("{name} must be a fraction in (0, 1], got {value}")]
    OutOfRange { name: &'static str, value: f64 },
    #[error("{low} ({low_value}) must be below {high} ({high_value})")]
    Order {
        low: &'static str,
        low_value: f64,
        high: &'static str,
        high_value: f64,
    },
}

impl Default for Watermarks {
    fn default() -> Self {
        Watermarks {
            soft_at: 0.50,
            hard_at: 0.90,
            hard_release: 0.80,
            soft_release: 0.20,
        }
    }
}

impl Watermarks {
    /// Validates the four marks: each in (0, 1], every release below its rise.
    pub fn try_new(
        soft_at: f64,
        hard_at: f64,
        hard_release: f64,
        soft_release: f64,
    ) -> Result<Self, WatermarkError> {
        for (name, value) in [
            ("soft-watermark", soft_at),
            ("hard-watermark", hard_at),
            ("hard-release", hard_release),
            ("soft-release", soft_release),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(WatermarkError::OutOfRange { name, value });
            }
        }
        let ordered = [
            ("soft-release", soft_release, "soft-watermark", soft_at),
            ("soft-watermark", soft_at, "hard-watermark", hard_at),
            ("hard-release", hard_release, "hard-watermark", hard_at),
            ("soft-release", soft_release, "hard-release", hard_release),
        ];
        for (low, low_value, high, high_value) in ordered {
            if low_value >= high_value {
                return Err(WatermarkError::Order {
                    low,
                    low_value,
                    high,
                    high_value,
                });
            }
        }
        Ok(Watermarks {
            soft_at,
            hard_at,
            hard_release,
            soft_release,
        })
    }

    /// The level after observing `fraction` (queue_size / capacity) when the
    /// level was `previous`.
    pub fn next_level(&self, previous: Level, fraction: f64) -> Level {
        if fraction >= self.hard_at {
            return Level::Hard;
        }
        match previous {
            Level::Hard if fraction >= self.hard_release => Level::Hard,
            Level::Hard | Level::Soft if fraction < self.soft_release => Level::Ok,
            Level::Hard | Level::Soft => Level::Soft,
            Level::Ok if fraction >= self.soft_at => Level::Soft,
            Level::Ok => Level::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn walks_the_documented_watermarks_up_and_down() {
        let marks = Watermarks::default();
        let walk = [
            (4000, Level::Ok),
            (5000, Level::Soft),
            (8500, Level::Soft),
            (9000, Level::Hard),
            (8200, Level::Hard),
            (7900, Level::Soft),
            (3000, Level::Soft),
            (1900, Level::Ok),
        ];
        let mut level = Level::Ok;
        for (depth, expected) in walk {
            level = marks.next_level(level, depth as f64 / 10_000.0);
            assert_eq!(level, expected, "at depth {depth}");
        }
    }

    #[test]
    fn hard_drops_straight_to_ok_when_the_queue_empties() {
        let marks = Watermarks::default();
        assert_eq!(marks.next_level(Level::Hard, 0.1), Level::Ok);
    }

    #[test]
    fn refuses_out_of_order_or_out_of_range_marks() {
        assert!(Watermarks::try_new(0.5, 0.4, 0.3, 0.2).is_err());
        assert!(Watermarks::try_new(0.5, 0.9, 0.95, 0.2).is_err());
        assert!(Watermarks::try_new(0.5, 0.9, 0.8, 0.6).is_err());
        assert!(Watermarks::try_new(0.5, 1.5, 0.8, 0.2).is_err());
        assert!(Watermarks::try_new(f64::NAN, 0.9, 0.8, 0.2).is_err());
        assert!(Watermarks::try_new(0.5, 0.9, 0.8, 0.0).is_err());
        assert_eq!(
            Watermarks::try_new(0.5, 0.9, 0.8, 0.2),
            Ok(Watermarks::default())
        );
    }

    /// Each level with the band of fractions that must keep it: OK below
    /// soft_at, SOFT between soft_release and hard_at, HARD from hard_release.
    fn band_strategy() -> impl Strategy<Value = (Level, f64, f64)> {
        prop_oneof![
            Just((Level::Ok, 0.0, 0.5)),
            Just((Level::Soft, 0.2, 0.9)),
            Just((Level::Hard, 0.8, 1.5)),
        ]
    }

    proptest! {
        #[test]
        fn never_changes_level_inside_one_band(
            (start, low, high) in band_strategy(),
            steps in proptest::collection::vec(0.0f64..1.0, 1..200),
        ) {
            let marks = Watermarks::default();
            let mut level = start;
            for step in steps {
                let fraction = low + step * (high - low);
                level = marks.next_level(level, fraction);
                prop_assert_eq!(level, start, "fraction {}", fraction);
            }
        }

        #[test]
        fn monotonic_input_changes_level_monotonically(
            mut fractions in proptest::collection::vec(0.0f64..1.2, 1..200),
        ) {
            let marks = Watermarks::default();
            fractions.sort_by(f64::total_cmp);
            let mut level = Level::Ok;
            for fraction in &fractions {
                let next = marks.next_level(level, *fraction);
                prop_assert!(next >= level);
                level = next;
            }
            fractions.reverse();
            for fraction in &fractions {
                let next = marks.next_level(level, *fraction);
                prop_assert!(next <= level);
                level = next;
            }
        }
    }
}
