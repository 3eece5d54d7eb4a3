//! The HPA's per-metric replica calculation for KEDA's external metrics (kube's
//! `replica_calculator.go`), with the tolerance and KEDA's milli-quantities.

use super::MetricType;
use super::versions::KubernetesVersion;

/// The HPA's tolerance around a usage ratio of 1, and how it is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Ratios up to `1 + scale_up` keep the count.
    pub scale_up: f64,
    /// Ratios down to `1 - scale_down` keep the count.
    pub scale_down: f64,
    /// Kubernetes 1.33+ `Tolerances.isWithin`: `1 - down <= ratio <= 1 + up`.
    /// Before: `math.Abs(1.0 - usageRatio) <= tolerance` (one tolerance for both).
    pub inclusive: bool,
}

impl Tolerance {
    /// `--horizontal-pod-autoscaler-tolerance` both ways, compared as `version` does.
    pub fn new(tolerance: f64, version: KubernetesVersion) -> Self {
        Tolerance {
            scale_up: tolerance,
            scale_down: tolerance,
            inclusive: version.inclusive_tolerance(),
        }
    }

    /// Whether a usage `ratio` is close enough to 1 to keep the replica count. A NaN
    /// ratio (0 / 0) keeps the count.
    pub fn is_within(&self, ratio: f64) -> bool {
        if ratio.is_nan() {
            return true;
        }
        if self.inclusive {
            (1.0 - self.scale_down) <= ratio && ratio <= (1.0 + self.scale_up)
        } else {
            let tolerance = if ratio > 1.0 {
                self.scale_up
            } else {
                self.scale_down
            };
            (1.0 - ratio).abs() <= tolerance
        }
    }
}

/// The replica counts the HPA reads from the scale target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCounts {
    /// `scale.spec.replicas`: what was last asked for ("currentReplicas" in kube).
    pub spec: u32,
    /// `scale.status.replicas`: pods that exist, ready or not.
    pub status: u32,
    /// Ready pods (only the `Value` metric type uses them).
    pub ready: u32,
}

impl ReplicaCounts {
    /// Every pod asked for exists and is ready.
    pub fn steady(replicas: u32) -> Self {
        ReplicaCounts {
            spec: replicas,
            status: replicas,
            ready: replicas,
        }
    }
}

/// The HPA computes on `MilliValue()`s. Values and targets reach this module already
/// as the quantities KEDA made of them ([`super::KedaVersion::quantity`]), so rounding
/// here only removes the float error of `x / 1000 * 1000`.
fn milli(value: f64) -> i64 {
    (value * 1000.0).round() as i64
}

fn ceil_replicas(value: f64) -> u32 {
    // Saturating and NaN -> 0, where Go's int32() would be undefined.
    value.ceil() as u32
}

/// kube's `GetExternalPerPodMetricReplicas` (metricType AverageValue):
/// usageRatio = value / (target * statusReplicas); inside the tolerance keep the count,
/// otherwise desired = ceil(value / target), whatever the current count.
pub fn replicas_for_average_value(
    status_replicas: u32,
    value: f64,
    target: f64,
    tolerance: Tolerance,
) -> u32 {
    let (usage, target) = (milli(value) as f64, milli(target) as f64);
    let ratio = usage / (target * f64::from(status_replicas));
    if !tolerance.is_within(ratio) {
        ceil_replicas(usage / target)
    } else {
        status_replicas
    }
}

/// kube's `GetExternalMetricReplicas` + `getUsageRatioReplicaCount` (metricType Value):
/// usageRatio = value / target; desired = ceil(usageRatio * readyPods), or
/// ceil(usageRatio) from zero.
pub fn replicas_for_value(
    counts: ReplicaCounts,
    value: f64,
    target: f64,
    tolerance: Tolerance,
) -> u32 {
    let ratio = milli(value) as f64 / milli(target) as f64;
    if counts.spec == 0 {
        return ceil_replicas(ratio);
    }
    if tolerance.is_within(ratio) {
        return counts.spec;
    }
    ceil_replicas(ratio * f64::from(counts.ready))
}

