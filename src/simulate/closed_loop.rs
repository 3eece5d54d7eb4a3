//! `mdp simulate --scenario closed-loop`: the store's queue in closed loop.
//!
//! Unlike the open-loop scenarios (each phase sets the depth), the queue here
//! follows from the rates: inflow is the tokens the pods grant (times the items
//! one request brings) plus other writers not paced by mdp; drain is the ready
//! pods' write throughput, which the phase scales (a database slowdown, a stall,
//! the recovery) and which grows as KEDA adds pods after their start-up delay.
//! The queue is the shared [`StoreQueue`]: nothing is lost, what does not fit
//! waits with its producer.

use super::SimulateError;
use super::model::{Run, Sample, Settings, StoreEvents, World, store_level};
use super::scenario::{DepthProfile, MetricsPath, Phase, ScenarioError, StoreState};
use super::steps::Steps;
use crate::control::{Observation, Source};
use crate::level::Level;
use crate::store_queue::{Accounting, StoreQueue};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Coordinator id of the simulated store.
const STORE_ID: &str = "sim-store";

/// One phase of the closed loop: how well the store writes, who else writes.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopPhase {
    pub name: String,
    pub duration: Duration,
    /// The pods' write throughput as a fraction of normal (0: stalled).
    pub throughput: f64,
    /// Items per second other writers add (not paced by mdp).
    pub other_writers: f64,
}

/// A closed-loop scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedLoop {
    pub name: String,
    /// Items one rate token (one provider request) brings.
    pub items_per_token: f64,
    /// Items per second one ready pod writes at normal throughput.
    pub pod_throughput: f64,
    pub phases: Vec<LoopPhase>,
}

impl ClosedLoop {
    /// The built-in closed loop: a sudden database slowdown that the step
    /// policy meets at full rate until SOFT, a stall, and the recovery.
    pub fn builtin() -> ClosedLoop {
        let phase = |name: &str, seconds, throughput, other_writers| LoopPhase {
            name: name.to_owned(),
            duration: Duration::from_secs(seconds),
            throughput,
            other_writers,
        };
        ClosedLoop {
            name: "closed-loop".to_owned(),
            items_per_token: 16.0,
            pod_throughput: 1200.0,
            phases: vec![
                phase("normal", 60, 1.0, 100.0),
                phase("slowdown", 240, 0.2, 100.0),
                phase("stall", 20, 0.0, 100.0),
                phase("recovery", 240, 1.0, 100.0),
            ],
        }
    }

    /// Reads a closed-loop scenario file (a JSON object; see `--scenario-file`).
    pub fn from_json(name: &str, text: &str) -> Result<ClosedLoop, ScenarioError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FilePhase {
            name: String,
            duration: serde_json::Value,
            throughput: f64,
            #[serde(default)]
            other_writers: f64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            items_per_token: f64,
            pod_throughput: f64,
            phases: Vec<FilePhase>,
        }
        let invalid = |m: String| ScenarioError::Invalid(m);
        let file: File = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut phases = Vec::new();
        for p in file.phases {
            let duration = match &p.duration {
                serde_json::Value::Number(n) => n.as_u64().map(Duration::from_secs),
                serde_json::Value::String(s) => humantime::parse_duration(s).ok(),
                _ => None,
            }
            .filter(|d| d.subsec_nanos() == 0 && !d.is_zero())
            .ok_or_else(|| {
                invalid(format!(
                    "phase {:?}: duration must be whole seconds > 0",
                    p.name
                ))
            })?;
            phases.push(LoopPhase {
                name: p.name,
                duration,
                throughput: p.throughput,
                other_writers: p.other_writers,
            });
        }
        let scenario = ClosedLoop {
            name: name.to_owned(),
            items_per_token: file.items_per_token,
            pod_throughput: file.pod_throughput,
            phases,
        };
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn from_file(path: &Path) -> Result<ClosedLoop, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::File {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| "file".to_owned(), |s| s.to_string_lossy().into_owned());
        ClosedLoop::from_json(&name, &text).map_err(|e| match e {
            ScenarioError::Invalid(message) => ScenarioError::File {
                path: shown,
                message,
            },
            other => other,
        })
    }

    /// Every number finite and in range, at least one phase, at most a week.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        if !(self.items_per_token.is_finite() && self.items_per_token > 0.0) {
            return invalid("items_per_token must be > 0".to_owned());
        }
        if !(self.pod_throughput.is_finite() && self.pod_throughput > 0.0) {
            return invalid("pod_throughput must be > 0".to_owned());
        }
        if self.phases.is_empty() {
            return invalid("needs at least one phase".to_owned());
        }
        for p in &self.phases {
            if p.name.is_empty() || p.name.len() > 40 {
                return invalid(format!("phase name {:?} must be 1-40 characters", p.name));
            }
            if !(p.throughput.is_finite() && (0.0..=100.0).contains(&p.throughput)) {
                return invalid(format!(
                    "phase {:?}: throughput must be in [0, 100]",
                    p.name
                ));
            }
            if !(p.other_writers.is_finite() && p.other_writers >= 0.0) {
                return invalid(format!("phase {:?}: other_writers must be >= 0", p.name));
            }
        }
        if self.duration() > super::scenario::MAX_SCENARIO {
            return invalid("longer than a week".to_owned());
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }

    /// The open-loop view (names and durations) the table, CSV and plot use;
    /// the depth comes from the model, not from these phases.
    pub fn outline(&self) -> super::Scenario {
        super::Scenario {
            name: self.name.clone(),
            phases: self
                .phases
                .iter()
                .map(|p| Phase {
                    name: p.name.clone(),
                    duration: p.duration,
                    depth: DepthProfile::Constant(0.0),
                    level: None,
                    jitter: 0.0,
                    prometheus: MetricsPath::Up,
                    store: StoreState::Up,
                })
                .collect(),
        }
    }
}

