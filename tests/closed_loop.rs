//! `mdp simulate --scenario closed-loop` through the real binary: the step
//! policy is driven into HARD, the proportional one pauses less, ingests at
//! least as much and changes level no more often; every item is accounted for.

use serde_json::Value;
use std::process::Command;

fn simulate(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .arg("simulate")
        .args(args)
        .env_remove("MDP_LOG")
        .env_remove("MDP_POLICY")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "mdp simulate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn number(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is a whole number in {value}"))
}

fn balanced(value: &Value) {
    assert_eq!(value["balanced"], true, "{value}");
    assert_eq!(
        number(value, "produced"),
        number(value, "written") + number(value, "queued") + number(value, "held"),
        "nothing lost"
    );
    assert!(number(value, "queue_peak") <= 10_000, "bounded queue");
}

#[test]
fn proportional_pauses_less_ingests_no_less_and_changes_level_no_more_often() {
    let run = |policy| {
        simulate(&[
            "--scenario",
            "closed-loop",
            "--policy",
            policy,
            "--format",
            "json",
        ])
    };
    let (step, proportional) = (run("step"), run("proportional"));
    for value in [&step, &proportional] {
        balanced(value);
        for key in ["ingested_items", "pod_seconds", "level_changes"] {
            assert!(number(value, key) > 0, "{key} in {value}");
        }
    }
    assert_eq!(step["policy"], "step");
    assert_eq!(proportional["policy"], "proportional");
    assert!(
        number(&step, "hard_seconds") > 0,
        "the step policy reaches HARD"
    );
    assert!(
        number(&proportional, "hard_seconds") < number(&step, "hard_seconds"),
        "pauses less: {} vs {}",
        proportional["hard_seconds"],
        step["hard_seconds"]
    );
    assert!(
        number(&proportional, "ingested_items") >= number(&step, "ingested_items"),
        "ingests at least as much: {} vs {}",
        proportional["ingested_items"],
        step["ingested_items"]
    );
    assert!(
        number(&proportional, "level_changes") <= number(&step, "level_changes"),
        "changes level no more often: {} vs {}",
        proportional["level_changes"],
        step["level_changes"]
    );
}

#[test]
fn a_closed_loop_file_runs_and_writes_csv_with_a_continuous_scale() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/closed-loop.json");
    let plot = std::env::temp_dir().join(format!("mdp-closed-loop-{}.svg", std::process::id()));
    let shown = plot.to_string_lossy().into_owned();
    let value = simulate(&[
        "--scenario-file",
        file,
        "--format",
        "json",
        "--plot",
        &shown,
    ]);
    let svg = std::fs::read_to_string(&plot).expect("the plot is written");
    assert!(
        svg.starts_with("<svg") && svg.contains("slowdown"),
        "an SVG naming the phases"
    );
    let _ = std::fs::remove_file(&plot);
    balanced(&value);
    assert_eq!(value["duration_seconds"], 560);
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args([
            "simulate",
            "--scenario-file",
            file,
            "--policy",
            "proportional",
            "--format",
            "csv",
        ])
        .output()
        .expect("the binary runs");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "t,phase,depth,level,scale,tokens,inflow_items,drained_items,held_items,desired,ready"
        )
    );
    let scales: Vec<f64> = lines
        .map(|l| l.split(',').nth(4).expect("scale").parse().expect("number"))
        .collect();
    assert_eq!(scales.len(), 560);
    assert!(
        scales.iter().any(|s| *s > 0.0 && *s < 1.0 && *s != 0.5),
        "the proportional scale takes values between the steps"
    );
}

#[test]
fn a_bad_closed_loop_file_is_refused_in_one_line() {
    let dir = std::env::temp_dir().join(format!("mdp-closed-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        r#"{"items_per_token": 16, "pod_throughput": 0, "phases": [{"name": "x", "duration": 5, "throughput": 1}]}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["simulate", "--scenario-file"])
        .arg(&path)
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pod_throughput"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
