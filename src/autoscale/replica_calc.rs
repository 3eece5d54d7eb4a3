//! The HPA's per-metric replica calculation for KEDA's external metrics (kube's
//! `replica_calculator.go`), with the tolerance and KEDA's milli-quantities.

use super::MetricType;

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

/// KEDA hands values to the HPA as milli-quantities (`GenerateMetricInMili`:
/// `int64(value * 1000)`) and targets likewise (`GetMetricTargetMili`); the HPA then
/// computes on `MilliValue()`s. `as` truncates and saturates like that conversion.
fn milli(value: f64) -> i64 {
    (value * 1000.0) as i64
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
    tolerance: f64,
) -> u32 {
    let (usage, target) = (milli(value) as f64, milli(target) as f64);
    let ratio = usage / (target * f64::from(status_replicas));
    // A NaN ratio (0 / 0) compares false and keeps the count, as in Go.
    if (1.0 - ratio).abs() > tolerance {
        ceil_replicas(usage / target)
    } else {
        status_replicas
    }
}

/// kube's `GetExternalMetricReplicas` + `getUsageRatioReplicaCount` (metricType Value):
/// usageRatio = value / target; desired = ceil(usageRatio * readyPods), or
/// ceil(usageRatio) from zero.
pub fn replicas_for_value(counts: ReplicaCounts, value: f64, target: f64, tolerance: f64) -> u32 {
    let ratio = milli(value) as f64 / milli(target) as f64;
    if counts.spec == 0 {
        return ceil_replicas(ratio);
    }
    if (1.0 - ratio).abs() <= tolerance {
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
    tolerance: f64,
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
    use crate::autoscale::hpa::DEFAULT_TOLERANCE;

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
}
