//! What a run means: per-phase figures, scale-up and scale-down times, and the
//! verdict against the replica matrix (docs/replica-matrix.md).

use super::budget::{self, GrantSummary};
use super::fleet::ShareRule;
use super::model::{Run, Sample, Settings, StoreEvents};
use super::scenario::{Scenario, StoreState};
use crate::autoscale::cluster::SyncTrace;
use crate::level::Level;
use serde::Serialize;

/// Pods that must be ready for the scale-up to count (replica matrix: moderate load, 1 -> 3).
pub const SCALE_UP_PODS: u32 = 3;
/// The replica matrix's bounds on the scale-up and scale-down times, in seconds.
pub const MATRIX_SCALE_UP: (u64, u64) = (15, 45);
pub const MATRIX_SCALE_DOWN: (u64, u64) = (60, 90);

/// One phase of the run, as the JSON output and the table show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    pub start_seconds: u64,
    pub end_seconds: u64,
    /// The store's depth at the phase's last second.
    pub queue_depth: u64,
    /// The level (after the relax hold) at the phase's last second.
    pub level: Level,
    pub scale: f64,
    pub replicas_max: u32,
    pub replicas_end: u32,
    pub ready_end: u32,
}

/// One comparison with the replica matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub what: String,
    pub got: String,
    pub want: String,
    pub ok: bool,
}

/// All comparisons with the replica matrix the scenario's phase names allow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub matches: bool,
    pub checks: Vec<Check>,
}

/// The run's settings, as the output echoes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsView {
    pub store_capacity: u64,
    pub store_events: StoreEvents,
    pub poll_interval_seconds: f64,
    pub relax_after_seconds: f64,
    pub scrape_interval_seconds: f64,
    pub scrape_offset_seconds: f64,
    pub hpa_offset_seconds: f64,
    pub startup_delay_seconds: f64,
    pub scale_down_window_seconds: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub step_seconds: f64,
    /// How each pod sizes its share: conservative, naive, or fixed 1/N.
    pub share_rule: String,
    pub replicas_refresh_seconds: f64,
    pub replicas_shrink_hold_seconds: f64,
    pub drain_delay_seconds: f64,
    /// Workers' demand as a multiple of each provider's base rate.
    pub worker_demand: f64,
    /// The KEDA and Kubernetes releases modelled.
    pub keda_version: String,
    pub k8s_version: String,
}

impl SettingsView {
    pub fn new(settings: &Settings) -> Self {
        SettingsView {
            store_capacity: settings.capacity,
            store_events: settings.store_events,
            poll_interval_seconds: settings.poll_interval.as_secs_f64(),
            relax_after_seconds: settings.control.relax_after.as_secs_f64(),
            scrape_interval_seconds: settings.scrape_interval.as_secs_f64(),
            scrape_offset_seconds: settings.scrape_offset.as_secs_f64(),
            hpa_offset_seconds: settings.hpa_offset.as_secs_f64(),
            startup_delay_seconds: settings.startup_delay.as_secs_f64(),
            scale_down_window_seconds: settings
                .autoscale
                .behavior
                .scale_down
                .stabilization_window
                .as_secs_f64(),
            min_replicas: settings.autoscale.min_replicas,
            max_replicas: settings.autoscale.max_replicas,
            step_seconds: settings.step.as_secs_f64(),
            share_rule: match (settings.pods.fixed, settings.pods.rule) {
                (Some(count), _) => format!("fixed 1/{count}"),
                (None, ShareRule::Conservative) => "conservative".to_owned(),
                (None, ShareRule::Naive) => "naive".to_owned(),
            },
            replicas_refresh_seconds: settings.pods.refresh.as_secs_f64(),
            replicas_shrink_hold_seconds: settings.pods.shrink_hold.as_secs_f64(),
            drain_delay_seconds: settings.pods.drain.as_secs_f64(),
            worker_demand: settings.pods.demand,
            keda_version: settings.autoscale.versions.keda.to_string(),
            k8s_version: settings.autoscale.versions.kubernetes.to_string(),
        }
    }
}

