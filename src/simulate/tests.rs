//! Tests of `mdp simulate`'s options, and of the default configuration against the replica matrix.

use super::*;
use crate::cli::{Cli, Command};
use crate::level::Level;
use clap::Parser;

fn parse(extra: &[&str]) -> Result<Simulation, SimulateError> {
    let mut argv = vec!["mdp", "simulate"];
    argv.extend_from_slice(extra);
    let Command::Simulate(args) = Cli::try_parse_from(argv).expect("parses").command else {
        panic!("simulate parsed as another command")
    };
    Simulation::try_from(args)
}

fn outcome(extra: &[&str]) -> Outcome {
    parse(extra)
        .expect("valid options")
        .run()
        .expect("the simulation runs")
}

// the replica matrix: the default configuration (the flags `serve` and `export` share)
// on the matrix gives idle 1, moderate 3-5, high 6-8, overload 8-10, recovery 1 pods,
// scale-up within 15-45 s and scale-down within 60-90 s.
#[test]
fn default_configuration_reproduces_the_spec_matrix() {
    let summary = outcome(&[]).summary;
    assert_eq!(summary.scenario, "matrix");
    let verdict = summary
        .spec
        .expect("matrix phases carry replica-matrix names");
    let misses: Vec<_> = verdict.checks.iter().filter(|c| !c.ok).collect();
    assert!(misses.is_empty(), "{misses:?}");
    let pods: Vec<_> = summary.phases.iter().map(|p| p.replicas_end).collect();
    assert_eq!(pods, [1, 4, 7, 10, 1]);
    let up = summary.scale_up_seconds.expect("scales up");
    let down = summary.scale_down_seconds.expect("scales down");
    assert!((15..=45).contains(&up), "scale-up {up} s");
    assert!((60..=90).contains(&down), "scale-down {down} s");
}

#[test]
fn the_seed_scenarios_reach_their_levels_and_scales() {
    let summary = outcome(&["--scenario", "seed"]).summary;
    let rows: Vec<_> = summary
        .phases
        .iter()
        .map(|p| (p.name.as_str(), p.queue_depth, p.level, p.scale))
        .collect();
    assert_eq!(
        rows,
        [
            ("normal", 500, Level::Ok, 1.0),
            ("moderate", 6000, Level::Soft, 0.5),
            ("overload", 9500, Level::Hard, 0.0),
            ("recovery", 800, Level::Ok, 1.0),
        ]
    );
    assert!(summary.spec.is_some_and(|v| v.matches));
}

// Whatever the phase of Prometheus' scrapes and of the HPA's syncs relative to the
// load, the scale-up stays within the matrix's 45 s: the metric is at most one scrape old,
// the HPA at most one sync late, and pods start in 10 s.
#[test]
fn scale_up_stays_within_45_s_at_every_alignment() {
    let sweep = outcome(&["--sweep"]).summary.sweep.expect("swept");
    assert_eq!(sweep.runs, 225);
    let up = sweep.scale_up_seconds;
    assert_eq!(up.missing, 0);
    assert!(up.max.is_some_and(|s| s <= 45), "{up:?}");
}

// The proposal of the report: with a 70 s scale-down window no alignment scales in
// before the matrix's 60 s, and none later than 90 s plus mdp's own relax hold (3 s) that
// keeps the HARD gauge up after the drain. (With the 60 s default the range is 48-76 s.)
#[test]
fn a_70_s_scale_down_window_lands_every_alignment_near_60_to_90_s() {
    let sweep = outcome(&["--sweep", "--scale-down-window", "70s"])
        .summary
        .sweep
        .expect("swept");
    let down = sweep.scale_down_seconds;
    assert_eq!(down.missing, 0);
    assert!(down.min.is_some_and(|s| s >= 60), "{down:?}");
    assert!(down.max.is_some_and(|s| s <= 93), "{down:?}");
}

// A store that only pushes its level changes never tells mdp how deep the queue got
// after passing its low watermark, so the queue-depth trigger cannot see "high".
#[test]
fn level_events_alone_hide_the_depth_from_the_queue_trigger() {
    let summary = outcome(&["--store-events", "levels"]).summary;
    let high = summary
        .phases
        .iter()
        .find(|p| p.name == "high")
        .expect("matrix has a high phase");
    assert_eq!(high.replicas_end, 4, "depth stuck at the SOFT event's 6000");
    let overload = &summary.phases[3];
    assert_eq!((overload.level, overload.replicas_end), (Level::Hard, 10));
    assert!(summary.spec.is_some_and(|v| !v.matches));
}

#[test]
fn a_longer_pod_start_up_delays_the_scale_up_by_as_much() {
    let fast = outcome(&[]).summary.scale_up_seconds.expect("scales up");
    let slow = outcome(&["--startup-delay", "30s"])
        .summary
        .scale_up_seconds
        .expect("scales up");
    assert_eq!(slow, fast + 20);
}

