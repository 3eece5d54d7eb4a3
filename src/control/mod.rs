//! Control: per-coordinator levels, the overall level with its relax hold, and the scale.
//!
//! [`Controller`] is a plain state machine on injected time (`now` is the
//! monotonic time since start), so the service, the tests and `mdp simulate`
//! drive the very same code.

mod hysteresis;
mod policy;
mod proportional;

pub use hysteresis::{WatermarkError, Watermarks};
pub use policy::{RampedScale, RatePolicy, ScalePolicy, ScalePolicyError};
pub use proportional::{Proportional, ProportionalTuning, TuningError};

use crate::level::Level;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the control loop re-reads the scale while a recovery ramp runs.
pub const RAMP_STEP: Duration = Duration::from_millis(100);

/// Validated control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    pub watermarks: Watermarks,
    pub policy: ScalePolicy,
    /// A lower level must hold this long before the scale relaxes to it.
    pub relax_after: Duration,
    /// When the scale rises it climbs linearly over this time (zero: at once).
    pub recovery_ramp: Duration,
    /// Pushed coordinators silent for longer are stale (None: never).
    pub push_ttl: Option<Duration>,
    /// Pulled coordinators not refreshed for longer are stale.
    pub pull_ttl: Duration,
    /// Consecutive failed polls after which pulled coordinators are stale.
    pub pull_max_failures: u32,
    /// The level a stale coordinator counts as.
    pub stale_level: Level,
    /// Distinct coordinators tracked at most; events from more are refused.
    pub max_coordinators: usize,
    /// Coordinators silent for longer are forgotten, their series removed
    /// (None: only `forget` does it).
    pub forget_after: Option<Duration>,
    /// Whether the store is polled: then its depth is known only while the
    /// last poll succeeded.
    pub pulled: bool,
    /// Step (one scale per level) or proportional (continuous from the depth).
    pub rate_policy: RatePolicy,
    /// The proportional policy's gains (unused by the step policy).
    pub proportional: ProportionalTuning,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            watermarks: Watermarks::default(),
            policy: ScalePolicy::default(),
            relax_after: Duration::from_secs(3),
            recovery_ramp: Duration::ZERO,
            push_ttl: None,
            pull_ttl: Duration::from_secs(30),
            pull_max_failures: 1,
            stale_level: Level::Soft,
            max_coordinators: 256,
            forget_after: None,
            pulled: false,
            rate_policy: RatePolicy::Step,
            proportional: ProportionalTuning::default(),
        }
    }
}

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `POST /feedback` (the store's broadcaster, or the demo's store model).
    Push,
    /// Polled from the store's own `/metrics`.
    Pull,
}

/// One validated report of a coordinator's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub coordinator_id: String,
    pub queue_size: u64,
    pub capacity: u64,
    /// The level the store reported, if any; derived from depth otherwise.
    pub level: Option<Level>,
    /// Event time, Unix epoch seconds (receive time when the event had none).
    pub ts: f64,
    pub source: Source,
    pub reason: Option<String>,
}

/// What became of an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Applied; the coordinator is now at `level`.
    Applied { level: Level },
    /// Older than the last event applied for this coordinator; ignored.
    OutOfOrder { last_ts: f64 },
    /// A new coordinator beyond `max_coordinators`; refused.
    TooManyCoordinators,
}

/// Something worth one log line and a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// The level driving the scale changed.
    LevelChanged { from: Level, to: Level, scale: f64 },
    /// A coordinator went stale or came back.
    Staleness { coordinator_id: String, stale: bool },
    /// A stale coordinator was forgotten to make room for a new one.
    Evicted { coordinator_id: String },
    /// A coordinator was forgotten: by an operator, or silent past `forget_after`.
    Forgotten {
        coordinator_id: String,
        why: ForgetReason,
    },
}

/// Why a coordinator was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgetReason {
    /// `DELETE /api/v1/coordinators/{id}`.
    Operator,
    /// Silent for longer than `forget_after`.
    Silence,
}

/// What is known of the queue depth that drives autoscaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Depth {
    /// The most severe coordinator's depth (and its capacity; none without coordinators).
    Known { depth: u64, capacity: Option<u64> },
    /// The polled store has not answered (yet, or since its last failed poll): no
    /// number is honest, and 0 would read as an empty queue.
    Unknown,
}

