//! Repeated failures said once, then summarised: a poll failing every second
//! warns on the first failure, then once per period with how many failed since,
//! and says when it works again.

use std::time::Duration;

/// What to log for one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// The first failure of a run: say it in full.
    First,
    /// Still failing: `count` failures over the `over` since the last report.
    Still { count: u64, over: Duration },
    /// A failure already covered by the last report: say nothing (or debug).
    Quiet,
    /// Working again after `count` failures over `over`.
    Recovered { count: u64, over: Duration },
    /// Working, as before.
    Fine,
}

/// The state of one kind of repeated failure, on the caller's clock.
#[derive(Debug, Clone)]
pub(crate) struct Repeats {
    period: Duration,
    run: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    started: Duration,
    failures: u64,
    reported_at: Duration,
    unreported: u64,
}

impl Repeats {
    /// Summarises at most once per `period`.
    pub(crate) fn new(period: Duration) -> Self {
        Repeats { period, run: None }
    }

    /// A failure at `now`.
    pub(crate) fn failure(&mut self, now: Duration) -> Report {
        let Some(run) = &mut self.run else {
            self.run = Some(Run {
                started: now,
                failures: 1,
                reported_at: now,
                unreported: 0,
            });
            return Report::First;
        };
        run.failures += 1;
        run.unreported += 1;
        let over = now.saturating_sub(run.reported_at);
        if over >= self.period {
            let count = run.unreported;
            run.reported_at = now;
            run.unreported = 0;
            Report::Still { count, over }
        } else {
            Report::Quiet
        }
    }

    /// A success at `now`.
    pub(crate) fn success(&mut self, now: Duration) -> Report {
        match self.run.take() {
            Some(run) => Report::Recovered {
                count: run.failures,
                over: now.saturating_sub(run.started),
            },
            None => Report::Fine,
        }
    }
}

/// Whole seconds, for messages such as "30 polls in 30 s".
pub(crate) fn seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_failure_every_second_warns_once_then_every_period() {
        let mut repeats = Repeats::new(s(30));
        assert_eq!(repeats.failure(s(0)), Report::First);
        let mut reports = Vec::new();
        for t in 1..=65 {
            let report = repeats.failure(s(t));
            if report != Report::Quiet {
                reports.push((t, report));
            }
        }
        assert_eq!(
            reports,
            [
                (
                    30,
                    Report::Still {
                        count: 30,
                        over: s(30)
                    }
                ),
                (
                    60,
                    Report::Still {
                        count: 30,
                        over: s(30)
                    }
                ),
            ]
        );
        assert_eq!(
            repeats.success(s(66)),
            Report::Recovered {
                count: 66,
                over: s(66)
            }
        );
        assert_eq!(repeats.success(s(67)), Report::Fine);
        assert_eq!(
            repeats.failure(s(68)),
            Report::First,
            "a new run warns again"
        );
    }
}
