//! The simulated world on virtual time: the store's queue, mdp's [`Controller`],
//! Prometheus scraping mdp, and KEDA + the HPA + the pods ([`Cluster`]).

use super::SimulateError;
use super::fleet::{Fleet, FleetSettings, PodGrants};
use super::noise::noise;
use super::scenario::{MetricsPath, Phase, Scenario, StoreState};
use super::steps::Steps;
use crate::autoscale::AutoscaleConfig;
use crate::autoscale::cluster::{Cluster, SyncTrace};
use crate::autoscale::keda::PromResponse;
use crate::control::{ControlConfig, ControlEvent, Controller, Observation, Source};
use crate::level::Level;
use clap::ValueEnum;
use serde::Serialize;
use std::time::Duration;

/// Most steps one run may take (a week at 1 s is 604 800).
pub const MAX_STEPS: u64 = 20_000_000;
/// Coordinator id of the simulated store.
const STORE_ID: &str = "sim-store";

/// How the store's state reaches mdp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEvents {
    /// mdp polls the store's depth every --pull-interval and derives the level
    /// with its own watermarks (pull mode).
    Depth,
    /// The store's broadcaster pushes one event per transition of its own level
    /// (SOFT past --soft-watermark, HARD at --hard-watermark, OK back at or below
    /// --soft-watermark), carrying the depth of that moment only.
    Levels,
}

/// Everything a run needs besides the scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    pub capacity: u64,
    pub control: ControlConfig,
    pub autoscale: AutoscaleConfig,
    pub store_events: StoreEvents,
    /// Time between polls of the store (depth events).
    pub poll_interval: Duration,
    pub scrape_interval: Duration,
    /// Prometheus scrapes mdp at `scrape_offset + k * scrape_interval`.
    pub scrape_offset: Duration,
    /// The HPA's first sync (and KEDA's first poll).
    pub hpa_offset: Duration,
    pub startup_delay: Duration,
    pub initial_replicas: u32,
    pub step: Duration,
    /// Seed of the depth jitter and of the pods' resolution phases.
    pub seed: u64,
    /// The pods' side: providers, peer tracking, workers' demand.
    pub pods: FleetSettings,
}

/// The state at one whole simulated second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: u64,
    pub phase: usize,
    /// The store's queue depth.
    pub depth: u64,
    /// The depth Prometheus last scraped from mdp (what KEDA sees); None while
    /// mdp has withdrawn the sample (the store does not answer).
    pub metric_depth: Option<u64>,
    /// The level driving the scale (after the relax hold).
    pub level: Level,
    pub scale: f64,
    /// Pods the Deployment asks for.
    pub desired: u32,
    pub ready: u32,
    /// Removed pods still granting (draining).
    pub draining: u32,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Run {
    pub samples: Vec<Sample>,
    pub level_changes: u64,
    pub flaps_suppressed: u64,
    /// Every provider's grants, summed over the pods.
    pub grants: PodGrants,
    /// Every HPA sync and what decided it.
    pub trace: Vec<SyncTrace>,
}

/// The store as mdp hears it.
struct Store {
    mode: StoreEvents,
    capacity: u64,
    low: f64,
    high: f64,
    /// The store's own level (levels mode), or None before its first event.
    announced: Option<Level>,
    next_poll: Duration,
    poll_interval: Duration,
}

impl Store {
    /// Whether mdp polls the store at `now` (pull mode), moving the next poll on.
    fn poll_due(&mut self, now: Duration) -> bool {
        if self.mode != StoreEvents::Depth || now < self.next_poll {
            return false;
        }
        self.next_poll = now + self.poll_interval;
        true
    }

    /// The event the store (or mdp's poll) produces at `now`, if any.
    fn event(&mut self, now: Duration, depth: u64, phase: &Phase) -> Option<Observation> {
        let level = match self.mode {
            StoreEvents::Depth => {
                if now < self.next_poll {
                    return None;
                }
                self.next_poll = now + self.poll_interval;
                phase.level
            }
            StoreEvents::Levels => {
                let own = phase.level.unwrap_or_else(|| {
                    store_level(
                        self.announced.unwrap_or(Level::Ok),
                        depth as f64,
                        self.low,
                        self.high,
                    )
                });
                if self.announced == Some(own) {
                    return None;
                }
                self.announced = Some(own);
                Some(own)
            }
        };
        Some(Observation {
            coordinator_id: STORE_ID.to_owned(),
            queue_size: depth,
            capacity: self.capacity,
            level,
            ts: now.as_secs_f64(),
            source: match self.mode {
                StoreEvents::Depth => Source::Pull,
                StoreEvents::Levels => Source::Push,
            },
            reason: None,
        })
    }
}

