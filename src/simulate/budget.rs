//! The provider's budget against the pods' summed grants, over sliding windows.
//!
//! For a window of `W` seconds starting at second `a`, holding the grants of every pod
//! at instants in `[a, a + W)`:
//!
//! ```text
//! budget = burst x max scale in [a, a + W)  +  rate x integral of scale over [a, a + W)
//! ```
//!
//! with `scale` the control scale (1 for a provider feedback does not scale). That is
//! what one pod holding the whole budget could grant: at most a full (scaled) burst
//! saved at `a`, plus what its bucket accrues. Any excess is tokens the provider sees
//! beyond its limit because several pods' shares added up to more than one.
//!
//! A split budget adds one known excess: a pod whose share of the burst is less
//! than one token still holds one (workers take whole tokens), so the pods
//! together may hold up to `floor_tokens` more than `burst x scale`, at most
//! `max(0, N - burst x scale)` for N pods with equal shares. That allowance,
//! once per window, is the proven bound: [`GrantSummary::within_bound`].

use super::fleet::GrantTrack;
use super::scenario::Scenario;
use serde::Serialize;
use std::collections::VecDeque;

/// Window lengths checked, in seconds.
pub const WINDOWS: [u64; 3] = [1, 10, 60];

/// Relative slack for floating-point sums before an excess counts.
const EPSILON: f64 = 1e-9;

/// The worst window of one length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowCheck {
    pub window_seconds: u64,
    /// The window's first second.
    pub at_seconds: u64,
    /// The phase at the window's start.
    pub phase: String,
    pub granted: f64,
    pub budget: f64,
    /// granted - budget: positive is tokens beyond the budget, negative the margin left.
    pub overshoot_tokens: f64,
    pub overshoot_percent: f64,
    /// The one-token floor's allowance in this window (tokens).
    pub floor_allowance_tokens: f64,
}

/// One provider's summed grants and the worst of its windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantSummary {
    pub provider: String,
    /// The provider's whole (unscaled) budget.
    pub budget_per_s: f64,
    pub burst: f64,
    pub feedback: bool,
    /// What the workers ask for, in tokens per second over all pods.
    pub demand_per_s: f64,
    pub granted_total: f64,
    /// The provider's budget over the run: rate x integral of scale.
    pub budget_total: f64,
    pub peak_granted_per_s: f64,
    pub peak_at_seconds: u64,
    /// granted_total / budget_total.
    pub utilization: f64,
    /// Whether every window stayed within budget + the floor's allowance.
    pub within_bound: bool,
    /// Whether any window's grants exceeded its budget.
    pub exceeded: bool,
    /// The worst window of all lengths (by percent of its budget).
    pub worst_overshoot_tokens: f64,
    pub worst_overshoot_percent: f64,
    pub window_seconds: u64,
    pub at_seconds: u64,
    pub phase: String,
    /// The worst window of each length.
    pub windows: Vec<WindowCheck>,
}

/// Every window of `length` seconds: (first second, granted, budget).
pub fn windows(track: &GrantTrack, length: u64) -> Vec<(u64, f64, f64)> {
    let length = usize::try_from(length).unwrap_or(usize::MAX).max(1);
    let seconds = track.granted.len();
    if length > seconds {
        return Vec::new();
    }
    let prefix = |values: &[f64]| -> Vec<f64> {
        let mut sums = Vec::with_capacity(values.len() + 1);
        sums.push(0.0);
        let mut sum = 0.0;
        for v in values {
            sum += v;
            sums.push(sum);
        }
        sums
    };
    let (granted, accrued) = (prefix(&track.granted), prefix(&track.accrued));
    // Sliding maximum of the scale: indices of decreasing values.
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut out = Vec::with_capacity(seconds + 1 - length);
    for end in 0..seconds {
        while queue
            .back()
            .is_some_and(|&i| track.scale_max[i] <= track.scale_max[end])
        {
            queue.pop_back();
        }
        queue.push_back(end);
        let Some(start) = (end + 1).checked_sub(length) else {
            continue;
        };
        while queue.front().is_some_and(|&i| i < start) {
            queue.pop_front();
        }
        let scale_max = queue.front().map_or(0.0, |&i| track.scale_max[i]);
        let budget = track.burst * scale_max + accrued[end + 1] - accrued[start];
        out.push((start as u64, granted[end + 1] - granted[start], budget));
    }
    out
}

