//! Alert rules: a PrometheusRule for the Prometheus Operator and the
//! same groups as a plain rules file for `promtool` and Prometheus without the operator.
//! Thresholds come from the store's capacity and mdp's watermarks.

use super::doc::{Doc, list, obj};
use super::{ExportOptions, ExportedFile, yaml_file};
use crate::autoscale::{BACKPRESSURE_METRIC, QUEUE_DEPTH_METRIC, QUEUE_DEPTH_SOURCE};
use crate::config::ServeConfig;
use crate::level::Level;
use crate::telemetry::catalogue::{
    BUDGET_MODE, COORDINATORS, PACING_PUSHBACKS, POLLS, SCALE_FACTOR, STORE_UP,
};

pub const PROMETHEUS_RULE: &str = "deploy/prometheus/prometheusrule-pipeline.yaml";
pub const RULES_FILE: &str = "deploy/prometheus/mdp-alerts.rules.yaml";

/// Pushbacks in 10 minutes that make [`alerts`]' `MdpProviderPushback` fire:
/// one can be bad luck (a restart, another client); three mean the rules are wrong.
pub const PUSHBACKS_REPEATED: u32 = 3;

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

/// The alerts and the dashboard share this threshold, so it lives with the
/// export's root (the dashboard takes nothing from this file).
pub use super::queue_high;

/// The pipeline's alerts, plus one for the autoscaling signal vanishing.
///
/// Each expression aggregates over the pods (every pod reports the same store) and
/// keeps `namespace`, so two installations never share an alert. Gauges are never
/// put through `rate()`; the scale alert smooths with `avg_over_time` so a level
/// that flaps does not reset its `for` clock.
/// `metric{extra, namespace="NS", job="NAME"}`: one installation's series of `metric`.
/// Every alert reads through this, `absent()` included, so an installation's alerts
/// neither fire on nor go quiet because of another one sharing the Prometheus.
pub fn selector(options: &ExportOptions, metric: &str, extra: &str) -> String {
    let matchers = options.matchers();
    if extra.is_empty() {
        format!("{metric}{{{matchers}}}")
    } else {
        format!("{metric}{{{extra}, {matchers}}}")
    }
}

pub fn alerts(options: &ExportOptions, config: &ServeConfig) -> Vec<Alert> {
    let depth = selector(
        options,
        QUEUE_DEPTH_METRIC,
        &format!("source=\"{QUEUE_DEPTH_SOURCE}\""),
    );
    let level = selector(options, BACKPRESSURE_METRIC, "");
    let scale = selector(options, SCALE_FACTOR.name, "");
    let stale = selector(options, COORDINATORS.name, "state=\"stale\"");
    let store_up = selector(options, STORE_UP.name, "");
    let poll_errors = selector(options, POLLS.name, "result=\"error\"");
    let budget_fallback = selector(options, BUDGET_MODE.name, "mode=\"fallback\"");
    let pushbacks = selector(options, PACING_PUSHBACKS.name, "");
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
            expr: format!("max by (namespace) ({level}) == {hard}"),
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
                "max by (namespace, provider) (avg_over_time({scale}[5m])) < {scale_below}"
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
            expr: format!("max by (namespace) ({stale}) > 0"),
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
            name: "MdpStoreUnreachable",
            expr: format!("min by (namespace) ({store_up}) == 0"),
            hold: "1m",
            severity: "critical",
            summary: "mdp cannot read the store's queue".into(),
            description: format!(
                "A pod has not been able to poll the store's metrics for a minute. It holds its last level (at least {}), withdraws its queue-depth sample so KEDA's fallback holds the pods, and cannot see the queue drain: check the store and the network path to it.",
                config.control.stale_level.as_str().to_uppercase()
            ),
        },
        Alert {
            name: "MdpStorePollErrors",
            expr: format!("sum by (namespace) (rate({poll_errors}[5m])) > 0"),
            hold: "10m",
            severity: "warning",
            summary: "Polls of the store keep failing now and then".into(),
            description: "Some polls of the store's metrics have failed in every 5-minute window for 10 minutes ({{ $value }} per second): each failed poll withdraws the depth sample until the next one succeeds."
                .into(),
        },
        Alert {
            name: "MdpBudgetNotShared",
            expr: format!("sum by (namespace) ({budget_fallback}) > 0"),
            hold: "2m",
            severity: "warning",
            summary: "Provider budgets are not shared: Redis does not answer".into(),
            description: "{{ $value }} pod(s) with a shared budget have granted only their \
                          local 1/N share for 2 minutes because Redis does not answer: a busy \
                          pod gets a fraction of the budget. Check the Redis the pods use."
                .into(),
        },
        Alert {
            name: "MdpProviderPushback",
            expr: format!(
                "sum by (namespace, provider, class) (increase({pushbacks}[10m])) >= {PUSHBACKS_REPEATED}"
            ),
            hold: "1m",
            severity: "warning",
            summary: "Provider {{ $labels.provider }} keeps pushing back on {{ $labels.class }}".into(),
            description: "Workers reported {{ $value }} pushbacks (pacing violations or HTTP 429) \
                          from provider {{ $labels.provider }} for class {{ $labels.class }} in 10 \
                          minutes, although mdp granted every one of those requests: the pacing \
                          rules are looser than what the provider enforces (or another client \
                          shares the account). mdp backs the class off after each report; check \
                          the rules against the provider's published limits."
                .into(),
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

/// Name of the PrometheusRule.
pub fn rule_name(options: &ExportOptions) -> String {
    format!("{}-alerts", options.name)
}

/// The plain rules file and the PrometheusRule, with the same groups.
pub fn files(options: &ExportOptions, config: &ServeConfig) -> Vec<ExportedFile> {
    let groups = groups(options, config);
    let rule = obj! {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": obj! {
            "name": rule_name(options),
            "namespace": &options.namespace,
            "labels": super::kubernetes::monitor_labels(options),
        },
        "spec": obj! { "groups": groups.clone() },
    };
    let mut files = vec![yaml_file(RULES_FILE, &obj! { "groups": groups })];
    if options.includes(super::Optional::PrometheusRule) {
        files.push(yaml_file(PROMETHEUS_RULE, &rule));
    }
    files
}
