//! KEDA Prometheus triggers: one definition yields both the PromQL the exported
//! ScaledObject runs and the local evaluation the dashboard and the simulation use.

use super::ConfigError;
use crate::level::Level;
use crate::telemetry::catalogue;
use serde::{Deserialize, Serialize};

/// Gauge the queue-depth trigger reads.
pub const QUEUE_DEPTH_METRIC: &str = catalogue::QUEUE_DEPTH.name;
/// `source` label value of [`QUEUE_DEPTH_METRIC`]: the most severe live coordinator.
pub const QUEUE_DEPTH_SOURCE: &str = catalogue::QUEUE_DEPTH_SOURCE;
/// Gauge the hard-backpressure trigger reads (0 = ok, 1 = soft, 2 = hard).
pub const BACKPRESSURE_METRIC: &str = catalogue::BACKPRESSURE_STATE.name;

/// `metricType` of a trigger, spelt as KEDA and the HPA spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricType {
    /// The value is a total; the HPA divides it by the target per replica:
    /// desired = ceil(value / threshold). KEDA's default, and the only type KEDA's
    /// fallback works with.
    AverageValue,
    /// The value is compared with the target as a whole:
    /// desired = ceil(readyReplicas * value / threshold).
    Value,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::AverageValue => "AverageValue",
            MetricType::Value => "Value",
        }
    }
}

/// A Prometheus trigger of the ScaledObject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// One replica per `per_replica` messages queued above `floor`.
    QueueDepth {
        floor: f64,
        per_replica: f64,
        #[serde(default)]
        activation_threshold: f64,
    },
    /// `replicas` pods while the pipeline is in HARD backpressure, nothing otherwise.
    HardBackpressure {
        replicas: u32,
        #[serde(default)]
        activation_threshold: f64,
    },
}

impl Trigger {
    /// Queue-depth trigger with KEDA's default activation threshold (0).
    pub fn queue_depth(floor: f64, per_replica: f64) -> Self {
        Trigger::QueueDepth {
            floor,
            per_replica,
            activation_threshold: 0.0,
        }
    }

    /// Hard-backpressure trigger with KEDA's default activation threshold (0).
    pub fn hard_backpressure(replicas: u32) -> Self {
        Trigger::HardBackpressure {
            replicas,
            activation_threshold: 0.0,
        }
    }

    /// mdp's triggers: queue depth above 2000 at 1000 per replica, and 10 pods on HARD.
    pub fn defaults() -> Vec<Trigger> {
        vec![
            Trigger::queue_depth(2000.0, 1000.0),
            Trigger::hard_backpressure(10),
        ]
    }