/// The real store's watermark semantics: SOFT once past `low`, HARD at `high`,
/// OK only back at or below `low` (HARD does not step down to SOFT).
pub fn store_level(previous: Level, depth: f64, low: f64, high: f64) -> Level {
    match previous {
        _ if depth >= high => Level::Hard,
        Level::Ok if depth > low => Level::Soft,
        Level::Soft | Level::Hard if depth <= low => Level::Ok,
        current => current,
    }
}

/// Runs `scenario` second by second (in `settings.step`s) and samples every whole second.
pub fn simulate(scenario: &Scenario, settings: &Settings) -> Result<Run, SimulateError> {
    let mut steps = Steps::new(
        settings.step,
        scenario.phases.iter().map(|p| p.duration).collect(),
    );
    let capacity = settings.capacity;
    let marks = settings.control.watermarks;
    let mut store = Store {
        mode: settings.store_events,
        capacity,
        low: marks.soft_at * capacity as f64,
        high: marks.hard_at * capacity as f64,
        announced: None,
        next_poll: Duration::ZERO,
        poll_interval: settings.poll_interval,
    };
    let control = ControlConfig {
        pulled: settings.store_events == StoreEvents::Depth,
        ..settings.control.clone()
    };
    let mut world = World::new(settings, control)?;
    let total_seconds = scenario.duration().as_secs();
    let mut samples = Vec::with_capacity(usize::try_from(total_seconds).unwrap_or(0));
    for index in 0..steps.total() {
        let (now, phase_index, phase_start) = steps.at(index);
        let phase = &scenario.phases[phase_index];
        let fraction = (now - phase_start).as_secs_f64() / phase.duration.as_secs_f64();
        let noisy = phase.depth.at(fraction) + phase.jitter * noise(settings.seed, index);
        let depth = noisy.clamp(0.0, capacity as f64).round() as u64;

        world.tick(now);
        if phase.store == StoreState::Down {
            // The poll fails: mdp holds the level and withdraws the depth.
            if store.poll_due(now) {
                world.controller.pull_failed(now);
            }
        } else if let Some(event) = store.event(now, depth, phase) {
            world.controller.observe(event, now);
        }
        world.count_level_changes();

        let (metric_depth, metric_level) = world.scrape(now);
        let (desired, ready) = world.autoscale(now, |cluster| match phase.prometheus {
            MetricsPath::Up => match metric_depth {
                Some(depth) => cluster.responses_for(depth, metric_level),
                // No depth sample: the depth trigger's query reads nothing.
                None => cluster.responses_without_depth(metric_level),
            },
            MetricsPath::Empty => vec![PromResponse::Empty; settings.autoscale.triggers.len()],
            MetricsPath::Down => {
                vec![PromResponse::Unreachable; settings.autoscale.triggers.len()]
            }
        });
        let scale = world.pods(now, desired, ready);
        if steps.whole_second(index) {
            samples.push(Sample {
                t: now.as_secs(),
                phase: phase_index,
                depth,
                metric_depth: metric_depth.map(|d| d as u64),
                level: world.controller.level(),
                scale,
                desired,
                ready,
                draining: world.fleet().draining(),
            });
        }
    }
    Ok(world.into_run(samples))
}

/// What both models step alike, whatever the store does: mdp's controller and
/// its deadlines, Prometheus scraping mdp, KEDA + the HPA, and the pods.
pub(super) struct World<'a> {
    settings: &'a Settings,
    pub(super) controller: Controller,
    cluster: Cluster,
    fleet: Fleet,
    /// Prometheus' last scrape of mdp: (depth gauge, backpressure gauge). The
    /// run starts in steady state, as if a scrape had just seen time zero.
    scraped: Option<(Option<f64>, Level)>,
    next_scrape: Duration,
    last_tick: Duration,
    level_changes: u64,
    trace: Vec<SyncTrace>,
}

