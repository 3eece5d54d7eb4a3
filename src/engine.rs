//! The control state and its loop: the [`Controller`] behind one short
//! mutex, so a feedback event is decided and its scale written to the rate
//! coordinator in the caller's task, with no hop to another task; each new
//! state is published through `watch`. One task runs what time drives (the
//! relax hold, ramps, staleness, the per-second refresh and history).

use crate::clock::{Clock, unix_now};
use crate::control::{
    ControlEvent, Controller, CoordinatorView, Depth, ForgetReason, Observation, Outcome, Source,
};
use crate::feedback::pull::{PollOutcome, PullConfig};
use crate::level::Level;
use crate::rate::RateCoordinator;
use crate::repeats::{Report, seconds};
use crate::telemetry::{CoordinatorSample, Metrics};
use serde::Serialize;
use series::Series;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

mod series;

/// Seconds of history kept at one sample per second (one hour).
pub const HISTORY_SECONDS: usize = 3600;
/// The published state, rebuilt after every change.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Bumped each time the state changes.
    pub seq: u64,
    #[serde(flatten)]
    pub state: State,
    /// Monotonic time the snapshot was taken.
    #[serde(skip)]
    pub at: Duration,
}

impl Deref for Snapshot {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

/// What the loop knows. Equality is derived: a new field takes part in the
/// change detection without anyone remembering to add it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct State {
    pub level: Level,
    pub raw_level: Level,
    pub scale: f64,
    pub target_scale: f64,
    /// The depth that drives autoscaling; None while the polled store does not answer.
    pub queue_depth: Option<u64>,
    pub capacity: Option<u64>,
    /// Whether the polled store answered its last poll (None in push mode).
    pub store_reachable: Option<bool>,
    pub coordinators: Vec<CoordinatorView>,
    pub flaps_suppressed: u64,
    pub pull_failures: u32,
}

/// One history point.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t: f64,
    pub queue_depth: Option<u64>,
    pub level: Level,
    pub scale: f64,
}

/// Shared read side of the history ring.
pub type History = Arc<RwLock<VecDeque<Sample>>>;

/// How often a store poll that keeps failing is said again.
const POLL_WARNING_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// How the rest of the service talks to the control state. Request handlers
/// clone it per request: it is one reference count around the [`Shared`].
#[derive(Debug, Clone)]
pub struct EngineHandle(Arc<Shared>);

/// The control state, the loop's wake-up, the published state and history.
pub struct Shared {
    core: Arc<Mutex<Engine>>,
    /// Wakes the loop when a change brings its next deadline forward. The
    /// loop ends when the last sender (the last handle) is gone.
    wake: mpsc::Sender<()>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub history: History,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("snapshot", &self.snapshot)
            .finish_non_exhaustive()
    }
}

impl Deref for EngineHandle {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl EngineHandle {
    /// Applies one observation in the caller's task: the new scale is in
    /// force in the rate coordinator, and the metrics and the snapshot show
    /// the change, when it returns. None when the loop has stopped.
    pub fn observe(&self, observation: Observation, received: Instant) -> Option<Outcome> {
        self.change(|engine| engine.feedback(observation, received))
    }

    /// Applies the result of one poll of the store (pull mode); false when
    /// the loop has stopped.
    pub fn poll(&self, outcome: PollOutcome) -> bool {
        self.change(|engine| engine.poll_result(outcome)).is_some()
    }

    /// Forgets a coordinator; Some(false) when it is unknown, None when the
    /// loop has stopped.
    pub fn forget(&self, coordinator_id: &str) -> Option<bool> {
        self.change(|engine| {
            let now = engine.clock.now();
            let known = engine.controller.forget(coordinator_id, now);
            engine.apply(now, Refresh::Changes);
            known
        })
    }

