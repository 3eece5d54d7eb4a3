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
use promql::{metric_names, old_mistakes, scrape_names};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tools::{Prometheus, TempDir, keda_models, kubernetes_validate, run};

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
    let mdp = MdpProcess::serve(&[], &[]);
    let http = reqwest::Client::new();
    let posted = http
        .post(mdp.url("/feedback"))
        .json(&store_event(6000, "soft", None))
        .send()
        .await
        .expect("feedback posts");
    assert!(posted.status().is_success());
    let text = http
        .get(mdp.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    drop(mdp);
    text
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
    for dir in ["deploy", "grafana"] {
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
            "deploy/ and grafana/ differ from `mdp export` in {differences:?}: \
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
    assert_eq!(&service["metadata"]["labels"], selector);
    assert_ne!(&peers["metadata"]["labels"], selector);
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["selector"], service["spec"]["selector"]);
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
}

/// The traps of the replica matrix, avoided.
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
            "http://prometheus.monitoring.svc.cluster.local:9090"
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

/// `mdp simulate`, run with the exported pod's environment, reproduces the replica matrix's
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
    let desired = file(&files, grafana::DASHBOARD);
    assert!(desired.contains("keda-hpa-feed-scaler"));
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
        "mdp_coordinators{state=\"stale\"}",
        "kube_horizontalpodautoscaler_status_desired_replicas{namespace=\"market-data\", horizontalpodautoscaler=\"keda-hpa-mdp-pipeline-scaler\"}",
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
    let validate = |objects: &Value| {
        let mut child = std::process::Command::new(&node)
            .arg(repo().join("tests/fixtures/export/validate-keda.mjs"))
            .arg(&models)
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
    };
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
    assert_eq!(log.matches("SUCCESS: 5 rules found").count(), 2, "{log}");
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
    let prometheus = Prometheus::start(&binary, mdp.addr).await;
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
        // largest trigger wins, within the bounds) is the the matrix's replica matrix.
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
