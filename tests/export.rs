//! `mdp export`: the committed deploy/ and grafana/ are its output; the manifests pass
//! kubernetes-validate and the KEDA schema; the alert rules pass promtool's checks and
//! unit tests; every query parses and names metrics a real scrape has; a real Prometheus
//! scraping a live `mdp serve` evaluates the KEDA triggers through the seed scenarios;
//! the HTTP route serves the same files.
//!
//! Tools: `promtool` and `prometheus` on PATH (Debian `prometheus`), `node` on PATH,
//! `kubernetes-validate` in `$MDP_TOOLS_VENV/bin` (default `.venv-tools/bin`) or on
//! PATH, npm `@kubernetes-models/keda` in `$MDP_KEDA_MODELS` (default
//! `$MDP_TOOLS_VENV/node/node_modules/@kubernetes-models/keda`). A missing tool skips
//! its test, or fails it with `MDP_REQUIRE_TOOLS=1`.

mod common;
#[path = "export/promql.rs"]
mod promql;
#[path = "export/tools.rs"]
mod tools;

use clap::{CommandFactory, Parser};
use common::{InProcess, MdpProcess, require_tool, store_event};
use mdp::cli::{Cli, Command};
use mdp::config::ServeConfig;
use mdp::export::{self, ExportOptions, ExportedFile, alerts, grafana, kubernetes};
use mdp::level::Level;
use mdp::replicas::ReplicaSource;
use promql::{metric_names, old_mistakes, scrape_names, selectors};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tools::{Prometheus, Target, TempDir, keda_models, kubernetes_validate, run};

// ---------------------------------------------------------------- helpers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The options and configuration `mdp export` runs with by default, and its files.
fn exported(extra: &[&str]) -> (ExportOptions, ServeConfig, Vec<ExportedFile>) {
    let mut argv = vec!["mdp", "export"];
    argv.extend_from_slice(extra);
    let Command::Export(args) = Cli::try_parse_from(argv).expect("parses").command else {
        unreachable!("parsed as export")
    };
    let (options, config) = args.resolve().expect("valid export options");
    let files = export::render(&options, &config);
    (options, config, files)
}

fn file<'a>(files: &'a [ExportedFile], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not exported"))
        .contents
}

fn yaml(files: &[ExportedFile], path: &str) -> Value {
    serde_yaml_ng::from_str(file(files, path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every PromQL expression of the export: KEDA triggers, dashboard panels, alerts.
fn queries(files: &[ExportedFile]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let scaled = yaml(files, kubernetes::SCALED_OBJECT);
    for trigger in scaled["spec"]["triggers"].as_array().expect("triggers") {
        let name = trigger["name"].as_str().unwrap_or("?");
        let query = trigger["metadata"]["query"].as_str().expect("query");
        found.push((format!("trigger {name}"), query.to_owned()));
    }
    let dashboard: Value = serde_json::from_str(file(files, grafana::DASHBOARD)).expect("json");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            found.push((format!("panel {}", panel["title"]), expr.to_owned()));
        }
    }
    let rules = yaml(files, alerts::RULES_FILE);
    for rule in rules["groups"][0]["rules"].as_array().expect("rules") {
        let expr = rule["expr"].as_str().expect("expr");
        found.push((format!("alert {}", rule["alert"]), expr.to_owned()));
    }
    found
}

/// A live `mdp serve` that has seen one event (so per-coordinator series exist), and
/// its `/metrics` text.
async fn real_scrape() -> String {
    // With a paced provider beside the default one, so the pacing families show.
    let mdp = MdpProcess::serve(
        &["--provider-profile", "ibkr", "--provider", "polygon=10/s"],
        &[],
    );
    let http = reqwest::Client::new();
    let posted = http
        .post(mdp.url("/feedback"))
        .json(&store_event(6000, "soft", None))
        .send()
        .await
        .expect("feedback posts");
    assert!(posted.status().is_success());
    let text = common::get_text(&http, &mdp.url("/metrics")).await;
    drop(mdp);
    // The families only pull mode has, from a pod whose store does not answer.
    let url = common::closed_url();
    let pulling = MdpProcess::serve(
        &[
            "--store-metrics-url",
            &url,
            "--pull-interval",
            "100ms",
            "--pull-timeout",
            "100ms",
            "--pull-ttl",
            "1s",
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pulled = common::get_text(&http, &pulling.url("/metrics")).await;
        if common::sample(&pulled, "mdp_store_up").is_some() {
            return format!("{text}{pulled}");
        }
        assert!(
            Instant::now() < deadline,
            "the pulling pod never reported mdp_store_up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------- 1. committed = export

fn files_under(root: &Path, dir: &str) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                let key = relative.to_string_lossy().replace('\\', "/");
                out.insert(key, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &root.join(dir), &mut out);
    out
}

#[test]
fn committed_deploy_and_grafana_are_exactly_a_fresh_export() {
    let out = TempDir::new("fresh");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"));
    command.args(["export", "--out"]).arg(&out.0);
    // The committed files are the defaults: nothing from the caller's environment.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MDP_") {
            command.env_remove(key);
        }
    }
    let (ok, log) = run(&mut command);
    assert!(ok, "mdp export failed: {log}");
    let mut differences = Vec::new();
    for dir in ["deploy", "grafana", "overlays"] {
        let fresh = files_under(&out.0, dir);
        let committed = files_under(&repo(), dir);
        assert!(!fresh.is_empty(), "mdp export wrote nothing under {dir}/");
        let paths: BTreeSet<&String> = fresh.keys().chain(committed.keys()).collect();
        for path in paths {
            if fresh.get(path) != committed.get(path) {
                differences.push(path.clone());
            }
        }
    }
    if !differences.is_empty() {
        let diff = std::process::Command::new("diff")
            .args(["-ruN", "deploy", &out.0.join("deploy").to_string_lossy()])
            .current_dir(repo())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let diff_grafana = std::process::Command::new("diff")
            .args(["-ruN", "grafana", &out.0.join("grafana").to_string_lossy()])
            .current_dir(repo())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!(
            "deploy/, grafana/ or overlays/ differ from `mdp export` in {differences:?}: \
             run `mdp export --out .` and commit.\n{diff}{diff_grafana}"
        );
    }
}

// ---------------------------------------------------------------- 2. manifests

#[test]
fn deployment_and_services_fit_together() {
    let (options, config, files) = exported(&[]);
    for f in files.iter().filter(|f| f.path.ends_with(".yaml")) {
        let doc: Value =
            serde_yaml_ng::from_str(&f.contents).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        assert!(doc.is_object(), "{}", f.path);
        assert!(f.contents.starts_with(export::HEADER), "{}", f.path);
    }
    let deployment = yaml(&files, kubernetes::DEPLOYMENT);
    let service = yaml(&files, kubernetes::SERVICE);
    let peers = yaml(&files, kubernetes::PEERS_SERVICE);
    let monitor = yaml(&files, kubernetes::SERVICE_MONITOR);
    assert_eq!(deployment["metadata"]["namespace"], "market-data");
    assert_eq!(deployment["metadata"]["name"], "mdp-pipeline");
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["resources"]["limits"]["memory"], "64Mi");
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    assert_eq!(env["MDP_DRAIN_DELAY"]["value"], "5s");
    assert_eq!(env["MDP_STORE_METRICS_URL"]["value"], options.store_url);
    assert_eq!(
        env["MDP_REPLICAS_DNS"]["value"],
        "mdp-pipeline-peers.market-data.svc.cluster.local"
    );
    assert_eq!(
        env["MDP_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        grace > 5 + config.shutdown_timeout.as_secs(),
        "grace {grace}s"
    );
    // The ServiceMonitor scrapes each pod once: it selects the Service, not the peers.
    let selector = &monitor["spec"]["selector"]["matchLabels"];
    let selects = |labels: &Value| {
        selector
            .as_object()
            .expect("matchLabels")
            .iter()
            .all(|(key, value)| &labels[key] == value)
    };
    assert!(selects(&service["metadata"]["labels"]));
    assert!(!selects(&peers["metadata"]["labels"]));
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["selector"], service["spec"]["selector"]);
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
}

/// The KEDA traps, avoided.
#[test]
fn scaled_object_avoids_the_keda_traps() {
    let (_, _, files) = exported(&[]);
    let scaled = yaml(&files, kubernetes::SCALED_OBJECT);
    let spec = &scaled["spec"];
    assert_eq!(scaled["metadata"]["name"], "mdp-pipeline-scaler");
    assert_eq!(spec["scaleTargetRef"]["name"], "mdp-pipeline");
    assert_eq!(
        (
            spec["minReplicaCount"].as_u64(),
            spec["maxReplicaCount"].as_u64()
        ),
        (Some(1), Some(10))
    );
    assert_eq!(spec["pollingInterval"], 15);
    assert_eq!(spec["fallback"]["behavior"], "currentReplicasIfHigher");
    let down = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"];
    let window = down["stabilizationWindowSeconds"].as_u64().expect("window");
    assert!(
        (30..=75).contains(&window),
        "8 -> 1 within 60-90 s needs a short window, got {window}"
    );
    for trigger in spec["triggers"].as_array().expect("triggers") {
        for (key, value) in trigger["metadata"].as_object().expect("metadata") {
            assert!(value.is_string(), "trigger metadata {key} must be a string");
        }
        assert_eq!(trigger["metadata"]["ignoreNullValues"], "false");
        assert_eq!(
            trigger["metadata"]["serverAddress"],
            mdp::autoscale::DEFAULT_PROMETHEUS_ADDRESS
        );
        let query = trigger["metadata"]["query"].as_str().expect("query");
        assert!(
            !query.contains("== 2") || query.contains("== bool"),
            "{query}"
        );
    }
}

#[test]
fn kustomization_lists_every_manifest_and_the_rules_agree() {
    let (_, _, files) = exported(&[]);
    let kustomization = yaml(&files, kubernetes::KUSTOMIZATION);
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| format!("deploy/{}", r.as_str().expect("path")))
        .collect();
    let manifests: BTreeSet<String> = files
        .iter()
        .map(|f| f.path.clone())
        .filter(|p| {
            p.starts_with("deploy/") && p != kubernetes::KUSTOMIZATION && p != alerts::RULES_FILE
        })
        .collect();
    assert_eq!(listed, manifests);
    // The PrometheusRule and the plain rules file hold the same groups.
    let rule = yaml(&files, alerts::PROMETHEUS_RULE);
    assert_eq!(
        rule["spec"]["groups"],
        yaml(&files, alerts::RULES_FILE)["groups"]
    );
}

