//! Autoscaling configuration (KEDA triggers, HPA behaviour) and models of KEDA and the HPA.
//!
//! [`AutoscaleConfig`] is the single source of truth: `mdp export` renders it into the
//! KEDA ScaledObject, `mdp simulate` runs it through [`keda`], [`hpa`] and [`pods`] on
//! virtual time ([`cluster::Cluster`] wires them together), and the dashboard asks
//! [`AutoscaleConfig::desired_replicas_now`] what the exported configuration would ask
//! for right now, and why. Everything here is pure: time is a [`Duration`] since the
//! start of the simulation, never the system clock.

mod args;
pub mod behavior;
pub mod cluster;
pub mod hpa;
pub mod keda;
pub mod pods;
mod replica_calc;
mod trigger;
mod validate;
pub mod versions;

pub use args::{AutoscaleArgs, AutoscaleArgsError};
pub use behavior::{HpaBehavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy};
pub use trigger::{
    BACKPRESSURE_METRIC, MetricType, QUEUE_DEPTH_METRIC, QUEUE_DEPTH_SOURCE, Trigger,
};
pub use validate::ConfigError;
pub use versions::{KedaVersion, KubernetesVersion, Versions};

use crate::level::Level;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Prometheus the KEDA triggers query by default: kube-prometheus's `prometheus-k8s`
/// in `monitoring` (kube-prometheus-stack names it RELEASE-kube-prometheus-prometheus).
pub const DEFAULT_PROMETHEUS_ADDRESS: &str =
    "http://prometheus-k8s.monitoring.svc.cluster.local:9090";
/// `Recommendation::trigger` when `minReplicaCount` (not a trigger) set the count.
pub const DECIDED_BY_MIN: &str = "minReplicaCount";
/// `Recommendation::trigger` when `maxReplicaCount` capped what a trigger asked for.
pub const DECIDED_BY_MAX: &str = "maxReplicaCount";
/// `Recommendation::trigger` when `minReplicaCount` is 0 and no trigger is active.
pub const DECIDED_BY_IDLE: &str = "idle";

/// What KEDA does when a trigger keeps failing (ScaledObject `spec.fallback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Consecutive failures a trigger may have before the fallback applies
    /// (the fallback starts on failure number `failure_threshold + 1`).
    pub failure_threshold: u32,
    /// Replica count the fallback metric asks for.
    pub replicas: u32,
    /// How `replicas` combines with the current count. KEDA's default is `static`.
    #[serde(default)]
    pub behavior: FallbackBehavior,
}

impl Default for Fallback {
    fn default() -> Self {
        Fallback {
            failure_threshold: 3,
            replicas: 6,
            behavior: FallbackBehavior::CurrentReplicasIfHigher,
        }
    }
}

/// ScaledObject `spec.fallback.behavior`, spelt as KEDA spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    /// Always `fallback.replicas`.
    #[default]
    Static,
    /// Keep the current replica count.
    CurrentReplicas,
    /// `max(current, fallback.replicas)`: never scale in because the metrics went dark.
    CurrentReplicasIfHigher,
    /// `min(current, fallback.replicas)`.
    CurrentReplicasIfLower,
}

impl FallbackBehavior {
    /// The value of `fallback.behavior` in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackBehavior::Static => "static",
            FallbackBehavior::CurrentReplicas => "currentReplicas",
            FallbackBehavior::CurrentReplicasIfHigher => "currentReplicasIfHigher",
            FallbackBehavior::CurrentReplicasIfLower => "currentReplicasIfLower",
        }
    }
}

/// The autoscaling configuration: rendered by `mdp export`, run by `mdp simulate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscaleConfig {
    /// `minReplicaCount` (0 lets KEDA scale to zero; the HPA itself never goes below 1).
    pub min_replicas: u32,
    /// `maxReplicaCount`.
    pub max_replicas: u32,
    /// `pollingInterval`: how often the KEDA operator checks activation (0 <-> 1).
    #[serde(with = "duration_str")]
    pub polling_interval: Duration,
    /// `cooldownPeriod`: only governs scaling to zero (N -> 1 is the HPA's business).
    #[serde(with = "duration_str")]
    pub cooldown_period: Duration,
    /// `serverAddress` of every Prometheus trigger.
    pub prometheus_address: String,
    /// The triggers; the HPA takes the largest replica count any of them asks for.
    pub triggers: Vec<Trigger>,
    /// `spec.fallback`; `None` leaves failing triggers to the HPA (which then holds).
    pub fallback: Option<Fallback>,
    /// Prometheus trigger `ignoreNullValues` (KEDA's default is true; ours false so an
    /// empty result is a failure that reaches the fallback, not a silent zero).
    pub ignore_null_values: bool,
    /// `advanced.horizontalPodAutoscalerConfig.behavior`.
    pub behavior: HpaBehavior,
    /// The KEDA and Kubernetes releases modelled and exported for (`--keda-version`,
    /// `--k8s-version`); not part of the configuration file.
    #[serde(skip)]
    pub versions: Versions,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            min_replicas: 1,
            max_replicas: 10,
            polling_interval: Duration::from_secs(15),
            cooldown_period: Duration::from_secs(300),
            prometheus_address: DEFAULT_PROMETHEUS_ADDRESS.to_owned(),
            triggers: Trigger::defaults(),
            fallback: Some(Fallback::default()),
            ignore_null_values: false,
            behavior: HpaBehavior::default(),
            versions: Versions::default(),
        }
    }
}

