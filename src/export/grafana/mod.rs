//! The Grafana dashboard (stable uid, datasource variable) and the provisioning files
//! for it and for the Prometheus datasource. Thresholds drawn on the panels come from
//! the same watermarks, policy and triggers the service and KEDA use.

mod panel;

/// The dashboard JSON schema of Grafana 9.0 (its `DashboardMigrator` latest version),
/// the oldest Grafana mdp's dashboard is written for. Newer Grafana migrates it forward
/// on load (37: legend `showLegend`; 38: table cell options; 39: time-series table
/// transformations), none of which touch the panel options used here.
pub const SCHEMA_VERSION: u32 = 36;

use super::doc::{Doc, list, obj};
use super::{ExportOptions, ExportedFile, HEADER};
use crate::autoscale::{BACKPRESSURE_METRIC, QUEUE_DEPTH_METRIC, QUEUE_DEPTH_SOURCE};
use crate::config::ServeConfig;
use crate::level::Level;
use crate::telemetry::catalogue::{
    BUILD_INFO, COORDINATOR_DEPTH, COORDINATOR_LAST_EVENT, COORDINATOR_STALE, COORDINATORS,
    EFFECTIVE_RATE, EVENT_TO_SCALE, EVENTS_PROCESSED, EVENTS_REJECTED, FLAPS_SUPPRESSED,
    PACING_FACTOR, PACING_GRANTS, PACING_LEASES, PACING_PUSHBACKS, PACING_REFUSALS, POLLS,
    REPLICAS, REQUESTS_THROTTLED, SCALE_FACTOR, TOKENS_GRANTED, TRANSITIONS,
};
use panel::{
    Panel, base_thresholds, layout, reduce_last, series_defaults, single_value, stat_options, step,
    thresholds, timeseries,
};

pub const DASHBOARD: &str = "grafana/dashboard.json";
pub const DASHBOARD_PROVIDER: &str = "grafana/provisioning/dashboards/mdp.yaml";
pub const DATASOURCE: &str = "grafana/provisioning/datasources/prometheus.yaml";

/// Where the dashboard provider looks for `dashboard.json` inside Grafana.
pub const DASHBOARDS_PATH: &str = "/var/lib/grafana/dashboards/mdp";
/// uid of the provisioned Prometheus datasource (kube-prometheus-stack's uses the same).
const DATASOURCE_UID: &str = "prometheus";
/// Name of the provisioned Prometheus datasource.
const DATASOURCE_NAME: &str = "Prometheus";
/// Unit of the effective-rate panel ("12 tokens/s": Grafana puts the space itself).
pub const TOKENS_PER_SECOND_UNIT: &str = "suffix:tokens/s";
/// Grafana folder of the dashboard.
pub const FOLDER: &str = "Market data";
/// The dashboard's matchers: the installation its `namespace` and `job` variables pick.
const MATCHERS: &str = "namespace=\"$namespace\", job=\"$job\"";

/// `metric{extra, namespace="$namespace", job="$job"}`: the series of the installation
/// the dashboard's variables select.
fn sel(metric: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("{metric}{{{MATCHERS}}}")
    } else {
        format!("{metric}{{{extra}, {MATCHERS}}}")
    }
}
/// Queue fill (fraction of capacity) at which the depth panel turns yellow: an
/// early notice well before the SOFT watermark.
const QUEUE_NOTICE_FRACTION: f64 = 0.3;
/// Scale factor from which the gauge is green: (nearly) full rate.
const SCALE_HEALTHY: f64 = 0.9;

/// The dashboard and its provisioning files.
pub fn files(options: &ExportOptions, config: &ServeConfig) -> Vec<ExportedFile> {
    vec![
        ExportedFile::new(DASHBOARD, dashboard(options, config).to_json()),
        ExportedFile::new(
            DASHBOARD_PROVIDER,
            format!(
                "{HEADER}# Put grafana/dashboard.json in {DASHBOARDS_PATH} (copy or mount).\n{}",
                dashboard_provider().to_yaml()
            ),
        ),
        ExportedFile::new(
            DATASOURCE,
            format!("{HEADER}{}", datasource(config).to_yaml()),
        ),
    ]
}

fn dashboard_provider() -> Doc {
    obj! {
        "apiVersion": 1u32,
        "providers": list![obj! {
            "name": "mdp",
            "orgId": 1u32,
            "folder": FOLDER,
            "type": "file",
            "disableDeletion": false,
            "allowUiUpdates": false,
            "updateIntervalSeconds": 30u32,
            "options": obj! {
                "path": DASHBOARDS_PATH,
                "foldersFromFilesStructure": false,
            },
        }],
    }
}

