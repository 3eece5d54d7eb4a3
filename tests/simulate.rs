//! `mdp simulate` through the real binary: the JSON shape, CSV and table output,
//! the SVG plot, scenario files and their refusal.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn mdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mdp"))
        .arg("simulate")
        .args(args)
        .env_remove("MDP_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(args: &[&str]) -> String {
    let out = mdp(args);
    assert!(
        out.status.success(),
        "mdp simulate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout(args)).expect("one JSON object")
}

/// A file in a fresh directory of the test's own.
fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mdp-sim-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn matrix_json_has_the_promised_shape() {
    let value = json(&["--scenario", "matrix", "--format", "json"]);
    let phases = value["phases"].as_array().expect("phases list");
    let names: Vec<_> = phases.iter().map(|p| p["name"].as_str()).collect();
    let expected = ["idle", "moderate", "high", "overload", "recovery"];
    assert_eq!(names, expected.map(Some));
    for phase in phases {
        assert!(phase["queue_depth"].is_u64(), "{phase}");
        assert!(["ok", "soft", "hard"].contains(&phase["level"].as_str().unwrap_or("")));
        let scale = phase["scale"].as_f64().expect("scale is a number");
        assert!((0.0..=1.0).contains(&scale));
        let max = phase["replicas_max"].as_u64().expect("replicas_max");
        let end = phase["replicas_end"].as_u64().expect("replicas_end");
        assert!(end <= max && max <= 10, "{phase}");
    }
    let levels: Vec<_> = phases.iter().map(|p| p["level"].as_str()).collect();
    assert_eq!(levels, ["ok", "soft", "soft", "hard", "ok"].map(Some));
    let up = value["scale_up_seconds"]
        .as_u64()
        .expect("scale_up_seconds");
    let down = value["scale_down_seconds"]
        .as_u64()
        .expect("scale_down_seconds");
    assert!(
        (15..=45).contains(&up) && (60..=90).contains(&down),
        "{up} {down}"
    );
    assert_eq!(value["spec"]["matches"], true);
    // Issue 6: the pods' grants summed per provider, against its budget.
    let grants = &value["grants"][0];
    assert_eq!(grants["provider"], "ibkr");
    assert_eq!(grants["budget_per_s"], 60.0);
    assert_eq!(grants["exceeded"], false);
    let worst = grants["worst_overshoot_tokens"].as_f64().expect("a number");
    assert!(worst <= 0.0, "{grants}");
    assert!(grants["worst_overshoot_percent"].is_f64());
    assert!(grants["at_seconds"].as_u64() < Some(600));
    let windows = grants["windows"].as_array().expect("windows");
    let lengths: Vec<_> = windows
        .iter()
        .map(|w| w["window_seconds"].as_u64())
        .collect();
    assert_eq!(lengths, [Some(1), Some(10), Some(60)]);
    assert_eq!(value["settings"]["share_rule"], "conservative");
    assert_eq!(value["settings"]["drain_delay_seconds"], 5.0);
}

#[test]
fn an_unsafe_share_rule_shows_its_overshoot_in_every_format() {
    let value = json(&["--share-rule", "naive", "--format", "json"]);
    let grants = &value["grants"][0];
    assert_eq!(grants["exceeded"], true);
    assert!(
        grants["worst_overshoot_tokens"].as_f64() >= Some(100.0),
        "{grants}"
    );
    assert_eq!(grants["phase"], "moderate");
    let table = stdout(&["--share-rule", "naive"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("pods' grants, ibkr"))
        .expect("a grants line");
    assert!(
        line.contains("OVER BUDGET by") && line.ends_with("MISS"),
        "{line}"
    );
    let refused = mdp(&["--share-rule", "naive", "--replicas", "2"]);
    assert_eq!(refused.status.code(), Some(2), "a fixed share has no rule");
}

#[test]
fn options_also_come_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["simulate"])
        .env("MDP_SIM_FORMAT", "json")
        .env("MDP_SIM_SCENARIO", "seed")
        .env("MDP_SIM_STARTUP_DELAY", "20s")
        .output()
        .expect("runs");
    let value: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(value["scenario"], "seed");
    assert_eq!(value["settings"]["startup_delay_seconds"], 20.0);
}