/// The exported pod's environment, as a pod would see it: the autoscaling ConfigMap
/// written to `dir` (and `MDP_AUTOSCALE_CONFIG` pointing there), the pod's address
/// filled in for the downward API.
fn pod_environment(files: &[ExportedFile], dir: &Path) -> Vec<(String, String)> {
    let config_map = yaml(files, kubernetes::AUTOSCALE_CONFIG_MAP);
    let autoscale_file = dir.join(kubernetes::AUTOSCALE_KEY);
    let json = config_map["data"][kubernetes::AUTOSCALE_KEY]
        .as_str()
        .expect("autoscale json");
    std::fs::write(&autoscale_file, json).expect("write autoscale config");
    let deployment = yaml(files, kubernetes::DEPLOYMENT);
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("name");
            let value = match (name, var["value"].as_str()) {
                ("MDP_AUTOSCALE_CONFIG", Some(path)) => {
                    assert_eq!(Path::new(path).file_name(), autoscale_file.file_name());
                    autoscale_file.to_string_lossy().into_owned()
                }
                (_, Some(value)) => value.to_owned(),
                ("MDP_POD_IP", None) => "10.1.2.3".to_owned(),
                (_, None) => panic!("{name} has no value"),
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// The Deployment's environment, read back by mdp's own command line, is exactly the
/// exported configuration: the pod runs what the ScaledObject and dashboards assume.
#[test]
fn the_pod_runs_the_exported_configuration() {
    let (options, expected, files) = exported(&["--max-replicas", "8", "--relax-after", "2s"]);
    let dir = TempDir::new("pod");
    let command = Cli::command();
    let serve = command.find_subcommand("serve").expect("serve");
    let flag_of = |env: &str| {
        serve
            .get_arguments()
            .chain(command.get_arguments())
            .find(|arg| arg.get_env().is_some_and(|e| e == env))
            .and_then(|arg| arg.get_long())
            .unwrap_or_else(|| {
                panic!("the Deployment sets {env}, which no option of mdp serve reads")
            })
    };
    let mut argv: Vec<String> = vec!["mdp".into(), "serve".into()];
    for (name, value) in pod_environment(&files, &dir.0) {
        argv.push(format!("--{}", flag_of(&name)));
        argv.push(value);
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Serve(args) = cli.command else {
        unreachable!("parsed as serve")
    };
    let mut pod = ServeConfig::try_from(args).expect("the pod's configuration is valid");
    match &pod.replicas {
        ReplicaSource::Dns { name, pod_ip, .. } => {
            assert_eq!(name, &options.peers_fqdn());
            assert_eq!(pod_ip.map(|ip| ip.to_string()).as_deref(), Some("10.1.2.3"));
        }
        other => panic!("the pods must discover their peers, got {other:?}"),
    }
    assert_eq!(pod.drain_delay, options.drain_delay);
    assert_eq!(pod.autoscale.max_replicas, 8);
    // The Deployment names the IPv4 wildcard; the default of `serve` is dual-stack.
    assert_eq!(pod.listen.port(), expected.listen.port());
    pod.listen = expected.listen;
    pod.replicas = expected.replicas.clone();
    pod.drain_delay = expected.drain_delay;
    assert_eq!(pod, expected);
}

/// `mdp simulate`, run with the exported pod's environment, reproduces the expected
/// replica matrix and recovery times.
#[test]
fn simulate_on_the_exported_configuration_reproduces_the_matrix() {
    // Not the defaults, so the simulation can only match by reading the export.
    let (_, _, files) = exported(&["--scale-down-window", "75s"]);
    let dir = TempDir::new("simulate");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"));
    command.args(["simulate", "--scenario", "matrix", "--format", "json"]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MDP_") {
            command.env_remove(key);
        }
    }
    command.envs(pod_environment(&files, &dir.0));
    let output = command.output().expect("mdp simulate runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mdp simulate failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("simulate prints JSON");
    let failed: Vec<&Value> = report["spec"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["ok"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "the matrix is not reproduced: {failed:?}"
    );
    assert_eq!(report["spec"]["matches"], true);
    // It ran the exported autoscaling configuration.
    let scaled = yaml(&files, kubernetes::SCALED_OBJECT);
    let spec = &scaled["spec"];
    assert_eq!(report["settings"]["max_replicas"], spec["maxReplicaCount"]);
    let window = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"];
    assert_eq!(
        report["settings"]["scale_down_window_seconds"].as_f64(),
        window.as_f64()
    );
}

#[test]
fn options_and_configuration_reach_every_file() {
    let (_, config, files) = exported(&[
        "--namespace",
        "trading",
        "--name",
        "feed",
        "--store-capacity",
        "20000",
        "--max-replicas",
        "6",
        "--image",
        "registry.example/mdp:1.2.3",
    ]);
    assert_eq!(alerts::queue_high(&config), 16000.0);
    for f in &files {
        assert!(
            !f.contents.contains("market-data.svc"),
            "{} still names the default namespace",
            f.path
        );
        assert!(
            !f.contents.contains("mdp-pipeline"),
            "{} still names the default name",
            f.path
        );
    }
    assert!(file(&files, alerts::RULES_FILE).contains("> 16000"));
    let dashboard: Value = serde_json::from_str(file(&files, grafana::DASHBOARD)).expect("json");
    assert_eq!(dashboard["uid"], "feed");
    let steps = &dashboard["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"];
    let values: Vec<Option<f64>> = steps
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["value"].as_f64())
        .collect();
    assert_eq!(values, [None, Some(6000.0), Some(10000.0), Some(16000.0)]);
    let scaled = yaml(&files, kubernetes::SCALED_OBJECT);
    assert_eq!(scaled["spec"]["maxReplicaCount"], 6);
    assert_eq!(scaled["metadata"]["namespace"], "trading");
    assert_eq!(
        yaml(&files, kubernetes::DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/mdp:1.2.3"
    );
    let presets: Vec<(&str, &str)> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or(""),
                v["current"]["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        presets,
        [
            ("datasource", "prometheus"),
            ("namespace", "trading"),
            ("job", "feed")
        ]
    );
    for trigger in scaled["spec"]["triggers"].as_array().expect("triggers") {
        let query = trigger["metadata"]["query"].as_str().expect("query");
        assert!(
            query.contains("namespace=\"trading\", job=\"feed\""),
            "{query}"
        );
    }
}

#[test]
fn dashboard_has_the_seed_panels_and_what_an_operator_needs() {
    let (_, _, files) = exported(&[]);
    let dashboard: Value = serde_json::from_str(file(&files, grafana::DASHBOARD)).expect("json");
    assert_eq!(dashboard["uid"], "mdp-pipeline");
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    let panels = dashboard["panels"].as_array().expect("panels");
    let by_title = |title: &str| {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title}"))
    };
    let steps = |panel: &Value| -> Vec<(String, Option<f64>)> {
        panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["color"].as_str().unwrap_or("").to_owned(),
                    s["value"].as_f64(),
                )
            })
            .collect()
    };
    let s = |c: &str, v: Option<f64>| (c.to_owned(), v);
    let depth = by_title("Store Queue Depth");
    assert_eq!(depth["type"], "timeseries");
    assert_eq!(depth["fieldConfig"]["defaults"]["unit"], "messages");
    assert_eq!(
        steps(depth),
        [
            s("green", None),
            s("yellow", Some(3000.0)),
            s("orange", Some(5000.0)),
            s("red", Some(8000.0))
        ]
    );
    let scale = by_title("Rate Scale Factor");
    assert_eq!(scale["type"], "gauge");
    let defaults = &scale["fieldConfig"]["defaults"];
    assert_eq!(
        (
            defaults["unit"].as_str(),
            defaults["min"].as_f64(),
            defaults["max"].as_f64()
        ),
        (Some("percentunit"), Some(0.0), Some(1.0))
    );
    assert_eq!(
        steps(scale),
        [
            s("red", None),
            s("yellow", Some(0.5)),
            s("green", Some(0.9))
        ]
    );
    let level = by_title("Backpressure State");
    assert_eq!(level["type"], "stat");
    let mapping = &level["fieldConfig"]["defaults"]["mappings"][0]["options"];
    for (value, text, color) in [
        ("0", "OK", "green"),
        ("1", "SOFT", "yellow"),
        ("2", "HARD", "red"),
    ] {
        assert_eq!(
            (
                mapping[value]["text"].as_str(),
                mapping[value]["color"].as_str()
            ),
            (Some(text), Some(color))
        );
    }
    assert_eq!(by_title("Pipeline Pods")["type"], "stat");
    let all: String = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "histogram_quantile(0.99",
        "mdp_feedback_events_rejected_total",
        "feedback_events_processed_total",
        "mdp_coordinators{state=\"stale\"",
        "kube_horizontalpodautoscaler_status_desired_replicas{namespace=\"$namespace\", horizontalpodautoscaler=\"keda-hpa-$job-scaler\"}",
        "kube_horizontalpodautoscaler_status_current_replicas",
    ] {
        assert!(all.contains(needed), "no panel query uses {needed}");
    }
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
    let datasource = yaml(&files, grafana::DATASOURCE);
    assert_eq!(datasource["datasources"][0]["type"], "prometheus");
    let provider = yaml(&files, grafana::DASHBOARD_PROVIDER);
    assert_eq!(
        provider["providers"][0]["options"]["path"],
        grafana::DASHBOARDS_PATH
    );
}