#[test]
fn a_finer_step_keeps_one_sample_per_second_and_the_verdict() {
    let outcome = outcome(&["--step", "100ms"]);
    assert_eq!(outcome.run.samples.len(), 600);
    assert!(outcome.summary.spec.is_some_and(|v| v.matches));
}

#[test]
fn nonsense_is_refused_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--step", "3ms"], "invalid --step:"),
        (&["--step", "2s"], "invalid --step:"),
        (
            &["--scrape-interval", "500ms"],
            "invalid --scrape-interval:",
        ),
        (&["--scrape-offset", "15s"], "invalid --scrape-offset:"),
        (&["--hpa-offset", "15s"], "invalid --hpa-offset:"),
        (&["--startup-delay", "2h"], "invalid --startup-delay:"),
        (&["--pull-interval", "30s"], "invalid --pull-interval:"),
        (&["--initial-replicas", "11"], "invalid --initial-replicas:"),
        (&["--soft-watermark", "0.95"], "invalid --soft-watermark:"),
        (&["--worker-demand", "0"], "invalid --worker-demand:"),
        (&["--worker-demand", "NaN"], "invalid --worker-demand:"),
        (
            &["--replicas-refresh", "10ms"],
            "invalid --replicas-refresh:",
        ),
        (&["--drain-delay", "2h"], "invalid --drain-delay:"),
        (
            &["--min-replicas", "5", "--max-replicas", "2"],
            "invalid --max-replicas:",
        ),
        (
            &["--scenario-file", "/nonexistent.json"],
            "invalid --scenario-file",
        ),
    ];
    for (args, prefix) in cases {
        let error = parse(args).expect_err("must be refused").to_string();
        assert!(error.starts_with(prefix), "{args:?}: {error}");
        assert!(!error.contains('\n'), "{args:?}: {error}");
    }
}

#[test]
fn a_scenario_and_a_scenario_file_conflict() {
    let result = Cli::try_parse_from([
        "mdp",
        "simulate",
        "--scenario",
        "seed",
        "--scenario-file",
        "x.json",
    ]);
    assert!(result.is_err());
}

#[test]
fn formats_render_what_they_promise() {
    let simulation = parse(&["--scenario", "seed"]).expect("valid");
    let outcome = simulation.run().expect("runs");
    let csv = output::csv(&simulation.scenario, &outcome.run);
    assert_eq!(csv.lines().count(), 481);
    assert!(csv.starts_with("t,phase,depth,level,scale,desired,ready,"));
    let table = output::table(&outcome.summary, outcome.wall);
    assert!(
        table.contains("verdict: matches the replica matrix"),
        "{table}"
    );
    assert!(table.contains("pods' grants, ibkr: budget 60/s"), "{table}");
}

/// The documented allowance of the newcomer rule (src/replicas.rs) for one window:
/// each pod first listed within one refresh before the window or during it may add
/// its share 1/max_replicas of a burst and of one refresh interval's rate.
fn newcomer_allowance(
    run: &Run,
    settings: &Settings,
    track: usize,
    start: u64,
    length: u64,
) -> f64 {
    let t = &run.grants.providers[track];
    let refresh = settings.pods.refresh.as_secs_f64();
    let (from, to) = (
        (start as f64 - refresh).max(0.0).floor() as usize,
        (start + length) as usize,
    );
    let newcomers: u32 = run.grants.newcomers[from..to].iter().sum();
    let scale_max = t.scale_max[start as usize..to]
        .iter()
        .copied()
        .fold(0.0, f64::max);
    f64::from(newcomers) * (t.burst + t.rate * refresh) * scale_max
        / f64::from(settings.autoscale.max_replicas)
}

/// The largest excess over budget (tokens) of any window, and the largest excess
/// beyond the newcomer allowance.
fn excesses(extra: &[&str]) -> (f64, f64) {
    let simulation = parse(extra).expect("valid options");
    let outcome = simulation.run().expect("runs");
    let (mut over, mut beyond) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (index, track) in outcome.run.grants.providers.iter().enumerate() {
        for length in budget::WINDOWS {
            for (start, granted, budget) in budget::windows(track, length) {
                if budget <= 0.0 {
                    continue;
                }
                let allowance =
                    newcomer_allowance(&outcome.run, &simulation.settings, index, start, length);
                over = over.max(granted - budget);
                beyond = beyond.max(granted - budget - allowance);
            }
        }
    }
    (over, beyond)
}

