//! Command-line options of the autoscaling configuration, shared by `serve`
//! (the dashboard's "replicas now"), `simulate` and `export`.

use super::{AutoscaleConfig, Trigger};
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
    /// Prometheus address the KEDA triggers query.
    #[arg(
        long,
        env = "MDP_PROMETHEUS_ADDRESS",
        default_value = "http://prometheus.monitoring.svc.cluster.local:9090"
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