impl Depth {
    /// The depth, if known.
    pub fn value(self) -> Option<u64> {
        match self {
            Depth::Known { depth, .. } => Some(depth),
            Depth::Unknown => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Coordinator {
    queue_size: u64,
    capacity: u64,
    level: Level,
    last_ts: f64,
    last_seen: Duration,
    source: Source,
    reason: Option<String>,
    stale: bool,
}

/// A coordinator as shown in the state API. Nothing in it changes with the
/// mere passing of time (its age follows from `last_seen_seconds`), so two
/// views compare equal exactly when the coordinator's state is the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoordinatorView {
    pub coordinator_id: String,
    pub queue_size: u64,
    pub capacity: u64,
    pub utilization: f64,
    pub level: Level,
    pub stale: bool,
    /// Monotonic time of its last report, seconds since start.
    #[serde(skip)]
    pub last_seen_seconds: f64,
    pub source: Source,
    pub reason: Option<String>,
    pub last_event_ts: f64,
}

/// The control state machine.
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControlConfig,
    coordinators: BTreeMap<String, Coordinator>,
    raw: Level,
    applied: Level,
    relax_since: Option<Duration>,
    scale: RampedScale,
    proportional: Proportional,
    flaps_suppressed: u64,
    pull_failures: u32,
    /// Whether a poll of the store ever succeeded.
    polled_ok: bool,
    events: Vec<ControlEvent>,
}

impl Controller {
    pub fn new(config: ControlConfig) -> Self {
        let scale = RampedScale::new(config.policy.scale_for(Level::Ok), config.recovery_ramp);
        let proportional = Proportional::new(config.proportional);
        Controller {
            proportional,
            config,
            coordinators: BTreeMap::new(),
            raw: Level::Ok,
            applied: Level::Ok,
            relax_since: None,
            scale,
            flaps_suppressed: 0,
            pull_failures: 0,
            polled_ok: false,
            events: Vec::new(),
        }
    }

    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    /// Applies one observation and re-evaluates the overall level.
    pub fn observe(&mut self, obs: Observation, now: Duration) -> Outcome {
        let marks = self.config.watermarks;
        let fraction = obs.queue_size as f64 / obs.capacity.max(1) as f64;
        if !self.coordinators.contains_key(&obs.coordinator_id)
            && self.coordinators.len() >= self.config.max_coordinators
        {
            self.evict_oldest_stale();
        }
        let full = self.coordinators.len() >= self.config.max_coordinators;
        let outcome = match self.coordinators.get_mut(&obs.coordinator_id) {
            Some(coord) if obs.ts < coord.last_ts => Outcome::OutOfOrder {
                last_ts: coord.last_ts,
            },
            Some(coord) => {
                let level = obs
                    .level
                    .unwrap_or_else(|| marks.next_level(coord.level, fraction));
                coord.queue_size = obs.queue_size;
                coord.capacity = obs.capacity;
                coord.level = level;
                coord.last_ts = obs.ts;
                coord.last_seen = now;
                coord.source = obs.source;
                coord.reason = obs.reason;
                Outcome::Applied { level }
            }
            None if full => Outcome::TooManyCoordinators,
            None => {
                let level = obs
                    .level
                    .unwrap_or_else(|| marks.next_level(Level::Ok, fraction));
                let coord = Coordinator {
                    queue_size: obs.queue_size,
                    capacity: obs.capacity,
                    level,
                    last_ts: obs.ts,
                    last_seen: now,
                    source: obs.source,
                    reason: obs.reason,
                    stale: false,
                };
                self.coordinators.insert(obs.coordinator_id, coord);
                Outcome::Applied { level }
            }
        };
        if obs.source == Source::Pull && matches!(outcome, Outcome::Applied { .. }) {
            self.pull_succeeded();
        }
        self.evaluate(now);
        if matches!(outcome, Outcome::Applied { .. })
            && self.config.rate_policy == RatePolicy::Proportional
            && let Depth::Known {
                depth,
                capacity: Some(capacity),
            } = self.depth()
        {
            self.proportional
                .observe(depth as f64 / capacity.max(1) as f64, now);
        }
        outcome
    }

    /// Forgets the stale coordinator silent for longest, if any: a bounded
    /// table must not be filled for good by ids that will never speak again.
    fn evict_oldest_stale(&mut self) {
        let oldest = self
            .coordinators
            .iter()
            .filter(|(_, c)| c.stale)
            .min_by_key(|(_, c)| c.last_seen)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.coordinators.remove(&id);
            self.events
                .push(ControlEvent::Evicted { coordinator_id: id });
        }
    }

