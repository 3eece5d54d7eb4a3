//! `mdp simulate --scenario pacing`: a realistic IBKR workload replayed through
//! pacers on virtual time, each schedule judged by an independent checker of
//! IBKR's published rules.
//!
//! Three schedules of the same workload ([`workload`]):
//! - the `ibkr` provider profile of mdp's pacer, asked the way a worker asks
//!   (acquire; refused, wait the `retry_after` and ask again; release the lease);
//! - plain token buckets at the same average rates ([`replay::Buckets`]);
//! - the best schedule the checker allows, built greedily ([`replay::best`]):
//!   the yardstick for throughput.
//!
//! The checker ([`checker`]) counts every rule each sent request broke.

pub mod checker;
pub mod profile_pacer;
pub mod replay;
pub mod workload;

use checker::{Rule, Sent, Violations};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;
use workload::{Class, Request, WorkloadSettings};

/// Longest virtual time a replay may take before the rest counts as unsent.
pub const REPLAY_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// What the workload holds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkloadSummary {
    pub seed: u64,
    pub requests: u32,
    pub historical: u32,
    pub bid_ask: u32,
    /// Historical requests identical to an earlier one.
    pub repeats: u32,
    pub contracts: u32,
    pub market_data: u32,
    pub orders: u32,
}

/// Waits from ready to sent, per class, in seconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct Waits {
    pub mean_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

/// One schedule of the workload and how it fared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schedule {
    /// `ibkr_profile`, `plain_buckets` or `best`.
    pub name: &'static str,
    pub sent: u32,
    pub unsent: u32,
    pub violations: Violations,
    pub violations_total: u32,
    /// Seconds from the start to the last historical request sent.
    pub historical_done_s: f64,
    /// Historical requests sent per 10 minutes until then.
    pub historical_per_10min: f64,
    /// This schedule's historical throughput over the best schedule's.
    pub throughput_vs_best: f64,
    pub historical_wait: Waits,
    pub market_data_wait: Waits,
    pub orders_wait: Waits,
    /// Acquires asked and refused with a wait (0 for the best schedule).
    pub asks: u64,
    pub refusals: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub scenario: &'static str,
    pub workload: WorkloadSummary,
    pub rules: Vec<&'static str>,
    pub schedules: Vec<Schedule>,
}

