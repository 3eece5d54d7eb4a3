//! The three output formats of `mdp simulate`: a table for people, one JSON
//! object for programs, and CSV with one row per simulated second.

use super::budget::GrantSummary;
use super::model::{Run, StoreEvents};
use super::report::{MATRIX_SCALE_DOWN, MATRIX_SCALE_UP, Range, SCALE_UP_PODS, Summary, spec_row};
use super::scenario::Scenario;
use crate::autoscale::cluster::SyncTrace;
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

/// One row per second; per provider, the tokens all pods granted during the second
/// and the budget accrued (rate x scale, without the burst).
pub fn csv(scenario: &Scenario, run: &Run) -> String {
    let tracks = &run.grants.providers;
    let mut out = String::with_capacity(run.samples.len() * (56 + 20 * tracks.len()) + 96);
    out.push_str("t,phase,depth,level,scale,desired,ready,prometheus_depth,draining");
    // Provider names are label-safe: no comma or quote.
    for track in tracks {
        let _ = write!(out, ",granted_{0},budget_{0}", track.provider);
    }
    out.push('\n');
    for (second, s) in run.samples.iter().enumerate() {
        let phase = scenario.phases.get(s.phase).map_or("", |p| p.name.as_str());
        // Phase names are validated to hold no comma or quote.
        let _ = write!(
            out,
            "{},{},{},{},{:.3},{},{},{},{}",
            s.t,
            phase,
            s.depth,
            s.level,
            s.scale,
            s.desired,
            s.ready,
            s.metric_depth.map_or_else(String::new, |d| d.to_string()),
            s.draining
        );
        for track in tracks {
            let granted = track.granted.get(second).copied().unwrap_or(0.0);
            let accrued = track.accrued.get(second).copied().unwrap_or(0.0);
            let _ = write!(out, ",{granted:.3},{accrued:.3}");
        }
        out.push('\n');
    }
    out
}

/// One line per provider: the pods' summed grants against the provider's budget.
pub fn grants_line(g: &GrantSummary) -> String {
    let head = format!(
        "pods' grants, {}: budget {}/s, burst {}, workers ask {}/s; {:.0} granted of {:.0} accrued ({:.0}% used);",
        g.provider,
        g.budget_per_s,
        g.burst,
        g.demand_per_s,
        g.granted_total,
        g.budget_total,
        g.utilization * 100.0
    );
    let Some(worst) = g
        .windows
        .iter()
        .find(|w| w.window_seconds == g.window_seconds)
    else {
        return format!("{head} no window to check");
    };
    let window = format!(
        "the {} s window at {} s ({}): {:.0} of {:.0} tokens",
        worst.window_seconds, worst.at_seconds, worst.phase, worst.granted, worst.budget
    );
    if g.exceeded && g.within_bound {
        format!(
            "{head} over budget by {:.1} tokens (+{:.1}%) in {window}, within the one-token floor's allowance of {:.0}   ok",
            g.worst_overshoot_tokens, g.worst_overshoot_percent, worst.floor_allowance_tokens
        )
    } else if g.exceeded {
        format!(
            "{head} OVER BUDGET by {:.1} tokens (+{:.1}%) in {window}   MISS",
            g.worst_overshoot_tokens, g.worst_overshoot_percent
        )
    } else {
        format!(
            "{head} never over budget (closest: {window}, {:.1}%)   ok",
            100.0 + g.worst_overshoot_percent
        )
    }
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

/// The table: settings, one row per phase with its replica-matrix row, timings, verdict.
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
    out.push_str(if with_spec { "   matrix\n" } else { "\n" });
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
            MATRIX_SCALE_UP,
            summary.sweep.as_ref().map(|s| &s.scale_up_seconds),
        ),
        (
            "scale-down",
            summary.scale_down_seconds,
            "depth below the SOFT release -> 1 pod".to_owned(),
            MATRIX_SCALE_DOWN,
            summary.sweep.as_ref().map(|s| &s.scale_down_seconds),
        ),
    ];
    for (name, value, meaning, (low, high), swept) in timings {
        let ok = value.is_some_and(|v| (low..=high).contains(&v));
        let _ = write!(
            out,
            "{name:<11} {:>7}  {meaning:<40} want {low}-{high} s  {}",
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
    for grants in &summary.grants {
        out.push_str(&grants_line(grants));
        out.push('\n');
    }
    for outage in &summary.outages {
        let _ = writeln!(
            out,
            "store outage {}-{} s ({}): pods {} at its start, never fewer than {}; level {} at its start, never milder than {}   {}",
            outage.start_seconds,
            outage.end_seconds,
            outage.phase,
            outage.pods_at_start,
            outage.pods_min,
            outage.level_at_start,
            outage.level_min,
            if outage.held { "held" } else { "NOT HELD" }
        );
    }
    if let Some(sweep) = &summary.sweep {
        let _ = writeln!(
            out,
            "sweep: {} scrape/HPA alignments, {} match the replica matrix",
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
        return "verdict: no phase to compare with the replica matrix (name phases idle, moderate, high, overload or recovery)".to_owned();
    };
    let total = verdict.checks.len();
    if verdict.matches {
        return format!("verdict: matches the replica matrix ({total} of {total} checks)");
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
        "verdict: DIFFERS from the replica matrix, {} of {total} checks miss: {listed}",
        misses.len()
    )
}

/// `--trace --format csv`: one row per HPA sync. Per trigger: the value KEDA read
/// (a number, `none` or `error`), its failure count, the fallback metric served (empty
/// when none) and its proposal (empty when unavailable); then the largest proposal,
/// the stabilized recommendation, the rate limit's reason, the replicas and why.
pub fn trace_csv(trace: &[SyncTrace]) -> String {
    let names: Vec<&str> = trace
        .first()
        .map(|row| row.triggers.iter().map(|t| t.name).collect())
        .unwrap_or_default();
    let mut out = String::from("t,replicas_before");
    for name in &names {
        let _ = write!(
            out,
            ",{name}_read,{name}_failures,{name}_fallback,{name}_proposal"
        );
    }
    out.push_str(",max_proposal,stabilized,rate_limit,replicas,reason\n");
    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    for row in trace {
        let _ = write!(out, "{},{}", row.t, row.replicas_before);
        for t in &row.triggers {
            let fallback = t.fallback.map(|v| v.to_string()).unwrap_or_default();
            let _ = write!(
                out,
                ",{},{},{},{}",
                t.read,
                t.failures,
                fallback,
                opt(t.proposal)
            );
        }
        // The reason is quoted: it contains commas.
        let _ = writeln!(
            out,
            ",{},{},{},{},\"{}\"",
            opt(row.max_proposal),
            opt(row.stabilized),
            row.rate_limit,
            row.replicas,
            row.reason.replace('"', "'")
        );
    }
    out
}

/// `--explain`: one line at every HPA sync that changed the replica count, and at
/// the first sync.
pub fn explain(trace: &[SyncTrace]) -> String {
    let mut out = String::from("why the replica count changed (every HPA sync that changed it):\n");
    for (index, row) in trace.iter().enumerate() {
        if index == 0 || row.replicas != row.replicas_before {
            let reads: Vec<String> = row
                .triggers
                .iter()
                .map(|t| {
                    let fallback = t
                        .fallback
                        .map(|v| format!(", fallback {v}"))
                        .unwrap_or_default();
                    format!(
                        "{} read {} (failures {}{fallback})",
                        t.name, t.read, t.failures
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  t={:>5}s  {}  [{}]",
                row.t,
                row.reason,
                reads.join("; ")
            );
        }
    }
    out
}
