//! Kubernetes and KEDA manifests: the Deployment running `mdp serve` in pull mode,
//! its Services, the autoscaling configuration it reads, the ScaledObject rendered
//! from that same configuration, the ServiceMonitor and the kustomization.

use super::doc::{Doc, list, obj};
use super::{APP_NAME, ExportOptions, ExportedFile, MANAGED_BY, Optional, PART_OF, yaml_file};
use crate::autoscale::{AutoscaleConfig, ScalingRules};
use crate::config::ServeConfig;
use crate::replicas::ReplicaSource;
use std::time::Duration;

pub const DEPLOYMENT: &str = "deploy/keda/deployment-pipeline.yaml";
pub const SCALED_OBJECT: &str = "deploy/keda/scaledobject-pipeline.yaml";
pub const SERVICE_MONITOR: &str = "deploy/keda/prometheus-servicemonitor.yaml";
pub const SERVICE: &str = "deploy/keda/service-pipeline.yaml";
pub const PEERS_SERVICE: &str = "deploy/keda/service-peers.yaml";
pub const AUTOSCALE_CONFIG_MAP: &str = "deploy/keda/configmap-autoscale.yaml";
pub const KUSTOMIZATION: &str = "deploy/kustomization.yaml";
pub const NETWORK_POLICY: &str = "deploy/keda/networkpolicy-pipeline.yaml";
/// The dashboard as a ConfigMap the Grafana sidecar loads.
pub const DASHBOARD_CONFIG_MAP: &str = "deploy/grafana/configmap-dashboard.yaml";
/// Label the Grafana sidecar (kube-prometheus-stack, the Grafana chart) looks for.
pub const GRAFANA_DASHBOARD_LABEL: &str = "grafana_dashboard";

/// Where the pod finds the autoscaling configuration (a ConfigMap volume).
pub const AUTOSCALE_MOUNT: &str = "/etc/mdp";
/// The ConfigMap key holding the autoscaling configuration as JSON.
pub const AUTOSCALE_KEY: &str = "autoscale.json";
/// The ConfigMap key holding the providers file, when paced providers come from one.
pub const PROVIDERS_KEY: &str = "providers.yaml";
/// Container port name, used by the probes, the Services and the ServiceMonitor.
const PORT_NAME: &str = "http";
/// The image runs as `nobody` (see the Dockerfile).
const RUN_AS: i64 = 65534;
/// Time the kubelet grants beyond the drain delay and the shutdown timeout.
const GRACE_MARGIN: Duration = Duration::from_secs(5);

/// Every manifest of this module, plus the kustomization listing the applicable ones.
pub fn files(
    options: &ExportOptions,
    config: &ServeConfig,
    alert_files: &[&str],
) -> Vec<ExportedFile> {
    let autoscale_json = autoscale_json(&config.autoscale);
    let providers_file = config
        .pacing_source
        .file
        .as_ref()
        .map(|(_, text)| text.as_str());
    let mut manifests = vec![
        (
            AUTOSCALE_CONFIG_MAP,
            config_map(options, &autoscale_json, providers_file),
        ),
        (
            DEPLOYMENT,
            deployment(options, config, &autoscale_json, providers_file),
        ),
        (SERVICE, service(options, config, false)),
        (PEERS_SERVICE, service(options, config, true)),
    ];
    if options.includes(Optional::ScaledObject) {
        manifests.push((SCALED_OBJECT, scaled_object(options, &config.autoscale)));
    }
    if options.includes(Optional::ServiceMonitor) {
        manifests.push((SERVICE_MONITOR, service_monitor(options)));
    }
    manifests.extend([
        (NETWORK_POLICY, network_policy(options)),
        (DASHBOARD_CONFIG_MAP, dashboard_config_map(options, config)),
    ]);
    let mut resources: Vec<&str> = manifests.iter().map(|(path, _)| *path).collect();
    resources.extend_from_slice(alert_files);
    let mut files: Vec<ExportedFile> = manifests
        .into_iter()
        .map(|(path, doc)| yaml_file(path, &doc))
        .collect();
    for file in files.iter_mut().filter(|f| f.path == SCALED_OBJECT) {
        file.contents = with_keda_note(&file.contents, &config.autoscale);
    }
    files.push(yaml_file(KUSTOMIZATION, &kustomization(&resources)));
    files
}

