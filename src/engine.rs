//! The control loop: one task owning the [`Controller`], fed over a channel,
//! publishing each new state through `watch` and applying the scale to the
//! rate coordinator.

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
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

mod series;

/// Seconds of history kept at one sample per second (one hour).
pub const HISTORY_SECONDS: usize = 3600;
/// Commands queued for the loop at most before senders wait.
const QUEUE: usize = 4096;

/// What the loop is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Apply a feedback event; `received` starts the event -> scale clock.
    Feedback {
        observation: Observation,
        received: Instant,
        reply: oneshot::Sender<Outcome>,
    },
    /// The result of one poll of the store (pull mode).
    Poll(PollOutcome),
    /// Forget a coordinator (an operator's word); replies whether it was known.
    Forget {
        coordinator_id: String,
        reply: oneshot::Sender<bool>,
    },
}

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

/// How the rest of the service talks to the loop. Request handlers clone it
/// per request: it is one reference count around the [`Channels`].
#[derive(Debug, Clone)]
pub struct EngineHandle(Arc<Channels>);

/// The loop's command queue, published state and history.
#[derive(Debug)]
pub struct Channels {
    pub commands: mpsc::Sender<Command>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub history: History,
}

impl Deref for EngineHandle {
    type Target = Channels;

    fn deref(&self) -> &Channels {
        &self.0
    }
}

impl EngineHandle {
    /// Applies one observation and waits for its outcome; None when the loop
    /// has stopped.
    pub async fn observe(&self, observation: Observation, received: Instant) -> Option<Outcome> {
        let (reply, outcome) = oneshot::channel();
        let command = Command::Feedback {
            observation,
            received,
            reply,
        };
        self.commands.send(command).await.ok()?;
        outcome.await.ok()
    }

    /// Forgets a coordinator; Some(false) when it is unknown, None when the
    /// loop has stopped.
    pub async fn forget(&self, coordinator_id: String) -> Option<bool> {
        let (reply, known) = oneshot::channel();
        let command = Command::Forget {
            coordinator_id,
            reply,
        };
        self.commands.send(command).await.ok()?;
        known.await.ok()
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
    applied_scale: f64,
    /// (scale, level) last written to the providers' gauges.
    gauged: Option<(f64, Level)>,
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

/// The control loop, built but not yet running.
pub struct ControlLoop {
    engine: Engine,
    receiver: mpsc::Receiver<Command>,
}

impl ControlLoop {
    /// Runs until every [`EngineHandle`] is dropped.
    pub async fn run(self) {
        let (halt, halted) = watch::channel(false);
        self.run_until(halted).await;
        drop(halt);
    }

    /// Runs until `halt` turns true (or every handle is dropped).
    pub async fn run_until(self, halt: watch::Receiver<bool>) {
        self.engine.run(self.receiver, halt).await;
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
    let (commands, receiver) = mpsc::channel(QUEUE);
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
        gauged: None,
    };
    engine.apply(clock.now(), Refresh::All);
    let handle = EngineHandle(Arc::new(Channels {
        commands,
        snapshot: engine.publish.subscribe(),
        history,
    }));
    (handle, ControlLoop { engine, receiver })
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

/// A reply held until the metrics are marked changed.
type Reply = (oneshot::Sender<Outcome>, Outcome);

impl Engine {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>, mut halt: watch::Receiver<bool>) {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = self.clock.now();
            let deadline = self
                .controller
                .next_deadline(now)
                .map(|d| self.clock.instant_at(d));
            let reply = tokio::select! {
                command = receiver.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                // Halted, or the halt's owner is gone: either way, stop.
                _ = halt.wait_for(|halted| *halted) => break,
                () = sleep_until(deadline) => {
                    let now = self.clock.now();
                    self.controller.tick(now);
                    self.apply(now, Refresh::Changes);
                    None
                }
                _ = every_second.tick() => {
                    let now = self.clock.now();
                    self.controller.tick(now);
                    self.apply(now, Refresh::All);
                    self.record_history();
                    None
                }
            };
            // Every write to the metrics publishes itself: a scrape shows
            // the change before anyone hears of it.
            if let Some((reply, outcome)) = reply {
                // The sender may have gone (client hung up): the event applied anyway.
                let _ = reply.send(outcome);
            }
        }
    }

    fn handle(&mut self, command: Command) -> Option<Reply> {
        match command {
            Command::Feedback {
                observation,
                received,
                reply,
            } => {
                let now = self.clock.now();
                let id = observation.coordinator_id.clone();
                let outcome = self.controller.observe(observation, now);
                self.apply(now, Refresh::Changes);
                if let Outcome::Applied { level } = outcome {
                    self.count_event(&id, level);
                }
                self.metrics
                    .observe_event_to_scale(received.elapsed().as_secs_f64());
                Some((reply, outcome))
            }
            Command::Poll(outcome) => {
                self.poll_result(outcome);
                None
            }
            Command::Forget {
                coordinator_id,
                reply,
            } => {
                let now = self.clock.now();
                let known = self.controller.forget(&coordinator_id, now);
                self.apply(now, Refresh::Changes);
                let _ = reply.send(known);
                None
            }
        }
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
        for event in self.controller.drain_events() {
            self.log(event);
        }
        let scale = self.controller.scale(now);
        let level = self.controller.level();
        let scale_changed = scale != self.applied_scale;
        if scale_changed {
            self.rates.set_control_scale(scale);
            self.applied_scale = scale;
        }
        let all = refresh == Refresh::All;
        if all || self.gauged != Some((scale, level)) {
            for provider in &self.series.feedback {
                provider.set_scale(scale, level);
            }
            self.gauged = Some((scale, level));
        }
        if all || scale_changed {
            for (series, view) in self.series.effective_rate.iter().zip(self.rates.views()) {
                if let Some(series) = series {
                    series.set_effective_rate(view.effective_rate);
                }
            }
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
