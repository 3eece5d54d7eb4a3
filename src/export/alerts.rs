//! Alert rules (the replica matrix): a PrometheusRule for the Prometheus Operator and the
//! same groups as a plain rules file for `promtool` and Prometheus without the operator.
//! Thresholds come from the store's capacity and mdp's watermarks.

use super::doc::{Doc, list, obj};
use super::{ExportOptions, ExportedFile, yaml_file};
use crate::autoscale::{BACKPRESSURE_METRIC, QUEUE_DEPTH_METRIC, QUEUE_DEPTH_SOURCE};
use crate::config::ServeConfig;
use crate::level::Level;

pub const PROMETHEUS_RULE: &str = "deploy/prometheus/prometheusrule-pipeline.yaml";
pub const RULES_FILE: &str = "deploy/prometheus/mdp-alerts.rules.yaml";

/// One alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: &'static str,
    pub expr: String,
    /// Prometheus duration (`5m`).
    pub hold: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub description: String,
}

/// The queue depth above which the store is close to HARD: the HARD release level
/// (below it a HARD store drops back to SOFT), 8000 of 10000 by default.
pub fn queue_high(config: &ServeConfig) -> f64 {
    (config.control.watermarks.hard_release * config.store_capacity as f64).round()
}

/// The alerts of the replica matrix, plus one for the autoscaling signal vanishing.
///
/// Each expression aggregates over the pods (every pod reports the same store) and
/// keeps `namespace`, so two installations never share an alert. Gauges are never
/// put through `rate()`; the scale alert smooths with `avg_over_time` so a level
/// that flaps does not reset its `for` clock.
pub fn alerts(options: &ExportOptions, config: &ServeConfig) -> Vec<Alert> {
    let depth = format!("{QUEUE_DEPTH_METRIC}{{source=\"{QUEUE_DEPTH_SOURCE}\"}}");
    let high = queue_high(config);
    let capacity = config.store_capacity;
    let hard = Level::Hard.as_gauge();
    let scale_below = options.alert_scale_below;
    vec![
        Alert {
            name: "MdpStoreQueueHigh",
            expr: format!("max by (namespace) ({depth}) > {high}"),
            hold: "5m",
            severity: "warning",
            summary: "Store write queue is close to HARD backpressure".into(),
            description: format!(
                "The store's queue has held more than {high} of {capacity} messages for 5 minutes \
                 (now {{{{ $value }}}}). Providers are slowed; check that KEDA added pods and the \
                 store's workers keep up."
            ),
        },
        Alert {
            name: "MdpHardBackpressure",
            expr: format!("max by (namespace) ({BACKPRESSURE_METRIC}) == {hard}"),
            hold: "2m",
            severity: "critical",
            summary: "Pipeline paused by HARD backpressure".into(),
            description: "The store has reported HARD backpressure for 2 minutes: every \
                          provider is paused (scale 0) until its queue drains."
                .into(),
        },
        Alert {
            name: "MdpRateScaleLow",
            expr: format!(
                "max by (namespace, provider) (avg_over_time(pipeline_rate_scale_factor[5m])) < {scale_below}"
            ),
            hold: "10m",
            severity: "warning",
            summary: "Provider {{ $labels.provider }} runs far below its base rate".into(),
            description: format!(
                "The rate scale factor of provider {{{{ $labels.provider }}}} has averaged below \
                 {scale_below} for 10 minutes (now {{{{ $value }}}}): ingestion is falling behind."
            ),
        },
        Alert {
            name: "MdpFeedbackStale",
            expr: "max by (namespace) (mdp_coordinators{state=\"stale\"}) > 0".into(),
            hold: "2m",
            severity: "warning",
            summary: "Store feedback is stale".into(),
            description: format!(
                "{{{{ $value }}}} store coordinator(s) have had no fresh feedback (TTL passed or \
                 polls failing) for 2 minutes; mdp counts them as {} until they report again.",
                config.control.stale_level.as_str().to_uppercase()
            ),
        },
        Alert {
            name: "MdpAutoscalingSignalAbsent",
            expr: format!("absent({depth})"),
            hold: "5m",
            severity: "warning",
            summary: "Prometheus has no queue depth from mdp".into(),
            description: "KEDA's triggers read nothing, so its fallback holds the replica \
                          count: check that Prometheus scrapes the mdp pods."
                .into(),
        },
    ]
}

fn groups(options: &ExportOptions, config: &ServeConfig) -> Doc {
    let rules: Vec<Doc> = alerts(options, config)
        .into_iter()
        .map(|alert| {
            obj! {
                "alert": alert.name,
                "expr": alert.expr,
                "for": alert.hold,
                "labels": obj! { "severity": alert.severity },
                "annotations": obj! {
                    "summary": alert.summary,
                    "description": alert.description,
                },
            }
        })
        .collect();
    list![obj! { "name": &options.name, "rules": rules }]
}

/// The plain rules file and the PrometheusRule, with the same groups.
pub fn files(options: &ExportOptions, config: &ServeConfig) -> Vec<ExportedFile> {
    let groups = groups(options, config);
    let rule = obj! {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": obj! {
            "name": format!("{}-alerts", options.name),
            "namespace": &options.namespace,
            "labels": obj! { "app": &options.name },
        },
        "spec": obj! { "groups": groups.clone() },
    };
    vec![
        yaml_file(RULES_FILE, &obj! { "groups": groups }),
        yaml_file(PROMETHEUS_RULE, &rule),
    ]
}
