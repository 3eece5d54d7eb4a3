//! Model of KEDA's Prometheus scaler as the HPA and the KEDA operator see it: the
//! query result through `ignoreNullValues`, activation, and the per-trigger fallback.
//!
//! Sources reproduced (KEDA v2.12-v2.20): `pkg/scalers/prometheus_scaler.go`
//! (`ExecutePromQuery`, `GetMetricsAndActivity`), `pkg/scalers/scaler.go`
//! (`GenerateMetricInMili`), `pkg/fallback/fallback.go` (`GetMetricsWithFallback`,
//! `doFallback`), `pkg/scaling/scale_handler.go` (`getScalerState`,
//! `GetScaledObjectMetrics`), `pkg/scaling/executor/scale_scaledobjects.go`
//! (`RequestScale`, `scaleToZeroOrIdle`), and the docs pages "Prometheus" scaler and
//! "ScaledObject specification" (`fallback`, `cooldownPeriod`, `pollingInterval`).
//! What differs between releases is in [`super::versions::KedaVersion`].

use super::hpa::{MetricUnavailable, ReplicaCounts};
use super::versions::KedaVersion;
use super::{AutoscaleConfig, Fallback, FallbackBehavior, MetricType, Trigger};
use std::time::Duration;

pub use super::trigger::PromResponse;

/// Why the scaler could not produce a value.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ScalerError {
    #[error("prometheus metrics 'prometheus' target may be lost, the result is empty")]
    EmptyResult,
    #[error("prometheus query returns {0}")]
    NotFinite(f64),
    #[error("prometheus query api unreachable or returned an error status")]
    Unreachable,
}

/// `ExecutePromQuery`: an empty result, NaN or ±Inf read 0 when `ignoreNullValues` is
/// true and fail otherwise. An unreachable Prometheus fails whatever `ignoreNullValues`
/// says: the HTTP error returns before the option is consulted.
pub fn read_query_result(
    response: PromResponse,
    ignore_null_values: bool,
) -> Result<f64, ScalerError> {
    match response {
        PromResponse::Unreachable => Err(ScalerError::Unreachable),
        PromResponse::Empty if ignore_null_values => Ok(0.0),
        PromResponse::Empty => Err(ScalerError::EmptyResult),
        PromResponse::Value(v) if v.is_finite() => Ok(v),
        PromResponse::Value(_) if ignore_null_values => Ok(0.0),
        PromResponse::Value(v) => Err(ScalerError::NotFinite(v)),
    }
}

/// `GetMetricsAndActivity`: a trigger is active when its value is strictly above
/// `activationThreshold`. Activation only decides 0 <-> 1; the HPA gets the value either way.
pub fn is_active(value: f64, activation_threshold: f64) -> bool {
    value > activation_threshold
}

/// `doFallback`: the replica count the fallback metric stands for. Before KEDA 2.17
/// there is no `behavior`: always `fallback.replicas`.
pub fn fallback_replicas(fallback: &Fallback, current_replicas: u32, version: KedaVersion) -> u32 {
    let configured = fallback.replicas;
    if !version.has_fallback_behavior() {
        return configured;
    }
    match fallback.behavior {
        FallbackBehavior::Static => configured,
        FallbackBehavior::CurrentReplicas => current_replicas,
        FallbackBehavior::CurrentReplicasIfHigher => current_replicas.max(configured),
        FallbackBehavior::CurrentReplicasIfLower => current_replicas.min(configured),
    }
}

/// `doFallback`: the metric value KEDA serves, "target metric value * fallback
/// replicas" (docs), which an AverageValue HPA turns back into `replicas` pods. How the
/// target is rounded first depends on the release ([`KedaVersion::fallback_target`]).
pub fn fallback_metric_value(target: f64, replicas: u32, version: KedaVersion) -> f64 {
    version.fallback_metric_value(target, replicas)
}

/// One trigger as the HPA's external-metrics query saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerReport {
    pub name: &'static str,
    /// What the scaler itself read (before the milli-quantity).
    pub scaler: Result<f64, ScalerError>,
    /// The scaler's value as the milli-quantity KEDA hands the HPA.
    pub quantity: Option<f64>,
    pub active: bool,
    /// Consecutive failures so far (`status.health[...].numberOfFailures`).
    pub consecutive_failures: u32,
    /// The value served instead of the error while the fallback applies.
    pub fallback_value: Option<f64>,
}