// Issue 6: the matrix with every pod granting its share, summed. Under mdp's rule the
// provider's budget is never exceeded, in any 1, 10 or 60 s window, and the closest
// window is reported.
#[test]
fn the_matrix_never_exceeds_the_provider_budget() {
    let outcome = outcome(&[]);
    let [grants] = outcome.summary.grants.as_slice() else {
        panic!("one provider by default")
    };
    assert_eq!(
        (grants.provider.as_str(), grants.budget_per_s),
        ("ibkr", 60.0)
    );
    assert!(!grants.exceeded, "{grants:?}");
    assert!(grants.worst_overshoot_tokens <= 0.0, "{grants:?}");
    let lengths: Vec<_> = grants.windows.iter().map(|w| w.window_seconds).collect();
    assert_eq!(lengths, budget::WINDOWS);
    assert!(grants.windows.iter().all(|w| w.granted <= w.budget));
    // Limiters bind: the pods hand out nearly all the budget, never the demand.
    assert!(
        grants.granted_total > 0.9 * grants.budget_total,
        "{grants:?}"
    );
    assert!(grants.worst_overshoot_percent > -5.0, "{grants:?}");
    let (over, _) = excesses(&[]);
    assert!(over <= 1e-9, "{over}");
}

// The bound of the newcomer rule: a pod not yet seen by its peers adds at most its
// share 1/max_replicas of a burst and of one refresh interval's rate. With workers
// asking 20x the budget every pod saturates and small overshoots appear (up to about
// 9 tokens in a 10 s window at 100 ms steps); none goes beyond that allowance, at any
// pod phase, step or HPA alignment tried. At the default demand none appears at all.
#[test]
fn overshoot_stays_within_the_newcomer_allowance() {
    let mut worst = f64::NEG_INFINITY;
    for demand in ["1.5", "20"] {
        for step in ["1s", "100ms"] {
            for seed in 1..=8 {
                for hpa in ["0s", "7s"] {
                    let seed = seed.to_string();
                    let args = [
                        "--worker-demand",
                        demand,
                        "--step",
                        step,
                        "--seed",
                        &seed,
                        "--hpa-offset",
                        hpa,
                    ];
                    let (over, beyond) = excesses(&args);
                    assert!(beyond <= 1e-6, "{args:?}: {beyond} beyond the allowance");
                    if demand == "1.5" {
                        assert!(over <= 1e-9, "{args:?}: {over} over the budget");
                    }
                    worst = worst.max(over);
                }
            }
        }
    }
    // One newcomer's allowance in SOFT: (100 + 60 x 5) x 0.5 / 10 = 20 tokens.
    assert!(worst <= 20.0, "{worst}");
    // A small burst, a provider feedback does not scale, saturating workers.
    let providers = [
        "--provider",
        "small=10/s,burst=5",
        "--provider",
        "big=100/s",
        "--feedback-provider",
        "big",
        "--worker-demand",
        "20",
    ];
    for step in ["1s", "10ms"] {
        let (_, beyond) = excesses(&[&providers[..], &["--step", step]].concat());
        assert!(beyond <= 1e-6, "{step}: {beyond} beyond the allowance");
    }
}

// The check can fail: with a naive 1/observed share (no newcomer assumption, no
// hold) the three pods added at once in the moderate phase each saw only the old pod
// before they were ready, and grant half the budget each until their next lookup.
#[test]
fn a_naive_share_overshoots_and_the_worst_window_is_reported() {
    let grants = &outcome(&["--share-rule", "naive"]).summary.grants[0];
    assert!(grants.exceeded);
    assert_eq!(
        (grants.window_seconds, grants.phase.as_str()),
        (10, "moderate")
    );
    assert!((75..=90).contains(&grants.at_seconds), "{grants:?}");
    assert!(grants.worst_overshoot_tokens >= 100.0, "{grants:?}");
    assert!(grants.worst_overshoot_percent >= 30.0, "{grants:?}");
    // Without replica awareness every pod grants the whole budget: the workers'
    // demand (1.5x) is all that limits the sum.
    let unaware = &outcome(&["--replicas", "1"]).summary.grants[0];
    let minute = unaware.windows.iter().find(|w| w.window_seconds == 60);
    assert!(
        minute.is_some_and(|w| w.granted >= 1.5 * 60.0 * 60.0 - 1e-6),
        "{unaware:?}"
    );
    assert!(unaware.worst_overshoot_percent > 150.0, "{unaware:?}");
}

// The shrink hold is what covers a terminating pod that still serves: a drain longer
// than the hold (plus a refresh) lets the survivors take the whole budget while the
// drained pods still grant theirs.
#[test]
fn a_drain_longer_than_the_shrink_hold_overshoots() {
    let saturated = ["--worker-demand", "20", "--drain-delay", "30s"];
    let grants = &outcome(&saturated).summary.grants[0];
    assert!(grants.exceeded, "{grants:?}");
    assert_eq!(grants.phase, "recovery");
    let held = &outcome(&[&saturated[..], &["--replicas-shrink-hold", "30s"]].concat())
        .summary
        .grants[0];
    assert!(!held.exceeded, "{held:?}");
}