    /// Runs one change with the state held (never across an await), then
    /// wakes the loop if the change needs it sooner than it planned.
    fn change<T>(&self, change: impl FnOnce(&mut Engine) -> T) -> Option<T> {
        // Poisoned: a change panicked half-way; the loop stops the process.
        let mut engine = self.core.lock().ok()?;
        if engine.stopped {
            return None;
        }
        let result = change(&mut engine);
        let wake = engine.due_sooner_than_armed();
        drop(engine);
        if wake {
            // Full: a wake-up is already pending. Closed: the loop is gone.
            let _ = self.wake.try_send(());
        }
        Some(result)
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// History samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        let ring = self.history.read().unwrap_or_else(|p| p.into_inner());
        ring.iter().copied().collect()
    }
}

struct Engine {
    controller: Controller,
    rates: Arc<RateCoordinator>,
    metrics: Metrics,
    series: Series,
    clock: Clock,
    publish: watch::Sender<Arc<Snapshot>>,
    history: History,
    pull_capacity: u64,
    /// Failed polls: the first warns, repeats are summarised.
    poll_failures: crate::repeats::Repeats,
    seq: u64,
    /// The scale last written to the rate coordinator.
    applied_scale: f64,
    /// The scale the effective-rate gauges were last set for.
    rates_gauged: f64,
    /// (scale, level) last written to the providers' gauges.
    gauged: Option<(f64, Level)>,
    /// The deadline the loop sleeps until (None: only the one-second tick).
    armed: Option<Duration>,
    /// The loop has ended: nothing changes the state any more.
    stopped: bool,
}

/// Starts the loop; it ends when every [`EngineHandle`] is dropped.
pub fn spawn(
    controller: Controller,
    rates: Arc<RateCoordinator>,
    metrics: Metrics,
    feedback_providers: Vec<String>,
    pull: Option<&PullConfig>,
    clock: Clock,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let (handle, control_loop) = build(controller, rates, metrics, feedback_providers, pull, clock);
    (handle, tokio::spawn(control_loop.run()))
}

/// The control loop, built but not yet running: it runs what time drives
/// (the relax hold, ramps, staleness, the per-second refresh and history).
pub struct ControlLoop {
    core: Arc<Mutex<Engine>>,
    wake: mpsc::Receiver<()>,
}

impl ControlLoop {
    /// Runs until every [`EngineHandle`] is dropped.
    pub async fn run(self) {
        let (halt, halted) = watch::channel(false);
        self.run_until(halted).await;
        drop(halt);
    }

    /// Runs until `halt` turns true (or every handle is dropped). Once it
    /// has ended (or panicked), the handles refuse changes.
    pub async fn run_until(self, mut halt: watch::Receiver<bool>) {
        let ControlLoop { core, mut wake } = self;
        let _stop = StopOnExit(core.clone());
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = hold(&core).arm();
            tokio::select! {
                woken = wake.recv() => if woken.is_none() { break },
                // Halted, or the halt's owner is gone: either way, stop.
                _ = halt.wait_for(|halted| *halted) => break,
                () = sleep_until(deadline) => hold(&core).tick(Refresh::Changes),
                _ = every_second.tick() => {
                    let mut engine = hold(&core);
                    engine.tick(Refresh::All);
                    engine.record_history();
                }
            }
        }
    }
}

/// The loop's hold on the state. A change that panicked half-way (in a
/// handler's task) leaves it poisoned: the loop panics in turn, so the
/// supervisor restarts the process instead of running on a half-made change.
fn hold(core: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    match core.lock() {
        Ok(engine) => engine,
        Err(_) => panic!("a change to the control state panicked half-way"),
    }
}

/// Marks the state stopped when the loop ends, however it ends.
struct StopOnExit(Arc<Mutex<Engine>>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if let Ok(mut engine) = self.0.lock() {
            engine.stopped = true;
        }
    }
}

/// Builds the loop and the handle that talks to it; the caller runs it.
pub fn build(
    controller: Controller,
    rates: Arc<RateCoordinator>,
    metrics: Metrics,
    feedback_providers: Vec<String>,
    pull: Option<&PullConfig>,
    clock: Clock,
) -> (EngineHandle, ControlLoop) {
    let (wake, woken) = mpsc::channel(1);
    let history: History = Arc::new(RwLock::new(VecDeque::with_capacity(HISTORY_SECONDS)));
    let series = Series::new(&metrics, &rates, &feedback_providers);
    let mut engine = Engine {
        controller,
        rates,
        metrics,
        series,
        clock,
        publish: watch::channel(Arc::new(empty_snapshot())).0,
        history: history.clone(),
        pull_capacity: pull.map_or(10_000, |p| p.capacity),
        poll_failures: crate::repeats::Repeats::new(POLL_WARNING_PERIOD),
        seq: 0,
        applied_scale: f64::NAN,
        rates_gauged: f64::NAN,
        gauged: None,
        armed: None,
        stopped: false,
    };
    engine.apply(clock.now(), Refresh::All);
    let snapshot = engine.publish.subscribe();
    let core = Arc::new(Mutex::new(engine));
    let handle = EngineHandle(Arc::new(Shared {
        core: core.clone(),
        wake,
        snapshot,
        history,
    }));
    (handle, ControlLoop { core, wake: woken })
}