/// The autoscaling configuration as the pod reads it (`--autoscale-config`).
pub fn autoscale_json(config: &AutoscaleConfig) -> String {
    let mut text =
        serde_json::to_string_pretty(config).expect("the autoscaling configuration is plain data");
    text.push('\n');
    text
}

/// The selector labels: `app` alone, as the objects were first selected by (a
/// Deployment's selector cannot change once applied).
fn labels(app: &str) -> Doc {
    obj! { "app": app }
}

/// The labels of every exported object: `app`, then the recommended
/// `app.kubernetes.io/*` labels naming the installation.
pub(crate) fn object_labels(options: &ExportOptions, app: &str) -> Doc {
    obj! {
        "app": app,
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": &options.name,
        "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
}

/// [`object_labels`] plus the `--monitor-label`s the Prometheus Operator selects on.
pub(crate) fn monitor_labels(options: &ExportOptions) -> Doc {
    let mut labels = object_labels(options, &options.name);
    for (key, value) in &options.monitor_labels {
        labels.push(key, value.as_str());
    }
    labels
}

fn metadata(options: &ExportOptions, name: &str, app: &str) -> Doc {
    obj! {
        "name": name,
        "namespace": &options.namespace,
        "labels": object_labels(options, app),
    }
}

fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn humantime(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// The pod's configuration files: the autoscaling configuration and, when
/// the paced providers come from one, the providers file as it was read.
fn config_map(options: &ExportOptions, autoscale_json: &str, providers: Option<&str>) -> Doc {
    let mut data = Doc::Map(Vec::new());
    data.push(AUTOSCALE_KEY, autoscale_json);
    if let Some(text) = providers {
        data.push(PROVIDERS_KEY, text);
    }
    obj! {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(options, &options.autoscale_config_map(), &options.name),
        "data": data,
    }
}

/// The dashboard for the Grafana sidecar, in the monitoring namespace (where the
/// sidecar looks by default), labelled `grafana_dashboard: "1"`.
fn dashboard_config_map(options: &ExportOptions, config: &ServeConfig) -> Doc {
    let mut labels = object_labels(options, &options.name);
    labels.push(GRAFANA_DASHBOARD_LABEL, "1");
    let mut data = Doc::Map(Vec::new());
    data.push(
        &format!("{}.json", options.dashboard_uid()),
        super::grafana::dashboard(options, config).to_json(),
    );
    obj! {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": obj! {
            "name": options.dashboard_config_map(),
            "namespace": &options.monitoring_namespace,
            "labels": labels,
            // The folder, for a sidecar run with folderAnnotation: grafana_folder.
            "annotations": obj! { "grafana_folder": super::grafana::FOLDER },
        },
        "data": data,
    }
}

/// Where an environment variable of the pod gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Value(String),
    /// `valueFrom.fieldRef.fieldPath` (the downward API).
    Field(&'static str),
    /// `valueFrom.secretKeyRef`.
    Secret {
        name: String,
        key: String,
    },
}

/// The service's own options as the pod's environment: the pod runs exactly the
/// configuration that was exported (thresholds, policy, pull settings, autoscaling),
/// learns its replica count from the headless Service, and drains before it stops.
pub fn pod_environment(
    options: &ExportOptions,
    config: &ServeConfig,
) -> Vec<(&'static str, EnvValue)> {
    let control = &config.control;
    let providers: Vec<String> = config
        .providers
        .iter()
        .map(|p| format!("{}={}/s,burst={}", p.name, p.rate, p.burst))
        .collect();
    let mut env: Vec<(&'static str, String)> = vec![
        ("MDP_LISTEN", format!("0.0.0.0:{}", config.listen.port())),
        ("MDP_LOG_FORMAT", "json".into()),
    ];
    if !providers.is_empty() {
        env.push(("MDP_PROVIDERS", providers.join(";")));
    }
    let source = &config.pacing_source;
    if !source.profiles.is_empty() {
        env.push(("MDP_PROVIDER_PROFILES", source.profiles.join(";")));
    }
    if source.file.is_some() {
        env.push((
            "MDP_PROVIDERS_FILE",
            format!("{AUTOSCALE_MOUNT}/{PROVIDERS_KEY}"),
        ));
    }
    env.push((
        "MDP_FB_ENABLE_FEEDBACK",
        config.feedback_enabled.to_string(),
    ));
    if let Some(provider) = &config.feedback_provider {
        env.push(("MDP_FB_PROVIDER_NAME", provider.clone()));
    }
    env.extend([
        ("MDP_FB_SCALE_OK", control.policy.ok.to_string()),
        ("MDP_FB_SCALE_SOFT", control.policy.soft.to_string()),
        ("MDP_FB_SCALE_HARD", control.policy.hard.to_string()),
        ("MDP_SOFT_WATERMARK", control.watermarks.soft_at.to_string()),
        ("MDP_HARD_WATERMARK", control.watermarks.hard_at.to_string()),
        (
            "MDP_HARD_RELEASE",
            control.watermarks.hard_release.to_string(),
        ),
        (
            "MDP_SOFT_RELEASE",
            control.watermarks.soft_release.to_string(),
        ),
        ("MDP_RELAX_AFTER", humantime(control.relax_after)),
        ("MDP_RECOVERY_RAMP", humantime(control.recovery_ramp)),
    ]);
    if let Some(ttl) = control.push_ttl {
        env.push(("MDP_FEEDBACK_TTL", humantime(ttl)));
    }
    env.extend([
        ("MDP_STALE_LEVEL", control.stale_level.as_str().to_owned()),
        ("MDP_MAX_COORDINATORS", control.max_coordinators.to_string()),
        ("MDP_STORE_METRICS_URL", options.store_url.clone()),
    ]);
    if let Some(pull) = &config.pull {
        env.extend([
            ("MDP_PULL_INTERVAL", humantime(pull.interval)),
            ("MDP_PULL_TIMEOUT", humantime(pull.timeout)),
            ("MDP_PULL_METRIC", pull.metric.clone()),
            ("MDP_PULL_LABEL", pull.label.clone()),
        ]);
    }
    env.extend([
        (
            "MDP_PULL_MAX_FAILURES",
            control.pull_max_failures.to_string(),
        ),
        ("MDP_PULL_TTL", humantime(control.pull_ttl)),
        ("MDP_STORE_CAPACITY", config.store_capacity.to_string()),
        (
            "MDP_AUTOSCALE_CONFIG",
            format!("{AUTOSCALE_MOUNT}/{AUTOSCALE_KEY}"),
        ),
        // Each pod grants 1/N of a provider's budget, N = the headless Service's addresses.
        ("MDP_REPLICAS_DNS", options.peers_fqdn()),
    ]);
    if let ReplicaSource::Dns { refresh, .. } = &config.replicas {
        env.push(("MDP_REPLICAS_REFRESH", humantime(*refresh)));
    }
    env.extend([
        (
            "MDP_REPLICAS_SHRINK_HOLD",
            humantime(config.replicas_shrink_hold),
        ),
        ("MDP_MAX_BODY", config.http.max_body.to_string()),
        (
            "MDP_MAX_CONNECTIONS",
            config.connections.max_connections.to_string(),
        ),
        (
            "MDP_HEADER_TIMEOUT",
            humantime(config.connections.header_timeout),
        ),
        (
            "MDP_IDLE_TIMEOUT",
            humantime(config.connections.idle_timeout),
        ),
        (
            "MDP_ACQUIRE_MAX_WAIT",
            humantime(config.http.acquire_max_wait),
        ),
        ("MDP_DRAIN_DELAY", humantime(options.drain_delay)),
        ("MDP_SHUTDOWN_TIMEOUT", humantime(config.shutdown_timeout)),
    ]);
    let mut env: Vec<(&'static str, EnvValue)> = env
        .into_iter()
        .map(|(name, value)| (name, EnvValue::Value(value)))
        .collect();
    if options.auth_reads {
        env.push(("MDP_AUTH_READS", EnvValue::Value("true".into())));
    }
    if let Some(secret) = &options.auth_token_secret {
        env.push((
            "MDP_AUTH_TOKEN",
            EnvValue::Secret {
                name: secret.name.clone(),
                key: secret.key.clone(),
            },
        ));
    }
    // The pod finds itself among its peers by its own address.
    env.push(("MDP_POD_IP", EnvValue::Field("status.podIP")));
    // The shared budget: the URL (and its password) only from a Secret.
    if let Some((secret, key)) = &options.budget_redis_secret {
        env.push((
            "MDP_BUDGET_REDIS",
            EnvValue::Secret {
                name: secret.clone(),
                key: key.clone(),
            },
        ));
    }
    env
}

/// The pod must outlive its drain delay plus the time in-flight requests get.
pub fn termination_grace_period(options: &ExportOptions, config: &ServeConfig) -> u64 {
    seconds(options.drain_delay + config.shutdown_timeout + GRACE_MARGIN)
}

fn deployment(
    options: &ExportOptions,
    config: &ServeConfig,
    autoscale_json: &str,
    providers: Option<&str>,
) -> Doc {
    let env: Vec<Doc> = pod_environment(options, config)
        .into_iter()
        .map(|(name, value)| match value {
            EnvValue::Value(value) => obj! { "name": name, "value": value },
            EnvValue::Field(path) => obj! {
                "name": name,
                "valueFrom": obj! { "fieldRef": obj! { "fieldPath": path } },
            },
            EnvValue::Secret { name: secret, key } => obj! {
                "name": name,
                "valueFrom": obj! { "secretKeyRef": obj! { "name": secret, "key": key } },
            },
        })
        .collect();
    let probe = |path: &str, period: u32, timeout: u32, failures: u32| {
        obj! {
            "httpGet": obj! { "path": path, "port": PORT_NAME },
            "periodSeconds": period,
            "timeoutSeconds": timeout,
            "failureThreshold": failures,
        }
    };
    let mut annotations = Doc::Map(Vec::new());
    // A changed ConfigMap rolls the pods, which read it only at start.
    let mut files = autoscale_json.to_owned();
    if let Some(text) = providers {
        files.push('\0');
        files.push_str(text);
    }
    annotations.push(
        "checksum/autoscale-config",
        format!("{:016x}", fnv1a(files.as_bytes())),
    );
    let container = obj! {
        "name": "mdp",
        "image": &options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": list!["serve"],
        "ports": list![obj! {
            "name": PORT_NAME,
            "containerPort": config.listen.port(),
            "protocol": "TCP",
        }],
        "env": env,
        "readinessProbe": probe("/ready", 5, 1, 2),
        "livenessProbe": probe("/health", 10, 2, 3),
        // mdp keeps a few MiB resident; the limit leaves room for bursts of requests.
        "resources": obj! {
            "requests": obj! { "cpu": "10m", "memory": "16Mi" },
            "limits": obj! { "cpu": "500m", "memory": "64Mi" },
        },
        "securityContext": obj! {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": obj! { "drop": list!["ALL"] },
        },
        "volumeMounts": list![obj! {
            "name": "autoscale",
            "mountPath": AUTOSCALE_MOUNT,
            "readOnly": true,
        }],
    };
    obj! {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(options, &options.name, &options.name),
        // No `replicas`: the HPA that KEDA creates owns it, and re-applying must not reset it.
        "spec": obj! {
            "revisionHistoryLimit": 5u32,
            "selector": obj! { "matchLabels": labels(&options.name) },
            "strategy": obj! {
                "type": "RollingUpdate",
                "rollingUpdate": obj! { "maxSurge": 1u32, "maxUnavailable": 0u32 },
            },
            "template": obj! {
                "metadata": obj! {
                    "labels": object_labels(options, &options.name),
                    "annotations": annotations,
                },
                "spec": obj! {
                    "terminationGracePeriodSeconds": termination_grace_period(options, config),
                    "automountServiceAccountToken": false,
                    "securityContext": obj! {
                        "runAsNonRoot": true,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "seccompProfile": obj! { "type": "RuntimeDefault" },
                    },
                    "containers": list![container],
                    "volumes": list![obj! {
                        "name": "autoscale",
                        "configMap": obj! { "name": options.autoscale_config_map() },
                    }],
                },
            },
        },
    }
}

/// The Service (`headless` false) or the headless Service listing every pod's address
/// for peer discovery. The headless one carries its own `app` label so the
/// ServiceMonitor, which selects on `app`, scrapes each pod once.
fn service(options: &ExportOptions, config: &ServeConfig, headless: bool) -> Doc {
    let port = obj! {
        "name": PORT_NAME,
        "port": config.listen.port(),
        "targetPort": PORT_NAME,
        "protocol": "TCP",
    };
    let (name, spec) = if headless {
        (
            options.peers_service(),
            obj! {
                "clusterIP": "None",
                "publishNotReadyAddresses": false,
                "selector": labels(&options.name),
                "ports": list![port],
            },
        )
    } else {
        (
            options.name.clone(),
            obj! {
                "type": "ClusterIP",
                "selector": labels(&options.name),
                "ports": list![port],
            },
        )
    };
    obj! {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(options, &name, &name),
        "spec": spec,
    }
}

fn scaling_rules(rules: &ScalingRules) -> Doc {
    let policies: Vec<Doc> = rules
        .policies
        .iter()
        .map(|policy| {
            obj! {
                "type": policy.kind.as_str(),
                "value": policy.value,
                "periodSeconds": seconds(policy.period),
            }
        })
        .collect();
    let mut doc = obj! {
        "stabilizationWindowSeconds": seconds(rules.stabilization_window),
        "selectPolicy": rules.select_policy.as_str(),
        "policies": policies,
    };
    if let Some(tolerance) = rules.tolerance {
        // Kubernetes 1.33+ (KEP-4951); only written when set.
        doc.push("tolerance", format!("{tolerance}"));
    }
    doc
}

/// The ScaledObject's text with, after the header, the KEDA release it is written for
/// and what that release does differently from the newest.
fn with_keda_note(contents: &str, autoscale: &AutoscaleConfig) -> String {
    let version = autoscale.versions.keda;
    let mut note = format!("# For KEDA {version} (`mdp export --keda-version {version}`).\n");
    for difference in version.differences() {
        note.push_str(&format!("# KEDA {version}: {difference}.\n"));
    }
    match contents.strip_prefix(super::HEADER) {
        Some(rest) => format!("{}{note}{rest}", super::HEADER),
        None => format!("{note}{contents}"),
    }
}

/// The ScaledObject, rendered field by field from the configuration `mdp simulate` runs,
/// with only the fields the targeted KEDA release knows (`spec.fallback.behavior` from
/// 2.17 on: [`crate::autoscale::KedaVersion::has_fallback_behavior`]).
pub fn scaled_object(options: &ExportOptions, autoscale: &AutoscaleConfig) -> Doc {
    let ignore_null_values = if autoscale.ignore_null_values {
        "true"
    } else {
        "false"
    };
    let triggers: Vec<Doc> = autoscale
        .triggers
        .iter()
        .map(|trigger| {
            obj! {
                "type": "prometheus",
                "name": trigger.name(),
                "metricType": trigger.metric_type().as_str(),
                // KEDA wants every metadata value as a string.
                "metadata": obj! {
                    "serverAddress": &autoscale.prometheus_address,
                    "query": trigger.scoped_promql(&options.matchers()),
                    "threshold": trigger.threshold_str(),
                    "activationThreshold": trigger.activation_threshold_str(),
                    "ignoreNullValues": ignore_null_values,
                },
            }
        })
        .collect();
    let mut spec = obj! {
        "scaleTargetRef": obj! {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": &options.name,
        },
        "pollingInterval": seconds(autoscale.polling_interval),
        // Only governs scaling to zero; N -> 1 follows behavior.scaleDown below.
        "cooldownPeriod": seconds(autoscale.cooldown_period),
        "minReplicaCount": autoscale.min_replicas,
        "maxReplicaCount": autoscale.max_replicas,
    };
    if let Some(fallback) = &autoscale.fallback {
        let mut doc = obj! {
            "failureThreshold": fallback.failure_threshold,
            "replicas": fallback.replicas,
        };
        if autoscale.versions.keda.has_fallback_behavior() {
            doc.push("behavior", fallback.behavior.as_str());
        }
        spec.push("fallback", doc);
    }
    spec.push(
        "advanced",
        obj! {
            "horizontalPodAutoscalerConfig": obj! {
                "name": options.hpa_name(),
                "behavior": obj! {
                    "scaleUp": scaling_rules(&autoscale.behavior.scale_up),
                    "scaleDown": scaling_rules(&autoscale.behavior.scale_down),
                },
            },
        },
    );
    spec.push("triggers", triggers);
    obj! {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(options, &options.scaled_object_name(), &options.name),
        "spec": spec,
    }
}

fn service_monitor(options: &ExportOptions) -> Doc {
    let mut endpoint = obj! {
        "port": PORT_NAME,
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    };
    if let (true, Some(secret)) = (options.auth_reads, &options.auth_token_secret) {
        endpoint.push(
            "authorization",
            obj! {
                "type": "Bearer",
                "credentials": obj! { "name": &secret.name, "key": &secret.key },
            },
        );
    }
    obj! {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": obj! {
            "name": &options.name,
            "namespace": &options.namespace,
            "labels": monitor_labels(options),
        },
        "spec": obj! {
            "selector": obj! { "matchLabels": labels(&options.name) },
            "namespaceSelector": obj! { "matchNames": list![&options.namespace] },
            "endpoints": list![endpoint],
        },
    }
}

/// Who may reach the pods at all. The store's broadcaster cannot send a bearer
/// token, so instead of `--auth-token` the port is closed to everything but
/// the pods of this namespace (the store, the ingestion workers taking rate
/// tokens) and Prometheus in the monitoring namespace (`--monitoring-namespace`).
fn network_policy(options: &ExportOptions) -> Doc {
    obj! {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(options, &options.name, &options.name),
        "spec": obj! {
            "podSelector": obj! { "matchLabels": labels(&options.name) },
            "policyTypes": list!["Ingress"],
            "ingress": list![obj! {
                "from": list![
                    obj! { "podSelector": obj! {} },
                    obj! {
                        "namespaceSelector": obj! {
                            "matchLabels": obj! { "kubernetes.io/metadata.name": &options.monitoring_namespace },
                        },
                    },
                ],
                "ports": list![obj! { "protocol": "TCP", "port": PORT_NAME }],
            }],
        },
    }
}

fn kustomization(resources: &[&str]) -> Doc {
    let resources: Vec<Doc> = resources
        .iter()
        .map(|path| Doc::from(path.strip_prefix("deploy/").unwrap_or(path)))
        .collect();
    // No `namespace:` here: every object names its own, and the dashboard ConfigMap
    // lives in the monitoring namespace, not the pipeline's.
    obj! {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
}

/// FNV-1a, 64 bits: a stable content hash without another dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_secs(15)), 15);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
    }
}