#[test]
fn core_manifests_pass_kubernetes_validate_strict() {
    let Some(validator) = kubernetes_validate() else {
        return;
    };
    let (_, _, files) = exported(&[]);
    let dir = TempDir::new("kubeval");
    export::write_files(&dir.0, &files).expect("write");
    let core = [
        kubernetes::DEPLOYMENT,
        kubernetes::SERVICE,
        kubernetes::PEERS_SERVICE,
        kubernetes::NETWORK_POLICY,
        kubernetes::AUTOSCALE_CONFIG_MAP,
        kubernetes::DASHBOARD_CONFIG_MAP,
    ];
    let (ok, log) = run(std::process::Command::new(&validator)
        .arg("--strict")
        .args(core.iter().map(|p| dir.0.join(p))));
    assert!(ok, "kubernetes-validate --strict failed:\n{log}");
    assert_eq!(log.matches(" passed ").count(), core.len(), "{log}");
    // The validator is strict: an unknown field fails.
    let broken = dir.0.join("broken.yaml");
    let text = file(&files, kubernetes::DEPLOYMENT).replace(
        "automountServiceAccountToken:",
        "automountServiceAcountToken:",
    );
    std::fs::write(&broken, text).expect("write");
    let (ok, log) = run(std::process::Command::new(&validator)
        .arg("--strict")
        .arg(&broken));
    assert!(!ok, "a misspelt field passed:\n{log}");
}