impl TriggerReport {
    /// What reaches the HPA: the scaler's value, the fallback value, or an error.
    pub fn hpa_value(&self) -> Result<f64, MetricUnavailable> {
        match (self.quantity, &self.scaler, self.fallback_value) {
            (Some(value), ..) => Ok(value),
            (None, Ok(value), _) => Ok(*value),
            (None, Err(_), Some(fallback)) => Ok(fallback),
            (None, Err(error), None) => Err(MetricUnavailable(error.to_string())),
        }
    }
}

/// KEDA's state for one ScaledObject: per-trigger failure counts and the last time a
/// trigger was active.
#[derive(Debug, Clone)]
pub struct ScaledObject {
    triggers: Vec<Trigger>,
    fallback: Option<Fallback>,
    ignore_null_values: bool,
    min_replicas: u32,
    cooldown_period: Duration,
    version: KedaVersion,
    failures: Vec<u32>,
    last_active: Option<Duration>,
}

impl ScaledObject {
    pub fn new(config: &AutoscaleConfig) -> Self {
        ScaledObject {
            triggers: config.triggers.clone(),
            fallback: config.fallback.clone(),
            ignore_null_values: config.ignore_null_values,
            min_replicas: config.min_replicas,
            cooldown_period: config.cooldown_period,
            version: config.versions.keda,
            failures: vec![0; config.triggers.len()],
            last_active: None,
        }
    }

    pub fn triggers(&self) -> &[Trigger] {
        &self.triggers
    }

    /// The metrics server's answer to one HPA sync (`GetMetricsWithFallback` per
    /// trigger). `responses[i]` answers `triggers[i]`; a missing one is unreachable.
    /// A success resets the trigger's failure count; a failure increments it, and once
    /// the count exceeds `failureThreshold` (is "passed", docs) the fallback value is
    /// served. The fallback is applied to AverageValue triggers (mdp's only kind).
    pub fn external_metrics(
        &mut self,
        responses: &[PromResponse],
        current_replicas: u32,
    ) -> Vec<TriggerReport> {
        (0..self.triggers.len())
            .map(|index| {
                let response = responses
                    .get(index)
                    .copied()
                    .unwrap_or(PromResponse::Unreachable);
                self.with_fallback(index, response, current_replicas)
            })
            .collect()
    }

    /// `GetMetricsWithFallback` for trigger `index`: reads, counts, falls back.
    fn with_fallback(
        &mut self,
        index: usize,
        response: PromResponse,
        current_replicas: u32,
    ) -> TriggerReport {
        let trigger = &self.triggers[index];
        let scaler = read_query_result(response, self.ignore_null_values);
        let failures = &mut self.failures[index];
        *failures = match scaler {
            Ok(_) => 0,
            Err(_) => failures.saturating_add(1),
        };
        let fallback_value = match (scaler, &self.fallback) {
            (Err(_), Some(fallback))
                if trigger.metric_type() == MetricType::AverageValue
                    && *failures > fallback.failure_threshold =>
            {
                let replicas = fallback_replicas(fallback, current_replicas, self.version);
                Some(fallback_metric_value(
                    self.version.quantity(trigger.threshold()),
                    replicas,
                    self.version,
                ))
            }
            _ => None,
        };
        TriggerReport {
            name: trigger.name(),
            active: scaler.is_ok_and(|v| is_active(v, trigger.activation_threshold())),
            quantity: scaler.ok().map(|v| self.version.quantity(v)),
            scaler,
            consecutive_failures: *failures,
            fallback_value,
        }
    }

    /// Consecutive failures of each trigger (`status.health[...].numberOfFailures`).
    pub fn failures(&self) -> &[u32] {
        &self.failures
    }