    /// Records a failed poll of the store; after `pull_max_failures` in a row
    /// every pulled coordinator counts as stale until a poll succeeds.
    pub fn pull_failed(&mut self, now: Duration) {
        self.pull_failures = self.pull_failures.saturating_add(1);
        self.evaluate(now);
    }

    /// Records a successful poll of the store (before its observations).
    pub fn pull_succeeded(&mut self) {
        self.pull_failures = 0;
        self.polled_ok = true;
    }

    /// Whether the polled store answered its last poll (None when not polled).
    pub fn store_reachable(&self) -> Option<bool> {
        self.config
            .pulled
            .then_some(self.polled_ok && self.pull_failures == 0)
    }

    /// Forgets a coordinator, as an operator asked; false if it is unknown.
    pub fn forget(&mut self, coordinator_id: &str, now: Duration) -> bool {
        if self.coordinators.remove(coordinator_id).is_none() {
            return false;
        }
        self.events.push(ControlEvent::Forgotten {
            coordinator_id: coordinator_id.to_owned(),
            why: ForgetReason::Operator,
        });
        self.evaluate(now);
        true
    }

    /// Re-evaluates time-driven state: TTLs, the relax hold, the ramp.
    pub fn tick(&mut self, now: Duration) {
        self.evaluate(now);
    }

