//! The three output formats of `mdp simulate`: a table for people, one JSON
//! object for programs, and CSV with one row per simulated second.

use super::model::{Sample, StoreEvents};
use super::report::{Range, SCALE_UP_PODS, SPEC_SCALE_DOWN, SPEC_SCALE_UP, Summary, spec_row};
use super::scenario::Scenario;
use std::fmt::Write as _;
use std::time::Duration;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

pub fn json(summary: &Summary) -> String {
    let mut text = serde_json::to_string_pretty(summary).unwrap_or_else(|e| {
        // Every field is a plain number, string or list: this cannot fail.
        format!("{{\"error\": \"{e}\"}}")
    });
    text.push('\n');
    text
}

pub fn csv(scenario: &Scenario, samples: &[Sample]) -> String {
    let mut out = String::with_capacity(samples.len() * 48 + 64);
    out.push_str("t,phase,depth,level,scale,desired,ready,prometheus_depth\n");
    for s in samples {
        let phase = scenario.phases.get(s.phase).map_or("", |p| p.name.as_str());
        // Phase names are validated to hold no comma or quote.
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{},{},{}",
            s.t, phase, s.depth, s.level, s.scale, s.desired, s.ready, s.metric_depth
        );
    }
    out
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISS" }
}

fn seconds(value: Option<u64>) -> String {
    value.map_or_else(|| "never".to_owned(), |s| format!("{s} s"))
}

fn range(range: &Range) -> String {
    match (range.min, range.max) {
        (Some(min), Some(max)) if range.missing == 0 => format!("{min}-{max} s"),
        (Some(min), Some(max)) => format!("{min}-{max} s, never in {} runs", range.missing),
        _ => "never".to_owned(),
    }
}

/// The table: settings, one row per phase with its SPEC 8 row, timings, verdict.
pub fn table(summary: &Summary, wall: Duration) -> String {
    let s = &summary.settings;
    let mut out = String::new();
    let events = match s.store_events {
        StoreEvents::Depth => format!("depth polled every {}s", s.poll_interval_seconds),
        StoreEvents::Levels => "store pushes its level changes".to_owned(),
    };
    let _ = writeln!(
        out,
        "mdp simulate: scenario {}, {} s simulated in {:.1} ms",
        summary.scenario,
        summary.duration_seconds,
        wall.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        out,
        "store capacity {} ({events}); Prometheus scrapes every {}s at +{}s; HPA syncs every 15s at +{}s; pods start in {}s; scale-down window {}s\n",
        s.store_capacity,
        s.scrape_interval_seconds,
        s.scrape_offset_seconds,
        s.hpa_offset_seconds,
        s.startup_delay_seconds,
        s.scale_down_window_seconds,
    );
    let with_spec = summary.spec.is_some();
    let name = summary
        .phases
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let _ = write!(
        out,
        "{:<name$} {:>13} {:>6}  {:<5} {:>5}  {:>8} {:>8} {:>5}",
        "phase", "seconds", "depth", "level", "scale", "pods max", "pods end", "ready"
    );
    out.push_str(if with_spec { "   SPEC 8\n" } else { "\n" });
    for phase in &summary.phases {
        let _ = write!(
            out,
            "{:<name$} {:>13} {:>6}  {:<5} {:>5.2}  {:>8} {:>8} {:>5}",
            phase.name,
            format!("{}-{}", phase.start_seconds, phase.end_seconds),
            phase.queue_depth,
            phase.level.as_str().to_uppercase(),
            phase.scale,
            phase.replicas_max,
            phase.replicas_end,
            phase.ready_end,
        );
        if let Some((level, low, high)) = spec_row(&phase.name) {
            let pods = if low == high {
                format!("{low}")
            } else {
                format!("{low}-{high}")
            };
            let ok = summary.spec.as_ref().is_some_and(|v| {
                v.checks
                    .iter()
                    .filter(|c| c.what.starts_with(&format!("{} ", phase.name)))
                    .all(|c| c.ok)
            });
            let want = format!("{}, {pods} pods", level.as_str().to_uppercase());
            let _ = write!(out, "   {want:<16} {}", mark(ok));
        }
        out.push('\n');
    }
    out.push('\n');
    let timings = [
        (
            "scale-up",
            summary.scale_up_seconds,
            format!("moderate start -> {SCALE_UP_PODS} pods ready"),
            SPEC_SCALE_UP,
            summary.sweep.as_ref().map(|s| &s.scale_up_seconds),
        ),
        (
            "scale-down",
            summary.scale_down_seconds,
            "depth below the SOFT release -> 1 pod".to_owned(),
            SPEC_SCALE_DOWN,
            summary.sweep.as_ref().map(|s| &s.scale_down_seconds),
        ),
    ];
    for (name, value, meaning, (low, high), swept) in timings {
        let ok = value.is_some_and(|v| (low..=high).contains(&v));
        let _ = write!(
            out,
            "{name:<11} {:>7}  {meaning:<40} SPEC {low}-{high} s  {}",
            seconds(value),
            mark(ok)
        );
        if let Some(swept) = swept {
            let _ = write!(out, "   (all alignments: {})", range(swept));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "level changes {}; raw level changes held back by the relax hold {}",
        summary.level_changes, summary.flaps_suppressed
    );
    if let Some(sweep) = &summary.sweep {
        let _ = writeln!(
            out,
            "sweep: {} scrape/HPA alignments, {} match SPEC 8",
            sweep.runs, sweep.spec_matches
        );
    }
    out.push('\n');
    out.push_str(&verdict_line(summary));
    out.push('\n');
    out
}

fn verdict_line(summary: &Summary) -> String {
    let Some(verdict) = &summary.spec else {
        return "verdict: no phase to compare with SPEC 8 (name phases idle, moderate, high, overload or recovery)".to_owned();
    };
    let total = verdict.checks.len();
    if verdict.matches {
        return format!("verdict: matches SPEC section 8 ({total} of {total} checks)");
    }
    let misses: Vec<String> = verdict
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} {} (want {})", c.what, c.got, c.want))
        .collect();
    // A long scenario can miss hundreds of times: name the first few.
    const SHOWN: usize = 4;
    let more = misses.len().saturating_sub(SHOWN);
    let mut listed = misses[..misses.len().min(SHOWN)].join("; ");
    if more > 0 {
        listed.push_str(&format!("; and {more} more (--format json lists them)"));
    }
    format!(
        "verdict: DIFFERS from SPEC section 8, {} of {total} checks miss: {listed}",
        misses.len()
    )
}
