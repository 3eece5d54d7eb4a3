//! Simulation: the control loop and a model of Prometheus, KEDA and the HPA on virtual time.
//!
//! `mdp simulate` runs the service's own [`crate::control::Controller`] against a store
//! whose queue follows a scenario, lets a model Prometheus scrape mdp's gauges, and feeds
//! them to KEDA + the HPA + the pods ([`crate::autoscale::cluster::Cluster`]) configured by
//! the same flags `mdp export` renders, so what is simulated is what is deployed.
//! Every pod then grants its share of each provider's budget ([`fleet`]), and the sum
//! is checked against the budget over sliding windows ([`budget`]).

pub mod budget;
mod canvas;
pub mod closed_loop;
pub mod fleet;
mod legend;
pub mod model;
mod noise;
pub mod output;
pub mod pacing;
pub mod plot;
mod plot_grants;
pub mod report;
pub mod scenario;
mod steps;

pub use fleet::{BudgetMode, FleetSettings, ShareRule};
pub use model::{Run, Sample, Settings, StoreEvents};
pub use output::Format;
pub use report::Summary;
pub use scenario::{BuiltinScenario, Scenario};

use crate::autoscale::hpa::DEFAULT_SYNC_PERIOD;
use crate::config::ServeConfig;
use crate::options::EngineArgs;
use crate::settings::{OptionErrors, duration};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Most simulated steps `--sweep` may take over all its runs.
const MAX_SWEEP_STEPS: u64 = 100_000_000;

/// Options of `mdp simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub serve: EngineArgs,
    /// Built-in scenario (default: matrix).
    #[arg(long, env = "MDP_SIM_SCENARIO", value_enum)]
    pub scenario: Option<BuiltinScenario>,
    /// Run the load profile in this JSON file instead of a built-in scenario.
    ///
    /// The file is a list of phases, run in order:
    ///
    ///   [
    ///     {"name": "idle",     "duration": "1m", "depth": 500},
    ///     {"name": "moderate", "duration": 120,  "depth": [500, 6000]},
    ///     {"name": "overload", "duration": "2m", "depth": 9500, "level": "hard"},
    ///     {"name": "recovery", "duration": "3m", "depth": 800,  "prometheus": "down"}
    ///   ]
    ///
    /// name        1-40 letters, digits, spaces, '_', '.', '-'. Phases named idle,
    ///             normal, moderate, high, overload or recovery are checked
    ///             against the replica matrix.
    /// duration    whole seconds, as a number or a string like "90s" or "2m".
    /// depth       queue depth in messages (0..=--store-capacity), or a ramp
    ///             [from, to] walked linearly over the phase.
    /// level       optional: the level the store reports (ok, soft, hard)
    ///             instead of the one derived from the depth.
    /// jitter      optional: uniform noise of +-N messages on every step.
    /// prometheus  optional: up (default), empty (series gone) or down.
    ///
    /// A JSON object with pod_throughput is a closed-loop scenario instead
    /// (items_per_token, pod_throughput, phases of name, duration,
    /// throughput, other_writers): see docs/simulate.md.
    #[arg(
        long,
        env = "MDP_SIM_SCENARIO_FILE",
        conflicts_with = "scenario",
        verbatim_doc_comment
    )]
    pub scenario_file: Option<PathBuf>,
    /// Output format: table for people, one JSON object, or CSV with one row per second.
    #[arg(long, env = "MDP_SIM_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the run as an SVG picture into this file.
    #[arg(long, env = "MDP_SIM_PLOT")]
    pub plot: Option<PathBuf>,
    /// How the store's state reaches mdp: depth (polled every --pull-interval, level
    /// derived by mdp) or levels (the store pushes its own level changes only).
    #[arg(long, env = "MDP_SIM_STORE_EVENTS", value_enum, default_value_t = StoreEvents::Depth)]
    pub store_events: StoreEvents,
    /// Prometheus scrape interval of mdp's /metrics (the ServiceMonitor's interval).
    #[arg(long, env = "MDP_SIM_SCRAPE_INTERVAL", default_value = "15s", value_parser = duration)]
    pub scrape_interval: Duration,
    /// When in each scrape interval Prometheus scrapes (scrapes at offset + k * interval).
    #[arg(long, env = "MDP_SIM_SCRAPE_OFFSET", default_value = "7s", value_parser = duration)]
    pub scrape_offset: Duration,
    /// When in its 15 s period the HPA syncs (first sync at this offset).
    #[arg(long, env = "MDP_SIM_HPA_OFFSET", default_value = "0s", value_parser = duration)]
    pub hpa_offset: Duration,
    /// Time from a pod being asked for to it being ready.
    #[arg(long, env = "MDP_SIM_STARTUP_DELAY", default_value = "10s", value_parser = duration)]
    pub startup_delay: Duration,
    /// Pods ready at the start (default: the minimum the HPA keeps).
    #[arg(long, env = "MDP_SIM_INITIAL_REPLICAS")]
    pub initial_replicas: Option<u32>,
    /// Simulation step (1ms to 1s, dividing a second); output stays one row per second.
    #[arg(long, env = "MDP_SIM_STEP", default_value = "1s", value_parser = duration)]
    pub step: Duration,
    /// Seed of the phases' depth jitter.
    #[arg(long, env = "MDP_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Also run every whole-second scrape offset and HPA offset, and report the
    /// range of the scale-up and scale-down times.
    #[arg(long, env = "MDP_SIM_SWEEP", default_value_t = false)]
    pub sweep: bool,
    /// Report every HPA sync: what KEDA read per trigger, the fallback failure count,
    /// each trigger's proposal, the max, the stabilized recommendation, the rate limit,
    /// the replicas and why (`--format csv`: one row per sync; json: a `trace` list).
    #[arg(long, env = "MDP_SIM_TRACE", default_value_t = false)]
    pub trace: bool,
    /// After the table, say why the replica count changed at each change.
    #[arg(long, env = "MDP_SIM_EXPLAIN", default_value_t = false)]
    pub explain: bool,
    /// How each pod turns the peer answer into its share of every provider's
    /// budget: mdp's conservative rule, or a naive 1/observed (unsafe, to compare).
    /// `--replicas N` instead gives every pod a fixed 1/N.
    #[arg(
        long,
        env = "MDP_SIM_SHARE_RULE",
        value_enum,
        default_value_t = ShareRule::Conservative,
        conflicts_with = "replicas"
    )]
    pub share_rule: ShareRule,
    /// What the workers ask of each provider, as a multiple of its base rate,
    /// spread evenly over the pods that serve.
    #[arg(long, env = "MDP_SIM_WORKER_DEMAND", default_value_t = 1.5)]
    pub worker_demand: f64,
    /// Where the pods take tokens from: each its share (split, mdp without
    /// --budget-redis) or one bucket for all (shared, with --budget-redis).
    #[arg(long = "budget", env = "MDP_SIM_BUDGET", value_enum, default_value_t = BudgetMode::Split)]
    pub budget_mode: BudgetMode,
    /// Skewed demand: for this long from the start all the workers ask one pod,
    /// then they spread over every pod that serves.
    #[arg(long, env = "MDP_SIM_DEMAND_SKEW", default_value = "0s", value_parser = crate::settings::duration)]
    pub demand_skew: Duration,
}