    /// Events since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<ControlEvent> {
        std::mem::take(&mut self.events)
    }

    /// The level driving the scale (after the relax hold).
    pub fn level(&self) -> Level {
        self.applied
    }

    /// The most severe level over coordinators right now (before the hold).
    pub fn raw_level(&self) -> Level {
        self.raw
    }

    /// The scale in force at `now` (ramped, or the proportional policy's).
    pub fn scale(&self, now: Duration) -> f64 {
        match self.config.rate_policy {
            RatePolicy::Step => self.scale.at(now),
            RatePolicy::Proportional => self.unknown_depth_cap(self.proportional.at(now)),
        }
    }

    /// The scale the ramp (or the proportional policy) is heading to.
    pub fn target_scale(&self) -> f64 {
        match self.config.rate_policy {
            RatePolicy::Step => self.scale.target(),
            RatePolicy::Proportional => self.unknown_depth_cap(self.proportional.target()),
        }
    }

    /// Without a live depth the proportional policy has nothing to steer by:
    /// it allows no more than the step policy does for the level in force.
    fn unknown_depth_cap(&self, scale: f64) -> f64 {
        let live =
            self.store_reachable() != Some(false) && self.coordinators.values().any(|c| !c.stale);
        if live {
            scale
        } else {
            scale.min(self.config.policy.scale_for(self.applied))
        }
    }

    pub fn flaps_suppressed(&self) -> u64 {
        self.flaps_suppressed
    }

    pub fn pull_failures(&self) -> u32 {
        self.pull_failures
    }

    /// The depth that drives autoscaling: unknown while a polled store does
    /// not answer (or never did); else the most severe live coordinator's
    /// depth, or, when every coordinator is stale, the most severe last
    /// reported depth (a silent store is no news of an empty queue); 0 only
    /// when no coordinator ever reported.
    pub fn depth(&self) -> Depth {
        if self.store_reachable() == Some(false) {
            return Depth::Unknown;
        }
        let severity = |c: &&Coordinator| {
            let fraction = c.queue_size as f64 / c.capacity.max(1) as f64;
            (c.level, fraction)
        };
        let most_severe = |stale: bool| {
            self.coordinators
                .values()
                .filter(|c| c.stale == stale)
                .max_by(|a, b| {
                    let (la, fa) = severity(a);
                    let (lb, fb) = severity(b);
                    la.cmp(&lb).then(fa.total_cmp(&fb))
                })
        };
        match most_severe(false).or_else(|| most_severe(true)) {
            Some(c) => Depth::Known {
                depth: c.queue_size,
                capacity: Some(c.capacity),
            },
            None => Depth::Known {
                depth: 0,
                capacity: None,
            },
        }
    }

    /// Every coordinator, sorted by id.
    pub fn coordinators(&self) -> Vec<CoordinatorView> {
        self.coordinators
            .iter()
            .map(|(id, c)| CoordinatorView {
                coordinator_id: id.clone(),
                queue_size: c.queue_size,
                capacity: c.capacity,
                utilization: c.queue_size as f64 / c.capacity.max(1) as f64,
                level: c.level,
                stale: c.stale,
                last_seen_seconds: c.last_seen.as_secs_f64(),
                source: c.source,
                reason: c.reason.clone(),
                last_event_ts: c.last_ts,
            })
            .collect()
    }

    /// When `tick` next has something to do, if ever.
    pub fn next_deadline(&self, now: Duration) -> Option<Duration> {
        let relax = self
            .relax_since
            .map(|since| since + self.config.relax_after);
        let moving = match self.config.rate_policy {
            RatePolicy::Step => self.scale.is_ramping(now),
            RatePolicy::Proportional => self.proportional.is_moving(now),
        };
        let ramp = moving.then(|| now + RAMP_STEP);
        let expiry = self
            .coordinators
            .values()
            .filter(|c| !c.stale)
            .filter_map(|c| self.ttl_for(c.source).map(|ttl| c.last_seen + ttl))
            .min();
        let forget = self.config.forget_after.and_then(|after| {
            self.coordinators
                .values()
                .map(|c| c.last_seen + after)
                .min()
        });
        [relax, ramp, expiry, forget].into_iter().flatten().min()
    }

    fn ttl_for(&self, source: Source) -> Option<Duration> {
        match source {
            Source::Push => self.config.push_ttl,
            Source::Pull => Some(self.config.pull_ttl),
        }
    }

    fn refresh_staleness(&mut self, now: Duration) {
        let pull_down = self.pull_failures >= self.config.pull_max_failures;
        let (push_ttl, pull_ttl) = (self.config.push_ttl, self.config.pull_ttl);
        for (id, coord) in &mut self.coordinators {
            let ttl = match coord.source {
                Source::Push => push_ttl,
                Source::Pull => Some(pull_ttl),
            };
            let expired = ttl.is_some_and(|ttl| now.saturating_sub(coord.last_seen) >= ttl);
            let stale = expired || (coord.source == Source::Pull && pull_down);
            if stale != coord.stale {
                coord.stale = stale;
                self.events.push(ControlEvent::Staleness {
                    coordinator_id: id.clone(),
                    stale,
                });
            }
        }
    }

    /// Forgets coordinators silent for longer than `forget_after`.
    fn forget_silent(&mut self, now: Duration) {
        let Some(after) = self.config.forget_after else {
            return;
        };
        let silent: Vec<String> = self
            .coordinators
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_seen) >= after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.coordinators.remove(&id);
            self.events.push(ControlEvent::Forgotten {
                coordinator_id: id,
                why: ForgetReason::Silence,
            });
        }
    }

    fn evaluate(&mut self, now: Duration) {
        self.forget_silent(now);
        self.refresh_staleness(now);
        let stale_level = self.config.stale_level;
        // Staleness never relaxes: a coordinator last seen at HARD stays HARD.
        let raw = self
            .coordinators
            .values()
            .map(|c| {
                if c.stale {
                    c.level.max(stale_level)
                } else {
                    c.level
                }
            })
            .max()
            .unwrap_or(Level::Ok);
        // A store that cannot be polled is no news of an empty queue, even
        // before any coordinator was ever seen.
        let raw = if self.pull_failures >= self.config.pull_max_failures {
            raw.max(stale_level)
        } else {
            raw
        };
        let raw_changed = raw != self.raw;
        self.raw = raw;
        let before = self.applied;
        if raw > self.applied {
            // Tighten at once.
            self.applied = raw;
            self.relax_since = None;
        } else if raw < self.applied {
            // Relax only once the lower level has held, unchanged, for relax_after.
            let since = match self.relax_since {
                Some(since) if !raw_changed => since,
                _ => now,
            };
            if now.saturating_sub(since) >= self.config.relax_after {
                self.applied = raw;
                self.relax_since = None;
            } else {
                self.relax_since = Some(since);
            }
        } else {
            self.relax_since = None;
        }
        self.proportional.set_level(self.applied, now);
        if self.applied != before {
            let mut target = self.config.policy.scale_for(self.applied);
            self.scale.retarget(target, now);
            if self.config.rate_policy == RatePolicy::Proportional {
                target = self.target_scale();
            }
            self.events.push(ControlEvent::LevelChanged {
                from: before,
                to: self.applied,
                scale: target,
            });
        } else if raw_changed {
            self.flaps_suppressed += 1;
        }
    }
}

#[cfg(test)]
mod tests;