#[test]
fn scaled_object_passes_the_keda_schema() {
    let (Some(node), Some(models)) = (require_tool("node"), keda_models()) else {
        return;
    };
    let (_, _, files) = exported(&[]);
    let scaled = yaml(&files, kubernetes::SCALED_OBJECT);
    let validate = |objects: &Value| keda_validate(&node, &models, objects);
    let (ok, log) = validate(&Value::Array(vec![scaled.clone()]));
    assert!(
        ok && log.contains("valid 1"),
        "the ScaledObject fails the KEDA schema:\n{log}"
    );
    // A number where KEDA wants a string (the classic trap) is refused.
    let mut numeric = scaled;
    numeric["spec"]["triggers"][0]["metadata"]["threshold"] = Value::from(1000);
    let (ok, log) = validate(&Value::Array(vec![numeric]));
    assert!(
        !ok && log.contains("threshold"),
        "a numeric threshold passed:\n{log}"
    );
}

/// Runs the KEDA schema check over `objects` (a JSON array).
fn keda_validate(node: &Path, models: &Path, objects: &Value) -> (bool, String) {
    {
        let mut child = std::process::Command::new(node)
            .arg(repo().join("tests/fixtures/export/validate-keda.mjs"))
            .arg(models)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs");
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(objects.to_string().as_bytes())
                .expect("write stdin");
        }
        let output = child.wait_with_output().expect("node finishes");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }
}

// ---------------------------------------------------------------- 3. alert rules

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let (_, _, files) = exported(&[]);
    let dir = TempDir::new("rules");
    let rules = dir.0.join("mdp-alerts.rules.yaml");
    std::fs::write(&rules, file(&files, alerts::RULES_FILE)).expect("write rules");
    let operator_rules = dir.0.join("from-prometheusrule.yaml");
    let spec = &yaml(&files, alerts::PROMETHEUS_RULE)["spec"];
    std::fs::write(
        &operator_rules,
        serde_yaml_ng::to_string(spec).expect("yaml"),
    )
    .expect("write");
    let (ok, log) = run(std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .arg(&operator_rules));
    assert!(ok, "promtool check rules:\n{log}");
    assert_eq!(log.matches("SUCCESS: 9 rules found").count(), 2, "{log}");
    let tests = dir.0.join("alerts.test.yaml");
    std::fs::copy(
        repo().join("tests/fixtures/export/alerts.test.yaml"),
        &tests,
    )
    .expect("copy fixture");
    let (ok, log) = run(std::process::Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests));
    assert!(ok, "promtool test rules:\n{log}");
    // The unit tests can fail: a rule that never fires is caught.
    let silenced = file(&files, alerts::RULES_FILE).replace("> 8000", "> 80000");
    std::fs::write(&rules, silenced).expect("write");
    let (ok, _) = run(std::process::Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests));
    assert!(
        !ok,
        "promtool test rules passed with a queue-high alert that cannot fire"
    );
}

// ---------------------------------------------------------------- 4. and 7. queries

#[test]
fn promql_metric_names_are_extracted() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le) (rate(x_bucket{a=\"b\"}[$__rate_interval])))"),
        ["x_bucket"]
    );
    assert_eq!(
        names("(max(a) == bool 2) * 10 + on (p) group_left (q) b offset 5m"),
        ["a", "b"]
    );
    assert_eq!(
        names("time() - max by (coordinator) (c{s=~\"x|y\"})"),
        ["c"]
    );
    assert_eq!(names("absent(d{source=\"e\"}) or vector(0)"), ["d"]);
}