/// The smallest and largest of a figure over the scrape/HPA alignments tried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// Alignments where the figure never happened.
    pub missing: u32,
}

/// `--sweep`: the same scenario under every scrape offset and HPA sync offset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    pub runs: u32,
    pub scale_up_seconds: Range,
    pub scale_down_seconds: Range,
    /// Runs whose every replica-matrix check passed.
    pub spec_matches: u32,
}

/// The whole result of `mdp simulate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub duration_seconds: u64,
    pub phases: Vec<PhaseSummary>,
    /// From the start of the moderate phase until 3 or more pods are ready.
    pub scale_up_seconds: Option<u64>,
    /// From the depth falling below the drained mark until one pod remains.
    pub scale_down_seconds: Option<u64>,
    /// Where the two clocks started (seconds into the run).
    pub scale_up_from: Option<u64>,
    pub scale_down_from: Option<u64>,
    pub level_changes: u64,
    pub flaps_suppressed: u64,
    /// None when no phase carries a replica-matrix name.
    pub spec: Option<Verdict>,
    /// Per provider: the pods' grants summed, against the provider's budget.
    pub grants: Vec<GrantSummary>,
    pub settings: SettingsView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Every HPA sync and what decided it (`--trace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Vec<SyncTrace>>,
    /// Per store outage (a phase with `"store": "down"`): whether the pods and
    /// the level held while mdp could not read the queue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
}

/// What the autoscaling did while the store did not answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outage {
    pub phase: String,
    pub start_seconds: u64,
    pub end_seconds: u64,
    /// Pods the Deployment asked for as the outage began, and the fewest during it.
    pub pods_at_start: u32,
    pub pods_min: u32,
    pub level_at_start: Level,
    /// The least severe level in force during the outage.
    pub level_min: Level,
    /// Never fewer pods and never a milder level than at the outage's start.
    pub held: bool,
}

/// The outages of a run: every phase whose store is down.
fn outages(scenario: &Scenario, samples: &[Sample]) -> Vec<Outage> {
    samples
        .chunk_by(|a, b| a.phase == b.phase)
        .filter_map(|inside| {
            let (first, last) = (inside.first()?, inside.last()?);
            let phase = scenario.phases.get(first.phase)?;
            if phase.store != StoreState::Down {
                return None;
            }
            let pods_min = inside.iter().map(|s| s.desired).min()?;
            let level_min = inside.iter().map(|s| s.level).min()?;
            Some(Outage {
                phase: phase.name.clone(),
                start_seconds: first.t,
                end_seconds: last.t + 1,
                pods_at_start: first.desired,
                pods_min,
                level_at_start: first.level,
                level_min,
                held: pods_min >= first.desired && level_min >= first.level,
            })
        })
        .collect()
}

/// The replica matrix's row for a phase name: level, and the replica range.
pub fn spec_row(name: &str) -> Option<(Level, u32, u32)> {
    match name {
        "idle" | "normal" => Some((Level::Ok, 1, 1)),
        "moderate" => Some((Level::Soft, 3, 5)),
        "high" => Some((Level::Soft, 6, 8)),
        "overload" => Some((Level::Hard, 8, 10)),
        "recovery" => Some((Level::Ok, 1, 1)),
        _ => None,
    }
}

/// Queue depths that anchor the timings: scale-up from `rising`, scale-down from
/// the first second below `drained`.
#[derive(Debug, Clone, Copy)]
pub struct Marks {
    pub rising: u64,
    pub drained: u64,
    /// The pod count that means "scaled down".
    pub floor_pods: u32,
}

impl Marks {
    pub fn new(settings: &Settings) -> Self {
        let capacity = settings.capacity as f64;
        let marks = settings.control.watermarks;
        Marks {
            rising: (marks.soft_at * capacity).ceil() as u64,
            drained: (marks.soft_release * capacity).ceil() as u64,
            floor_pods: settings.autoscale.hpa_min_replicas(),
        }
    }
}

pub fn summarize(scenario: &Scenario, run: &Run, settings: &Settings) -> Summary {
    let marks = Marks::new(settings);
    let phases = phase_summaries(scenario, &run.samples);
    let up = scale_up_anchor(scenario, &run.samples, marks);
    let down = scale_down_anchor(scenario, &run.samples, marks);
    let scale_up_seconds =
        up.and_then(|from| until(&run.samples, from, |s| s.ready >= SCALE_UP_PODS));
    let scale_down_seconds =
        down.and_then(|from| until(&run.samples, from, |s| s.desired <= marks.floor_pods));
    let spec = verdict(&phases, scale_up_seconds, scale_down_seconds);
    Summary {
        scenario: scenario.name.clone(),
        duration_seconds: run.samples.len() as u64,
        phases,
        scale_up_seconds,
        scale_down_seconds,
        scale_up_from: up,
        scale_down_from: down,
        level_changes: run.level_changes,
        flaps_suppressed: run.flaps_suppressed,
        spec,
        grants: run
            .grants
            .providers
            .iter()
            .map(|track| budget::summarize(track, settings.pods.demand, scenario))
            .collect(),
        settings: SettingsView::new(settings),
        sweep: None,
        trace: None,
        outages: outages(scenario, &run.samples),
    }
}

fn phase_summaries(scenario: &Scenario, samples: &[Sample]) -> Vec<PhaseSummary> {
    // Samples come in phase order: one pass, one chunk per phase.
    samples
        .chunk_by(|a, b| a.phase == b.phase)
        .filter_map(|inside| {
            let (first, last) = (inside.first()?, inside.last()?);
            let phase = scenario.phases.get(first.phase)?;
            // Phases last whole seconds, so a phase's first sample is its start.
            let start_seconds = first.t;
            Some(PhaseSummary {
                name: phase.name.clone(),
                start_seconds,
                end_seconds: start_seconds + phase.duration.as_secs(),
                queue_depth: last.depth,
                level: last.level,
                scale: last.scale,
                replicas_max: inside.iter().map(|s| s.desired).max().unwrap_or(0),
                replicas_end: last.desired,
                ready_end: last.ready,
            })
        })
        .collect()
}

/// Seconds from `from` until the first sample that is `done`.
fn until(samples: &[Sample], from: u64, done: impl Fn(&Sample) -> bool) -> Option<u64> {
    let at = samples.iter().find(|s| s.t >= from && done(s))?;
    Some(at.t - from)
}

/// The scale-up clock starts with the moderate phase (or at the first second at
/// the soft watermark).
fn scale_up_anchor(scenario: &Scenario, samples: &[Sample], marks: Marks) -> Option<u64> {
    match scenario.phases.iter().position(|p| p.name == "moderate") {
        Some(index) => Some(samples.iter().find(|s| s.phase == index)?.t),
        None => Some(samples.iter().find(|s| s.depth >= marks.rising)?.t),
    }
}

/// The scale-down clock starts at the first second below the drained mark in the
/// recovery phase (or at the last fall below it).
fn scale_down_anchor(scenario: &Scenario, samples: &[Sample], marks: Marks) -> Option<u64> {
    let recovery = scenario.phases.iter().position(|p| p.name == "recovery");
    let anchor = match recovery {
        Some(index) => {
            samples
                .iter()
                .find(|s| s.phase == index && s.depth < marks.drained)?
                .t
        }
        None => {
            samples
                .windows(2)
                .rev()
                .find(|w| w[0].depth >= marks.drained && w[1].depth < marks.drained)?[1]
                .t
        }
    };
    Some(anchor)
}

fn check(what: String, got: String, want: String, ok: bool) -> Check {
    Check {
        what,
        got,
        want,
        ok,
    }
}

fn timing(what: &str, got: Option<u64>, (low, high): (u64, u64)) -> Check {
    check(
        what.to_owned(),
        got.map_or_else(|| "never".to_owned(), |s| format!("{s} s")),
        format!("{low}-{high} s"),
        got.is_some_and(|s| (low..=high).contains(&s)),
    )
}

/// Compares every phase with a replica-matrix name, and the timings its phases allow.
fn verdict(phases: &[PhaseSummary], up: Option<u64>, down: Option<u64>) -> Option<Verdict> {
    let mut checks = Vec::new();
    for phase in phases {
        let Some((level, low, high)) = spec_row(&phase.name) else {
            continue;
        };
        let range = if low == high {
            format!("{low}")
        } else {
            format!("{low}-{high}")
        };
        let name = &phase.name;
        checks.push(check(
            format!("{name} level"),
            phase.level.to_string(),
            level.to_string(),
            phase.level == level,
        ));
        checks.push(check(
            format!("{name} pods at end"),
            phase.replicas_end.to_string(),
            range.clone(),
            (low..=high).contains(&phase.replicas_end),
        ));
        // Recovery starts with the overload's pods; elsewhere none may overshoot.
        if name != "recovery" {
            checks.push(check(
                format!("{name} pods at most"),
                phase.replicas_max.to_string(),
                format!("<= {high}"),
                phase.replicas_max <= high,
            ));
        }
    }
    if phases.iter().any(|p| p.name == "moderate") {
        checks.push(timing("scale-up", up, MATRIX_SCALE_UP));
    }
    if phases.iter().any(|p| p.name == "recovery") {
        checks.push(timing("scale-down", down, MATRIX_SCALE_DOWN));
    }
    (!checks.is_empty()).then(|| Verdict {
        matches: checks.iter().all(|c| c.ok),
        checks,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_outage_during_which_pods_go_is_not_held() {
        use super::super::scenario::{MetricsPath, Phase, StoreState};
        let phase = |name: &str, store| Phase {
            name: name.to_owned(),
            duration: std::time::Duration::from_secs(2),
            depth: super::super::scenario::DepthProfile::Constant(8500.0),
            level: None,
            jitter: 0.0,
            prometheus: MetricsPath::Up,
            store,
        };
        let scenario = Scenario {
            name: "t".into(),
            phases: vec![
                phase("before", StoreState::Up),
                phase("dark", StoreState::Down),
            ],
        };
        let sample = |t, phase, desired| Sample {
            t,
            phase,
            depth: 8500,
            metric_depth: None,
            level: Level::Soft,
            scale: 0.5,
            desired,
            ready: desired,
            draining: 0,
        };
        // As a depth read as 0 would have it: the pods leave during the outage.
        let dropped = [
            sample(0, 0, 7),
            sample(1, 0, 7),
            sample(2, 1, 7),
            sample(3, 1, 1),
        ];
        let found = outages(&scenario, &dropped);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].pods_at_start, found[0].pods_min), (7, 1));
        assert!(!found[0].held);
        let kept = [
            sample(0, 0, 7),
            sample(1, 0, 7),
            sample(2, 1, 7),
            sample(3, 1, 8),
        ];
        assert!(outages(&scenario, &kept)[0].held);
    }
    use super::*;

    fn phase(name: &str, level: Level, max: u32, end: u32) -> PhaseSummary {
        PhaseSummary {
            name: name.to_owned(),
            start_seconds: 0,
            end_seconds: 1,
            queue_depth: 0,
            level,
            scale: 1.0,
            replicas_max: max,
            replicas_end: end,
            ready_end: end,
        }
    }

    #[test]
    fn verdict_names_each_miss() {
        let phases = [
            phase("idle", Level::Ok, 1, 1),
            phase("moderate", Level::Soft, 6, 6),
            phase("recovery", Level::Ok, 10, 1),
            phase("custom", Level::Hard, 9, 9),
        ];
        let result = verdict(&phases, Some(20), Some(55)).expect("spec phases");
        assert!(!result.matches);
        let misses: Vec<_> = result
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect();
        assert_eq!(
            misses,
            [
                "moderate pods at end",
                "moderate pods at most",
                "scale-down"
            ]
        );
        assert_eq!(result.checks.len(), 10);
        assert!(verdict(&[phase("custom", Level::Ok, 1, 1)], None, None).is_none());
    }

    #[test]
    fn never_is_a_miss() {
        let check = timing("scale-up", None, MATRIX_SCALE_UP);
        assert_eq!((check.got.as_str(), check.ok), ("never", false));
    }
}