fn empty_snapshot() -> Snapshot {
    Snapshot {
        seq: 0,
        state: State {
            level: Level::Ok,
            raw_level: Level::Ok,
            scale: 1.0,
            target_scale: 1.0,
            queue_depth: Some(0),
            capacity: None,
            store_reachable: None,
            coordinators: Vec::new(),
            flaps_suppressed: 0,
            pull_failures: 0,
        },
        at: Duration::ZERO,
    }
}

/// What [`Engine::apply`] brings up to date besides what changed.
#[derive(Clone, Copy, PartialEq)]
enum Refresh {
    /// Only what the controller changed.
    Changes,
    /// Every gauge, also those moved from outside (the replica share).
    All,
}

impl Engine {
    /// One feedback event: decided, its scale written to the rate
    /// coordinator (`received` starts the event -> scale clock), then the
    /// metrics, logs and snapshot brought in line.
    fn feedback(&mut self, observation: Observation, received: Instant) -> Outcome {
        let now = self.clock.now();
        let id = observation.coordinator_id.clone();
        let outcome = self.controller.observe(observation, now);
        self.enforce_scale(now);
        self.metrics
            .observe_event_to_scale(received.elapsed().as_secs_f64());
        self.apply(now, Refresh::Changes);
        if let Outcome::Applied { level } = outcome {
            self.count_event(&id, level);
        }
        outcome
    }

    /// Re-evaluates what time drives.
    fn tick(&mut self, refresh: Refresh) {
        let now = self.clock.now();
        self.controller.tick(now);
        self.apply(now, refresh);
    }

    /// Records the deadline the loop is about to sleep until.
    fn arm(&mut self) -> Option<Instant> {
        self.armed = self.controller.next_deadline(self.clock.now());
        self.armed.map(|d| self.clock.instant_at(d))
    }

    /// Whether the controller now needs a tick before the armed deadline.
    fn due_sooner_than_armed(&self) -> bool {
        match self.controller.next_deadline(self.clock.now()) {
            Some(due) => self.armed.is_none_or(|armed| due < armed),
            None => false,
        }
    }

    /// Writes the scale in force to the rate coordinator if it moved.
    fn enforce_scale(&mut self, now: Duration) -> f64 {
        let scale = self.controller.scale(now);
        if scale != self.applied_scale {
            self.rates.set_control_scale(scale);
            self.applied_scale = scale;
        }
        scale
    }

    fn poll_result(&mut self, outcome: PollOutcome) {
        let now = self.clock.now();
        let mut applied = Vec::new();
        match outcome {
            PollOutcome::Depths(depths) => {
                self.metrics.count_poll(true);
                self.controller.pull_succeeded();
                if let Report::Recovered { count, over } = self.poll_failures.success(now) {
                    tracing::info!(
                        "store poll works again after {count} failed polls in {} s",
                        seconds(over)
                    );
                }
                let ts = unix_now();
                for (id, depth) in depths {
                    let observation = Observation {
                        coordinator_id: id.clone(),
                        queue_size: depth,
                        capacity: self.pull_capacity,
                        level: None,
                        ts,
                        source: Source::Pull,
                        reason: None,
                    };
                    match self.controller.observe(observation, now) {
                        Outcome::Applied { level } => applied.push((id, level)),
                        Outcome::OutOfOrder { .. } => self.metrics.reject("out_of_order"),
                        Outcome::TooManyCoordinators => {
                            self.metrics.reject("too_many_coordinators")
                        }
                    }
                }
            }
            PollOutcome::Failed(error) => {
                self.metrics.count_poll(false);
                match self.poll_failures.failure(now) {
                    Report::First => {
                        tracing::warn!(reason = error.reason(), "store poll failed: {error}");
                    }
                    Report::Still { count, over } => tracing::warn!(
                        reason = error.reason(),
                        "store poll still failing: {count} polls in {} s, last: {error}",
                        seconds(over)
                    ),
                    _ => tracing::debug!(reason = error.reason(), "store poll failed: {error}"),
                }
                self.controller.pull_failed(now);
            }
        }
        self.apply(now, Refresh::Changes);
        for (id, level) in applied {
            self.count_event(&id, level);
        }
    }

    /// Counts an applied event and sets its coordinator's series from the
    /// snapshot [`Engine::apply`] just published.
    fn count_event(&self, coordinator: &str, level: Level) {
        for provider in &self.series.feedback {
            provider.count_event(level);
        }
        let snapshot = self.publish.borrow();
        // Coordinators come sorted by id (the controller keeps them in a BTreeMap).
        let Ok(found) = snapshot
            .coordinators
            .binary_search_by(|c| c.coordinator_id.as_str().cmp(coordinator))
        else {
            return;
        };
        let view = &snapshot.coordinators[found];
        self.metrics.set_coordinator(
            coordinator,
            CoordinatorSample {
                queue_size: view.queue_size,
                capacity: view.capacity,
                level: view.level,
                stale: view.stale,
                last_event_ts: view.last_event_ts,
            },
        );
    }