#[tokio::test]
async fn every_query_parses_and_reads_metrics_a_real_scrape_has() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let (_, _, files) = exported(&[]);
    let queries = queries(&files);
    assert!(queries.len() >= 20, "only {} queries found", queries.len());
    // promtool parses each query as a recording rule.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            serde_json::json!({ "record": format!("mdp_export_check:query_{i}"), "expr": expr.replace("$__rate_interval", "1m") })
        })
        .collect();
    let dir = TempDir::new("queries");
    let path = dir.0.join("queries.yaml");
    let doc = serde_json::json!({ "groups": [{ "name": "queries", "rules": rules }] });
    std::fs::write(&path, serde_yaml_ng::to_string(&doc).expect("yaml")).expect("write");
    let (ok, log) = run(std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&path));
    assert!(ok, "a query does not parse:\n{log}");
    let (samples, _) = scrape_names(&real_scrape().await);
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &queries {
        for name in metric_names(expr) {
            if !name.starts_with("kube_") && !name.starts_with("keda_") && !samples.contains(&name)
            {
                missing.push(format!("{place}: {name} in {expr}"));
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "queries name metrics mdp does not export:\n{}",
        missing.join("\n")
    );
    for seed in [
        "pipeline_rate_scale_factor",
        "pipeline_backpressure_state",
        "pipeline_feedback_queue_depth",
    ] {
        assert!(used.contains(seed), "no query reads {seed}");
    }
}

#[tokio::test]
async fn no_rate_over_a_gauge_and_no_phase_on_kube_pod_info() {
    let (_, _, files) = exported(&[]);
    let (_, types) = scrape_names(&real_scrape().await);
    let mut checked = 0;
    for f in &files {
        let (mistakes, calls) = old_mistakes(&f.contents, &types);
        assert!(mistakes.is_empty(), "{}: {mistakes:?}", f.path);
        checked += calls;
    }
    assert!(
        checked >= 5,
        "the scan found only {checked} rate()-like calls"
    );
    // The scan does catch both mistakes, in YAML and in JSON-escaped text.
    let old = r#"expr: "sum(rate(pipeline_backpressure_state[5m])) + count(kube_pod_info{phase=\"Running\"})""#;
    assert_eq!(old_mistakes(old, &types).0.len(), 2, "{old}");
}

// ---------------------------------------------------------------- 5. a real Prometheus

#[tokio::test]
async fn prometheus_evaluates_the_keda_triggers_through_the_seed_scenarios() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let (_, config, files) = exported(&[]);
    let scaled = yaml(&files, kubernetes::SCALED_OBJECT);
    let triggers: Vec<(String, String, f64)> = scaled["spec"]["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .map(|t| {
            let meta = &t["metadata"];
            let threshold = meta["threshold"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("threshold");
            (
                t["name"].as_str().expect("name").to_owned(),
                meta["query"].as_str().expect("query").to_owned(),
                threshold,
            )
        })
        .collect();
    let mdp = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let target = Target {
        addr: mdp.addr,
        namespace: "market-data",
        job: "mdp-pipeline",
    };
    let prometheus = Prometheus::start(&binary, &[target]).await;
    let http = reqwest::Client::new();
    // Wait for the first scrape; from then on no trigger may ever read nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for (_, query, _) in &triggers {
            all &= !prometheus.query(&http, query).await.is_empty();
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus never scraped mdp");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let phases = [
        (500, Level::Ok, None),
        (6000, Level::Soft, None),
        (9500, Level::Hard, None),
        (800, Level::Ok, Some("queue_recovered")),
    ];
    let matrix = [(1, 1), (3, 5), (8, 10), (1, 1)];
    for ((depth, level, reason), (low, high)) in phases.into_iter().zip(matrix) {
        let posted = http
            .post(mdp.url("/feedback"))
            .json(&store_event(depth, level.as_str(), reason))
            .send()
            .await
            .expect("feedback posts");
        assert!(posted.status().is_success());
        let expected: Vec<f64> = config
            .autoscale
            .triggers
            .iter()
            .map(|t| t.local_value(depth as f64, level))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let values = loop {
            let mut values = Vec::new();
            for (name, query, _) in &triggers {
                let samples = prometheus.query(&http, query).await;
                assert_eq!(
                    samples.len(),
                    1,
                    "trigger {name} at {level} {depth} returned {samples:?}: {query}"
                );
                values.push(samples[0]);
            }
            if values == expected {
                break values;
            }
            assert!(
                Instant::now() < deadline,
                "at {level} {depth} the triggers read {values:?}, want {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // What the HPA makes of these values (AverageValue: ceil(value / target), the
        // largest trigger wins, within the bounds) is the expected replica matrix.
        let wanted = triggers
            .iter()
            .zip(&values)
            .map(|((_, _, threshold), value)| (value / threshold).ceil() as u32)
            .max()
            .unwrap_or(0)
            .clamp(
                config.autoscale.min_replicas.max(1),
                config.autoscale.max_replicas,
            );
        assert!(
            (low..=high).contains(&wanted),
            "at {level} {depth} KEDA would ask for {wanted} pods, want {low}..={high}"
        );
    }
}

// ---------------------------------------------------------------- the HTTP route

#[tokio::test]
async fn the_service_serves_the_exported_files() {
    let service = InProcess::start(&[]).await;
    let config = service.ctx.config.clone();
    let files = export::render(&ExportOptions::for_service(&config), &config);
    let http = reqwest::Client::new();
    let index: Value = http
        .get(service.url("/api/v1/export/"))
        .send()
        .await
        .expect("index")
        .json()
        .await
        .expect("index json");
    let listed: Vec<&str> = index["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(listed, paths);
    for linked in [
        "grafana/dashboard.json",
        "deploy/keda/scaledobject-pipeline.yaml",
    ] {
        assert!(paths.contains(&linked), "the dashboard links to {linked}");
    }
    for f in &files {
        let response = http
            .get(service.url(&format!("/api/v1/export/{}", f.path)))
            .send()
            .await
            .expect("file");
        assert_eq!(response.status(), 200, "{}", f.path);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(
            content_type.as_deref(),
            Some(f.content_type()),
            "{}",
            f.path
        );
        assert_eq!(
            response.text().await.expect("body"),
            f.contents,
            "{}",
            f.path
        );
    }
    let missing = http
        .get(service.url("/api/v1/export/deploy/nope.yaml"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json error");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope.yaml")),
        "{body}"
    );
    service.stop().await;
}

// ---------------------------------------------------------------- fitting the stack

/// Every Kubernetes object of the export (kustomization and plain rules file aside).
fn objects(files: &[ExportedFile]) -> Vec<(String, Value)> {
    files
        .iter()
        .filter(|f| {
            f.path.starts_with("deploy/")
                && f.path != kubernetes::KUSTOMIZATION
                && f.path != alerts::RULES_FILE
        })
        .map(|f| (f.path.clone(), yaml(files, &f.path)))
        .collect()
}

#[test]
fn every_object_carries_the_recommended_labels_and_monitors_the_selector_labels() {
    let (_, _, files) = exported(&[
        "--name",
        "feed",
        "--monitor-label",
        "release=kube-prometheus-stack",
        "--monitor-label",
        "team=md",
    ]);
    let all = objects(&files);
    assert!(all.len() >= 9, "{} objects", all.len());
    for (path, object) in &all {
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "mdp", "{path}");
        assert_eq!(labels["app.kubernetes.io/instance"], "feed", "{path}");
        assert_eq!(
            labels["app.kubernetes.io/version"],
            env!("CARGO_PKG_VERSION"),
            "{path}"
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "mdp-export",
            "{path}"
        );
        let monitor = matches!(
            object["kind"].as_str(),
            Some("ServiceMonitor" | "PrometheusRule")
        );
        assert_eq!(
            labels["release"] == "kube-prometheus-stack" && labels["team"] == "md",
            monitor,
            "{path}: monitor labels only on what the Prometheus Operator selects"
        );
    }
    let deployment = yaml(&files, kubernetes::DEPLOYMENT);
    let template = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(template["app.kubernetes.io/instance"], "feed");
    // The selector stays what it was: a Deployment's selector cannot change.
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        serde_json::json!({ "app": "feed" })
    );
}

#[test]
fn the_monitoring_namespace_is_an_option() {
    let (_, _, files) = exported(&["--monitoring-namespace", "observability"]);
    let policy = yaml(&files, kubernetes::NETWORK_POLICY);
    let from = &policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"];
    assert_eq!(from["kubernetes.io/metadata.name"], "observability");
    let dashboard = yaml(&files, kubernetes::DASHBOARD_CONFIG_MAP);
    assert_eq!(dashboard["metadata"]["namespace"], "observability");
    let (_, _, files) = exported(&[]);
    let policy = yaml(&files, kubernetes::NETWORK_POLICY);
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert!(
        yaml(&files, kubernetes::KUSTOMIZATION)["namespace"].is_null(),
        "a kustomization namespace would move the dashboard out of the monitoring namespace"
    );
}

#[test]
fn grafana_gets_a_sidecar_configmap_a_modest_datasource_and_a_valid_model() {
    let (_, _, files) = exported(&[]);
    let config_map = yaml(&files, kubernetes::DASHBOARD_CONFIG_MAP);
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(config_map["metadata"]["namespace"], "monitoring");
    assert_eq!(
        config_map["data"]["mdp-pipeline.json"].as_str(),
        Some(file(&files, grafana::DASHBOARD)),
        "the ConfigMap holds the very dashboard.json"
    );
    let datasource = yaml(&files, grafana::DATASOURCE);
    assert_eq!(datasource["datasources"][0]["isDefault"], false);
    assert_eq!(
        datasource["datasources"][0]["url"],
        mdp::autoscale::DEFAULT_PROMETHEUS_ADDRESS
    );
    let dashboard: Value = serde_json::from_str(file(&files, grafana::DASHBOARD)).expect("json");
    let variables = dashboard["templating"]["list"].as_array().expect("list");
    let names: Vec<&str> = variables
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["datasource", "namespace", "job"]);
    for variable in variables {
        let current = &variable["current"];
        assert!(
            current["text"].is_string() && current["value"].is_string(),
            "{}: current needs text and value, got {current}",
            variable["name"]
        );
    }
    let mut units = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        if let Some(unit) = panel["fieldConfig"]["defaults"]["unit"].as_str() {
            units += 1;
            assert!(!unit.contains(": "), "{}: unit {unit:?}", panel["title"]);
        }
    }
    assert!(units >= 10, "{units} units");
    assert!(file(&files, grafana::DASHBOARD).contains(grafana::TOKENS_PER_SECOND_UNIT));
}