/// The closed loop's state at one whole second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoopRow {
    pub t: u64,
    /// Tokens all pods granted during the second (feedback providers).
    pub tokens: f64,
    /// Items produced during the second (providers and other writers).
    pub inflow: u64,
    /// Items written out during the second.
    pub drained: u64,
    /// Items waiting with their producers at the end of the second.
    pub held: u64,
}

/// The closed loop's totals (`--format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoopTotals {
    pub policy: crate::control::RatePolicy,
    /// Items that entered the store's queue.
    pub ingested_items: u64,
    /// Items the providers' tokens fetched.
    pub provider_items: u64,
    pub queue_peak: u64,
    /// Seconds at HARD (the providers paused).
    pub hard_seconds: u64,
    pub level_changes: u64,
    /// Pods asked for, summed over the seconds.
    pub pod_seconds: u64,
    pub produced: u64,
    pub written: u64,
    pub queued: u64,
    pub held: u64,
    pub balanced: bool,
}

/// A finished closed-loop run.
#[derive(Debug, Clone)]
pub struct LoopRun {
    pub run: Run,
    pub rows: Vec<LoopRow>,
    pub totals: LoopTotals,
    pub accounting: Accounting,
}

/// Runs the closed loop on virtual time with the controller, Prometheus, KEDA
/// and the pods of the open-loop model.
pub fn simulate(scenario: &ClosedLoop, settings: &Settings) -> Result<LoopRun, SimulateError> {
    let mut steps = Steps::new(
        settings.step,
        scenario.phases.iter().map(|p| p.duration).collect(),
    );
    let dt = settings.step.as_secs_f64();
    let capacity = settings.capacity;
    let marks = settings.control.watermarks;
    let (low, high) = (
        marks.soft_at * capacity as f64,
        marks.hard_at * capacity as f64,
    );
    let mut queue = StoreQueue::new(capacity);
    let mut world = World::new(settings, settings.control.clone())?;
    let mut next_poll = Duration::ZERO;
    let mut announced: Option<Level> = None;
    let mut samples = Vec::new();
    let mut rows: Vec<LoopRow> = Vec::new();
    let (mut granted_before, mut provider_items) = (0.0f64, 0u64);
    let (mut hard_seconds, mut pod_seconds) = (0u64, 0u64);
    for index in 0..steps.total() {
        let (now, phase_index, _) = steps.at(index);
        let phase = &scenario.phases[phase_index];
        let depth = queue.depth();

        world.tick(now);
        let event = match settings.store_events {
            StoreEvents::Depth if now >= next_poll => {
                next_poll = now + settings.poll_interval;
                Some((None, Source::Pull))
            }
            StoreEvents::Depth => None,
            StoreEvents::Levels => {
                let own = store_level(announced.unwrap_or(Level::Ok), depth as f64, low, high);
                (announced != Some(own)).then(|| {
                    announced = Some(own);
                    (Some(own), Source::Push)
                })
            }
        };
        if let Some((level, source)) = event {
            world.controller.observe(
                Observation {
                    coordinator_id: STORE_ID.to_owned(),
                    queue_size: depth,
                    capacity,
                    level,
                    ts: now.as_secs_f64(),
                    source,
                    reason: None,
                },
                now,
            );
        }
        world.count_level_changes();

        // The store always answers here: no depth yet reads as an empty queue.
        let (metric_depth, metric_level) = world.scrape(now);
        let metric_depth = metric_depth.unwrap_or(0.0);
        let (desired, ready) = world.autoscale(now, |cluster| {
            cluster.responses_for(metric_depth, metric_level)
        });
        let scale = world.pods(now, desired, ready);

        // The closed loop: what the tokens fetched, and what the pods write.
        // The fleet books grants per second: the step's share is what this
        // second's total grew by.
        if steps.whole_second(index) {
            granted_before = 0.0;
        }
        let this_second = usize::try_from(now.as_secs()).unwrap_or(usize::MAX);
        let granted: f64 = world
            .fleet()
            .grants()
            .providers
            .iter()
            .filter(|p| p.feedback)
            .map(|p| p.granted.get(this_second).copied().unwrap_or(0.0))
            .sum();
        let tokens = (granted - granted_before).max(0.0);
        granted_before = granted;
        let from_providers = queue.produce(tokens * scenario.items_per_token);
        provider_items += from_providers;
        let from_others = queue.produce(phase.other_writers * dt);
        queue.admit();
        let drained =
            queue.drain(f64::from(ready) * scenario.pod_throughput * phase.throughput * dt);
        queue.admit();

        let second = now.as_secs();
        if steps.whole_second(index) {
            let level = world.controller.level();
            hard_seconds += u64::from(level == Level::Hard);
            pod_seconds += u64::from(desired);
            samples.push(Sample {
                t: second,
                phase: phase_index,
                depth: queue.depth(),
                metric_depth: Some(metric_depth as u64),
                level,
                scale,
                desired,
                ready,
                draining: world.fleet().draining(),
            });
            rows.push(LoopRow {
                t: second,
                tokens: 0.0,
                inflow: 0,
                drained: 0,
                held: 0,
            });
        }
        if let Some(row) = rows.last_mut() {
            row.tokens += tokens;
            row.inflow += from_providers + from_others;
            row.drained += drained;
            row.held = queue.held();
        }
    }
    let level_changes = world.level_changes();
    let mut run = world.into_run(samples);
    // The per-sync trace is the open-loop scenarios' (`--trace`).
    run.trace = Vec::new();
    let accounting = queue.accounting();
    let totals = LoopTotals {
        policy: settings.control.rate_policy,
        ingested_items: queue.accepted(),
        provider_items,
        queue_peak: queue.peak(),
        hard_seconds,
        level_changes,
        pod_seconds,
        produced: accounting.produced,
        written: accounting.written,
        queued: accounting.queued,
        held: accounting.held,
        balanced: accounting.balances(),
    };
    Ok(LoopRun {
        run,
        rows,
        totals,
        accounting,
    })
}

