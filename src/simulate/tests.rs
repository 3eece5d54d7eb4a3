//! Tests of `mdp simulate`'s options, and of the default configuration against SPEC 8.

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

// SPEC section 8: the default configuration (the flags `serve` and `export` share)
// on the matrix gives idle 1, moderate 3-5, high 6-8, overload 8-10, recovery 1 pods,
// scale-up within 15-45 s and scale-down within 60-90 s.
#[test]
fn default_configuration_reproduces_the_spec_matrix() {
    let summary = outcome(&[]).summary;
    assert_eq!(summary.scenario, "matrix");
    let verdict = summary.spec.expect("matrix phases carry SPEC names");
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
// load, the scale-up stays within SPEC's 45 s: the metric is at most one scrape old,
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
// before SPEC's 60 s, and none later than 90 s plus mdp's own relax hold (3 s) that
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
    let csv = output::csv(&simulation.scenario, &outcome.run.samples);
    assert_eq!(csv.lines().count(), 481);
    assert!(csv.starts_with("t,phase,depth,level,scale,desired,ready,"));
    let table = output::table(&outcome.summary, outcome.wall);
    assert!(table.contains("verdict: matches SPEC section 8"), "{table}");
}