#[test]
fn the_auth_token_comes_from_a_secret() {
    let (_, _, files) = exported(&[
        "--auth-token-secret",
        "mdp-auth:bearer",
        "--auth-reads",
        "true",
    ]);
    let deployment = yaml(&files, kubernetes::DEPLOYMENT);
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let token = env
        .iter()
        .find(|e| e["name"] == "MDP_AUTH_TOKEN")
        .expect("MDP_AUTH_TOKEN");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        serde_json::json!({ "name": "mdp-auth", "key": "bearer" })
    );
    assert!(token["value"].is_null());
    assert!(
        env.iter()
            .any(|e| e["name"] == "MDP_AUTH_READS" && e["value"] == "true")
    );
    // Prometheus must then send the token to scrape.
    let monitor = yaml(&files, kubernetes::SERVICE_MONITOR);
    assert_eq!(
        monitor["spec"]["endpoints"][0]["authorization"]["credentials"],
        serde_json::json!({ "name": "mdp-auth", "key": "bearer" })
    );
    // Without the option, no token at all.
    let (_, _, files) = exported(&[]);
    assert!(!file(&files, kubernetes::DEPLOYMENT).contains("MDP_AUTH_TOKEN"));
    // `mdp export --auth-token` refuses, exit 2, one line naming the option.
    let out = TempDir::new("token");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["export", "--out"])
        .arg(&out.0)
        .args(["--auth-token", "abcdefgh-secret"])
        .env_remove("MDP_AUTH_TOKEN")
        .output()
        .expect("mdp runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--auth-token"), "{stderr}");
    assert!(stderr.contains("--auth-token-secret"), "{stderr}");
    assert!(!stderr.contains("abcdefgh-secret"), "{stderr}");
}

/// Every refused option is reported at once, each named, and nothing is written.
#[test]
fn every_bad_option_is_reported_at_once() {
    let out = TempDir::new("bad-options");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
        .args(["export", "--out"])
        .arg(&out.0)
        .args(["--monitor-label", "bad", "--auth-token-secret", "Bad_Name"])
        .env_remove("MDP_AUTH_TOKEN")
        .output()
        .expect("mdp runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("invalid --monitor-label: \"bad\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid --auth-token-secret: \"Bad_Name\""),
        "{stderr}"
    );
    assert!(
        files_under(&out.0, "").is_empty(),
        "nothing is written when an option is refused"
    );
}

/// `(place, matchers)` of every metric selector in the export's queries.
fn every_selector(files: &[ExportedFile]) -> Vec<(String, String, String)> {
    queries(files)
        .into_iter()
        .flat_map(|(place, expr)| {
            selectors(&expr)
                .into_iter()
                .map(move |(name, matchers)| (place.clone(), name, matchers))
        })
        .collect()
}

#[test]
fn every_query_is_scoped_to_one_installation() {
    let (_, _, files) = exported(&["--namespace", "staging", "--name", "feed"]);
    let all = every_selector(&files);
    assert!(all.len() >= 25, "{} selectors", all.len());
    let (mut alerts_seen, mut triggers_seen, mut panels_seen) = (0, 0, 0);
    for (place, name, matchers) in &all {
        let want = if place.starts_with("panel") {
            panels_seen += 1;
            if name.starts_with("kube_") {
                vec!["namespace=\"$namespace\""]
            } else {
                vec!["namespace=\"$namespace\"", "job=\"$job\""]
            }
        } else {
            if place.starts_with("alert") {
                alerts_seen += 1;
            } else {
                triggers_seen += 1;
            }
            vec!["namespace=\"staging\"", "job=\"feed\""]
        };
        for matcher in want {
            assert!(
                matchers.contains(matcher),
                "{place}: {name}{{{matchers}}} lacks {matcher}"
            );
        }
    }
    assert!(alerts_seen >= 5 && triggers_seen >= 2 && panels_seen >= 20);
    let absent = queries(&files)
        .into_iter()
        .find(|(_, expr)| expr.starts_with("absent("))
        .expect("an absent() alert");
    assert!(
        absent.1.contains("namespace=\"staging\", job=\"feed\""),
        "{absent:?}"
    );
    // The check catches an unscoped query.
    assert!(
        selectors("max(pipeline_backpressure_state)")[0]
            .1
            .is_empty()
    );
}

// ---------------------------------------------------------------- the overlay

/// Applies RFC 6902 `add`/`replace` operations (all the overlay uses) to `doc`.
fn json_patch(doc: &mut Value, ops: &Value) {
    for op in ops.as_array().expect("operations") {
        let path = op["path"].as_str().expect("path");
        let (parent, last) = path.rsplit_once('/').expect("a JSON pointer");
        let target = if parent.is_empty() {
            &mut *doc
        } else {
            doc.pointer_mut(parent)
                .unwrap_or_else(|| panic!("{parent} is not in the object"))
        };
        let value = op["value"].clone();
        match (op["op"].as_str(), target) {
            (Some("add"), Value::Object(map)) => {
                map.insert(last.to_owned(), value);
            }
            (Some("replace"), Value::Object(map)) => {
                assert!(map.contains_key(last), "replace of a missing {path}");
                map.insert(last.to_owned(), value);
            }
            (Some("replace"), Value::Array(items)) => {
                let index: usize = last.parse().expect("an index");
                assert!(index < items.len(), "replace of a missing {path}");
                items[index] = value;
            }
            (op, _) => panic!("unsupported patch {op:?} at {path}"),
        }
    }
}