/// Why `mdp simulate` refused to run; one line naming the cause.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Options(#[from] OptionErrors),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error(transparent)]
    Autoscale(#[from] crate::autoscale::ConfigError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("invalid --provider: {0}")]
    Provider(crate::rate::BucketError),
}

impl From<crate::rate::BucketError> for SimulateError {
    fn from(error: crate::rate::BucketError) -> Self {
        SimulateError::Provider(error)
    }
}

fn refuse(option: &'static str, message: impl Into<String>) -> SimulateError {
    SimulateError::Options(crate::settings::OptionError::new(option, message.into()).into())
}

/// A validated simulation: the scenario, the settings, and what to print.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub scenario: Scenario,
    pub settings: Settings,
    pub format: Format,
    pub plot: Option<PathBuf>,
    pub sweep: bool,
    pub trace: bool,
    pub explain: bool,
    /// The closed-loop model, when the scenario is one (`scenario` is then its outline).
    pub closed_loop: Option<closed_loop::ClosedLoop>,
}

/// A finished simulation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: Run,
    pub summary: Summary,
    /// Wall time of the main run (without the sweep).
    pub wall: Duration,
    /// The closed loop's rows and totals, when the scenario is one.
    pub closed: Option<closed_loop::LoopRun>,
}

impl TryFrom<SimulateArgs> for Simulation {
    type Error = SimulateError;