    /// The operator's loop, every `pollingInterval` (`RequestScale`): returns the replica
    /// count KEDA itself sets, if any. It only acts around zero: active with 0 replicas
    /// -> `max(minReplicaCount, 1)`; nothing active for `cooldownPeriod` with
    /// `minReplicaCount` 0 -> 0; below `minReplicaCount` and inactive -> min. While a
    /// trigger errors and nothing is active it holds (the HPA's fallback metric acts).
    pub fn poll(
        &mut self,
        now: Duration,
        responses: &[PromResponse],
        counts: ReplicaCounts,
    ) -> Option<u32> {
        let mut any_active = false;
        let mut any_error = false;
        for index in 0..self.triggers.len() {
            let response = responses
                .get(index)
                .copied()
                .unwrap_or(PromResponse::Unreachable);
            if self.version.operator_counts_failures() {
                // KEDA 2.19+ `getScalerState`: the same `GetMetricsWithFallback` as the
                // HPA's requests, on the same counter; an engaged fallback is active.
                let report = self.with_fallback(index, response, counts.spec);
                if report.fallback_value.is_some() {
                    any_active = true;
                } else if report.scaler.is_err() {
                    any_error = true;
                } else {
                    any_active |= report.active;
                }
                continue;
            }
            let trigger = &self.triggers[index];
            match read_query_result(response, self.ignore_null_values) {
                Ok(value) => any_active |= is_active(value, trigger.activation_threshold()),
                Err(_) => any_error = true,
            }
        }
        let current = counts.spec;
        if any_active {
            if current == 0 {
                self.last_active = Some(now);
                return Some(self.min_replicas.max(1));
            }
            // Active but partly failing: KEDA only flags PartialTriggerError, and does
            // not refresh lastActiveTime.
            if !any_error {
                self.last_active = Some(now);
            }
            return None;
        }
        if any_error {
            return None;
        }
        if current > 0 && self.min_replicas == 0 {
            // `lastActiveTime + cooldownPeriod` must be strictly before now.
            let cooled = self
                .last_active
                .is_none_or(|last| last + self.cooldown_period < now);
            return cooled.then_some(0);
        }
        (current < self.min_replicas).then_some(self.min_replicas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::hpa::{Tolerance, replicas_for_average_value};
    use crate::autoscale::versions::KubernetesVersion;
    use crate::level::Level;

    const NEWEST: KedaVersion = KedaVersion::NEWEST;

    fn tolerance() -> Tolerance {
        Tolerance::new(0.1, KubernetesVersion::DEFAULT)
    }

    fn keda(minor: &str) -> KedaVersion {
        minor.parse().expect("a modelled KEDA release")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    // KEDA Prometheus scaler docs, `ignoreNullValues` (default true): an empty result
    // reads 0; with "false" it is an error (`ExecutePromQuery`).
    #[test]
    fn ignore_null_values_decides_what_empty_means() {
        assert_eq!(read_query_result(PromResponse::Empty, true), Ok(0.0));
        assert_eq!(
            read_query_result(PromResponse::Empty, false),
            Err(ScalerError::EmptyResult)
        );
        assert_eq!(
            read_query_result(PromResponse::Value(f64::NAN), true),
            Ok(0.0)
        );
        assert!(read_query_result(PromResponse::Value(f64::INFINITY), false).is_err());
        assert_eq!(
            read_query_result(PromResponse::from(Some(42.0)), false),
            Ok(42.0)
        );
        assert_eq!(PromResponse::from(None), PromResponse::Empty);
    }

    // `ExecutePromQuery` returns the HTTP error before looking at ignoreNullValues: a
    // dead Prometheus is an error either way (the matrix's "reads 0" holds for lost series).
    #[test]
    fn unreachable_prometheus_is_always_an_error() {
        for ignore in [true, false] {
            assert_eq!(
                read_query_result(PromResponse::Unreachable, ignore),
                Err(ScalerError::Unreachable)
            );
        }
    }

    // the replica matrix, KEDA facts: `x == 2` drops the series when false and KEDA then reads
    // 0 with the default ignoreNullValues true: the HARD trigger silently never fires
    // when the gauge vanishes. With `== bool` and "false" a vanished gauge is an error.
    #[test]
    fn lost_series_reads_zero_only_with_ignore_null_values() {
        let mut config = AutoscaleConfig {
            ignore_null_values: true,
            ..AutoscaleConfig::default()
        };
        let mut keda = ScaledObject::new(&config);
        let reports = keda.external_metrics(&[PromResponse::Empty, PromResponse::Empty], 1);
        assert_eq!(reports[1].hpa_value(), Ok(0.0));
        config.ignore_null_values = false;
        let mut keda = ScaledObject::new(&config);
        let reports = keda.external_metrics(&[PromResponse::Empty, PromResponse::Empty], 1);
        assert!(reports[1].hpa_value().is_err());
    }

    // KEDA docs, ScaledObject spec "fallback": once the consecutive failures pass
    // failureThreshold, the scaler returns target * fallback replicas; the HPA (AverageValue)
    // turns that into exactly fallback.replicas. `fallback.go` compares with `>`, so
    // with failureThreshold 3 the fourth failure is the first to fall back.
    #[test]
    fn fallback_starts_after_failure_threshold_and_resets_on_success() {
        let config = AutoscaleConfig {
            fallback: Some(Fallback {
                behavior: FallbackBehavior::Static,
                ..Fallback::default()
            }),
            ..AutoscaleConfig::default()
        };
        let mut keda = ScaledObject::new(&config);
        let down = [PromResponse::Unreachable, PromResponse::Unreachable];
        for failure in 1..=3 {
            let reports = keda.external_metrics(&down, 2);
            assert_eq!(reports[0].consecutive_failures, failure);
            assert!(reports[0].hpa_value().is_err(), "failure {failure}");
        }
        let reports = keda.external_metrics(&down, 2);
        assert_eq!(reports[0].hpa_value(), Ok(6000.0));
        assert_eq!(reports[1].hpa_value(), Ok(6.0));
        for report in &reports {
            let value = report.hpa_value().unwrap_or(f64::NAN);
            let target = config
                .triggers
                .iter()
                .find(|t| t.name() == report.name)
                .map_or(1.0, Trigger::threshold);
            assert_eq!(replicas_for_average_value(2, value, target, tolerance()), 6);
        }
        let ok = [PromResponse::Value(0.0), PromResponse::Value(0.0)];
        assert_eq!(keda.external_metrics(&ok, 6)[0].consecutive_failures, 0);
        assert!(keda.external_metrics(&down, 6)[0].hpa_value().is_err());
    }

    // KEDA docs, ScaledObject spec "fallback.behavior": currentReplicasIfHigher keeps the
    // current count when it is above fallback.replicas; the other behaviours as named.
    #[test]
    fn fallback_behaviours() {
        let with = |behavior| Fallback {
            failure_threshold: 3,
            replicas: 6,
            behavior,
        };
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfHigher), 8, NEWEST),
            8
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfHigher), 2, NEWEST),
            6
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfLower), 3, NEWEST),
            3
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicas), 4, NEWEST),
            4
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::Static), 9, NEWEST),
            6
        );
    }

    // `doFallback` in KEDA 2.14-2.17 truncates the target with int64(): a 0.1 target
    // would serve 0 and ask for no pods, which is why the HARD trigger scales its query
    // and uses threshold 1. 2.18+ multiplies first and keeps the fraction.
    #[test]
    fn fractional_targets_break_the_fallback_in_2_14_to_2_17() {
        assert_eq!(fallback_metric_value(0.1, 10, keda("2.17")), 0.0);
        assert_eq!(fallback_metric_value(0.1, 10, keda("2.18")), 1.0);
        assert_eq!(fallback_metric_value(0.1, 10, keda("2.12")), 1.0);
        assert_eq!(fallback_metric_value(1.0, 10, NEWEST), 10.0);
        assert_eq!(fallback_metric_value(1000.0, 6, NEWEST), 6000.0);
    }

    /// A one-trigger ScaledObject with `fallback` (target 10 per replica, as
    /// `createMetricSpec(10)` in KEDA's `pkg/fallback/fallback_test.go`).
    fn upstream_fixture(behavior: FallbackBehavior, version: KedaVersion) -> ScaledObject {
        let mut config = AutoscaleConfig {
            triggers: vec![Trigger::queue_depth(0.0, 10.0)],
            fallback: Some(Fallback {
                failure_threshold: 3,
                replicas: 10,
                behavior,
            }),
            ..AutoscaleConfig::default()
        };
        config.versions.keda = version;
        ScaledObject::new(&config)
    }

    // Transcribed from KEDA v2.20.2 `pkg/fallback/fallback_test.go` (Ginkgo `It` names
    // below): inputs and expected outputs as data.
    #[test]
    fn keda_fallback_test_suite_known_answers() {
        let down = [PromResponse::Unreachable];
        // "should bump the number of failures when metrics call fails": 0 -> 1, error.
        let mut so = upstream_fixture(FallbackBehavior::Static, NEWEST);
        let report = so.external_metrics(&down, 5);
        assert_eq!(report[0].consecutive_failures, 1);
        assert!(report[0].hpa_value().is_err());
        // "should return a normalised metric when number of failures are beyond
        // threshold": starting at 3 failures, threshold 3, replicas 10, target 10 ->
        // 100, and 4 failures.
        so.failures[0] = 3;
        let report = so.external_metrics(&down, 5);
        assert_eq!(report[0].consecutive_failures, 4);
        assert_eq!(report[0].hpa_value(), Ok(100.0));
        // "should reset the health status when scaler metrics are available when
        // fallback is enabled": 5 failures, then a value -> 0 and the value itself.
        so.failures[0] = 5;
        let report = so.external_metrics(&[PromResponse::Value(20.0)], 5);
        assert_eq!(report[0].consecutive_failures, 0);
        assert_eq!(report[0].hpa_value(), Ok(20.0));
        // The behaviour cases start at 3 failures with threshold 3 and replicas 10:
        // "should use fallback replicas when current replicas is lower when behavior is
        // 'currentReplicasIfHigher'" (current 5 -> 100), "should use current replicas
        // when behavior is 'currentReplicas'" (current 6 -> 60), "should ignore current
        // replicas when behavior is 'static'" (current 15 -> 100).
        for (behavior, current, want) in [
            (FallbackBehavior::CurrentReplicasIfHigher, 5, 100.0),
            (FallbackBehavior::CurrentReplicas, 6, 60.0),
            (FallbackBehavior::Static, 15, 100.0),
        ] {
            let mut so = upstream_fixture(behavior, NEWEST);
            so.failures[0] = 3;
            let report = so.external_metrics(&down, current);
            assert_eq!(report[0].hpa_value(), Ok(want), "{behavior:?}");
        }
        // Before 2.17 there is no behavior: currentReplicas still serves 10 replicas.
        let mut so = upstream_fixture(FallbackBehavior::CurrentReplicas, keda("2.16"));
        so.failures[0] = 3;
        assert_eq!(so.external_metrics(&down, 6)[0].hpa_value(), Ok(100.0));
    }

    // KEDA 2.19 `getScalerState`: the polling loop runs the same fallback on the same
    // counter, so with both loops every 15 s the counter passes 3 at the second HPA sync.
    #[test]
    fn since_2_19_the_operator_loop_counts_failures_too() {
        for (version, first_fallback_sync) in [(keda("2.18"), 4), (keda("2.19"), 2)] {
            let mut so = upstream_fixture(FallbackBehavior::Static, version);
            let down = [PromResponse::Unreachable];
            let mut engaged_at = None;
            for sync in 1..=6 {
                so.poll(secs(15 * sync), &down, ReplicaCounts::steady(2));
                let report = so.external_metrics(&down, 2);
                if report[0].fallback_value.is_some() && engaged_at.is_none() {
                    engaged_at = Some(sync);
                }
            }
            assert_eq!(engaged_at, Some(first_fallback_sync), "KEDA {version}");
        }
    }

    // KEDA Prometheus scaler docs, `activationThreshold`; ScaledObject spec
    // "cooldownPeriod" (only applies to scaling to 0) and "minReplicaCount".
    #[test]
    fn operator_activation_and_cooldown() {
        let config = AutoscaleConfig {
            min_replicas: 0,
            triggers: vec![Trigger::QueueDepth {
                floor: 0.0,
                per_replica: 100.0,
                activation_threshold: 50.0,
            }],
            ..AutoscaleConfig::default()
        };
        let mut keda = ScaledObject::new(&config);
        let at = |v| [PromResponse::Value(v)];
        assert_eq!(
            keda.poll(secs(0), &at(50.0), ReplicaCounts::steady(0)),
            None
        );
        assert_eq!(
            keda.poll(secs(15), &at(51.0), ReplicaCounts::steady(0)),
            Some(1)
        );
        assert_eq!(
            keda.poll(secs(30), &at(900.0), ReplicaCounts::steady(9)),
            None
        );
        assert_eq!(
            keda.poll(secs(45), &at(0.0), ReplicaCounts::steady(3)),
            None
        );
        assert_eq!(
            keda.poll(secs(330), &at(0.0), ReplicaCounts::steady(1)),
            None
        );
        assert_eq!(
            keda.poll(secs(331), &at(0.0), ReplicaCounts::steady(1)),
            Some(0)
        );
        // An erroring trigger never lets the operator scale to zero.
        assert_eq!(
            keda.poll(
                secs(400),
                &[PromResponse::Unreachable],
                ReplicaCounts::steady(1)
            ),
            None
        );
    }

    #[test]
    fn operator_restores_min_replicas_with_min_one() {
        let mut keda = ScaledObject::new(&AutoscaleConfig::default());
        let calm = [
            Trigger::queue_depth(2000.0, 1000.0).local_response(500.0, Level::Ok),
            Trigger::hard_backpressure(10).local_response(500.0, Level::Ok),
        ];
        assert_eq!(keda.poll(secs(0), &calm, ReplicaCounts::steady(0)), Some(1));
        assert_eq!(keda.poll(secs(15), &calm, ReplicaCounts::steady(1)), None);
    }
}
