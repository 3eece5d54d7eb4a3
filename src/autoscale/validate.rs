//! Validation of [`AutoscaleConfig`]: what KEDA or Kubernetes would refuse, and what
//! could not work (a fallback that would ask for the wrong count, numbers KEDA cannot carry).

use super::AutoscaleConfig;
use std::time::Duration;

/// Configuration that KEDA or Kubernetes would reject, or that cannot mean anything.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("autoscale: max_replicas must be at least 1")]
    ZeroMaxReplicas,
    #[error("autoscale: min_replicas ({min}) is greater than max_replicas ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error("autoscale: {field} must be {expected}, got {value}")]
    Duration {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("autoscale: prometheus_address must be an http:// or https:// URL, got {0:?}")]
    PrometheusAddress(String),
    #[error("autoscale: at least one trigger is required")]
    NoTriggers,
    #[error("autoscale: trigger {0:?} is configured more than once")]
    DuplicateTrigger(&'static str),
    #[error("autoscale: trigger {trigger}: {field} must be {expected}, got {value}")]
    TriggerValue {
        trigger: &'static str,
        field: &'static str,
        expected: &'static str,
        value: f64,
    },
    #[error(
        "autoscale: trigger {trigger}: threshold {threshold} must be a whole number when a \
         fallback is configured (KEDA 2.14-2.17 truncate the target to an integer for the fallback metric)"
    )]
    FallbackThreshold {
        trigger: &'static str,
        threshold: f64,
    },
    #[error(
        "autoscale: fallback.replicas must be between 1 and max_replicas ({max}), got {replicas}"
    )]
    FallbackReplicas { replicas: u32, max: u32 },
    #[error("autoscale: behavior.{direction}: {problem}")]
    Behavior {
        direction: &'static str,
        problem: String,
    },
}

impl AutoscaleConfig {
    /// Reject configuration KEDA or Kubernetes would refuse, or that could not work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_replicas == 0 {
            return Err(ConfigError::ZeroMaxReplicas);
        }
        if self.min_replicas > self.max_replicas {
            return Err(ConfigError::MinAboveMax {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        whole_seconds("polling_interval", self.polling_interval, false)?;
        whole_seconds("cooldown_period", self.cooldown_period, true)?;
        let address = self.prometheus_address.as_str();
        let rest = address
            .strip_prefix("http://")
            .or_else(|| address.strip_prefix("https://"));
        if rest.is_none_or(|host| host.is_empty() || host.contains(char::is_whitespace)) {
            return Err(ConfigError::PrometheusAddress(address.to_owned()));
        }
        self.validate_triggers()?;
        if let Some(fallback) = &self.fallback {
            if fallback.replicas == 0 || fallback.replicas > self.max_replicas {
                return Err(ConfigError::FallbackReplicas {
                    replicas: fallback.replicas,
                    max: self.max_replicas,
                });
            }
        }
        self.behavior.validate()
    }

    fn validate_triggers(&self) -> Result<(), ConfigError> {
        if self.triggers.is_empty() {
            return Err(ConfigError::NoTriggers);
        }
        for (index, trigger) in self.triggers.iter().enumerate() {
            if self.triggers[..index]
                .iter()
                .any(|earlier| earlier.name() == trigger.name())
            {
                return Err(ConfigError::DuplicateTrigger(trigger.name()));
            }
            trigger.validate()?;
            let threshold = trigger.threshold();
            if self.fallback.is_some() && threshold.fract() != 0.0 {
                return Err(ConfigError::FallbackThreshold {
                    trigger: trigger.name(),
                    threshold,
                });
            }
        }
        Ok(())
    }
}

/// Kubernetes and KEDA take these as integer seconds; refuse what they could not express.
fn whole_seconds(
    field: &'static str,
    value: Duration,
    zero_allowed: bool,
) -> Result<(), ConfigError> {
    let expected = if zero_allowed {
        "a whole number of seconds"
    } else {
        "a whole number of seconds greater than zero"
    };
    if value.subsec_nanos() != 0 || (!zero_allowed && value.is_zero()) {
        return Err(ConfigError::Duration {
            field,
            expected,
            value: humantime::format_duration(value).to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::{Fallback, Trigger};

    #[test]
    fn default_config_is_valid() {
        assert_eq!(AutoscaleConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_nonsense() {
        let base = AutoscaleConfig::default;
        let bad = [
            AutoscaleConfig {
                min_replicas: 11,
                ..base()
            },
            AutoscaleConfig {
                max_replicas: 0,
                min_replicas: 0,
                ..base()
            },
            AutoscaleConfig {
                polling_interval: Duration::ZERO,
                ..base()
            },
            AutoscaleConfig {
                cooldown_period: Duration::from_millis(1500),
                ..base()
            },
            AutoscaleConfig {
                prometheus_address: "prometheus:9090".into(),
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![],
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![Trigger::queue_depth(2000.0, 1000.0); 2],
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![Trigger::queue_depth(f64::NAN, 1000.0)],
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![Trigger::queue_depth(2000.0, 0.0)],
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![Trigger::queue_depth(2000.0, 2.5)],
                ..base()
            },
            AutoscaleConfig {
                triggers: vec![Trigger::hard_backpressure(0)],
                ..base()
            },
            AutoscaleConfig {
                fallback: Some(Fallback {
                    replicas: 0,
                    ..Fallback::default()
                }),
                ..base()
            },
            AutoscaleConfig {
                fallback: Some(Fallback {
                    replicas: 11,
                    ..Fallback::default()
                }),
                ..base()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "accepted {config:?}");
        }
        // A fractional threshold is fine once no fallback needs an integer target.
        let fractional = AutoscaleConfig {
            triggers: vec![Trigger::queue_depth(2000.0, 2.5)],
            fallback: None,
            ..base()
        };
        assert_eq!(fractional.validate(), Ok(()));
        let message = AutoscaleConfig {
            min_replicas: 11,
            ..base()
        }
        .validate()
        .map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err("autoscale: min_replicas (11) is greater than max_replicas (10)".to_owned())
        );
    }
}