    fn try_from(args: SimulateArgs) -> Result<Self, SimulateError> {
        // Every refused option at once, the engine's with simulate's own.
        let mut errors = OptionErrors::default();
        let config = errors.check(ServeConfig::for_engine(args.serve.clone()));
        check_timing(&args, &mut errors);
        let drain = config
            .as_ref()
            .and_then(|config| check_against_engine(&args, config, &mut errors));
        let (Some(config), Some(drain)) = (config, drain) else {
            return Err(errors.into());
        };
        errors.into_result()?;
        let capacity = config.store_capacity;
        let step = args.step;
        let poll_interval = args.serve.pull.pull_interval;
        let refresh = args.serve.pods.replicas_refresh;
        let demand = args.worker_demand;
        let autoscale = config.autoscale;
        let initial_replicas = args
            .initial_replicas
            .unwrap_or(autoscale.hpa_min_replicas());
        // A closed-loop scenario file is a JSON object with `pod_throughput`.
        let closed_loop = match (&args.scenario_file, args.scenario) {
            (Some(path), _) if is_closed_loop_file(path) => {
                Some(closed_loop::ClosedLoop::from_file(path)?)
            }
            (None, Some(BuiltinScenario::ClosedLoop)) => Some(closed_loop::ClosedLoop::builtin()),
            _ => None,
        };
        let scenario = match (&closed_loop, &args.scenario_file) {
            (Some(model), _) => model.outline(),
            (None, Some(path)) => Scenario::from_file(path, capacity)?,
            (None, None) => Scenario::builtin(args.scenario.unwrap_or(BuiltinScenario::Matrix)),
        };
        scenario.validate(capacity)?;
        check_step_count(&args, &scenario)?;
        let pods = FleetSettings {
            providers: config.providers.clone(),
            feedback_provider: config.feedback_provider.clone(),
            refresh,
            shrink_hold: config.replicas_shrink_hold,
            drain,
            demand,
            rule: args.share_rule,
            fixed: args.serve.pods.replicas,
            budget: args.budget_mode,
            skew: args.demand_skew,
        };
        let settings = Settings {
            capacity,
            control: config.control,
            autoscale,
            store_events: args.store_events,
            poll_interval,
            scrape_interval: args.scrape_interval,
            scrape_offset: args.scrape_offset,
            hpa_offset: args.hpa_offset,
            startup_delay: args.startup_delay,
            initial_replicas,
            step,
            seed: args.seed,
            pods,
        };
        Ok(Simulation {
            scenario,
            settings,
            format: args.format,
            plot: args.plot,
            sweep: args.sweep,
            trace: args.trace,
            explain: args.explain,
            closed_loop,
        })
    }
}

/// Simulate's own timing options, each checked on its own.
fn check_timing(args: &SimulateArgs, errors: &mut OptionErrors) {
    let step = args.step;
    let divides = step.as_nanos() > 0 && 1_000_000_000 % step.as_nanos() == 0;
    if step < Duration::from_millis(1) || step > Duration::from_secs(1) || !divides {
        errors.refuse(
            "step",
            "must be 1ms to 1s and divide a second (e.g. 1s, 100ms)",
        );
    }
    if args.scrape_interval < Duration::from_secs(1) {
        errors.refuse("scrape-interval", "must be at least 1s");
    }
    if args.scrape_offset >= args.scrape_interval {
        errors.refuse("scrape-offset", "must be shorter than --scrape-interval");
    }
    if args.hpa_offset >= DEFAULT_SYNC_PERIOD {
        errors.refuse(
            "hpa-offset",
            "must be shorter than the HPA's 15s sync period",
        );
    }
    if args.startup_delay > Duration::from_secs(3600) {
        errors.refuse("startup-delay", "must be at most 1h");
    }
    let refresh = args.serve.pods.replicas_refresh;
    if refresh < Duration::from_millis(100) || refresh > Duration::from_secs(3600) {
        errors.refuse("replicas-refresh", "must be 100ms to 1h");
    }
    let demand = args.worker_demand;
    if !(demand.is_finite() && demand > 0.0 && demand <= 1000.0) {
        errors.refuse(
            "worker-demand",
            format!("must be a multiple of the base rate in (0, 1000], got {demand}"),
        );
    }
}

/// The options checked against the engine's valid configuration; returns
/// the pods' drain delay (a removed pod keeps serving, and granting, for it,
/// as exported), or None when it is refused.
fn check_against_engine(
    args: &SimulateArgs,
    config: &ServeConfig,
    errors: &mut OptionErrors,
) -> Option<Duration> {
    let poll_interval = args.serve.pull.pull_interval;
    if args.store_events == StoreEvents::Depth
        && (poll_interval.is_zero() || poll_interval >= config.control.pull_ttl)
    {
        errors.refuse("pull-interval", "must be > 0 and shorter than --pull-ttl");
    }
    let initial_replicas = args
        .initial_replicas
        .unwrap_or(config.autoscale.hpa_min_replicas());
    if initial_replicas > config.autoscale.max_replicas {
        errors.refuse("initial-replicas", "must be at most --max-replicas");
    }
    let drain = match config.drain_delay {
        Duration::ZERO => crate::export::POD_DRAIN_DELAY,
        drain => drain,
    };
    if drain > Duration::from_secs(3600) {
        errors.refuse("drain-delay", "must be at most 1h");
        return None;
    }
    Some(drain)
}

