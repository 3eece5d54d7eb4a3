//! Command-line options of the autoscaling configuration, shared by `serve`
//! (the dashboard's "replicas now"), `simulate` and `export`.

use super::{AutoscaleConfig, Trigger, Versions};
use crate::settings::{OptionError, duration};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Autoscaling options. Trigger thresholds default to values derived from the
/// store's capacity and watermarks, so they cannot drift from the control loop.
#[derive(Debug, Clone, Args)]
pub struct AutoscaleArgs {
    /// Read the whole autoscaling configuration from this JSON file (the other
    /// autoscaling flags are then ignored).
    #[arg(long, env = "MDP_AUTOSCALE_CONFIG")]
    pub autoscale_config: Option<PathBuf>,
    /// minReplicaCount of the ScaledObject.
    #[arg(long, env = "MDP_MIN_REPLICAS", default_value_t = 1)]
    pub min_replicas: u32,
    /// maxReplicaCount of the ScaledObject.
    #[arg(long, env = "MDP_MAX_REPLICAS", default_value_t = 10)]
    pub max_replicas: u32,
    /// KEDA pollingInterval.
    #[arg(long, env = "MDP_POLLING_INTERVAL", default_value = "15s", value_parser = duration)]
    pub polling_interval: Duration,
    /// Prometheus address the KEDA triggers query (default: kube-prometheus's
    /// `prometheus-k8s`; kube-prometheus-stack's is RELEASE-kube-prometheus-prometheus).
    #[arg(
        long,
        visible_alias = "prometheus-url",
        env = "MDP_PROMETHEUS_ADDRESS",
        default_value = super::DEFAULT_PROMETHEUS_ADDRESS
    )]
    pub prometheus_address: String,
    /// Queue depth below which no extra pod is wanted (default: soft-release x capacity).
    #[arg(long, env = "MDP_SCALE_FLOOR")]
    pub scale_floor: Option<f64>,
    /// Queued messages above the floor per extra pod (default: capacity / max-replicas).
    #[arg(long, env = "MDP_DEPTH_PER_REPLICA")]
    pub depth_per_replica: Option<f64>,
    /// Pods asked for while backpressure is HARD (default: max-replicas).
    #[arg(long, env = "MDP_HARD_REPLICAS")]
    pub hard_replicas: Option<u32>,
    /// HPA scale-down stabilization window (Kubernetes' default of 300s would
    /// hold pods for 5 minutes after the drain; 70s lands the scale-down in 60-90s
    /// once the scrape delay is counted).
    #[arg(long, env = "MDP_SCALE_DOWN_WINDOW", default_value = "70s", value_parser = duration)]
    pub scale_down_window: Duration,
    /// KEDA release the ScaledObject is written for and the simulation models
    /// (2.12 to 2.20; default: the newest modelled).
    #[arg(long, env = "MDP_KEDA_VERSION")]
    pub keda_version: Option<String>,
    /// Kubernetes release whose HPA controller the simulation models (1.26 to 1.35;
    /// default 1.33, the first with today's tolerance rule).
    #[arg(long = "k8s-version", env = "MDP_K8S_VERSION")]
    pub k8s_version: Option<String>,
}

/// Why the autoscaling options were refused: the one option error type.
pub type AutoscaleArgsError = OptionError;

impl AutoscaleArgs {
    /// The validated configuration for a store of `capacity` whose SOFT -> OK
    /// release is at `soft_release` (a fraction of capacity).
    pub fn build(
        &self,
        capacity: u64,
        soft_release: f64,
    ) -> Result<AutoscaleConfig, AutoscaleArgsError> {
        let mut config = self.build_config(capacity, soft_release)?;
        config.versions = self.versions()?;
        let behavior = &config.behavior;
        let tolerance_set =
            behavior.scale_up.tolerance.is_some() || behavior.scale_down.tolerance.is_some();
        if tolerance_set && !config.versions.keda.has_hpa_tolerance() {
            return Err(OptionError::new(
                "keda-version",
                format!(
                    "KEDA {} has no behavior tolerance (added in 2.18)",
                    config.versions.keda
                ),
            ));
        }
        Ok(config)
    }

    /// `--keda-version` and `--k8s-version`, validated.
    pub fn versions(&self) -> Result<Versions, AutoscaleArgsError> {
        let mut versions = Versions::default();
        if let Some(text) = &self.keda_version {
            versions.keda = text
                .parse()
                .map_err(|e: super::versions::VersionError| OptionError::new("keda-version", e))?;
        }
        if let Some(text) = &self.k8s_version {
            versions.kubernetes = text
                .parse()
                .map_err(|e: super::versions::VersionError| OptionError::new("k8s-version", e))?;
        }
        Ok(versions)
    }

    fn build_config(
        &self,
        capacity: u64,
        soft_release: f64,
    ) -> Result<AutoscaleConfig, AutoscaleArgsError> {
        if let Some(path) = &self.autoscale_config {
            let refuse = |message: String| OptionError::new("autoscale-config", message);
            let text = std::fs::read_to_string(path)
                .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
            let config: AutoscaleConfig =
                serde_json::from_str(&text).map_err(|e| refuse(e.to_string()))?;
            config.validate().map_err(|e| refuse(e.to_string()))?;
            return Ok(config);
        }
        let capacity = capacity as f64;
        let max = self.max_replicas.max(1);
        let floor = self
            .scale_floor
            .unwrap_or((soft_release * capacity).round());
        let per_replica = self
            .depth_per_replica
            .unwrap_or((capacity / f64::from(max)).round().max(1.0));
        let mut config = AutoscaleConfig {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            polling_interval: self.polling_interval,
            prometheus_address: self.prometheus_address.clone(),
            triggers: vec![
                Trigger::queue_depth(floor, per_replica),
                Trigger::hard_backpressure(self.hard_replicas.unwrap_or(max)),
            ],
            ..AutoscaleConfig::default()
        };
        config.behavior.scale_down.stabilization_window = self.scale_down_window;
        config
            .validate()
            .map_err(|e| OptionError::new("max-replicas", e))?;
        Ok(config)
    }
}