impl<'a> World<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        control: ControlConfig,
    ) -> Result<World<'a>, SimulateError> {
        let cluster = Cluster::new(
            &settings.autoscale,
            settings.initial_replicas,
            settings.startup_delay,
        )?;
        let fleet = Fleet::new(
            &settings.pods,
            settings.autoscale.max_replicas,
            settings.initial_replicas,
            settings.seed,
        )?;
        Ok(World {
            settings,
            controller: Controller::new(control),
            cluster,
            fleet,
            scraped: None,
            next_scrape: settings.scrape_offset,
            last_tick: Duration::ZERO,
            level_changes: 0,
            trace: Vec::new(),
        })
    }

    /// Fires the controller's deadlines since the last step, up to `now`.
    pub(super) fn tick(&mut self, now: Duration) {
        run_deadlines(&mut self.controller, self.last_tick, now);
        self.last_tick = now;
    }

    /// Counts the level changes among the controller's events so far.
    pub(super) fn count_level_changes(&mut self) {
        self.level_changes += self
            .controller
            .drain_events()
            .iter()
            .filter(|e| matches!(e, ControlEvent::LevelChanged { .. }))
            .count() as u64;
    }

    /// What Prometheus holds of mdp at `now` (scraping when one is due): the
    /// depth gauge (None while mdp withdraws it) and the level.
    pub(super) fn scrape(&mut self, now: Duration) -> (Option<f64>, Level) {
        if now >= self.next_scrape || self.scraped.is_none() {
            self.scraped = Some((
                self.controller.depth().value().map(|d| d as f64),
                self.controller.level(),
            ));
            if now >= self.next_scrape {
                self.next_scrape += self.settings.scrape_interval;
            }
        }
        self.scraped.unwrap_or((Some(0.0), Level::Ok))
    }

    /// The pods the Deployment asks for and those ready: from the HPA's sync
    /// on what `responses` says the triggers' queries return, once the HPA runs.
    pub(super) fn autoscale(
        &mut self,
        now: Duration,
        responses: impl FnOnce(&Cluster) -> Vec<PromResponse>,
    ) -> (u32, u32) {
        if now < self.settings.hpa_offset {
            return (self.cluster.replicas(), self.cluster.pods().ready(now));
        }
        let responses = responses(&self.cluster);
        let before = self.cluster.replicas();
        let tick = self.cluster.step(now, &responses);
        self.trace.extend(tick.trace(before));
        (tick.replicas, tick.ready)
    }

    /// Steps the pods at the controller's scale of `now`, which it returns.
    pub(super) fn pods(&mut self, now: Duration, desired: u32, ready: u32) -> f64 {
        let scale = self.controller.scale(now);
        self.fleet
            .step(now, self.settings.step, desired, ready, scale);
        scale
    }

    pub(super) fn level_changes(&self) -> u64 {
        self.level_changes
    }

    pub(super) fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub(super) fn into_run(self, samples: Vec<Sample>) -> Run {
        Run {
            samples,
            level_changes: self.level_changes,
            flaps_suppressed: self.controller.flaps_suppressed(),
            grants: self.fleet.finish(),
            trace: self.trace,
        }
    }
}