/// One row per second of the closed loop.
pub fn csv(scenario: &ClosedLoop, run: &LoopRun) -> String {
    let mut text = String::from(
        "t,phase,depth,level,scale,tokens,inflow_items,drained_items,held_items,desired,ready\n",
    );
    for (sample, row) in run.run.samples.iter().zip(&run.rows) {
        text.push_str(&format!(
            "{},{},{},{},{:.4},{:.2},{},{},{},{},{}\n",
            sample.t,
            scenario.phases[sample.phase].name,
            sample.depth,
            sample.level.as_str(),
            sample.scale,
            row.tokens,
            row.inflow,
            row.drained,
            row.held,
            sample.desired,
            sample.ready
        ));
    }
    text
}

/// A short table for people.
pub fn table(totals: &LoopTotals) -> String {
    format!(
        "closed loop, policy {}\n  ingested items  {}\n  provider items  {}\n  queue peak      {}\n  hard seconds    {}\n  level changes   {}\n  pod-seconds     {}\n  items: produced {} = written {} + queued {} + held {} ({})\n",
        totals.policy,
        totals.ingested_items,
        totals.provider_items,
        totals.queue_peak,
        totals.hard_seconds,
        totals.level_changes,
        totals.pod_seconds,
        totals.produced,
        totals.written,
        totals.queued,
        totals.held,
        if totals.balanced {
            "balanced, nothing lost"
        } else {
            "DOES NOT BALANCE"
        }
    )
}

/// The open-loop summary with the closed loop's totals at the top level.
pub fn json(summary: &super::Summary, totals: &LoopTotals) -> String {
    let mut value = serde_json::to_value(summary).unwrap_or(serde_json::Value::Null);
    if let (Some(object), Ok(serde_json::Value::Object(extra))) =
        (value.as_object_mut(), serde_json::to_value(totals))
    {
        object.extend(extra);
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
