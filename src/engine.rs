//! The control loop: one task owning the [`Controller`], fed over a channel,
//! publishing each new state through `watch` and applying the scale to the
//! rate coordinator.

use crate::clock::{Clock, unix_now};
use crate::control::{ControlEvent, Controller, CoordinatorView, Observation, Outcome, Source};
use crate::feedback::pull::{PollOutcome, PullConfig};
use crate::level::Level;
use crate::rate::RateCoordinator;
use crate::telemetry::{Metrics, QUEUE_DEPTH_SOURCE};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

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
}

/// The published state, rebuilt after every change.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub seq: u64,
    pub level: Level,
    pub raw_level: Level,
    pub scale: f64,
    pub target_scale: f64,
    pub queue_depth: u64,
    pub capacity: Option<u64>,
    pub coordinators: Vec<CoordinatorView>,
    pub flaps_suppressed: u64,
    pub pull_failures: u32,
    /// Monotonic time the snapshot was taken (ages are relative to it).
    #[serde(skip)]
    pub at: Duration,
}

/// One history point.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t: f64,
    pub queue_depth: u64,
    pub level: Level,
    pub scale: f64,
}

/// Shared read side of the history ring.
pub type History = Arc<RwLock<VecDeque<Sample>>>;

/// How the rest of the service talks to the loop.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    pub commands: mpsc::Sender<Command>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub history: History,
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
    feedback_providers: Vec<String>,
    clock: Clock,
    publish: watch::Sender<Arc<Snapshot>>,
    history: History,
    pull_capacity: u64,
    seq: u64,
    applied_scale: f64,
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
    let (commands, receiver) = mpsc::channel(QUEUE);
    let history: History = Arc::new(RwLock::new(VecDeque::with_capacity(HISTORY_SECONDS)));
    let mut engine = Engine {
        controller,
        rates,
        metrics,
        feedback_providers,
        clock,
        publish: watch::channel(Arc::new(empty_snapshot())).0,
        history: history.clone(),
        pull_capacity: pull.map_or(10_000, |p| p.capacity),
        seq: 0,
        applied_scale: f64::NAN,
    };
    engine.apply(clock.now());
    let handle = EngineHandle {
        commands,
        snapshot: engine.publish.subscribe(),
        history,
    };
    let task = tokio::spawn(engine.run(receiver));
    (handle, task)
}

fn empty_snapshot() -> Snapshot {
    Snapshot {
        seq: 0,
        level: Level::Ok,
        raw_level: Level::Ok,
        scale: 1.0,
        target_scale: 1.0,
        queue_depth: 0,
        capacity: None,
        coordinators: Vec::new(),
        flaps_suppressed: 0,
        pull_failures: 0,
        at: Duration::ZERO,
    }
}