#[test]
fn csv_has_one_row_per_simulated_second() {
    let text = stdout(&["--format", "csv"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "t,phase,depth,level,scale,desired,ready,prometheus_depth,draining,granted_ibkr,budget_ibkr"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 600);
    for (second, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 11, "{row:?}");
        let granted: f64 = row[9].parse().expect("tokens granted");
        let budget: f64 = row[10].parse().expect("budget accrued");
        let scale: f64 = row[4].parse().expect("scale");
        assert!((budget - 60.0 * scale).abs() < 1e-3, "{row:?}");
        // A second may also spend the burst (100 x scale) saved before it.
        assert!(granted <= budget + 100.0 * scale + 1e-3, "{row:?}");
        assert_eq!(row[0], second.to_string());
        let ready: u32 = row[6].parse().expect("ready count");
        let desired: u32 = row[5].parse().expect("desired count");
        assert!(ready <= desired && (1..=10).contains(&desired), "{row:?}");
    }
    assert_eq!(rows[30][1..4], ["idle", "500", "ok"]);
    assert_eq!(rows[400][1..5], ["overload", "9500", "hard", "0.000"]);
    assert_eq!(rows[599][5..7], ["1", "1"]);
}

#[test]
fn table_is_aligned_and_ends_with_the_verdict() {
    let text = stdout(&[]);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("phase "))
        .expect("a header row");
    let rows = &lines[header + 1..header + 6];
    // Right-aligned number columns end at the header's column ends.
    let depth_end = lines[header].find("depth").expect("depth column") + "depth".len();
    for row in rows {
        let before = row[..depth_end].trim_end();
        assert!(before.ends_with(char::is_numeric), "{row}");
        assert!(row.ends_with("ok"), "{row}");
    }
    assert!(text.contains("scale-up       25 s"), "{text}");
    let grants = lines
        .iter()
        .find(|l| l.starts_with("pods' grants, ibkr"))
        .expect("a grants line");
    assert!(
        grants.contains("never over budget") && grants.ends_with("ok"),
        "{grants}"
    );
    let verdict = lines.last().expect("output");
    assert!(
        verdict.starts_with("verdict: matches the replica matrix"),
        "{verdict}"
    );
}

#[test]
fn plot_writes_a_well_formed_svg() {
    let path = scratch("plot", "matrix.svg");
    let shown = path.to_str().expect("utf-8 temp path");
    stdout(&["--plot", shown, "--format", "json"]);
    let svg = std::fs::read_to_string(&path).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert_balanced(&svg);
    for text in [
        "queue depth (messages)",
        "rate scale",
        "pods",
        "SOFT at 5000",
        "scale-up 25 s",
        "ibkr tokens/s",
        "tokens granted per second, summed over all pods",
        "never over budget",
    ] {
        assert!(svg.contains(text), "missing {text:?}");
    }
    let unwritable = mdp(&["--plot", "/nonexistent-dir/x.svg"]);
    assert_eq!(unwritable.status.code(), Some(2));
    let error = String::from_utf8_lossy(&unwritable.stderr);
    assert!(
        error.starts_with("mdp: cannot write --plot /nonexistent-dir/x.svg"),
        "{error}"
    );
}

/// Every element opened is closed, in order (enough to catch a truncated or
/// interleaved document; the SVG backend emits no comments or CDATA).
fn assert_balanced(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("tag closes") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "unbalanced </{name}>");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            open.push(tag.split_whitespace().next().unwrap_or(""));
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed {open:?}");
}

#[test]
fn a_scenario_file_round_trips_the_matrix() {
    let path = scratch("roundtrip", "matrix.json");
    let file = r#"[
        {"name": "idle", "duration": "1m", "depth": 500},
        {"name": "moderate", "duration": 120, "depth": 6000},
        {"name": "high", "duration": "2m", "depth": 8500},
        {"name": "overload", "duration": "2m", "depth": 9500},
        {"name": "recovery", "duration": "3m", "depth": 800}
    ]"#;
    std::fs::write(&path, file).expect("scenario written");
    let shown = path.to_str().expect("utf-8 temp path");
    let mut from_file = json(&["--scenario-file", shown, "--format", "json"]);
    let builtin = json(&["--scenario", "matrix", "--format", "json"]);
    assert_eq!(
        from_file["scenario"], "matrix",
        "named after the file's stem"
    );
    from_file["scenario"] = builtin["scenario"].clone();
    assert_eq!(from_file, builtin);
}

