//! Virtual time in steps through a scenario's phases, shared by the models.

use std::time::Duration;

/// Virtual time in steps over a scenario's phases.
pub(super) struct Steps {
    step_nanos: u64,
    per_second: u64,
    total: u64,
    durations: Vec<Duration>,
    phase: usize,
    phase_start: Duration,
}

impl Steps {
    /// Steps of `step` (at least 1 ns, at most a second) through phases of
    /// these `durations`, one after the other.
    pub(super) fn new(step: Duration, durations: Vec<Duration>) -> Steps {
        let step_nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX).max(1);
        let per_second = (1_000_000_000 / step_nanos).max(1);
        let seconds = durations.iter().sum::<Duration>().as_secs();
        Steps {
            step_nanos,
            per_second,
            total: seconds * per_second,
            durations,
            phase: 0,
            phase_start: Duration::ZERO,
        }
    }

    /// How many steps the phases take.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Step `index`'s time, the phase it falls in and when that phase began
    /// (the last phase goes on to the end). Indices must not go backwards.
    pub(super) fn at(&mut self, index: u64) -> (Duration, usize, Duration) {
        let now = Duration::from_nanos(index * self.step_nanos);
        while now >= self.phase_start + self.durations[self.phase]
            && self.phase + 1 < self.durations.len()
        {
            self.phase_start += self.durations[self.phase];
            self.phase += 1;
        }
        (now, self.phase, self.phase_start)
    }

    /// Whether step `index` begins a whole second (where the runs sample).
    pub(super) fn whole_second(&self, index: u64) -> bool {
        index % self.per_second == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_begin_on_their_step_and_the_last_one_runs_to_the_end() {
        let secs = Duration::from_secs;
        let mut steps = Steps::new(Duration::from_millis(500), vec![secs(2), secs(1)]);
        assert_eq!(steps.total(), 6);
        let seen: Vec<_> = (0..steps.total()).map(|i| steps.at(i)).collect();
        assert_eq!(seen[3], (Duration::from_millis(1500), 0, secs(0)));
        assert_eq!(seen[4], (secs(2), 1, secs(2)));
        assert_eq!(seen[5], (Duration::from_millis(2500), 1, secs(2)));
        let whole: Vec<u64> = (0..6).filter(|&i| steps.whole_second(i)).collect();
        assert_eq!(whole, [0, 2, 4]);
    }
}