impl Engine {
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = self.clock.now();
            let deadline = self
                .controller
                .next_deadline(now)
                .map(|d| self.clock.instant_at(d));
            tokio::select! {
                command = receiver.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                () = sleep_until(deadline) => {
                    self.controller.tick(self.clock.now());
                    self.apply(self.clock.now());
                }
                _ = every_second.tick() => {
                    let now = self.clock.now();
                    self.controller.tick(now);
                    self.apply(now);
                    self.record_history();
                }
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Feedback {
                observation,
                received,
                reply,
            } => {
                let now = self.clock.now();
                let id = observation.coordinator_id.clone();
                let outcome = self.controller.observe(observation, now);
                if let Outcome::Applied { level } = outcome {
                    self.count_event(&id, level);
                }
                self.apply(now);
                self.metrics
                    .event_to_scale
                    .observe(received.elapsed().as_secs_f64());
                // The sender may have gone (client hung up): the event applied anyway.
                let _ = reply.send(outcome);
            }
            Command::Poll(outcome) => self.poll_result(outcome),
        }
    }

    fn poll_result(&mut self, outcome: PollOutcome) {
        let now = self.clock.now();
        match outcome {
            PollOutcome::Depths(depths) => {
                self.metrics.polls.with_label_values(&["ok"]).inc();
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
                        Outcome::Applied { level } => self.count_event(&id, level),
                        Outcome::OutOfOrder { .. } => self.metrics.reject("out_of_order"),
                        Outcome::TooManyCoordinators => {
                            self.metrics.reject("too_many_coordinators")
                        }
                    }
                }
            }
            PollOutcome::Failed(error) => {
                self.metrics.polls.with_label_values(&["error"]).inc();
                tracing::warn!(reason = error.reason(), "store poll failed: {error}");
                self.controller.pull_failed(now);
            }
        }
        self.apply(now);
    }

    fn count_event(&self, coordinator: &str, level: Level) {
        for provider in &self.feedback_providers {
            self.metrics
                .events_processed
                .with_label_values(&[provider.as_str(), level.as_str()])
                .inc();
        }
        if let Some(view) = self
            .controller
            .coordinators(self.clock.now())
            .into_iter()
            .find(|c| c.coordinator_id == coordinator)
        {
            let m = &self.metrics;
            let id = [coordinator];
            m.coordinator_depth
                .with_label_values(&id)
                .set(clamp_i64(view.queue_size));
            m.coordinator_capacity
                .with_label_values(&id)
                .set(clamp_i64(view.capacity));
            m.coordinator_level
                .with_label_values(&id)
                .set(view.level.as_gauge());
            m.coordinator_last_event
                .with_label_values(&id)
                .set(view.last_event_ts);
            m.coordinator_stale
                .with_label_values(&id)
                .set(i64::from(view.stale));
        }
    }

    /// Brings the rate coordinator, the metrics, the logs and the published
    /// snapshot in line with the controller.
    fn apply(&mut self, now: Duration) {
        for event in self.controller.drain_events() {
            self.log(event);
        }
        let scale = self.controller.scale(now);
        let level = self.controller.level();
        if scale != self.applied_scale {
            self.rates.set_control_scale(scale);
            self.applied_scale = scale;
        }
        let m = &self.metrics;
        for provider in &self.feedback_providers {
            m.scale_factor
                .with_label_values(&[provider.as_str()])
                .set(scale);
            m.backpressure_state
                .with_label_values(&[provider.as_str()])
                .set(level.as_gauge() as f64);
        }
        for view in self.rates.views() {
            m.effective_rate
                .with_label_values(&[view.name.as_str()])
                .set(view.effective_rate);
        }
        let (depth, capacity) = self.controller.queue_depth();
        m.queue_depth
            .with_label_values(&[QUEUE_DEPTH_SOURCE])
            .set(depth as f64);
        m.flaps_suppressed.inc_by(
            self.controller
                .flaps_suppressed()
                .saturating_sub(m.flaps_suppressed.get()),
        );
        let coordinators = self.controller.coordinators(now);
        let stale = coordinators.iter().filter(|c| c.stale).count();
        m.coordinators
            .with_label_values(&["stale"])
            .set(stale as i64);
        m.coordinators
            .with_label_values(&["live"])
            .set((coordinators.len() - stale) as i64);
        self.seq += 1;
        let snapshot = Snapshot {
            seq: self.seq,
            level,
            raw_level: self.controller.raw_level(),
            scale,
            target_scale: self.controller.target_scale(),
            queue_depth: depth,
            capacity,
            coordinators,
            flaps_suppressed: self.controller.flaps_suppressed(),
            pull_failures: self.controller.pull_failures(),
            at: now,
        };
        self.publish.send_replace(Arc::new(snapshot));
    }

    fn log(&self, event: ControlEvent) {
        match event {
            ControlEvent::LevelChanged { from, to, scale } => {
                self.metrics
                    .transitions
                    .with_label_values(&[to.as_str()])
                    .inc();
                tracing::info!(%from, %to, scale, "backpressure level changed");
            }
            ControlEvent::Evicted { coordinator_id } => {
                let m = &self.metrics;
                let id = [coordinator_id.as_str()];
                // Forgotten coordinators leave no series behind.
                let _ = m.coordinator_depth.remove_label_values(&id);
                let _ = m.coordinator_capacity.remove_label_values(&id);
                let _ = m.coordinator_level.remove_label_values(&id);
                let _ = m.coordinator_stale.remove_label_values(&id);
                let _ = m.coordinator_last_event.remove_label_values(&id);
                tracing::info!(coordinator = %coordinator_id, "forgot a stale coordinator to make room");
            }
            ControlEvent::Staleness {
                coordinator_id,
                stale,
            } => {
                self.metrics
                    .coordinator_stale
                    .with_label_values(&[coordinator_id.as_str()])
                    .set(i64::from(stale));
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

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
