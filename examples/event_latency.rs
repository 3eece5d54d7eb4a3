//! Percentiles of the event -> new scale path in process, for the benchmark
//! harness (`bench/run.sh`); criterion (benches/hot_paths.rs) gives the
//! median, this gives the tail.
//!
//! Every event flips the level between OK and HARD with no relax hold, so
//! each one changes the scale, the level and the snapshot: the worst case
//! for the engine. Events are sent from a task on the service's kind of
//! runtime, as an HTTP handler sends them; `EngineHandle::observe` applies
//! each one in that task (decision, scale, metrics, snapshot) and returns.
//! Two clocks are read: the sender's round trip (from handing the event to
//! the engine until its outcome is back, with the new scale checked in force
//! in the rate coordinator) and the engine's own
//! `mdp_feedback_event_to_scale_seconds` histogram (receipt until the scale
//! is written).
//!
//! `cargo run --release --example event_latency -- [EVENTS]` prints one JSON line.
#![forbid(unsafe_code)]

use mdp::clock::Clock;
use mdp::control::{ControlConfig, Controller, Observation, Source};
use mdp::level::Level;
use mdp::rate::{ProviderSpec, RateCoordinator};
use mdp::telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn observation(i: u64) -> Observation {
    let hard = i % 2 == 0;
    Observation {
        coordinator_id: "store_01".into(),
        queue_size: if hard { 9500 } else { 500 },
        capacity: 10_000,
        level: Some(if hard { Level::Hard } else { Level::Ok }),
        ts: i as f64,
        source: Source::Push,
        reason: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

/// Fraction of the histogram's observations at or below `bound` seconds, as
/// a scrape shows them.
fn histogram_share_within(metrics: &Metrics, bound: f64) -> f64 {
    let name = mdp::telemetry::catalogue::EVENT_TO_SCALE.name;
    let text = String::from_utf8(metrics.render()).unwrap_or_default();
    let value = |line: &str, series: &str| -> Option<f64> {
        line.strip_prefix(series)?.trim().parse().ok()
    };
    let count_series = format!("{name}_count");
    let total = text.lines().find_map(|l| value(l, &count_series));
    let bucket_prefix = format!("{name}_bucket{{le=\"");
    let within = text.lines().find_map(|l| {
        let (le, count) = l.strip_prefix(&bucket_prefix)?.split_once("\"} ")?;
        let le: f64 = le.parse().ok()?;
        ((le - bound).abs() < 1e-12).then(|| count.parse::<f64>().ok())?
    });
    match (within, total) {
        (Some(within), Some(total)) => within / total,
        _ => f64::NAN,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let clock = Clock::new();
    let metrics = Metrics::new(&["ibkr"]);
    let rates = Arc::new(RateCoordinator::new(
        &[ProviderSpec::default()],
        None,
        clock,
    ));
    let config = ControlConfig {
        relax_after: Duration::ZERO,
        ..ControlConfig::default()
    };
    let samples = runtime.block_on(async {
        let (engine, _task) = mdp::engine::spawn(
            Controller::new(config),
            rates.clone(),
            metrics.clone(),
            vec!["ibkr".into()],
            None,
            clock,
        );
        let probe = rates.clone();
        // Events come from a task on the runtime, as from an HTTP handler in
        // the service (not from the thread blocked in `block_on`).
        tokio::spawn(async move {
            let warmup = events / 10;
            let mut samples = Vec::with_capacity(events as usize);
            for i in 1..=warmup + events {
                let obs = observation(i);
                let expected = if i % 2 == 0 { 0.0 } else { 1.0 };
                let started = Instant::now();
                engine
                    .observe(obs, tokio::time::Instant::now())
                    .ok_or("the control loop stopped")?;
                let elapsed = started.elapsed();
                if probe.views()[0].scale != expected {
                    return Err(format!("event {i}: scale not in force after the reply"));
                }
                if i > warmup {
                    samples.push(elapsed);
                }
            }
            Ok(samples)
        })
        .await
        .map_err(|e| e.to_string())?
    })?;
    let mut sorted = samples;
    sorted.sort_unstable();
    println!(
        "{{\"events\":{},\"round_trip_us\":{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},\"p999\":{:.2},\"max\":{:.2}}},\
         \"histogram_share_within_50us\":{:.5},\"histogram_share_within_10us\":{:.5}}}",
        sorted.len(),
        percentile(&sorted, 50.0),
        percentile(&sorted, 90.0),
        percentile(&sorted, 99.0),
        percentile(&sorted, 99.9),
        percentile(&sorted, 100.0),
        histogram_share_within(&metrics, 5e-5),
        histogram_share_within(&metrics, 1e-5),
    );
    Ok(())
}