#[test]
fn a_scenario_file_with_ramps_levels_and_an_outage_runs() {
    let path = scratch("custom", "storm.json");
    let file = r#"{"phases": [
        {"name": "warm", "duration": 30, "depth": 100},
        {"name": "surge", "duration": "2m", "depth": [100, 9800], "jitter": 100},
        {"name": "dark", "duration": "2m", "depth": 9800, "level": "hard", "prometheus": "down"},
        {"name": "drain", "duration": "3m", "depth": [9800, 200]},
        {"name": "calm", "duration": "2m", "depth": 200}
    ]}"#;
    std::fs::write(&path, file).expect("scenario written");
    let shown = path.to_str().expect("utf-8 temp path");
    let value = json(&["--scenario-file", shown, "--format", "json"]);
    assert_eq!(value["duration_seconds"], 570);
    assert_eq!(value["phases"][2]["level"], "hard");
    assert!(
        value["spec"].is_null(),
        "no replica-matrix names, no verdict"
    );
    // Prometheus is dark, the fallback keeps the pods (currentReplicasIfHigher).
    assert!(value["phases"][2]["replicas_end"].as_u64() >= Some(6));
    // The drain passes 2000 at 146 s of 180: the 60 s window still holds pods.
    assert!(value["phases"][3]["replicas_end"].as_u64() > Some(1));
    assert_eq!(value["phases"][4]["replicas_end"], 1);
    // No phase named recovery: the scale-down clock starts at the fall below 2000.
    assert_eq!(value["scale_down_from"], 30 + 120 + 120 + 147);
    let table = stdout(&["--scenario-file", shown]);
    assert!(
        table.contains("verdict: no phase to compare with the replica matrix"),
        "{table}"
    );
}