fn datasource(config: &ServeConfig) -> Doc {
    obj! {
        "apiVersion": 1u32,
        "datasources": list![obj! {
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": "prometheus",
            "access": "proxy",
            "url": &config.autoscale.prometheus_address,
            // Not the default: Grafana refuses to start with two defaults, and an
            // installation usually has one already.
            "isDefault": false,
            "editable": false,
            // The ServiceMonitor's scrape interval: keeps $__rate_interval at >= 4 scrapes.
            "jsonData": obj! { "timeInterval": "15s" },
        }],
    }
}

fn level_mapping() -> Doc {
    let mut options = Doc::Map(Vec::new());
    for (index, (level, color)) in [
        (Level::Ok, "green"),
        (Level::Soft, "yellow"),
        (Level::Hard, "red"),
    ]
    .into_iter()
    .enumerate()
    {
        options.push(
            &level.as_gauge().to_string(),
            obj! {
                "text": level.as_str().to_uppercase(),
                "color": color,
                "index": index as u32,
            },
        );
    }
    obj! { "type": "value", "options": options }
}

/// The four panels of the original dashboard, fixed: units, thresholds and mappings.
fn seed_panels(config: &ServeConfig) -> Vec<Panel> {
    let capacity = config.store_capacity as f64;
    let marks = &config.control.watermarks;
    let depth = sel(
        QUEUE_DEPTH_METRIC,
        &format!("source=\"{QUEUE_DEPTH_SOURCE}\""),
    );
    let notice = (QUEUE_NOTICE_FRACTION * capacity).round();
    let soft = (marks.soft_at * capacity).round();
    let high = super::queue_high(config);
    let mut depth_defaults = series_defaults(
        "messages",
        Some(thresholds(vec![
            step("green", None),
            step("yellow", Some(notice)),
            step("orange", Some(soft)),
            step("red", Some(high)),
        ])),
    );
    depth_defaults.push("max", capacity);
    let queue = timeseries(
        "Store Queue Depth",
        format!(
            "Messages in the store's write queue (the most severe live coordinator, and each \
             coordinator). Lines: {notice} notice, {soft} SOFT watermark, {high} HARD release \
             (the queue-high alert); capacity {capacity}."
        ),
        &[
            (format!("max({depth})"), "queue depth"),
            (
                format!("max by (coordinator) ({})", sel(COORDINATOR_DEPTH.name, "")),
                "{{coordinator}}",
            ),
        ],
        depth_defaults,
        12,
    );
    let scale = single_value(
        "gauge",
        "Rate Scale Factor",
        "Share of each provider's base rate mdp grants now (1 = full rate, 0 = paused).".into(),
        &[(
            format!("min by (provider) ({})", sel(SCALE_FACTOR.name, "")),
            "{{provider}}",
        )],
        obj! {
            "unit": "percentunit",
            "min": 0u32,
            "max": 1u32,
            "thresholds": thresholds(vec![
                step("red", None),
                step("yellow", Some(config.control.policy.soft)),
                step("green", Some(SCALE_HEALTHY)),
            ]),
        },
        obj! {
            "reduceOptions": reduce_last(),
            "orientation": "auto",
            "showThresholdLabels": false,
            "showThresholdMarkers": true,
        },
    );
    let level = single_value(
        "stat",
        "Backpressure State",
        "The level driving the providers' rates: OK, SOFT (slow down) or HARD (pause).".into(),
        &[(format!("max({})", sel(BACKPRESSURE_METRIC, "")), "level")],
        obj! {
            "unit": "none",
            "mappings": list![level_mapping()],
            "thresholds": thresholds(vec![
                step("green", None),
                step("yellow", Some(Level::Soft.as_gauge() as f64)),
                step("red", Some(Level::Hard.as_gauge() as f64)),
            ]),
            "color": obj! { "mode": "thresholds" },
        },
        stat_options("background"),
    );
    let pods = single_value(
        "stat",
        "Pipeline Pods",
        "Available pods of the Deployment (kube-state-metrics) and pods Prometheus scrapes.".into(),
        &[
            (
                // kube-state-metrics' own job: the namespace and the Deployment (named
                // like the job) select the installation.
                "sum(kube_deployment_status_replicas_available{namespace=\"$namespace\", deployment=\"$job\"})".into(),
                "available",
            ),
            (format!("count({})", sel(BUILD_INFO.name, "")), "scraped"),
        ],
        obj! { "unit": "none", "decimals": 0u32, "thresholds": base_thresholds() },
        stat_options("value"),
    );
    vec![queue, scale, level, pods]
}