/// The most capacity the one-token floor added during `[start, start + length)`.
pub fn floor_allowance(track: &GrantTrack, start: u64, length: u64) -> f64 {
    let (start, end) = (start as usize, (start + length) as usize);
    track
        .floor_tokens
        .get(start..end.min(track.floor_tokens.len()))
        .unwrap_or_default()
        .iter()
        .copied()
        .fold(0.0, f64::max)
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The worst window of `length` (largest excess relative to its budget), if the run
/// is that long. Windows with no budget at all (scale 0 throughout) grant nothing
/// and are skipped.
fn worst(track: &GrantTrack, length: u64, phase_at: &dyn Fn(u64) -> String) -> Option<WindowCheck> {
    let (at, granted, budget) = windows(track, length)
        .into_iter()
        .filter(|&(_, _, budget)| budget > 0.0)
        .max_by(|a, b| {
            ((a.1 - a.2) / a.2)
                .total_cmp(&((b.1 - b.2) / b.2))
                .then(b.0.cmp(&a.0))
        })?;
    let excess = granted - budget;
    let excess = if excess.abs() <= EPSILON * budget.max(1.0) {
        0.0
    } else {
        excess
    };
    Some(WindowCheck {
        window_seconds: length,
        at_seconds: at,
        phase: phase_at(at),
        granted: round(granted),
        budget: round(budget),
        overshoot_tokens: round(excess),
        overshoot_percent: round(excess / budget * 100.0),
        floor_allowance_tokens: round(floor_allowance(track, at, length)),
    })
}

/// The summary of one provider's grants over the run.
pub fn summarize(track: &GrantTrack, demand: f64, scenario: &Scenario) -> GrantSummary {
    let phase_at = |second: u64| {
        let mut end = 0;
        for phase in &scenario.phases {
            end += phase.duration.as_secs();
            if second < end {
                return phase.name.clone();
            }
        }
        scenario
            .phases
            .last()
            .map_or_else(String::new, |p| p.name.clone())
    };
    let checks: Vec<WindowCheck> = WINDOWS
        .iter()
        .filter_map(|&length| worst(track, length, &phase_at))
        .collect();
    let headline = checks
        .iter()
        .max_by(|a, b| a.overshoot_percent.total_cmp(&b.overshoot_percent));
    let (peak_at, peak) = track
        .granted
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or((0, 0.0), |(at, &v)| (at as u64, v));
    let within_bound = WINDOWS.iter().all(|&length| {
        windows(track, length)
            .into_iter()
            .all(|(at, granted, budget)| {
                granted <= budget + floor_allowance(track, at, length) + EPSILON * budget.max(1.0)
            })
    });
    let (granted_total, budget_total) = (
        track.granted.iter().sum::<f64>(),
        track.accrued.iter().sum::<f64>(),
    );
    GrantSummary {
        provider: track.provider.clone(),
        budget_per_s: track.rate,
        burst: track.burst,
        feedback: track.feedback,
        demand_per_s: round(demand * track.rate),
        granted_total: round(granted_total),
        budget_total: round(budget_total),
        peak_granted_per_s: round(peak),
        peak_at_seconds: peak_at,
        utilization: if budget_total > 0.0 {
            round(granted_total / budget_total)
        } else {
            0.0
        },
        within_bound,
        exceeded: checks.iter().any(|c| c.overshoot_tokens > 0.0),
        worst_overshoot_tokens: headline.map_or(0.0, |c| c.overshoot_tokens),
        worst_overshoot_percent: headline.map_or(0.0, |c| c.overshoot_percent),
        window_seconds: headline.map_or(0, |c| c.window_seconds),
        at_seconds: headline.map_or(0, |c| c.at_seconds),
        phase: headline.map_or_else(String::new, |c| c.phase.clone()),
        windows: checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(granted: &[f64], scale: &[f64]) -> GrantTrack {
        GrantTrack {
            provider: "p".to_owned(),
            rate: 10.0,
            burst: 20.0,
            feedback: true,
            granted: granted.to_vec(),
            accrued: scale.iter().map(|s| 10.0 * s).collect(),
            scale_max: scale.to_vec(),
            floor_tokens: vec![0.0; scale.len()],
        }
    }

    #[test]
    fn budget_is_one_burst_at_the_highest_scale_plus_the_accrued_rate() {
        let t = track(&[30.0, 10.0, 5.0, 0.0], &[1.0, 1.0, 0.5, 0.0]);
        let three = windows(&t, 3);
        assert_eq!(three, [(0, 45.0, 20.0 + 25.0), (1, 15.0, 20.0 + 15.0)]);
        let one = windows(&t, 1);
        assert_eq!(one[2], (2, 5.0, 10.0 + 5.0));
        assert_eq!(one[3], (3, 0.0, 0.0));
        assert!(windows(&t, 5).is_empty());
    }

    #[test]
    fn the_worst_window_is_the_largest_excess_for_its_budget() {
        let mut scenario = Scenario::builtin(super::super::scenario::BuiltinScenario::Seed);
        scenario.phases.truncate(1);
        let t = track(&[30.0, 10.0, 40.0, 0.0], &[1.0, 1.0, 1.0, 0.0]);
        let summary = summarize(&t, 1.5, &scenario);
        assert!(summary.exceeded);
        let one = &summary.windows[0];
        assert_eq!((one.at_seconds, one.granted, one.budget), (2, 40.0, 30.0));
        assert_eq!(
            (one.overshoot_tokens, one.overshoot_percent),
            (10.0, 33.333)
        );
        assert_eq!(summary.worst_overshoot_percent, 33.333);
        assert_eq!(summary.window_seconds, 1);
        assert_eq!(summary.phase, "normal");
        assert_eq!(
            (summary.peak_granted_per_s, summary.peak_at_seconds),
            (40.0, 2)
        );
        // No 10 s window in a 4 s run.
        assert_eq!(summary.windows.len(), 1);
    }
}