/// What `kubectl kustomize` renders for a kustomization in `dir` (of `root`): its
/// resources (files, or folders with their own kustomization) with its patches applied.
fn render_kustomization(root: &Path, dir: &str) -> Vec<Value> {
    let folder = root.join(dir);
    let text = std::fs::read_to_string(folder.join("kustomization.yaml"))
        .unwrap_or_else(|e| panic!("{dir}/kustomization.yaml: {e}"));
    let kustomization: Value = serde_yaml_ng::from_str(&text).expect("yaml");
    assert!(
        kustomization["namespace"].is_null(),
        "{dir}: a namespace override"
    );
    let mut out = Vec::new();
    for resource in kustomization["resources"].as_array().expect("resources") {
        let resource = resource.as_str().expect("path");
        let path = folder.join(resource);
        if path.is_dir() {
            let relative = path
                .canonicalize()
                .expect("folder")
                .strip_prefix(root.canonicalize().expect("root"))
                .expect("inside the export")
                .to_string_lossy()
                .into_owned();
            out.extend(render_kustomization(root, &relative));
        } else {
            let text = std::fs::read_to_string(&path).expect("resource");
            out.push(serde_yaml_ng::from_str(&text).expect("resource yaml"));
        }
    }
    for patch in kustomization["patches"].as_array().into_iter().flatten() {
        let target = &patch["target"];
        let ops: Value =
            serde_yaml_ng::from_str(patch["patch"].as_str().expect("inline patch")).expect("ops");
        let mut hits = 0;
        for object in &mut out {
            let group = object["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map_or("", |(group, _)| group);
            if object["kind"] == target["kind"]
                && object["metadata"]["name"] == target["name"]
                && target["group"].as_str().is_none_or(|g| g == group)
            {
                json_patch(object, &ops);
                hits += 1;
            }
        }
        assert_eq!(
            hits, 1,
            "{dir}: patch target {target} matched {hits} objects"
        );
    }
    out
}

fn by_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"].is_string())
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_kube_prometheus_stack_overlay_equals_exporting_with_its_flags_and_validates() {
    let (options, _, files) = exported(&[]);
    let dir = TempDir::new("overlay");
    export::write_files(&dir.0, &files).expect("write");
    let base = render_kustomization(&dir.0, "deploy");
    let rendered = render_kustomization(&dir.0, "overlays/kube-prometheus-stack");
    assert_eq!(base.len(), rendered.len());
    let url = export::overlay::stack_prometheus_url(&options);
    assert_eq!(
        url,
        "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
    );
    let (_, _, flagged) = exported(&[
        "--prometheus-url",
        &url,
        "--monitor-label",
        "release=kube-prometheus-stack",
    ]);
    for (kind, path) in [
        ("ScaledObject", kubernetes::SCALED_OBJECT),
        ("ServiceMonitor", kubernetes::SERVICE_MONITOR),
        ("PrometheusRule", alerts::PROMETHEUS_RULE),
    ] {
        assert_eq!(by_kind(&rendered, kind), &yaml(&flagged, path), "{kind}");
        assert_ne!(by_kind(&rendered, kind), by_kind(&base, kind), "{kind}");
    }
    // The rendered core objects pass kubernetes-validate, the ScaledObject KEDA's schema.
    if let Some(validator) = kubernetes_validate() {
        let core: Vec<&Value> = rendered
            .iter()
            .filter(|o| {
                !o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.contains("keda.sh") || v.contains("coreos.com"))
            })
            .collect();
        let mut paths = Vec::new();
        for (i, object) in core.iter().enumerate() {
            let path = dir.0.join(format!("rendered-{i}.yaml"));
            std::fs::write(&path, serde_yaml_ng::to_string(object).expect("yaml")).expect("write");
            paths.push(path);
        }
        let (ok, log) = run(std::process::Command::new(&validator)
            .arg("--strict")
            .args(&paths));
        assert!(
            ok,
            "the rendered overlay fails kubernetes-validate --strict:\n{log}"
        );
        assert_eq!(log.matches(" passed ").count(), paths.len(), "{log}");
    }
    if let (Some(node), Some(models)) = (require_tool("node"), keda_models()) {
        let scaled = by_kind(&rendered, "ScaledObject").clone();
        let (ok, log) = keda_validate(&node, &models, &Value::Array(vec![scaled]));
        assert!(ok && log.contains("valid 1"), "{log}");
    }
    // kubectl's own kustomize, where installed (not in Debian), renders the same.
    let kubectl = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    if let Some(kubectl) = kubectl {
        let (ok, log) = run(std::process::Command::new(kubectl)
            .arg("kustomize")
            .arg(dir.0.join("overlays/kube-prometheus-stack")));
        assert!(ok, "kubectl kustomize:\n{log}");
        let theirs: Vec<Value> = log
            .split("\n---\n")
            .map(|doc| serde_yaml_ng::from_str(doc).expect("kustomize yaml"))
            .collect();
        let key = |o: &Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
        let mut mine: Vec<&Value> = rendered.iter().collect();
        let mut theirs: Vec<&Value> = theirs.iter().collect();
        mine.sort_by_key(|o| key(o));
        theirs.sort_by_key(|o| key(o));
        assert_eq!(
            mine, theirs,
            "kubectl kustomize renders the overlay differently"
        );
    }
}

#[test]
fn left_out_crds_leave_a_kustomization_that_still_renders() {
    let (_, _, files) = exported(&["--without", "scaled-object,service-monitor,prometheus-rule"]);
    let dir = TempDir::new("without");
    export::write_files(&dir.0, &files).expect("write");
    for dir_name in ["deploy", "overlays/kube-prometheus-stack"] {
        let rendered = render_kustomization(&dir.0, dir_name);
        for object in &rendered {
            let api = object["apiVersion"].as_str().unwrap_or("");
            assert!(
                !api.contains("keda.sh") && !api.contains("coreos.com"),
                "{dir_name}: {api} left in"
            );
        }
        assert!(rendered.len() >= 6, "{dir_name}");
    }
}

// ---------------------------------------------------------------- the container

