//! Model of KEDA's Prometheus scaler as the HPA and the KEDA operator see it: the
//! query result through `ignoreNullValues`, activation, and the per-trigger fallback.
//!
//! Sources reproduced (KEDA v2.x): `pkg/scalers/prometheus_scaler.go`
//! (`ExecutePromQuery`, `GetMetricsAndActivity`), `pkg/fallback/fallback.go`
//! (`GetMetricsWithFallback`, `doFallback`), `pkg/scaling/executor/scale_scaledobjects.go`
//! (`RequestScale`, `scaleToZeroOrIdle`), and the docs pages "Prometheus" scaler and
//! "ScaledObject specification" (`fallback`, `cooldownPeriod`, `pollingInterval`).

use super::hpa::{MetricUnavailable, ReplicaCounts};
use super::{AutoscaleConfig, Fallback, FallbackBehavior, MetricType, Trigger};
use std::time::Duration;

/// What Prometheus answered to a trigger's query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PromResponse {
    /// A single sample (NaN and infinities included, as Prometheus can return them).
    Value(f64),
    /// An empty vector: the series does not exist (target lost, filtered away).
    Empty,
    /// No answer: connection refused, timeout, or a non-2xx status.
    Unreachable,
}

impl From<Option<f64>> for PromResponse {
    /// `None` is an empty result (not an unreachable server).
    fn from(value: Option<f64>) -> Self {
        value.map_or(PromResponse::Empty, PromResponse::Value)
    }
}

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

/// `doFallback`: the replica count the fallback metric stands for.
pub fn fallback_replicas(fallback: &Fallback, current_replicas: u32) -> u32 {
    let configured = fallback.replicas;
    match fallback.behavior {
        FallbackBehavior::Static => configured,
        FallbackBehavior::CurrentReplicas => current_replicas,
        FallbackBehavior::CurrentReplicasIfHigher => current_replicas.max(configured),
        FallbackBehavior::CurrentReplicasIfLower => current_replicas.min(configured),
    }
}

/// `doFallback`: the metric value KEDA serves, `int64(target) * replicas` (the docs'
/// "target metric value * fallback replicas"), which an AverageValue HPA turns back into
/// `replicas` pods. The target is truncated to an integer first.
pub fn fallback_metric_value(target: f64, replicas: u32) -> f64 {
    target.trunc() * f64::from(replicas)
}

/// One trigger as the HPA's external-metrics query saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerReport {
    pub name: &'static str,
    /// What the scaler itself read.
    pub scaler: Result<f64, ScalerError>,
    pub active: bool,
    /// Consecutive failures so far (`status.health[...].numberOfFailures`).
    pub consecutive_failures: u32,
    /// The value served instead of the error while the fallback applies.
    pub fallback_value: Option<f64>,
}

impl TriggerReport {
    /// What reaches the HPA: the scaler's value, the fallback value, or an error.
    pub fn hpa_value(&self) -> Result<f64, MetricUnavailable> {
        match (&self.scaler, self.fallback_value) {
            (Ok(value), _) => Ok(*value),
            (Err(_), Some(fallback)) => Ok(fallback),
            (Err(error), None) => Err(MetricUnavailable(error.to_string())),
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
    /// served. Fallback only exists for AverageValue triggers.
    pub fn external_metrics(
        &mut self,
        responses: &[PromResponse],
        current_replicas: u32,
    ) -> Vec<TriggerReport> {
        let ignore_null_values = self.ignore_null_values;
        let fallback = self.fallback.as_ref();
        self.triggers
            .iter()
            .zip(self.failures.iter_mut())
            .enumerate()
            .map(|(index, (trigger, failures))| {
                let response = responses
                    .get(index)
                    .copied()
                    .unwrap_or(PromResponse::Unreachable);
                let scaler = read_query_result(response, ignore_null_values);
                *failures = match scaler {
                    Ok(_) => 0,
                    Err(_) => failures.saturating_add(1),
                };
                let fallback_value = match (scaler, fallback) {
                    (Err(_), Some(fallback))
                        if trigger.metric_type() == MetricType::AverageValue
                            && *failures > fallback.failure_threshold =>
                    {
                        let replicas = fallback_replicas(fallback, current_replicas);
                        Some(fallback_metric_value(trigger.threshold(), replicas))
                    }
                    _ => None,
                };
                TriggerReport {
                    name: trigger.name(),
                    active: scaler.is_ok_and(|v| is_active(v, trigger.activation_threshold())),
                    scaler,
                    consecutive_failures: *failures,
                    fallback_value,
                }
            })
            .collect()
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
        for (index, trigger) in self.triggers.iter().enumerate() {
            let response = responses
                .get(index)
                .copied()
                .unwrap_or(PromResponse::Unreachable);
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
    use crate::autoscale::hpa::replicas_for_average_value;
    use crate::level::Level;

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
            assert_eq!(replicas_for_average_value(2, value, target, 0.1), 6);
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
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfHigher), 8),
            8
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfHigher), 2),
            6
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicasIfLower), 3),
            3
        );
        assert_eq!(
            fallback_replicas(&with(FallbackBehavior::CurrentReplicas), 4),
            4
        );
        assert_eq!(fallback_replicas(&with(FallbackBehavior::Static), 9), 6);
    }

    // `doFallback` truncates the target with int64(): a 0.1 target would serve 0 and ask
    // for no pods, which is why the HARD trigger scales its query and uses threshold 1.
    #[test]
    fn fractional_targets_break_the_fallback() {
        assert_eq!(fallback_metric_value(0.1, 10), 0.0);
        assert_eq!(fallback_metric_value(1.0, 10), 10.0);
        assert_eq!(fallback_metric_value(1000.0, 6), 6000.0);
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
