//! The kustomize overlay for kube-prometheus-stack: the exported base with the KEDA
//! triggers pointed at the chart's Prometheus and the `release` label its Prometheus
//! selects ServiceMonitors and PrometheusRules by. Exporting with `--prometheus-url`
//! and `--monitor-label release=...` gives the same objects without an overlay.

use super::doc::{Doc, list, obj};
use super::{ExportOptions, ExportedFile, HEADER, Optional};
use crate::config::ServeConfig;

/// Beside `deploy/`, not under it: kustomize refuses a base that contains its overlay.
pub const KUBE_PROMETHEUS_STACK: &str = "overlays/kube-prometheus-stack/kustomization.yaml";
/// The Helm release name the chart's documentation installs it under.
pub const STACK_RELEASE: &str = "kube-prometheus-stack";

/// The chart's Prometheus Service: `<release>-kube-prometheus-prometheus`, which the
/// chart shortens to `<release>-prometheus` when the release name holds the chart's.
pub fn stack_prometheus_url(options: &ExportOptions) -> String {
    format!(
        "http://{STACK_RELEASE}-prometheus.{}.svc.{}:9090",
        options.monitoring_namespace, options.cluster_domain
    )
}

fn json_patch(ops: Vec<Doc>) -> String {
    Doc::List(ops).to_yaml()
}

fn patch(group: &str, kind: &str, name: &str, ops: Vec<Doc>) -> Doc {
    obj! {
        "target": obj! { "group": group, "kind": kind, "name": name },
        "patch": json_patch(ops),
    }
}

fn release_label() -> Vec<Doc> {
    vec![obj! {
        "op": "add",
        "path": "/metadata/labels/release",
        "value": STACK_RELEASE,
    }]
}

/// The overlay's kustomization: the base, plus one patch per object it changes.
pub fn kustomization(options: &ExportOptions, config: &ServeConfig) -> Doc {
    let mut patches = Vec::new();
    if options.includes(Optional::ScaledObject) {
        let url = stack_prometheus_url(options);
        let ops = (0..config.autoscale.triggers.len())
            .map(|index| {
                obj! {
                    "op": "replace",
                    "path": format!("/spec/triggers/{index}/metadata/serverAddress"),
                    "value": url.as_str(),
                }
            })
            .collect();
        patches.push(patch(
            "keda.sh",
            "ScaledObject",
            &options.scaled_object_name(),
            ops,
        ));
    }
    if options.includes(Optional::ServiceMonitor) {
        patches.push(patch(
            "monitoring.coreos.com",
            "ServiceMonitor",
            &options.name,
            release_label(),
        ));
    }
    if options.includes(Optional::PrometheusRule) {
        patches.push(patch(
            "monitoring.coreos.com",
            "PrometheusRule",
            &super::alerts::rule_name(options),
            release_label(),
        ));
    }
    obj! {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list!["../../deploy"],
        "patches": patches,
    }
}

pub fn files(options: &ExportOptions, config: &ServeConfig) -> Vec<ExportedFile> {
    let text = format!(
        "{HEADER}# kube-prometheus-stack installed as the Helm release \"{STACK_RELEASE}\" in \
         \"{}\":\n#   kubectl apply -k overlays/kube-prometheus-stack\n# Another release \
         name: export with --prometheus-url and --monitor-label release=NAME instead.\n{}",
        options.monitoring_namespace,
        kustomization(options, config).to_yaml()
    );
    vec![ExportedFile::new(KUBE_PROMETHEUS_STACK, text)]
}
