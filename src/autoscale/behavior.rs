//! HPA `behavior`: stabilization windows and scaling policies, the Kubernetes defaults,
//! mdp's defaults, and the rate limits they impose (kube's `calculateScale{Up,Down}Limit`).

use super::{ConfigError, duration_str};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Kubernetes rejects a policy period above 30 minutes.
const MAX_POLICY_PERIOD: Duration = Duration::from_secs(1800);
/// Kubernetes rejects a stabilization window above one hour.
const MAX_STABILIZATION_WINDOW: Duration = Duration::from_secs(3600);

/// `policies[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyType {
    /// Add or remove at most `value` pods per period.
    Pods,
    /// Add or remove at most `value` percent of the pods at the start of the period.
    Percent,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::Pods => "Pods",
            PolicyType::Percent => "Percent",
        }
    }
}

/// One `policies[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    #[serde(rename = "type")]
    pub kind: PolicyType,
    pub value: u32,
    /// `periodSeconds`: changes made during the last `period` count against the limit.
    #[serde(with = "duration_str")]
    pub period: Duration,
}

impl ScalingPolicy {
    pub fn pods(value: u32, period_seconds: u64) -> Self {
        ScalingPolicy {
            kind: PolicyType::Pods,
            value,
            period: Duration::from_secs(period_seconds),
        }
    }

    pub fn percent(value: u32, period_seconds: u64) -> Self {
        ScalingPolicy {
            kind: PolicyType::Percent,
            value,
            period: Duration::from_secs(period_seconds),
        }
    }
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change.
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

impl SelectPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectPolicy::Max => "Max",
            SelectPolicy::Min => "Min",
            SelectPolicy::Disabled => "Disabled",
        }
    }
}

/// `behavior.scaleUp` or `behavior.scaleDown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingRules {
    /// `stabilizationWindowSeconds`.
    #[serde(with = "duration_str")]
    pub stabilization_window: Duration,
    #[serde(default)]
    pub select_policy: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
    /// `tolerance` of this direction (Kubernetes 1.33+, KEP-4951); `None` leaves the
    /// controller's `--horizontal-pod-autoscaler-tolerance` (0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

/// `advanced.horizontalPodAutoscalerConfig.behavior`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaBehavior {
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl Default for HpaBehavior {
    /// mdp's behaviour: Kubernetes' scale-up, and scale-down after 70 s of lower
    /// recommendations instead of 300 s, so recovery takes 8 -> 1 in 60-90 s once
    /// Prometheus' scrape (up to 15 s) and mdp's relax hold (3 s) are counted
    /// (`mdp simulate --sweep`: 63-91 s over every alignment; 60 s gives 48-76 s).
    /// The HPA samples every 15 s, so any window in 61-75 s acts alike; 70 s keeps
    /// 5 s of margin for late syncs either way.
    fn default() -> Self {
        HpaBehavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy::percent(100, 15), ScalingPolicy::pods(4, 15)],
                tolerance: None,
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(70),
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy::percent(100, 15)],
                tolerance: None,
            },
        }
    }
}

impl HpaBehavior {
    /// What Kubernetes fills in for an unset `behavior` (HPA docs, "Default Behavior";
    /// `GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules` in kube's defaults).
    pub fn kubernetes_default() -> Self {
        HpaBehavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy::percent(100, 15), ScalingPolicy::pods(4, 15)],
                tolerance: None,
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(300),
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy::percent(100, 15)],
                tolerance: None,
            },
        }
    }

    /// The checks of kube's `validateScalingRules`, plus whole seconds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_rules("scale_up", &self.scale_up)?;
        validate_rules("scale_down", &self.scale_down)
    }
}

fn validate_rules(direction: &'static str, rules: &ScalingRules) -> Result<(), ConfigError> {
    let problem = |problem: String| Err(ConfigError::Behavior { direction, problem });
    let window = rules.stabilization_window;
    if window.subsec_nanos() != 0 || window > MAX_STABILIZATION_WINDOW {
        return problem(format!(
            "stabilization_window must be whole seconds in 0s..=1h, got {}",
            humantime::format_duration(window)
        ));
    }
    if let Some(tolerance) = rules.tolerance
        && !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance))
    {
        return problem(format!("tolerance must be within [0, 1), got {tolerance}"));
    }
    if rules.policies.is_empty() {
        return problem("at least one policy is required".to_owned());
    }
    for policy in &rules.policies {
        if policy.value == 0 {
            return problem(format!("{} policy value must be > 0", policy.kind.as_str()));
        }
        let period = policy.period;
        if period.is_zero() || period.subsec_nanos() != 0 || period > MAX_POLICY_PERIOD {
            return problem(format!(
                "policy period must be whole seconds in 1s..=30m, got {}",
                humantime::format_duration(period)
            ));
        }
    }
    Ok(())
}

/// A replica change the HPA made, remembered for the policies' periods
/// (kube's `timestampedScaleEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScaleEvent {
    pub at: Duration,
    pub change: u32,
}

/// Whether something recorded `at` lies inside the `window` ending `now`. Kubernetes
/// keeps what is strictly after `now - window`, so a zero window keeps nothing.
pub(crate) fn within_window(at: Duration, now: Duration, window: Duration) -> bool {
    now.checked_sub(window).is_none_or(|cutoff| at > cutoff)
}

/// kube's `getReplicasChangePerPeriod`.
fn change_in_period(events: &[ScaleEvent], now: Duration, period: Duration) -> i64 {
    events
        .iter()
        .filter(|event| within_window(event.at, now, period))
        .map(|event| i64::from(event.change))
        .sum()
}