    /// Trigger `name` in the ScaledObject; also the key of its fallback health.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::QueueDepth { .. } => "queue_depth",
            Trigger::HardBackpressure { .. } => "hard_backpressure",
        }
    }

    /// The `query` KEDA sends to Prometheus.
    ///
    /// Both queries return exactly one sample whenever the gauges exist, so an empty
    /// result really means "no data" (and, with `ignoreNullValues: "false"`, counts
    /// towards the fallback) rather than "not HARD".
    pub fn promql(&self) -> String {
        self.scoped_promql("")
    }

    /// [`Trigger::promql`] reading only the series that also carry `matchers`
    /// (`namespace="ns", job="name"`; empty for every series), so installations
    /// sharing one Prometheus never read each other's gauges.
    pub fn scoped_promql(&self, matchers: &str) -> String {
        let extra = if matchers.is_empty() {
            String::new()
        } else {
            format!(", {matchers}")
        };
        let level_selector = if matchers.is_empty() {
            String::new()
        } else {
            format!("{{{matchers}}}")
        };
        match self {
            Trigger::QueueDepth { floor, .. } => format!(
                "clamp_min(max({QUEUE_DEPTH_METRIC}{{source=\"{QUEUE_DEPTH_SOURCE}\"{extra}}}) - {}, 0)",
                format_number(*floor)
            ),
            // `== bool` yields 0 or 1 and keeps the series; a filtering `== 2` would
            // return nothing outside HARD, which KEDA reads as 0 (ignoreNullValues true)
            // or as a failure (false: every calm poll would push towards the fallback).
            //
            // Scaling the 0/1 by `replicas` with threshold "1", rather than threshold
            // "1/replicas", keeps every number exact: KEDA hands targets to the HPA as
            // milli-quantities (1/3 becomes 333m, and ceil(1000m / 333m) = 4, not 3), and
            // its fallback metric uses int64(target) * replicas, so a 0.1 target would
            // truncate to 0 and the fallback would ask for no pods at all.
            Trigger::HardBackpressure { replicas, .. } => format!(
                "(max({BACKPRESSURE_METRIC}{level_selector}) == bool {}) * {replicas}",
                Level::Hard.as_gauge()
            ),
        }
    }

    /// `metricType` of the trigger.
    pub fn metric_type(&self) -> MetricType {
        MetricType::AverageValue
    }

    /// `threshold`: the target value per replica (not a "greater than").
    pub fn threshold(&self) -> f64 {
        match self {
            Trigger::QueueDepth { per_replica, .. } => *per_replica,
            Trigger::HardBackpressure { .. } => 1.0,
        }
    }

    /// `threshold` as the string the trigger metadata needs (`"1000"`).
    pub fn threshold_str(&self) -> String {
        format_number(self.threshold())
    }

    /// `activationThreshold`: KEDA calls the trigger active when the value exceeds it.
    pub fn activation_threshold(&self) -> f64 {
        match self {
            Trigger::QueueDepth {
                activation_threshold,
                ..
            }
            | Trigger::HardBackpressure {
                activation_threshold,
                ..
            } => *activation_threshold,
        }
    }

    /// `activationThreshold` as a metadata string.
    pub fn activation_threshold_str(&self) -> String {
        format_number(self.activation_threshold())
    }

    /// What [`Trigger::promql`] returns when Prometheus holds `depth` and `level`.
    pub fn local_value(&self, depth: f64, level: Level) -> f64 {
        match self {
            // f64::max ignores a NaN operand, like a missing depth reading as 0.
            Trigger::QueueDepth { floor, .. } => (depth - floor).max(0.0),
            Trigger::HardBackpressure { replicas, .. } => {
                if level == Level::Hard {
                    f64::from(*replicas)
                } else {
                    0.0
                }
            }
        }
    }

    /// The Prometheus answer to [`Trigger::promql`] for `depth` and `level`.
    pub fn local_response(&self, depth: f64, level: Level) -> PromResponse {
        PromResponse::Value(self.local_value(depth, level))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let name = self.name();
        let check = |field, expected, value: f64, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::TriggerValue {
                    trigger: name,
                    field,
                    expected,
                    value,
                })
            }
        };
        let activation = self.activation_threshold();
        check(
            "activation_threshold",
            "a finite number >= 0",
            activation,
            activation.is_finite() && activation >= 0.0,
        )?;
        match self {
            Trigger::QueueDepth {
                floor, per_replica, ..
            } => {
                check(
                    "floor",
                    "a finite number >= 0",
                    *floor,
                    floor.is_finite() && *floor >= 0.0,
                )?;
                // KEDA passes the target as a milli-quantity: below 0.001 it becomes 0.
                check(
                    "per_replica",
                    "a finite number >= 0.001",
                    *per_replica,
                    per_replica.is_finite() && *per_replica >= 0.001,
                )
            }
            Trigger::HardBackpressure { replicas, .. } => check(
                "replicas",
                "at least 1",
                f64::from(*replicas),
                *replicas >= 1,
            ),
        }
    }
}

/// Numbers as PromQL and KEDA metadata want them: `1000`, not `1000.0`.
fn format_number(value: f64) -> String {
    format!("{value}")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_depth_renders_the_documented_query() {
        let trigger = Trigger::queue_depth(2000.0, 1000.0);
        assert_eq!(
            trigger.promql(),
            r#"clamp_min(max(pipeline_feedback_queue_depth{source="store_coordinator"}) - 2000, 0)"#
        );
        assert_eq!(trigger.metric_type().as_str(), "AverageValue");
        assert_eq!(trigger.threshold(), 1000.0);
        assert_eq!(trigger.threshold_str(), "1000");
        assert_eq!(trigger.activation_threshold_str(), "0");
    }

    // KEDA: `x == 2` drops the series when false; use `== bool`.
    #[test]
    fn hard_backpressure_keeps_the_series() {
        let trigger = Trigger::hard_backpressure(10);
        let query = trigger.promql();
        assert_eq!(query, "(max(pipeline_backpressure_state) == bool 2) * 10");
        assert!(query.contains("== bool"));
        assert_eq!(trigger.threshold_str(), "1");
    }

    #[test]
    fn local_values_mirror_the_queries() {
        let queue = Trigger::queue_depth(2000.0, 1000.0);
        assert_eq!(queue.local_value(500.0, Level::Ok), 0.0);
        assert_eq!(queue.local_value(9500.0, Level::Hard), 7500.0);
        assert_eq!(queue.local_value(f64::NAN, Level::Ok), 0.0);
        let hard = Trigger::hard_backpressure(10);
        assert_eq!(hard.local_value(9500.0, Level::Soft), 0.0);
        assert_eq!(hard.local_value(9500.0, Level::Hard), 10.0);
        assert_eq!(
            hard.local_response(0.0, Level::Hard),
            PromResponse::Value(10.0)
        );
    }

    #[test]
    fn triggers_deserialize_from_tagged_json() {
        let parsed: Vec<Trigger> = serde_json::from_str(
            r#"[{"type":"queue_depth","floor":1000,"per_replica":500},
                {"type":"hard_backpressure","replicas":8,"activation_threshold":0.5}]"#,
        )
        .expect("valid triggers parse");
        assert_eq!(parsed[0], Trigger::queue_depth(1000.0, 500.0));
        assert_eq!(parsed[1].activation_threshold(), 0.5);
        let unknown = r#"[{"type":"queue_depth","floor":1,"per_replica":1,"flor":2}]"#;
        assert!(serde_json::from_str::<Vec<Trigger>>(unknown).is_err());
    }
}
