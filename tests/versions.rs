//! The exports against the releases they claim to work with: the ScaledObject checked
//! strictly (an unknown field is an error, as `kubectl apply --validate=strict` treats
//! it) against the ScaledObject CRD schema of every KEDA release from 2.12 to the
//! newest, for the default export and for each `--keda-version`; every exported PromQL
//! expression against the functions of Prometheus 2.40; the Grafana dashboard's
//! `schemaVersion` against Grafana 9.0.
//!
//! The schema facts are in `tests/fixtures/keda/scaledobject-schema.txt`, derived from
//! `config/crd/bases/keda.sh_scaledobjects.yaml` at each KEDA release tag by
//! `tests/fixtures/keda/extract-schema.py`.

use clap::Parser;
use mdp::autoscale::KedaVersion;
use mdp::cli::{Cli, Command};
use mdp::export::{self, ExportedFile, kubernetes};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exported(extra: &[&str]) -> Vec<ExportedFile> {
    let mut argv = vec!["mdp", "export"];
    argv.extend_from_slice(extra);
    let Command::Export(args) = Cli::try_parse_from(argv).expect("parses").command else {
        unreachable!("parsed as export")
    };
    let (options, config) = args.resolve().expect("valid export options");
    export::render(&options, &config)
}

fn file<'a>(files: &'a [ExportedFile], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not exported"))
        .contents
}

/// One field of the schema: its type, allowed values, required children.
#[derive(Debug, Default)]
struct Field {
    kind: String,
    allowed: Option<Vec<String>>,
    required: Vec<String>,
    open: bool,
}

type Schema = BTreeMap<String, Field>;

/// Every release's schema facts, keyed by "2.MINOR".
fn schemas() -> BTreeMap<String, Schema> {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/keda/scaledobject-schema.txt"))
        .expect("the schema fixture is committed");
    let mut all: BTreeMap<String, Schema> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some(rest) = line.strip_prefix('[') {
            let release = rest.split(']').next().expect("[release]").to_owned();
            all.entry(release.clone()).or_default();
            current = Some(release);
            continue;
        }
        let release = current.as_ref().expect("a [release] line first");
        let mut words = line.split(' ');
        let path = words.next().expect("path").to_owned();
        let mut field = Field {
            kind: words.next().expect("type").to_owned(),
            ..Field::default()
        };
        for word in words {
            if let Some(values) = word.strip_prefix("enum=") {
                field.allowed = Some(values.split('|').map(str::to_owned).collect());
            } else if let Some(names) = word.strip_prefix("required=") {
                field.required = names.split(',').map(str::to_owned).collect();
            } else if word == "open" {
                field.open = true;
            }
        }
        all.get_mut(release)
            .expect("release entry")
            .insert(path, field);
    }
    all
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "int-or-string" => value.is_string() || value.is_i64() || value.is_u64(),
        _ => true,
    }
}