    /// Brings the rate coordinator, the metrics, the logs and the published
    /// snapshot in line with the controller. The snapshot is published only
    /// when it differs from the last one (more than by the passing of time),
    /// so streams and waiting workers wake for changes, not for ticks.
    fn apply(&mut self, now: Duration, refresh: Refresh) {
        let scale = self.enforce_scale(now);
        for event in self.controller.drain_events() {
            self.log(event);
        }
        let level = self.controller.level();
        let all = refresh == Refresh::All;
        if all || self.gauged != Some((scale, level)) {
            for provider in &self.series.feedback {
                provider.set_scale(scale, level);
            }
            self.gauged = Some((scale, level));
        }
        if all || scale != self.rates_gauged {
            for (series, view) in self.series.effective_rate.iter().zip(self.rates.views()) {
                if let Some(series) = series {
                    series.set_effective_rate(view.effective_rate);
                }
            }
            self.rates_gauged = scale;
        }
        let depth = self.controller.depth();
        self.metrics.set_queue_depth(depth.value());
        let store_reachable = self.controller.store_reachable();
        if let Some(up) = store_reachable {
            self.metrics.set_store_up(up);
        }
        let (queue_depth, capacity) = match depth {
            Depth::Known { depth, capacity } => (Some(depth), capacity),
            Depth::Unknown => (None, None),
        };
        self.metrics
            .set_flaps_suppressed(self.controller.flaps_suppressed());
        let coordinators = self.controller.coordinators();
        let stale = coordinators.iter().filter(|c| c.stale).count();
        // A polled store that does not answer counts as a stale coordinator
        // even before any was seen, so the staleness alert never misses it.
        let blind = store_reachable == Some(false) && coordinators.is_empty();
        self.metrics
            .set_coordinator_counts(coordinators.len() - stale, stale + usize::from(blind));
        let state = State {
            level,
            raw_level: self.controller.raw_level(),
            scale,
            target_scale: self.controller.target_scale(),
            queue_depth,
            capacity,
            store_reachable,
            coordinators,
            flaps_suppressed: self.controller.flaps_suppressed(),
            pull_failures: self.controller.pull_failures(),
        };
        if self.seq == 0 || state != self.publish.borrow().state {
            self.seq += 1;
            let snapshot = Snapshot {
                seq: self.seq,
                state,
                at: now,
            };
            self.publish.send_replace(Arc::new(snapshot));
        }
    }

    fn log(&self, event: ControlEvent) {
        match event {
            ControlEvent::LevelChanged { from, to, scale } => {
                self.metrics.count_transition(to);
                tracing::info!(%from, %to, scale, "backpressure level changed");
            }
            ControlEvent::Forgotten {
                coordinator_id,
                why,
            } => {
                self.metrics.remove_coordinator(&coordinator_id);
                match why {
                    ForgetReason::Operator => {
                        tracing::info!(coordinator = %coordinator_id, "forgot a coordinator, as asked")
                    }
                    ForgetReason::Silence => {
                        tracing::info!(coordinator = %coordinator_id, "forgot a coordinator silent past --forget-after")
                    }
                }
            }
            ControlEvent::Evicted { coordinator_id } => {
                // Forgotten coordinators leave no series behind.
                self.metrics.remove_coordinator(&coordinator_id);
                tracing::info!(coordinator = %coordinator_id, "forgot a stale coordinator to make room");
            }
            ControlEvent::Staleness {
                coordinator_id,
                stale,
            } => {
                self.metrics.set_coordinator_stale(&coordinator_id, stale);
                if stale {
                    tracing::warn!(coordinator = %coordinator_id, "coordinator feedback is stale");
                } else {
                    tracing::info!(coordinator = %coordinator_id, "coordinator feedback is fresh again");
                }
            }
        }
    }

    fn record_history(&self) {
        let snapshot = self.publish.borrow().clone();
        let sample = Sample {
            t: unix_now(),
            queue_depth: snapshot.queue_depth,
            level: snapshot.level,
            scale: snapshot.scale,
        };
        let mut ring = self.history.write().unwrap_or_else(|p| p.into_inner());
        if ring.len() == HISTORY_SECONDS {
            ring.pop_front();
        }
        ring.push_back(sample);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