/// The replica count at the start of `period`: changes made since then are undone, so
/// pods added (or removed) in the last `period` count against the limit.
fn period_start(
    current: u32,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
    now: Duration,
    period: Duration,
) -> i64 {
    i64::from(current) - change_in_period(up, now, period) + change_in_period(down, now, period)
}

/// kube's `calculateScaleUpLimitWithScalingRules`: the most replicas allowed now.
pub(crate) fn scale_up_limit(
    current: u32,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
    rules: &ScalingRules,
    now: Duration,
) -> i64 {
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, up, down, now, policy.period);
        match policy.kind {
            PolicyType::Pods => start + i64::from(policy.value),
            // Rounded up, so a small percentage of a few pods still allows one more.
            // The float expression is kube's own, to round exactly as it does.
            PolicyType::Percent => {
                (start as f64 * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => i64::from(current),
        SelectPolicy::Max => proposals.max().unwrap_or(i64::from(current)),
        SelectPolicy::Min => proposals.min().unwrap_or(i64::from(current)),
    }
}

/// kube's `calculateScaleDownLimitWithBehaviors`: the fewest replicas allowed now.
pub(crate) fn scale_down_limit(
    current: u32,
    up: &[ScaleEvent],
    down: &[ScaleEvent],
    rules: &ScalingRules,
    now: Duration,
) -> i64 {
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, up, down, now, policy.period);
        match policy.kind {
            PolicyType::Pods => start - i64::from(policy.value),
            // Go's int32(float64) truncates, so the removal is rounded up.
            PolicyType::Percent => {
                (start as f64 * (1.0 - f64::from(policy.value) / 100.0)).trunc() as i64
            }
        }
    });
    match rules.select_policy {
        SelectPolicy::Disabled => i64::from(current),
        // The biggest change downwards is the smallest count.
        SelectPolicy::Max => proposals.min().unwrap_or(i64::from(current)),
        SelectPolicy::Min => proposals.max().unwrap_or(i64::from(current)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    // Kubernetes HPA docs, "Default Behavior": scale up by max(100%, 4 pods) per 15 s.
    #[test]
    fn default_scale_up_doubles_or_adds_four() {
        let rules = HpaBehavior::kubernetes_default().scale_up;
        assert_eq!(scale_up_limit(1, &[], &[], &rules, at(0)), 5);
        assert_eq!(scale_up_limit(10, &[], &[], &rules, at(0)), 20);
    }

    // Kubernetes HPA docs, "Scaling policies": pods added during the period count against
    // it, so a second step inside the same 15 s may add nothing more.
    #[test]
    fn changes_inside_the_period_count_against_the_limit() {
        let rules = HpaBehavior::kubernetes_default().scale_up;
        let up = [ScaleEvent {
            at: at(100),
            change: 4,
        }];
        // 1 -> 5 at t=100: at t=110 the period started at 1 pod, so 5 is the ceiling.
        assert_eq!(scale_up_limit(5, &up, &[], &rules, at(110)), 5);
        // Exactly one period later the event no longer counts (strictly after the cutoff).
        assert_eq!(scale_up_limit(5, &up, &[], &rules, at(115)), 10);
    }

    // Kubernetes HPA docs, "Scaling policies" example (Pods 4 / Percent 10 per 60 s,
    // Max): from 80 replicas the first step removes 8; at 72, 10% is 7.2 and removes 8
    // again; below 40 the Pods policy allows the bigger change of 4.
    #[test]
    fn docs_scaling_policy_example() {
        let rules = ScalingRules {
            stabilization_window: Duration::ZERO,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy::pods(4, 60), ScalingPolicy::percent(10, 60)],
            tolerance: None,
        };
        assert_eq!(scale_down_limit(80, &[], &[], &rules, at(0)), 72);
        assert_eq!(scale_down_limit(72, &[], &[], &rules, at(61)), 64);
        assert_eq!(scale_down_limit(30, &[], &[], &rules, at(0)), 26);
        // Inside the period the 8 already removed count: no further step yet.
        let down = [ScaleEvent {
            at: at(0),
            change: 8,
        }];
        assert_eq!(scale_down_limit(72, &[], &down, &rules, at(30)), 72);
    }

    // Kubernetes HPA docs, "Scaling policies": selectPolicy Min picks the smaller change;
    // "Example: disable scale down": selectPolicy Disabled.
    #[test]
    fn select_policy_min_and_disabled() {
        let mut rules = ScalingRules {
            stabilization_window: Duration::ZERO,
            select_policy: SelectPolicy::Min,
            policies: vec![ScalingPolicy::pods(5, 60), ScalingPolicy::percent(10, 60)],
            tolerance: None,
        };
        assert_eq!(scale_down_limit(100, &[], &[], &rules, at(0)), 95);
        assert_eq!(scale_up_limit(100, &[], &[], &rules, at(0)), 105);
        rules.select_policy = SelectPolicy::Disabled;
        assert_eq!(scale_down_limit(100, &[], &[], &rules, at(0)), 100);
        assert_eq!(scale_up_limit(100, &[], &[], &rules, at(0)), 100);
    }

    #[test]
    fn validation_follows_kubernetes_limits() {
        assert_eq!(HpaBehavior::default().validate(), Ok(()));
        assert_eq!(HpaBehavior::kubernetes_default().validate(), Ok(()));
        let mut bad = HpaBehavior::default();
        bad.scale_down.stabilization_window = Duration::from_secs(3601);
        assert!(bad.validate().is_err());
        let mut bad = HpaBehavior::default();
        bad.scale_up.policies.clear();
        assert!(bad.validate().is_err());
        let mut bad = HpaBehavior::default();
        bad.scale_up.policies[0].value = 0;
        assert!(bad.validate().is_err());
        let mut bad = HpaBehavior::default();
        bad.scale_down.policies[0].period = Duration::from_millis(15_500);
        assert!(bad.validate().is_err());
    }
}