/// The run (and the sweep, if asked) must stay within what one run may take.
fn check_step_count(args: &SimulateArgs, scenario: &Scenario) -> Result<(), OptionErrors> {
    let mut errors = OptionErrors::default();
    let steps = scenario.duration().as_secs() * (1_000_000_000 / args.step.as_nanos()) as u64;
    if steps > model::MAX_STEPS {
        errors.refuse(
            "step",
            format!(
                "{steps} steps is more than {}: use a coarser step",
                model::MAX_STEPS
            ),
        );
    }
    let sweep_steps = steps * args.scrape_interval.as_secs() * DEFAULT_SYNC_PERIOD.as_secs();
    if args.sweep && sweep_steps > MAX_SWEEP_STEPS {
        errors.refuse(
            "sweep",
            format!(
                "would take {sweep_steps} steps (at most {MAX_SWEEP_STEPS}): shorten the scenario or coarsen --step"
            ),
        );
    }
    errors.into_result()
}

impl Simulation {
    /// Runs the scenario (and the sweep, if asked) and writes the plot, if asked.
    pub fn run(&self) -> Result<Outcome, SimulateError> {
        let started = Instant::now();
        let closed = match &self.closed_loop {
            Some(model) => Some(closed_loop::simulate(model, &self.settings)?),
            None => None,
        };
        let run = match &closed {
            Some(closed) => closed.run.clone(),
            None => model::simulate(&self.scenario, &self.settings)?,
        };
        let wall = started.elapsed();
        let mut summary = report::summarize(&self.scenario, &run, &self.settings);
        if self.sweep {
            summary.sweep = Some(self.sweep()?);
        }
        if self.trace {
            summary.trace = Some(run.trace.clone());
        }
        if let Some(path) = &self.plot {
            plot::write(path, &run, &summary, &self.settings)?;
        }
        Ok(Outcome {
            run,
            summary,
            wall,
            closed,
        })
    }

    /// Every whole-second scrape offset against every HPA sync offset.
    fn sweep(&self) -> Result<report::Sweep, SimulateError> {
        let mut ups = Vec::new();
        let mut downs = Vec::new();
        let mut spec_matches = 0;
        for scrape in 0..self.settings.scrape_interval.as_secs() {
            for hpa in 0..DEFAULT_SYNC_PERIOD.as_secs() {
                let settings = Settings {
                    scrape_offset: Duration::from_secs(scrape),
                    hpa_offset: Duration::from_secs(hpa),
                    ..self.settings.clone()
                };
                let run = model::simulate(&self.scenario, &settings)?;
                let summary = report::summarize(&self.scenario, &run, &settings);
                ups.push(summary.scale_up_seconds);
                downs.push(summary.scale_down_seconds);
                spec_matches += u32::from(summary.spec.is_some_and(|v| v.matches));
            }
        }
        let range = |values: &[Option<u64>]| report::Range {
            min: values.iter().flatten().min().copied(),
            max: values.iter().flatten().max().copied(),
            missing: values.iter().filter(|v| v.is_none()).count() as u32,
        };
        Ok(report::Sweep {
            runs: ups.len() as u32,
            scale_up_seconds: range(&ups),
            scale_down_seconds: range(&downs),
            spec_matches,
        })
    }

    /// The output text in the chosen format.
    pub fn render(&self, outcome: &Outcome) -> String {
        if let (Some(model), Some(closed)) = (&self.closed_loop, &outcome.closed) {
            return match self.format {
                Format::Table => {
                    output::table(&outcome.summary, outcome.wall)
                        + &closed_loop::table(&closed.totals)
                }
                Format::Json => closed_loop::json(&outcome.summary, &closed.totals),
                Format::Csv => closed_loop::csv(model, closed),
            };
        }
        let text = match self.format {
            Format::Table => output::table(&outcome.summary, outcome.wall),
            Format::Json => output::json(&outcome.summary),
            Format::Csv if self.trace => output::trace_csv(&outcome.run.trace),
            Format::Csv => output::csv(&self.scenario, &outcome.run),
        };
        if self.explain && self.format == Format::Table {
            format!("{text}\n{}", output::explain(&outcome.run.trace))
        } else {
            text
        }
    }
}

impl Scenario {
    /// The builtin scenario `kind`; the closed loop as its outline (names and
    /// durations), its depth coming from its model. Here rather than in
    /// `scenario`, which the closed loop's model builds on.
    pub fn builtin(kind: BuiltinScenario) -> Scenario {
        Scenario::open_loop(kind).unwrap_or_else(|| closed_loop::ClosedLoop::builtin().outline())
    }
}

/// Whether the file is a JSON object naming `pod_throughput` (a closed loop);
/// anything else is read, and refused if need be, as an open-loop file.
fn is_closed_loop_file(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|value| value.get("pod_throughput").is_some())
    })
}

/// Runs `mdp simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let text = if args.scenario == Some(BuiltinScenario::Pacing) {
        pacing::render(&args)?
    } else {
        let simulation = Simulation::try_from(args)?;
        let outcome = simulation.run()?;
        simulation.render(&outcome)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `mdp simulate --format csv | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests;