/// Fires the controller's own deadlines (relax hold, ramp, TTLs) in `(since, until]`,
/// as the service's control loop does between events.
fn run_deadlines(controller: &mut Controller, since: Duration, until: Duration) {
    let mut at = since;
    // The ramp asks every 100 ms; the bound only guards against a deadline that
    // never moves forward.
    for _ in 0..100_000 {
        match controller.next_deadline(at) {
            Some(deadline) if deadline <= until && deadline > at => {
                controller.tick(deadline);
                at = deadline;
            }
            _ => break,
        }
    }
    controller.tick(until);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::simulate::scenario::{BuiltinScenario, DepthProfile};

    pub(crate) fn settings() -> Settings {
        Settings {
            capacity: 10_000,
            control: ControlConfig::default(),
            autoscale: AutoscaleConfig::default(),
            store_events: StoreEvents::Depth,
            poll_interval: Duration::from_secs(5),
            scrape_interval: Duration::from_secs(15),
            scrape_offset: Duration::from_secs(7),
            hpa_offset: Duration::ZERO,
            startup_delay: Duration::from_secs(10),
            initial_replicas: 1,
            step: Duration::from_secs(1),
            seed: 1,
            pods: FleetSettings {
                providers: vec![crate::rate::ProviderSpec::default()],
                feedback_provider: None,
                refresh: Duration::from_secs(5),
                shrink_hold: Duration::from_secs(15),
                drain: Duration::from_secs(5),
                demand: 1.5,
                rule: super::super::fleet::ShareRule::Conservative,
                fixed: None,
                budget: super::super::fleet::BudgetMode::Split,
                skew: Duration::ZERO,
            },
        }
    }

    fn one_phase(depth: DepthProfile, seconds: u64, jitter: f64) -> Scenario {
        Scenario {
            name: "t".to_owned(),
            phases: vec![Phase {
                name: "p".to_owned(),
                duration: Duration::from_secs(seconds),
                depth,
                level: None,
                jitter,
                prometheus: MetricsPath::Up,
                store: StoreState::Up,
            }],
        }
    }

    #[test]
    fn the_store_speaks_with_its_own_watermarks() {
        let walk = [
            (5000.0, Level::Ok),
            (5001.0, Level::Soft),
            (8999.0, Level::Soft),
            (9000.0, Level::Hard),
            (6000.0, Level::Hard),
            (5000.0, Level::Ok),
        ];
        let mut level = Level::Ok;
        for (depth, want) in walk {
            level = store_level(level, depth, 5000.0, 9000.0);
            assert_eq!(level, want, "at {depth}");
        }
    }

    #[test]
    fn samples_once_per_second_at_any_step() {
        let scenario = Scenario::builtin(BuiltinScenario::Seed);
        for step in [Duration::from_secs(1), Duration::from_millis(250)] {
            let run = simulate(&scenario, &Settings { step, ..settings() }).expect("valid");
            assert_eq!(run.samples.len(), 480);
            assert!(run.samples.iter().enumerate().all(|(i, s)| s.t == i as u64));
            assert_eq!(run.samples[479].phase, 3);
        }
    }

    #[test]
    fn prometheus_lags_the_store_by_up_to_a_scrape() {
        let scenario = one_phase(
            DepthProfile::Ramp {
                from: 0.0,
                to: 6000.0,
            },
            60,
            0.0,
        );
        let run = simulate(&scenario, &settings()).expect("valid");
        // Polled at 20 s (depth 2000), scraped at 22 s, held until 37 s.
        assert_eq!(run.samples[30].metric_depth, Some(2000));
        assert_eq!(run.samples[36].metric_depth, Some(2000));
        assert_eq!(run.samples[37].metric_depth, Some(3500));
    }

    #[test]
    fn the_relax_hold_absorbs_a_flapping_store() {
        // Around the store's low watermark, every second a different side.
        let scenario = one_phase(DepthProfile::Constant(5000.0), 120, 400.0);
        let levels = Settings {
            store_events: StoreEvents::Levels,
            ..settings()
        };
        let run = simulate(&scenario, &levels).expect("valid");
        assert!(run.flaps_suppressed > 10, "{}", run.flaps_suppressed);
        assert!(run.level_changes < run.flaps_suppressed);
    }

    #[test]
    fn a_dark_prometheus_reaches_the_fallback() {
        let mut scenario = one_phase(DepthProfile::Constant(500.0), 120, 0.0);
        scenario.phases[0].prometheus = MetricsPath::Down;
        // KEDA 2.18: only the HPA's requests count failures, so the fourth failed
        // sync (45 s) serves fallback.replicas = 6, which the scale-up policy (at most
        // 4 pods per 15 s) reaches one sync later.
        let mut old = settings();
        old.autoscale.versions.keda = "2.18".parse().expect("modelled");
        let run = simulate(&scenario, &old).expect("valid");
        assert_eq!(run.samples[44].desired, 1);
        assert_eq!(run.samples[45].desired, 5);
        assert_eq!(run.samples[60].desired, 6);
        // KEDA 2.19+: the operator's poll (at the same instants) counts too, so the
        // counter passes 3 at the second HPA sync (15 s).
        let run = simulate(&scenario, &settings()).expect("valid");
        assert_eq!(run.samples[14].desired, 1);
        assert_eq!(run.samples[15].desired, 5);
        assert_eq!(run.samples[30].desired, 6);
        assert_eq!(
            run.samples[119].desired, 6,
            "held while Prometheus stays dark"
        );
    }
}