#[test]
fn every_invalid_option_is_named_at_once_on_one_line() {
    let out = mdp(&[
        "--scale-soft",
        "2",
        "--step",
        "3ms",
        "--hpa-offset",
        "20s",
        "--worker-demand",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let error = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(error.lines().count(), 1, "{error}");
    let refused: Vec<&str> = error
        .trim_end()
        .strip_prefix("mdp: ")
        .expect("prefixed")
        .split("; ")
        .map(|part| part.split(':').next().unwrap_or(part))
        .collect();
    assert_eq!(
        refused,
        [
            "invalid --scale-soft",
            "invalid --step",
            "invalid --hpa-offset",
            "invalid --worker-demand"
        ],
        "{error}"
    );
    // Options checked against the engine's settings join the others.
    let out = mdp(&[
        "--initial-replicas",
        "50",
        "--drain-delay",
        "2h",
        "--step",
        "7ms",
    ]);
    let error = String::from_utf8(out.stderr).expect("utf-8");
    for option in ["--step", "--initial-replicas", "--drain-delay"] {
        assert!(error.contains(&format!("invalid {option}:")), "{error}");
    }
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[test]
fn a_bad_scenario_file_is_refused_with_one_clear_line() {
    let path = scratch("bad", "bad.json");
    std::fs::write(
        &path,
        r#"[{"name": "a", "duration": "1m", "depth": 500},
            {"name": "b", "duration": "1m", "depth": 12000}]"#,
    )
    .expect("scenario written");
    let shown = path.to_str().expect("utf-8 temp path");
    let out = mdp(&["--scenario-file", shown]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let error = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(error.lines().count(), 1, "{error}");
    assert_eq!(
        error.trim_end(),
        format!(
            "mdp: invalid --scenario-file {shown}: phase 2 (\"b\"): depth 12000 must be within 0..=10000 (--store-capacity)"
        )
    );
}

// `--trace`: one row per HPA sync with what KEDA read, the failure count, each
// trigger's proposal, the max, the stabilized recommendation, the rate limit, the
// replicas and the reason; `--explain` prints the reason at each change.
#[test]
fn trace_explains_every_hpa_sync_in_csv_json_and_explain() {
    let csv = stdout(&["--scenario", "matrix", "--trace", "--format", "csv"]);
    let mut lines = csv.lines();
    let header = lines.next().expect("a header");
    assert!(header.starts_with("t,replicas_before,queue_depth_read,queue_depth_failures"));
    assert!(header.ends_with("max_proposal,stabilized,rate_limit,replicas,reason"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 600 / 15, "one row per 15 s sync");
    assert!(
        rows.iter()
            .any(|r| r.contains("held by the scale-down window: highest of the last 70 s is 10")),
        "the recovery is held by the window"
    );
    assert!(rows.iter().any(|r| r.contains("scale up 1 -> 4")), "{csv}");

    let value = json(&["--scenario", "matrix", "--trace", "--format", "json"]);
    let trace = value["trace"].as_array().expect("a trace list");
    assert_eq!(trace.len(), 40);
    let first = &trace[0];
    assert_eq!(first["triggers"][0]["name"], "queue_depth");
    assert_eq!(first["triggers"][0]["failures"], 0);
    assert_eq!(first["rate_limit"], "DesiredWithinRange");
    assert_eq!(value["settings"]["keda_version"], "2.20");
    assert_eq!(value["settings"]["k8s_version"], "1.33");

    let table = stdout(&["--scenario", "matrix", "--explain"]);
    assert!(table.contains("why the replica count changed"), "{table}");
    assert!(
        table.contains("scale up 4 -> 7: queue_depth asks for 7"),
        "{table}"
    );
}

// A dark Prometheus, traced: the failure count climbs on both KEDA loops since 2.19
// (two per 15 s), on the HPA's requests only before.
#[test]
fn trace_shows_the_fallback_counter_per_keda_release() {
    let dir = scratch("trace-fallback", "dark.json");
    std::fs::write(
        &dir,
        r#"[{"name": "idle", "duration": "90s", "depth": 500, "prometheus": "down"}]"#,
    )
    .expect("scenario written");
    let path = dir.to_string_lossy().into_owned();
    for (keda, failures_at_15s) in [("2.18", 2), ("2.20", 4)] {
        let value = json(&[
            "--scenario-file",
            &path,
            "--trace",
            "--format",
            "json",
            "--keda-version",
            keda,
        ]);
        let second = &value["trace"][1]["triggers"][0];
        assert_eq!(second["read"], "error", "KEDA {keda}");
        assert_eq!(second["failures"], failures_at_15s, "KEDA {keda}");
    }
}

#[test]
fn pods_hold_through_a_store_outage_under_load() {
    let run = json(&["--scenario", "store-outage", "--format", "json"]);
    let outages = run["outages"].as_array().expect("outages");
    assert_eq!(outages.len(), 1, "{run}");
    let outage = &outages[0];
    assert_eq!(outage["phase"], "store-down");
    let at_start = outage["pods_at_start"].as_u64().expect("pods at start");
    assert!(at_start >= 6, "under load before the outage: {outage}");
    assert_eq!(outage["pods_min"].as_u64(), Some(at_start), "{outage}");
    assert_eq!(outage["level_min"], outage["level_at_start"]);
    assert_eq!(outage["held"], true);
    let table = stdout(&["--scenario", "store-outage"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("store outage") && l.ends_with("held")),
        "{table}"
    );
    // While the store is down, Prometheus has no depth sample (an empty CSV field).
    let csv = stdout(&["--scenario", "store-outage", "--format", "csv"]);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let column = header
        .iter()
        .position(|c| *c == "prometheus_depth")
        .expect("prometheus_depth column");
    let phase = header
        .iter()
        .position(|c| *c == "phase")
        .expect("phase column");
    let blind = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[phase] == "store-down")
        .filter(|f| f[column].is_empty())
        .count();
    assert!(blind >= 150, "{blind} seconds without a depth sample");
}

#[test]
fn a_scenario_file_can_take_the_store_down() {
    let dir = std::env::temp_dir().join(format!("mdp-outage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("outage.json");
    std::fs::write(
        &path,
        r#"[{"name": "high", "duration": "3m", "depth": 8500},
            {"name": "dark store", "duration": "2m", "depth": 8500, "store": "down"},
            {"name": "recovery", "duration": "3m", "depth": 800}]"#,
    )
    .expect("write scenario");
    let run = json(&[
        "--scenario-file",
        path.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ]);
    assert_eq!(run["outages"][0]["phase"], "dark store");
    assert_eq!(run["outages"][0]["held"], true, "{}", run["outages"]);
    std::fs::write(
        &path,
        r#"[{"name": "x", "duration": 60, "depth": 1, "store": "gone"}]"#,
    )
    .expect("write");
    let refused = mdp(&["--scenario-file", path.to_str().expect("utf-8")]);
    assert_eq!(refused.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_pacing_scenario_judges_buckets_and_the_best_schedule_by_the_published_rules() {
    let report = json(&["--scenario", "pacing", "--format", "json"]);
    let schedules = report["schedules"].as_array().expect("schedules");
    let named = |name: &str| {
        schedules
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report}"))
    };
    assert!(named("plain_buckets")["violations_total"].as_u64() > Some(0));
    assert_eq!(named("best")["violations_total"], 0);
    assert_eq!(named("best")["unsent"], 0);
    let table = stdout(&["--scenario", "pacing"]);
    assert!(
        table.contains("more than 60 historical in 10 min"),
        "{table}"
    );
    let refused = mdp(&["--scenario", "pacing", "--format", "csv"]);
    assert_eq!(refused.status.code(), Some(2));
}