impl Report {
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

fn summarize_workload(seed: u64, requests: &[Request]) -> WorkloadSummary {
    let of = |class| requests.iter().filter(|r| r.class == class).count() as u32;
    let historical: Vec<_> = requests
        .iter()
        .filter(|r| r.class == Class::Historical)
        .collect();
    let mut fingerprints: Vec<_> = historical.iter().map(|r| r.fingerprint()).collect();
    fingerprints.sort();
    let all = fingerprints.len();
    fingerprints.dedup();
    let mut contracts: Vec<_> = historical.iter().map(|r| &r.contract).collect();
    contracts.sort();
    contracts.dedup();
    WorkloadSummary {
        seed,
        requests: requests.len() as u32,
        historical: historical.len() as u32,
        bid_ask: historical.iter().filter(|r| r.is_bid_ask()).count() as u32,
        repeats: (all - fingerprints.len()) as u32,
        contracts: contracts.len() as u32,
        market_data: of(Class::MarketData),
        orders: of(Class::Orders),
    }
}

fn waits(requests: &[Request], trace: &[Sent], class: Class) -> Waits {
    let mut waits: Vec<f64> = trace
        .iter()
        .filter(|s| requests[s.request].class == class)
        .map(|s| s.at.saturating_sub(requests[s.request].ready).as_secs_f64())
        .collect();
    if waits.is_empty() {
        return Waits::default();
    }
    waits.sort_by(f64::total_cmp);
    let rank = ((waits.len() as f64 * 0.99).ceil() as usize).clamp(1, waits.len());
    Waits {
        mean_s: round(waits.iter().sum::<f64>() / waits.len() as f64),
        p99_s: round(waits[rank - 1]),
        max_s: round(waits[waits.len() - 1]),
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn schedule(
    name: &'static str,
    requests: &[Request],
    trace: &[Sent],
    asks: u64,
    refusals: u64,
) -> Schedule {
    let violations = checker::check(requests, trace);
    let historical: Vec<_> = trace
        .iter()
        .filter(|s| requests[s.request].class == Class::Historical)
        .collect();
    let done = historical
        .iter()
        .map(|s| s.at)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    let per_10min = if done > 0.0 {
        historical.len() as f64 * 600.0 / done
    } else {
        0.0
    };
    Schedule {
        name,
        sent: trace.len() as u32,
        unsent: (requests.len() - trace.len()) as u32,
        violations,
        violations_total: violations.total(),
        historical_done_s: round(done),
        historical_per_10min: round(per_10min),
        throughput_vs_best: 0.0,
        historical_wait: waits(requests, trace, Class::Historical),
        market_data_wait: waits(requests, trace, Class::MarketData),
        orders_wait: waits(requests, trace, Class::Orders),
        asks,
        refusals,
    }
}

/// Runs the comparison: `profile`, when given, is replayed first.
pub fn compare(settings: &WorkloadSettings, profile: Option<&mut dyn replay::Pacer>) -> Report {
    let requests = workload::generate(settings);
    let mut schedules = Vec::new();
    if let Some(pacer) = profile {
        let run = replay::replay(&requests, pacer, REPLAY_LIMIT);
        schedules.push(schedule(
            "ibkr_profile",
            &requests,
            &run.trace,
            run.asks,
            run.refusals,
        ));
    }
    let run = replay::replay(&requests, &mut replay::Buckets::new(), REPLAY_LIMIT);
    schedules.push(schedule(
        "plain_buckets",
        &requests,
        &run.trace,
        run.asks,
        run.refusals,
    ));
    let best = replay::best(&requests);
    schedules.push(schedule("best", &requests, &best, 0, 0));
    let best_rate = schedules
        .last()
        .map(|s| s.historical_per_10min)
        .unwrap_or_default();
    for s in &mut schedules {
        s.throughput_vs_best = if best_rate > 0.0 {
            round(s.historical_per_10min / best_rate)
        } else {
            0.0
        };
    }
    Report {
        scenario: "pacing",
        workload: summarize_workload(settings.seed, &requests),
        rules: Rule::ALL.iter().map(|r| r.describe()).collect(),
        schedules,
    }
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let w = &report.workload;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "pacing workload (seed {}): {} requests: {} historical over {} contracts ({} BID_ASK, {} identical repeats), {} market-data subscriptions, {} other messages",
        w.seed,
        w.requests,
        w.historical,
        w.contracts,
        w.bid_ask,
        w.repeats,
        w.market_data,
        w.orders
    );
    let _ = writeln!(
        out,
        "each schedule checked against IBKR's published pacing rules (violations = requests that broke a rule)\n"
    );
    let _ = write!(out, "{:<40}", "");
    for s in &report.schedules {
        let _ = write!(out, "{:>15}", s.name);
    }
    out.push('\n');
    let row = |out: &mut String, label: &str, cell: &dyn Fn(&Schedule) -> String| {
        let _ = write!(out, "{label:<40}");
        for s in &report.schedules {
            let _ = write!(out, "{:>15}", cell(s));
        }
        out.push('\n');
    };
    row(&mut out, "violations", &|s| s.violations_total.to_string());
    for rule in Rule::ALL {
        row(&mut out, &format!("  {}", rule.describe()), &|s| {
            s.violations.get(rule).to_string()
        });
    }
    row(&mut out, "requests sent", &|s| s.sent.to_string());
    row(&mut out, "requests never sent", &|s| s.unsent.to_string());
    row(&mut out, "last historical sent at (s)", &|s| {
        format!("{:.1}", s.historical_done_s)
    });
    row(&mut out, "historical per 10 min", &|s| {
        format!("{:.1}", s.historical_per_10min)
    });
    row(&mut out, "historical throughput vs best", &|s| {
        format!("{:.1} %", s.throughput_vs_best * 100.0)
    });
    row(&mut out, "market-data wait p99 (s)", &|s| {
        format!("{:.2}", s.market_data_wait.p99_s)
    });
    row(&mut out, "other messages wait p99 (s)", &|s| {
        format!("{:.2}", s.orders_wait.p99_s)
    });
    row(&mut out, "acquires asked / refused", &|s| {
        format!("{}/{}", s.asks, s.refusals)
    });
    out
}

/// Runs `mdp simulate --scenario pacing` with the seed and format of `args`.
pub fn render(args: &super::SimulateArgs) -> Result<String, super::SimulateError> {
    if args.format == super::Format::Csv {
        return Err(super::refuse(
            "format",
            "the pacing scenario writes table or json",
        ));
    }
    if args.plot.is_some() {
        return Err(super::refuse("plot", "the pacing scenario draws no plot"));
    }
    let settings = WorkloadSettings {
        seed: args.seed,
        ..WorkloadSettings::default()
    };
    let report = compare(&settings, Some(&mut profile_pacer::ProfilePacer::ibkr()));
    Ok(match args.format {
        super::Format::Json => json(&report),
        _ => table(&report),
    })
}

/// The report as one JSON object.
pub fn json(report: &Report) -> String {
    let mut text =
        serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_break_rules_the_profile_and_the_best_schedule_do_not() {
        let mut profile = profile_pacer::ProfilePacer::ibkr();
        let report = compare(&WorkloadSettings::default(), Some(&mut profile));
        let paced = report.schedule("ibkr_profile").expect("profile");
        assert_eq!(paced.violations_total, 0, "{paced:?}");
        assert_eq!(paced.unsent, 0, "{paced:?}");
        assert!(paced.throughput_vs_best > 0.5, "{paced:?}");
        let buckets = report.schedule("plain_buckets").expect("buckets");
        let best = report.schedule("best").expect("best");
        assert!(buckets.violations_total > 0, "{buckets:?}");
        assert_eq!(best.violations_total, 0, "{best:?}");
        assert_eq!(best.unsent, 0);
        assert_eq!(best.throughput_vs_best, 1.0);
        let text = table(&report);
        assert!(text.contains("more than 60 historical in 10 min"), "{text}");
        let value: serde_json::Value = serde_json::from_str(&json(&report)).expect("json");
        assert_eq!(value["schedules"][0]["name"], "ibkr_profile");
        assert_eq!(value["schedules"][2]["name"], "best");
    }
}
