//! `mdp demo` at high speed: all three levels appear on /metrics and the
//! item accounting balances on exit.

mod common;

use common::{MdpProcess, sample};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test]
async fn demo_walks_through_every_level_and_loses_nothing() {
    let mut demo = MdpProcess::spawn_with_stdout(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "10",
            "--cycles",
            "1",
            "--relax-after",
            "500ms",
        ],
        &[],
    );
    let http = reqwest::Client::new();
    let mut states = BTreeSet::new();
    let mut depths = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        let Ok(response) = http.get(demo.url("/metrics")).send().await else {
            break; // the demo finished its cycle and closed its listener
        };
        let Ok(text) = response.text().await else {
            break;
        };
        if let Some(state) = sample(&text, "pipeline_backpressure_state{provider=\"ibkr\"}") {
            states.insert(state as u8);
        }
        if let Some(depth) = sample(
            &text,
            "pipeline_feedback_queue_depth{source=\"store_coordinator\"}",
        ) {
            depths.push(depth);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states, BTreeSet::from([0, 1, 2]), "levels seen on /metrics");
    let peak = depths.iter().copied().fold(0.0, f64::max);
    assert!((9000.0..=10_000.0).contains(&peak), "overload peak {peak}");
    let status = demo
        .wait_exit(Duration::from_secs(20))
        .expect("demo ends after one cycle");
    assert!(status.success(), "{status:?}");
    let stdout = demo.stdout_text();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("items: produced"))
        .unwrap_or_else(|| panic!("no accounting line in {stdout}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [produced, written, queued, held] = numbers[..] else {
        panic!("unexpected accounting line {line}")
    };
    assert!(produced > 0);
    assert_eq!(produced, written + queued + held, "{line}");
    for phase in ["normal", "moderate load", "overload", "recovery"] {
        assert!(
            stdout.contains(phase),
            "phase {phase} not announced: {stdout}"
        );
    }
    assert!(stdout.contains("dashboard"), "{stdout}");
}

/// At `--speed 10` the relax hold is 300 ms, so the recovery phase relaxes to OK
/// before the cycle ends (with the hold at its full 3 s it ended still at HARD).
#[tokio::test]
async fn a_fast_cycle_ends_its_recovery_at_ok() {
    let mut demo = MdpProcess::spawn_with_stdout(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "10",
            "--cycles",
            "1",
        ],
        &[],
    );
    let status = demo
        .wait_exit(Duration::from_secs(60))
        .expect("demo ends after one cycle");
    assert!(status.success(), "{status:?}");
    let stdout = demo.stdout_text();
    let recovery = stdout
        .find("phase 4/4 recovery")
        .unwrap_or_else(|| panic!("no recovery phase in {stdout}"));
    let last_level = stdout[recovery..]
        .lines()
        .filter_map(|l| l.split("level ").nth(1))
        .filter_map(|l| l.split(':').next())
        .next_back()
        .unwrap_or_else(|| panic!("no level change during recovery: {stdout}"));
    assert!(
        last_level.ends_with("-> OK"),
        "recovery ended at {last_level}: {stdout}"
    );
}
