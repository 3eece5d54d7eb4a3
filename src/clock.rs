//! Monotonic time since start, on tokio's clock so paused-time tests control it.

use std::time::Duration;
use tokio::time::Instant;

/// Monotonic clock anchored at its creation; cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Time elapsed since the clock was created.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The instant at `offset` after the clock's start.
    pub fn instant_at(&self, offset: Duration) -> Instant {
        self.start + offset
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock time as Unix epoch seconds (for event timestamps only: ages and
/// TTLs use [`Clock`], which does not jump).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