/// What one trigger reads and asks for (a row of the dashboard's "why").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerReading {
    pub name: &'static str,
    /// The value the trigger's PromQL would return.
    pub value: f64,
    /// The replica count the HPA derives from this trigger alone.
    pub desired: u32,
    /// Whether KEDA counts the trigger as active (`value > activationThreshold`).
    pub active: bool,
}

/// The replica count the exported configuration would ask for right now, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub replicas: u32,
    /// The trigger that decided, or [`DECIDED_BY_MIN`] / [`DECIDED_BY_MAX`] / [`DECIDED_BY_IDLE`].
    pub trigger: &'static str,
    pub per_trigger: Vec<TriggerReading>,
    /// Why, in words ("4: queue_depth asks for 4").
    pub reason: String,
}

impl AutoscaleConfig {
    /// The HPA's `minReplicas`: KEDA never gives the HPA less than 1 (0 <-> 1 is its own job).
    pub fn hpa_min_replicas(&self) -> u32 {
        self.min_replicas.max(1)
    }

    /// The replica count the exported KEDA configuration would ask for right now, for a
    /// queue `depth` and backpressure `level` seen by Prometheus, with `current_replicas`
    /// running: each trigger's value as KEDA hands it over (its milli-quantity), through
    /// the HPA's replica calculation with its tolerance, the largest wins, clamped to
    /// [minReplicas, maxReplicas]. Stabilization windows and rate policies need history:
    /// [`cluster::Cluster`] applies those.
    pub fn desired_replicas_now(
        &self,
        depth: f64,
        level: Level,
        current_replicas: u32,
    ) -> Recommendation {
        let counts = hpa::ReplicaCounts::steady(current_replicas);
        let hpa = hpa::HpaConfig::for_scaled_object(self);
        let per_trigger: Vec<TriggerReading> = self
            .triggers
            .iter()
            .zip(&hpa.metrics)
            .map(|(trigger, metric)| {
                let value = trigger.local_value(depth, level);
                TriggerReading {
                    name: trigger.name(),
                    value,
                    desired: hpa::replicas_for_metric(
                        trigger.metric_type(),
                        self.versions.keda.quantity(value),
                        metric.target,
                        counts,
                        hpa.tolerance,
                    ),
                    active: keda::is_active(value, trigger.activation_threshold()),
                }
            })
            .collect();
        // computeReplicasForMetrics: the largest proposal wins, the first one on a tie.
        let mut best: Option<&TriggerReading> = None;
        for reading in &per_trigger {
            if best.is_none_or(|b| reading.desired > b.desired) {
                best = Some(reading);
            }
        }
        let proposed = best.map_or(0, |b| b.desired);
        let name = best.map_or("no trigger", |b| b.name);
        let (replicas, trigger, reason) = if self.min_replicas == 0
            && !per_trigger.iter().any(|r| r.active)
        {
            (
                0,
                DECIDED_BY_IDLE,
                "0: no trigger is active and minReplicaCount is 0 (KEDA scales to zero after cooldownPeriod)".to_owned(),
            )
        } else if proposed < self.hpa_min_replicas() {
            let min = self.hpa_min_replicas();
            (
                min,
                DECIDED_BY_MIN,
                format!("{min}: {name} asks for {proposed}; raised to minReplicaCount {min}"),
            )
        } else if proposed > self.max_replicas {
            let max = self.max_replicas;
            (
                max,
                DECIDED_BY_MAX,
                format!("{max}: {name} asks for {proposed}; capped at maxReplicaCount {max}"),
            )
        } else {
            let within = proposed == current_replicas && current_replicas > 0;
            let note = if within {
                " (within the HPA's tolerance of the current count)"
            } else {
                ""
            };
            (
                proposed,
                best.map_or(DECIDED_BY_MIN, |b| b.name),
                format!("{proposed}: {name} asks for {proposed}{note}"),
            )
        };
        Recommendation {
            replicas,
            trigger,
            per_trigger,
            reason,
        }
    }
}