#[test]
fn the_dockerfile_builds_static_in_one_stage_and_ships_it_from_scratch() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<(String, String)> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
            (word.to_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|(word, _)| word == "FROM")
        .map(|(_, rest)| rest)
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(
        stages[0].starts_with("rust:") && stages[0].ends_with(" AS build"),
        "{stages:?}"
    );
    assert_eq!(stages[1], "scratch");
    let build_stage: Vec<&(String, String)> = instructions
        .iter()
        .skip_while(|(w, _)| w != "FROM")
        .take_while(|(w, rest)| !(w == "FROM" && rest == "scratch"))
        .collect();
    let run = build_stage
        .iter()
        .find(|(w, _)| w == "RUN")
        .map(|(_, rest)| rest.as_str())
        .expect("a RUN in the build stage");
    for needed in [
        "-C target-feature=+crt-static",
        "cargo build --release",
        "--locked",
    ] {
        assert!(run.contains(needed), "the build lacks {needed}: {run}");
    }
    let runtime: Vec<&(String, String)> = instructions
        .iter()
        .skip_while(|(w, rest)| !(w == "FROM" && rest == "scratch"))
        .collect();
    assert!(
        runtime
            .iter()
            .any(|(w, rest)| w == "COPY" && rest.starts_with("--from=build ")),
        "the runtime stage copies the binary from the build stage"
    );
    assert!(
        runtime
            .iter()
            .any(|(w, rest)| w == "USER" && rest == "65534:65534")
    );
    assert!(
        !dockerfile.contains("COPY target/"),
        "the image must not depend on a binary built on the host"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for excluded in ["target/", ".git/", ".venv-tools/", "node_modules/"] {
        assert!(
            patterns.contains(excluded),
            ".dockerignore lacks {excluded}"
        );
    }
    // What the build needs is not ignored.
    for needed in ["src", "Cargo.toml", "Cargo.lock", "benches"] {
        assert!(
            !patterns.iter().any(|p| p.trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
}

#[test]
fn one_image_name_and_tag_across_readme_dockerfile_and_manifests() {
    let image = export::DEFAULT_IMAGE;
    assert_eq!(image, format!("mdp:{}", env!("CARGO_PKG_VERSION")));
    let (_, _, files) = exported(&[]);
    assert_eq!(
        yaml(&files, kubernetes::DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["image"],
        image
    );
    let build = format!("docker build -t {image} .");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&build),
        "the Dockerfile does not say {build}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    assert!(readme.contains(&build), "the README does not say {build}");
    for text in [&readme, &dockerfile] {
        for (at, _) in text.match_indices("docker build -t") {
            let line = text[at..].lines().next().unwrap_or("");
            assert!(line.starts_with(&build), "another tag: {line}");
        }
    }
}

// ---------------------------------------------------------------- two installations

/// `(name, expression)` pairs.
type Named = Vec<(String, String)>;

/// The trigger queries and alert expressions of one export, by name.
fn installation_queries(files: &[ExportedFile]) -> (Named, Named) {
    let (mut triggers, mut rules) = (Vec::new(), Vec::new());
    for (place, expr) in queries(files) {
        if let Some(name) = place.strip_prefix("trigger ") {
            triggers.push((name.to_owned(), expr));
        } else if let Some(name) = place.strip_prefix("alert ") {
            rules.push((name.trim_matches('"').to_owned(), expr));
        }
    }
    (triggers, rules)
}

/// Two installations behind one Prometheus: staging at HARD with 9500 queued,
/// production at OK with 500. Each export's KEDA queries and alert expressions read
/// only their own installation's series; a third export, with no pods at all, sees
/// nothing but its own absence.
#[tokio::test]
async fn two_installations_behind_one_prometheus_never_see_each_other() {
    let Some(binary) = require_tool("prometheus") else {
        return;
    };
    let staging = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let production = MdpProcess::serve(&["--relax-after", "0s"], &[]);
    let http = reqwest::Client::new();
    for (mdp, depth, level) in [(&staging, 9500, Level::Hard), (&production, 500, Level::Ok)] {
        let posted = http
            .post(mdp.url("/feedback"))
            .json(&store_event(depth, level.as_str(), None))
            .send()
            .await
            .expect("feedback posts");
        assert!(posted.status().is_success());
    }
    let prometheus = Prometheus::start(
        &binary,
        &[
            Target {
                addr: staging.addr,
                namespace: "staging",
                job: "pipeline",
            },
            Target {
                addr: production.addr,
                namespace: "production",
                job: "pipeline",
            },
        ],
    )
    .await;
    let export_for = |namespace: &str| {
        let (_, config, files) = exported(&["--namespace", namespace, "--name", "pipeline"]);
        let (triggers, rules) = installation_queries(&files);
        (config, triggers, rules)
    };
    let (config, staging_triggers, staging_rules) = export_for("staging");
    let (_, production_triggers, production_rules) = export_for("production");
    let (_, absent_triggers, absent_rules) = export_for("elsewhere");
    let expected = |depth: f64, level: Level| -> Vec<f64> {
        config
            .autoscale
            .triggers
            .iter()
            .map(|t| t.local_value(depth, level))
            .collect()
    };
    // Wait until both are scraped at their levels.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut values = Vec::new();
        for (_, query) in staging_triggers.iter().chain(&production_triggers) {
            values.push(prometheus.query(&http, query).await);
        }
        let flat: Vec<f64> = values.iter().flatten().copied().collect();
        let want: Vec<f64> = expected(9500.0, Level::Hard)
            .into_iter()
            .chain(expected(500.0, Level::Ok))
            .collect();
        if values.iter().all(|v| v.len() == 1) && flat == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the triggers read {values:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An unscoped query would mix them: the check below can fail.
    let unscoped = prometheus
        .query(&http, &config.autoscale.triggers[1].promql())
        .await;
    assert_eq!(
        unscoped,
        expected(9500.0, Level::Hard)[1..].to_vec(),
        "unscoped, production's trigger would read staging's HARD"
    );
    // The alert expressions: what fires (returns samples) for each installation.
    let firing = |rules: &[(String, String)]| {
        let rules = rules.to_vec();
        let prometheus = &prometheus;
        let http = &http;
        async move {
            let mut out = BTreeMap::new();
            for (name, expr) in rules {
                let samples = prometheus.query_samples(http, &expr).await;
                for (labels, _) in &samples {
                    if let Some(ns) = labels["namespace"].as_str() {
                        out.entry(name.clone())
                            .or_insert_with(BTreeSet::new)
                            .insert(ns.to_owned());
                    }
                }
                if !samples.is_empty() {
                    out.entry(name).or_insert_with(BTreeSet::new);
                }
            }
            out
        }
    };
    let staging_fires = firing(&staging_rules).await;
    let production_fires = firing(&production_rules).await;
    let absent_fires = firing(&absent_rules).await;
    // Every sample an installation's alert returns is its own.
    for (fires, own) in [
        (&staging_fires, "staging"),
        (&production_fires, "production"),
        (&absent_fires, "elsewhere"),
    ] {
        for (name, namespaces) in fires {
            assert!(
                namespaces.iter().all(|ns| ns == own),
                "{own}: {name} returned {namespaces:?}"
            );
        }
    }
    let fires = |fires: &BTreeMap<String, BTreeSet<String>>, name: &str| fires.contains_key(name);
    for name in [
        "MdpHardBackpressure",
        "MdpStoreQueueHigh",
        "MdpRateScaleLow",
    ] {
        assert!(
            fires(&staging_fires, name),
            "staging at HARD 9500: {name} silent"
        );
        assert!(
            !fires(&production_fires, name),
            "production at OK 500: {name} fires ({production_fires:?})"
        );
        assert!(!fires(&absent_fires, name), "no pods: {name} fires");
    }
    assert!(!fires(&staging_fires, "MdpAutoscalingSignalAbsent"));
    assert!(!fires(&production_fires, "MdpAutoscalingSignalAbsent"));
    assert!(
        fires(&absent_fires, "MdpAutoscalingSignalAbsent"),
        "an installation with no pods must see its signal absent: {absent_fires:?}"
    );
    for (name, query) in &absent_triggers {
        assert!(
            prometheus.query(&http, query).await.is_empty(),
            "trigger {name} of an installation with no pods reads another's values"
        );
    }
    drop(prometheus);
    drop(staging);
    drop(production);
}

#[test]
fn the_pod_runs_the_exported_profiles_and_providers_file() {
    let example = repo().join("examples/providers.yaml");
    let text = std::fs::read_to_string(&example).expect("the example file");
    let (_, _, files) = exported(&["--providers-file", example.to_str().expect("utf-8 path")]);
    let map = yaml(&files, kubernetes::AUTOSCALE_CONFIG_MAP);
    assert_eq!(
        map["data"][kubernetes::PROVIDERS_KEY].as_str(),
        Some(text.as_str()),
        "the file as it was read"
    );
    let env_of = |files: &[ExportedFile]| -> BTreeMap<String, Value> {
        let deployment = yaml(files, kubernetes::DEPLOYMENT);
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("name").to_owned(),
                    e["value"].clone(),
                )
            })
            .collect()
    };
    let env = env_of(&files);
    assert_eq!(env["MDP_PROVIDERS_FILE"], "/etc/mdp/providers.yaml");
    assert!(
        !env.contains_key("MDP_PROVIDERS"),
        "no plain provider: {env:?}"
    );
    // The mounted path is where the ConfigMap volume puts the key.
    let deployment = yaml(&files, kubernetes::DEPLOYMENT);
    let mount = &deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], kubernetes::AUTOSCALE_MOUNT);
    let (_, _, plain) = exported(&[]);
    let checksum = |files: &[ExportedFile]| {
        yaml(files, kubernetes::DEPLOYMENT)["spec"]["template"]["metadata"]["annotations"]
            ["checksum/autoscale-config"]
            .clone()
    };
    assert_ne!(
        checksum(&files),
        checksum(&plain),
        "a new file rolls the pods"
    );
    let (_, _, profiled) = exported(&["--provider-profile", "ibkr", "--provider", "polygon=5/s"]);
    let env = env_of(&profiled);
    assert_eq!(env["MDP_PROVIDER_PROFILES"], "ibkr");
    assert_eq!(env["MDP_PROVIDERS"], "polygon=5/s,burst=5");
}