/// What an operator needs beyond the seed panels.
fn operator_panels(config: &ServeConfig) -> Vec<Panel> {
    // KEDA names the HPA after the ScaledObject (`hpa_name`), named after the job.
    let hpa = "namespace=\"$namespace\", horizontalpodautoscaler=\"keda-hpa-$job-scaler\"";
    let trigger_queries: Vec<(String, &str)> = config
        .autoscale
        .triggers
        .iter()
        .map(|trigger| (trigger.scoped_promql(MATCHERS), trigger.name()))
        .collect();
    let trigger_targets: Vec<String> = config
        .autoscale
        .triggers
        .iter()
        .map(|t| format!("{} {} per pod", t.name(), t.threshold_str()))
        .collect();
    let rate = "$__rate_interval";
    vec![
        timeseries(
            "Rate scale per provider",
            "Rate scale factor per provider over time.".into(),
            &[(format!("min by (provider) ({})", sel(SCALE_FACTOR.name, "")), "{{provider}}")],
            {
                let mut defaults = series_defaults("percentunit", None);
                defaults.push("max", 1u32);
                defaults
            },
            12,
        ),
        timeseries(
            "Effective rate per provider",
            "Tokens per second granted per provider, summed over the pods (each pod grants its share).".into(),
            &[(format!("sum by (provider) ({})", sel(EFFECTIVE_RATE.name, "")), "{{provider}}")],
            // Grafana's custom unit: "suffix:" then the text exactly as shown after the value.
            series_defaults(TOKENS_PER_SECOND_UNIT, None),
            12,
        ),
        timeseries(
            "Autoscaling triggers (what KEDA reads)",
            format!(
                "The ScaledObject's trigger queries; the HPA asks for ceil(value / target) pods \
                 per trigger and takes the largest. Targets: {}.",
                trigger_targets.join(", ")
            ),
            &trigger_queries,
            series_defaults("short", None),
            12,
        ),
        timeseries(
            "Desired vs actual replicas",
            "What KEDA's HPA wants, what runs, and how many replicas mdp divides each provider's budget by.".into(),
            &[
                (format!("max(kube_horizontalpodautoscaler_status_desired_replicas{{{hpa}}})"), "desired"),
                (format!("max(kube_horizontalpodautoscaler_status_current_replicas{{{hpa}}})"), "current"),
                (format!("max(kube_horizontalpodautoscaler_spec_max_replicas{{{hpa}}})"), "max"),
                (format!("max({})", sel(REPLICAS.name, "")), "replicas mdp sees"),
            ],
            series_defaults("none", None),
            12,
        ),
        timeseries(
            "Feedback events applied",
            "Store feedback events applied per second, by provider and level (summed over pods).".into(),
            &[(format!("sum by (provider, level) (rate({}[{rate}]))", sel(EVENTS_PROCESSED.name, "")), "{{provider}} {{level}}")],
            series_defaults("cps", None),
            8,
        ),
        timeseries(
            "Feedback events rejected",
            "Feedback events refused or ignored per second, by reason.".into(),
            &[(format!("sum by (reason) (rate({}[{rate}]))", sel(EVENTS_REJECTED.name, "")), "{{reason}}")],
            series_defaults("cps", None),
            8,
        ),
        timeseries(
            "Event-to-scale latency",
            "Time from receiving a feedback event to the new scale being in force.".into(),
            &[
                (format!("histogram_quantile(0.5, sum by (le) (rate({}[{rate}])))", sel(&format!("{}_bucket", EVENT_TO_SCALE.name), "")), "p50"),
                (format!("histogram_quantile(0.99, sum by (le) (rate({}[{rate}])))", sel(&format!("{}_bucket", EVENT_TO_SCALE.name), "")), "p99"),
            ],
            series_defaults("s", None),
            8,
        ),
        timeseries(
            "Stale coordinators",
            format!(
                "Coordinators whose feedback is stale (TTL passed or polls failing); they count as {}.",
                config.control.stale_level.as_str().to_uppercase()
            ),
            &[
                (format!("max({})", sel(COORDINATORS.name, "state=\"stale\"")), "stale"),
                (format!("max({})", sel(COORDINATORS.name, "state=\"live\"")), "live"),
                (format!("max by (coordinator) ({}) > 0", sel(COORDINATOR_STALE.name, "")), "stale: {{coordinator}}"),
            ],
            series_defaults("none", Some(thresholds(vec![step("green", None), step("red", Some(1.0))]))),
            8,
        ),
        timeseries(
            "Feedback age per coordinator",
            "Seconds since each coordinator's last applied event. The store pushes only on \
             transitions, so in push mode a growing age is normal."
                .into(),
            &[(format!("time() - max by (coordinator) ({})", sel(COORDINATOR_LAST_EVENT.name, "")), "{{coordinator}}")],
            series_defaults("s", None),
            8,
        ),
        timeseries(
            "Rate tokens",
            "Tokens granted and acquire requests refused per second, by provider.".into(),
            &[
                (format!("sum by (provider) (rate({}[{rate}]))", sel(TOKENS_GRANTED.name, "")), "{{provider}} granted"),
                (format!("sum by (provider) (rate({}[{rate}]))", sel(REQUESTS_THROTTLED.name, "")), "{{provider}} throttled"),
            ],
            series_defaults("cps", None),
            8,
        ),
        timeseries(
            "Level changes and suppressed flaps",
            "Changes of the level driving the scale, and the store's SOFT/OK flaps the relax hold absorbed.".into(),
            &[
                (format!("sum by (level) (increase({}[{rate}]))", sel(TRANSITIONS.name, "")), "to {{level}}"),
                (format!("sum(increase({}[{rate}]))", sel(FLAPS_SUPPRESSED.name, "")), "flaps suppressed"),
            ],
            series_defaults("short", None),
            12,
        ),
        timeseries(
            "Store polls",
            "Polls of the store's metrics endpoint per second, by result (pull mode).".into(),
            &[(format!("sum by (result) (rate({}[{rate}]))", sel(POLLS.name, "")), "{{result}}")],
            series_defaults("cps", None),
            12,
        ),
        timeseries(
            "Pacing: requests held, by rule",
            "Acquire requests a paced provider refused per second, by the rule that held them \
             (paused: HARD; pushback: the provider's own pushback), beside the requests granted."
                .into(),
            &[
                (format!("sum by (provider, rule) (rate({}[{rate}]))", sel(PACING_REFUSALS.name, "")), "{{provider}} held by {{rule}}"),
                (format!("sum by (provider, class) (rate({}[{rate}]))", sel(PACING_GRANTS.name, "")), "{{provider}} {{class}} granted"),
            ],
            series_defaults("cps", None),
            12,
        ),
        timeseries(
            "Pacing: provider pushback and open requests",
            "The factor the provider's own pushback puts on its rate rules (1: none), the \
             lowest over the pods, and the requests in flight on the concurrency caps."
                .into(),
            &[
                (format!("min by (provider, class) ({}) < 1", sel(PACING_FACTOR.name, "")), "{{provider}} {{class}} factor"),
                (format!("sum by (provider) ({})", sel(PACING_LEASES.name, "")), "{{provider}} open requests"),
                (format!("sum by (provider, kind) (increase({}[{rate}]))", sel(PACING_PUSHBACKS.name, "")), "{{provider}} pushbacks ({{kind}})"),
            ],
            series_defaults("short", None),
            12,
        ),
    ]
}