/// Serde for durations as humantime strings (`15s`, `5m`), like the command line.
pub(crate) mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn replicas(depth: f64, level: Level, current: u32) -> u32 {
        AutoscaleConfig::default()
            .desired_replicas_now(depth, level, current)
            .replicas
    }

    // The replica matrix (docs/replica-matrix.md). The HPA's answer depends on the
    // current count only through its 10% tolerance, so each row is checked from every
    // count in [min, max].
    #[test]
    fn default_config_gives_the_spec_replica_matrix() {
        let rows: [(&str, &[f64], Level, u32, u32); 5] = [
            ("idle", &[0.0, 500.0, 1999.0], Level::Ok, 1, 1),
            ("moderate", &[5000.0, 6000.0, 7000.0], Level::Soft, 3, 5),
            ("high", &[8000.0, 9000.0, 9999.0], Level::Soft, 6, 8),
            ("overload", &[9000.0, 9500.0, 10000.0], Level::Hard, 8, 10),
            ("recovery", &[800.0, 1999.0], Level::Ok, 1, 1),
        ];
        for (row, depths, level, low, high) in rows {
            for &depth in depths {
                for current in 1..=10 {
                    let got = replicas(depth, level, current);
                    assert!(
                        (low..=high).contains(&got),
                        "{row}: depth {depth} {level} from {current} pods asked {got}, want {low}..={high}"
                    );
                }
            }
        }
    }

    // The worked numbers of the brief: AverageValue, desired = ceil(value / threshold).
    #[test]
    fn queue_depth_trigger_numbers_from_one_replica() {
        for (depth, want) in [
            (500.0, 1),
            (5000.0, 3),
            (6000.0, 4),
            (7000.0, 5),
            (8000.0, 6),
            (9500.0, 8),
        ] {
            assert_eq!(replicas(depth, Level::Soft, 1), want, "depth {depth}");
        }
    }

    #[test]
    fn recommendation_names_the_deciding_trigger() {
        let config = AutoscaleConfig::default();
        let idle = config.desired_replicas_now(500.0, Level::Ok, 1);
        assert_eq!((idle.replicas, idle.trigger), (1, DECIDED_BY_MIN));
        let soft = config.desired_replicas_now(6000.0, Level::Soft, 1);
        assert_eq!((soft.replicas, soft.trigger), (4, "queue_depth"));
        assert_eq!(soft.per_trigger[0].value, 4000.0);
        assert_eq!(soft.per_trigger[1].desired, 0);
        let hard = config.desired_replicas_now(9500.0, Level::Hard, 4);
        assert_eq!((hard.replicas, hard.trigger), (10, "hard_backpressure"));
        let json = serde_json::to_value(&hard).expect("a recommendation serializes");
        assert_eq!(json["per_trigger"][1]["name"], "hard_backpressure");
    }

    #[test]
    fn max_replicas_caps_and_says_so() {
        let config = AutoscaleConfig {
            max_replicas: 5,
            fallback: None,
            ..AutoscaleConfig::default()
        };
        let rec = config.desired_replicas_now(9500.0, Level::Hard, 1);
        assert_eq!((rec.replicas, rec.trigger), (5, DECIDED_BY_MAX));
    }

    #[test]
    fn min_zero_and_nothing_active_means_idle() {
        let config = AutoscaleConfig {
            min_replicas: 0,
            ..AutoscaleConfig::default()
        };
        let rec = config.desired_replicas_now(500.0, Level::Ok, 1);
        assert_eq!((rec.replicas, rec.trigger), (0, DECIDED_BY_IDLE));
        assert_eq!(
            config.desired_replicas_now(2500.0, Level::Soft, 0).replicas,
            1
        );
    }

    #[test]
    fn config_round_trips_through_json_with_humantime_durations() {
        let config = AutoscaleConfig::default();
        let json = serde_json::to_value(&config).expect("config serializes");
        assert_eq!(json["polling_interval"], "15s");
        assert_eq!(json["fallback"]["behavior"], "currentReplicasIfHigher");
        assert_eq!(json["triggers"][0]["type"], "queue_depth");
        assert_eq!(
            json["behavior"]["scale_up"]["policies"][0]["type"],
            "Percent"
        );
        let back: AutoscaleConfig = serde_json::from_value(json).expect("config deserializes");
        assert_eq!(back, config);
        let partial: AutoscaleConfig =
            serde_json::from_str(r#"{"max_replicas": 4, "cooldown_period": "2m"}"#)
                .expect("missing fields take defaults");
        assert_eq!(partial.max_replicas, 4);
        assert_eq!(partial.cooldown_period, Duration::from_secs(120));
        assert!(serde_json::from_str::<AutoscaleConfig>(r#"{"max_replica": 4}"#).is_err());
    }

    proptest! {
        // Whatever the queue, level and current count, the answer stays in [min, max].
        #[test]
        fn desired_replicas_stay_within_bounds(
            depth in prop_oneof![0.0f64..20_000.0, Just(f64::NAN), Just(f64::INFINITY), Just(-5.0)],
            level in prop::sample::select(Level::ALL.to_vec()),
            current in 0u32..40,
            min in 1u32..6,
            extra in 0u32..10,
        ) {
            let config = AutoscaleConfig {
                min_replicas: min,
                max_replicas: min + extra,
                fallback: None,
                ..AutoscaleConfig::default()
            };
            let rec = config.desired_replicas_now(depth, level, current);
            prop_assert!(rec.replicas >= config.min_replicas);
            prop_assert!(rec.replicas <= config.max_replicas);
        }
    }
}