/// The replica count one metric asks for.
pub fn replicas_for_metric(
    metric_type: MetricType,
    value: f64,
    target: f64,
    counts: ReplicaCounts,
    tolerance: Tolerance,
) -> u32 {
    match metric_type {
        MetricType::AverageValue => {
            replicas_for_average_value(counts.status, value, target, tolerance)
        }
        MetricType::Value => replicas_for_value(counts, value, target, tolerance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_TOLERANCE: Tolerance = Tolerance {
        scale_up: 0.1,
        scale_down: 0.1,
        inclusive: true,
    };

    // Kubernetes HPA docs, "Algorithm details": current 200m / desired 100m doubles the
    // replicas; 50m / 100m halves them.
    #[test]
    fn docs_algorithm_ratio_doubles_and_halves() {
        let counts = ReplicaCounts::steady(4);
        assert_eq!(replicas_for_value(counts, 0.2, 0.1, DEFAULT_TOLERANCE), 8);
        assert_eq!(replicas_for_value(counts, 0.05, 0.1, DEFAULT_TOLERANCE), 2);
        // The same load as a total per pod (AverageValue): 4 pods x 200m = 800m.
        assert_eq!(
            replicas_for_average_value(4, 0.8, 0.1, DEFAULT_TOLERANCE),
            8
        );
    }

    // Kubernetes HPA docs, "Algorithm details": the control plane skips scaling when the
    // ratio is within the tolerance (0.1 by default) of 1.0.
    #[test]
    fn docs_tolerance_skips_small_changes() {
        let counts = ReplicaCounts::steady(10);
        assert_eq!(
            replicas_for_value(counts, 105.0, 100.0, DEFAULT_TOLERANCE),
            10
        );
        assert_eq!(
            replicas_for_value(counts, 91.0, 100.0, DEFAULT_TOLERANCE),
            10
        );
        assert_eq!(
            replicas_for_value(counts, 115.0, 100.0, DEFAULT_TOLERANCE),
            12
        );
        assert_eq!(
            replicas_for_average_value(4, 4300.0, 1000.0, DEFAULT_TOLERANCE),
            4
        );
        assert_eq!(
            replicas_for_average_value(4, 4500.0, 1000.0, DEFAULT_TOLERANCE),
            5
        );
    }

    // KEDA docs, scaledobject-spec "triggers" / the replica matrix: with AverageValue the
    // threshold is per replica, desired = ceil(value / threshold) whatever the current
    // count; with Value the ratio multiplies the ready pods.
    #[test]
    fn keda_average_value_versus_value() {
        for current in [1, 2, 7] {
            assert_eq!(
                replicas_for_average_value(current, 5000.0, 1000.0, DEFAULT_TOLERANCE),
                5
            );
        }
        let counts = ReplicaCounts {
            spec: 2,
            status: 2,
            ready: 2,
        };
        assert_eq!(
            replicas_for_value(counts, 5000.0, 1000.0, DEFAULT_TOLERANCE),
            10
        );
        assert_eq!(
            replicas_for_value(ReplicaCounts::steady(0), 2500.0, 1000.0, DEFAULT_TOLERANCE),
            3
        );
    }

    /// Kubernetes `pkg/controller/podautoscaler/replica_calculator_test.go`, the external
    /// metric cases: (test name, current replicas, ready pods, metric milli-value,
    /// target milli-value, per pod (AverageValue) or not (Value), expected replicas).
    const UPSTREAM_EXTERNAL: [(&str, u32, u32, i64, i64, bool, u32); 6] = [
        (
            "TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods",
            3,
            1,
            8600,
            4400,
            false,
            2,
        ),
        (
            "TestReplicaCalcScaleUpPerPodCMExternal",
            3,
            3,
            8600,
            2150,
            true,
            4,
        ),
        (
            "TestReplicaCalcScaleDownCMExternal",
            5,
            5,
            8600,
            14334,
            false,
            3,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMExternal",
            5,
            5,
            8600,
            2867,
            true,
            3,
        ),
        (
            "TestReplicaCalcToleranceCMExternal",
            3,
            3,
            8600,
            8888,
            false,
            3,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMExternal",
            3,
            3,
            8600,
            2900,
            true,
            3,
        ),
    ];

    #[test]
    fn kubernetes_replica_calculator_known_answers() {
        for version in ["1.26", "1.33"] {
            let tolerance = Tolerance::new(0.1, version.parse().expect("modelled"));
            for (name, current, ready, usage, target, per_pod, want) in UPSTREAM_EXTERNAL {
                let (value, target) = (usage as f64 / 1000.0, target as f64 / 1000.0);
                let got = if per_pod {
                    replicas_for_average_value(current, value, target, tolerance)
                } else {
                    let counts = ReplicaCounts {
                        spec: current,
                        status: current,
                        ready,
                    };
                    replicas_for_value(counts, value, target, tolerance)
                };
                assert_eq!(got, want, "{name} on Kubernetes {version}");
            }
        }
    }

    // Kubernetes 1.33 `Tolerances.isWithin` (KEP-4951): `1 - down <= ratio <= 1 + up`,
    // inclusive; before, `math.Abs(1.0 - usageRatio) > tolerance` scales, and in floating
    // point |1 - 1.1| is 0.10000000000000009. mdp's queue depth 3100 on one pod (1100
    // above the 2000 floor, 1000 per pod) is exactly that ratio.
    #[test]
    fn a_ratio_of_exactly_1_1_scales_before_1_33_and_holds_since() {
        let old = Tolerance::new(0.1, "1.32".parse().expect("modelled"));
        let new = Tolerance::new(0.1, "1.33".parse().expect("modelled"));
        assert_eq!(replicas_for_average_value(1, 1100.0, 1000.0, old), 2);
        assert_eq!(replicas_for_average_value(1, 1100.0, 1000.0, new), 1);
        assert_eq!(replicas_for_average_value(10, 9000.0, 1000.0, new), 10);
        assert_eq!(replicas_for_average_value(10, 8999.0, 1000.0, new), 9);
        // Per-direction tolerances (behavior.scaleUp.tolerance / scaleDown.tolerance).
        let asymmetric = Tolerance {
            scale_up: 0.0,
            scale_down: 0.5,
            inclusive: true,
        };
        assert_eq!(replicas_for_average_value(4, 4100.0, 1000.0, asymmetric), 5);
        assert_eq!(replicas_for_average_value(4, 2100.0, 1000.0, asymmetric), 4);
    }
}