/// A variable's `current`: Grafana's schema wants both `text` and `value`.
fn current(text: &str, value: &str) -> Doc {
    obj! { "selected": false, "text": text, "value": value }
}

/// A query variable over one label of mdp's series, preset to this installation.
fn label_variable(name: &str, label: &str, query: &str, preset: &str) -> Doc {
    obj! {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": obj! { "type": "prometheus", "uid": "${datasource}" },
        "definition": query,
        "query": obj! { "query": query, "refId": format!("mdp-{name}") },
        "current": current(preset, preset),
        "hide": 0u32,
        // On time range change: installations come and go.
        "refresh": 2u32,
        "regex": "",
        "sort": 1u32,
        "includeAll": false,
        "multi": false,
        "options": list![],
    }
}

/// The dashboard model. Every query reads metrics mdp exports (or kube-state-metrics'),
/// scoped to the installation the `namespace` and `job` variables pick.
pub fn dashboard(options: &ExportOptions, config: &ServeConfig) -> Doc {
    let mut panels = seed_panels(config);
    panels.extend(operator_panels(config));
    obj! {
        "uid": options.dashboard_uid(),
        "title": "mdp: market-data pipeline",
        "description": "Store queue depth, backpressure, rate scale and KEDA autoscaling of the market-data pipeline (generated by `mdp export`).",
        "tags": list!["mdp", "market-data", "keda"],
        "timezone": "browser",
        "editable": true,
        "graphTooltip": 1u32,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1u32,
        "time": obj! { "from": "now-1h", "to": "now" },
        "templating": obj! {
            "list": list![
                obj! {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": current(DATASOURCE_NAME, DATASOURCE_UID),
                    "hide": 0u32,
                    "refresh": 1u32,
                    "regex": "",
                    "includeAll": false,
                    "multi": false,
                    "options": list![],
                },
                label_variable(
                    "namespace",
                    "Namespace",
                    &format!("label_values({}, namespace)", BUILD_INFO.name),
                    &options.namespace,
                ),
                label_variable(
                    "job",
                    "Installation (job)",
                    &format!("label_values({}{{namespace=\"$namespace\"}}, job)", BUILD_INFO.name),
                    options.job(),
                ),
            ],
        },
        "annotations": obj! { "list": list![] },
        "links": list![],
        "panels": layout(panels),
    }
}