/// Strict validation: every field known with the right type and value, every
/// required field present. Returns the problems found.
fn validate(schema: &Schema, path: &str, value: &Value, problems: &mut Vec<String>) {
    let Some(field) = schema.get(path) else {
        problems.push(format!("{path}: unknown field"));
        return;
    };
    if !type_matches(&field.kind, value) {
        problems.push(format!("{path}: want {}, got {value}", field.kind));
        return;
    }
    if let (Some(allowed), Some(text)) = (&field.allowed, value.as_str())
        && !allowed.iter().any(|a| a == text)
    {
        problems.push(format!("{path}: {text:?} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(map) => {
            for name in &field.required {
                if !map.contains_key(name) {
                    problems.push(format!("{path}.{name}: required but missing"));
                }
            }
            if field.open {
                return;
            }
            let any = format!("{path}.*");
            for (name, child) in map {
                let named = format!("{path}.{name}");
                let child_path = if schema.contains_key(&named) {
                    named
                } else if schema.contains_key(&any) {
                    any.clone()
                } else {
                    named
                };
                validate(schema, &child_path, child, problems);
            }
        }
        Value::Array(items) => {
            for item in items {
                validate(schema, &format!("{path}[]"), item, problems);
            }
        }
        _ => {}
    }
}

fn scaled_object(files: &[ExportedFile]) -> Value {
    serde_yaml_ng::from_str(file(files, kubernetes::SCALED_OBJECT)).expect("valid YAML")
}

fn problems(schema: &Schema, object: &Value) -> Vec<String> {
    assert_eq!(object["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(object["kind"], "ScaledObject");
    let mut problems = Vec::new();
    validate(schema, "spec", &object["spec"], &mut problems);
    problems
}

#[test]
fn the_fixture_covers_every_modelled_release() {
    let schemas = schemas();
    let modelled: Vec<String> = KedaVersion::all().map(|v| v.to_string()).collect();
    let covered: Vec<String> = schemas.keys().cloned().collect();
    let mut sorted = modelled.clone();
    sorted.sort();
    assert_eq!(covered, sorted, "fixture releases");
    // Facts the export relies on, as the CRDs state them.
    assert!(!schemas["2.16"].contains_key("spec.fallback.behavior"));
    assert!(schemas["2.17"].contains_key("spec.fallback.behavior"));
    assert!(schemas["2.12"].contains_key("spec.triggers[].metadata.*"));
}

// The finding, kept as a check that the validator can fail: the newest
// export carries fallback.behavior, which 2.12-2.16 do not know.
#[test]
fn the_newest_export_is_refused_by_2_12_to_2_16() {
    let schemas = schemas();
    let newest = scaled_object(&exported(&[]));
    for release in ["2.12", "2.13", "2.14", "2.15", "2.16"] {
        let found = problems(&schemas[release], &newest);
        assert_eq!(
            found,
            vec!["spec.fallback.behavior: unknown field".to_owned()],
            "KEDA {release}"
        );
    }
}

#[test]
fn every_keda_version_export_passes_its_own_crd_strictly() {
    let schemas = schemas();
    for version in KedaVersion::all() {
        let release = version.to_string();
        let files = exported(&["--keda-version", &release]);
        let object = scaled_object(&files);
        let found = problems(&schemas[&release], &object);
        assert!(found.is_empty(), "KEDA {release}: {found:#?}");
        let fallback = &object["spec"]["fallback"];
        assert_eq!(
            fallback.get("behavior").is_some(),
            version.has_fallback_behavior(),
            "KEDA {release}"
        );
        let text = file(&files, kubernetes::SCALED_OBJECT);
        assert!(text.contains(&format!("# For KEDA {release} ")), "{text}");
        if !version.has_fallback_behavior() {
            assert!(text.contains("no fallback.behavior"), "{text}");
        }
    }
}

#[test]
fn the_default_export_targets_the_newest_release_and_passes_its_crd() {
    let schemas = schemas();
    let newest = KedaVersion::NEWEST.to_string();
    let default = exported(&[]);
    assert_eq!(
        file(&default, kubernetes::SCALED_OBJECT),
        file(
            &exported(&["--keda-version", &newest]),
            kubernetes::SCALED_OBJECT
        )
    );
    let found = problems(&schemas[&newest], &scaled_object(&default));
    assert!(found.is_empty(), "{found:#?}");
    // ...and passes every release that knows fallback.behavior.
    for version in KedaVersion::all().filter(|v| v.has_fallback_behavior()) {
        let found = problems(&schemas[&version.to_string()], &scaled_object(&default));
        assert!(found.is_empty(), "KEDA {version}: {found:#?}");
    }
}

#[test]
fn an_unsupported_version_is_refused_with_one_line() {
    let out_dir = std::env::temp_dir().join(format!("mdp-versions-{}", std::process::id()));
    let out_arg = out_dir.to_string_lossy().into_owned();
    for (option, bad) in [
        ("--keda-version", "2.11"),
        ("--keda-version", "2.21"),
        ("--keda-version", "banana"),
        ("--k8s-version", "1.20"),
    ] {
        for command in [vec!["export", "--out", out_arg.as_str()], vec!["simulate"]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_mdp"))
                .args(&command)
                .args([option, bad])
                .env_remove("MDP_LOG")
                .output()
                .expect("the binary runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command:?} {option} {bad}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(&format!("invalid {option}")), "{stderr}");
        }
    }
    assert!(!out_dir.exists(), "nothing written when refused");
}

mod common;

// `/api/v1/state` says why the exported configuration asks for its replica count,
// and for which KEDA release, as the dashboard shows it.
#[tokio::test]
async fn state_reports_the_reason_and_the_keda_release() {
    let service = common::InProcess::start(&["--keda-version", "2.16"]).await;
    let state: Value = reqwest::get(service.url("/api/v1/state"))
        .await
        .expect("state answers")
        .json()
        .await
        .expect("state is JSON");
    let autoscaler = &state["autoscaler"];
    assert_eq!(autoscaler["keda_version"], "2.16");
    let reason = autoscaler["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("1: ") && reason.contains("minReplicaCount 1"),
        "{reason}"
    );
    service.stop().await;
}

/// The PromQL functions and aggregation operators of Prometheus 2.40 (its
/// docs/querying/functions.md and operators.md at v2.40.0). Later additions, refused
/// here: sort_by_label, sort_by_label_desc, mad_over_time, histogram_avg,
/// histogram_stddev, histogram_stdvar (2.49-2.50), limitk, limit_ratio,
/// double_exponential_smoothing, info (3.x).
const PROMETHEUS_2_40: &[&str] = &[
    // functions
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
    // aggregation operators
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
    // keywords followed by a parenthesis
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
];

/// Every PromQL expression the export writes: triggers, panels, both rule files.
fn exported_queries(files: &[ExportedFile]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let scaled = scaled_object(files);
    for trigger in scaled["spec"]["triggers"].as_array().expect("triggers") {
        let query = trigger["metadata"]["query"].as_str().expect("query");
        found.push((format!("trigger {}", trigger["name"]), query.to_owned()));
    }
    let dashboard: Value =
        serde_json::from_str(file(files, export::grafana::DASHBOARD)).expect("dashboard JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                found.push((format!("panel {}", panel["title"]), expr.to_owned()));
            }
        }
    }
    for path in [export::alerts::RULES_FILE, export::alerts::PROMETHEUS_RULE] {
        let doc: Value = serde_yaml_ng::from_str(file(files, path)).expect("rules YAML");
        let groups = doc["groups"]
            .as_array()
            .or_else(|| doc["spec"]["groups"].as_array())
            .expect("groups");
        for rule in groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        {
            let expr = rule["expr"].as_str().expect("expr");
            found.push((format!("{path} {}", rule["alert"]), expr.to_owned()));
        }
    }
    found
}

/// Identifiers followed by `(`, spaces allowed between (outside quoted label values).
fn called_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut after_space = false;
    let mut quoted = false;
    for c in expr.chars() {
        if c == '"' {
            quoted = !quoted;
            word.clear();
            continue;
        }
        if quoted {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            if after_space {
                word.clear();
                after_space = false;
            }
            word.push(c);
        } else if c.is_whitespace() {
            after_space = true;
        } else {
            if c == '(' && !word.is_empty() {
                names.push(word.clone());
            }
            word.clear();
            after_space = false;
        }
    }
    names
}

#[test]
fn every_exported_expression_uses_only_prometheus_2_40_functions() {
    assert_eq!(
        called_names("sum by (a) (rate(x{l=\"f(\"}[5m]))"),
        ["by", "rate"]
    );
    assert_eq!(called_names("sort_by_label(x, \"a\")"), ["sort_by_label"]);
    let files = exported(&[]);
    let queries = exported_queries(&files);
    assert!(queries.len() >= 10, "{queries:?}");
    for (place, expr) in &queries {
        for name in called_names(expr) {
            assert!(
                PROMETHEUS_2_40.contains(&name.as_str()),
                "{place}: {name}() is not in Prometheus 2.40: {expr}"
            );
        }
        // Newer syntax: duration expressions (3.x) and the `@` modifier's `start()`
        // / `end()` are fine since 2.33 but worth knowing; mdp uses neither.
        assert!(!expr.contains('@'), "{place}: {expr}");
    }
}

// Grafana 9.0's dashboard schema is 36; the export writes exactly that.
#[test]
fn the_dashboard_imports_into_grafana_9_0() {
    let files = exported(&[]);
    let dashboard: Value =
        serde_json::from_str(file(&files, export::grafana::DASHBOARD)).expect("dashboard JSON");
    assert_eq!(dashboard["schemaVersion"], 36);
    // Panel types and options that exist in Grafana 9.0.
    let known_options = [
        "legend",
        "tooltip",
        "reduceOptions",
        "orientation",
        "showThresholdLabels",
        "showThresholdMarkers",
        "colorMode",
        "graphMode",
        "justifyMode",
        "textMode",
        "text",
    ];
    for panel in dashboard["panels"].as_array().expect("panels") {
        let kind = panel["type"].as_str().expect("type");
        assert!(
            [
                "timeseries",
                "gauge",
                "stat",
                "row",
                "table",
                "text",
                "bargauge"
            ]
            .contains(&kind),
            "{kind}"
        );
        for key in panel["options"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(
                known_options.contains(&key.as_str()),
                "{kind}: option {key}"
            );
        }
    }
}
