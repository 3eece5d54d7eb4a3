//! KEDA, the HPA and the pods wired together on virtual time: what `mdp simulate` steps
//! to show what the exported configuration would do to the Deployment.

use super::hpa::{Hpa, HpaConfig, SyncResult};
use super::keda::{PromResponse, ScaledObject, ScalerError, TriggerReport};
use super::pods::Pods;
use super::{AutoscaleConfig, ConfigError};
use crate::level::Level;
use serde::Serialize;
use std::time::Duration;

/// One step of the cluster model.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub now: Duration,
    /// Pods asked for (and existing) after this step.
    pub replicas: u32,
    /// Pods ready at `now`.
    pub ready: u32,
    /// The HPA's sync, when one was due.
    pub hpa: Option<SyncResult>,
    /// What each trigger served the HPA (empty when no sync was due).
    pub triggers: Vec<TriggerReport>,
    /// A replica count the KEDA operator set itself (0 <-> 1, minReplicaCount).
    pub operator: Option<u32>,
}

/// One trigger in one HPA sync, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerTrace {
    pub name: &'static str,
    /// The value KEDA read: a number, `none` (empty result) or `error`.
    pub read: String,
    /// `status.health[...].numberOfFailures` after this read.
    pub failures: u32,
    /// The fallback metric served instead, while the fallback is engaged.
    pub fallback: Option<f64>,
    /// The replica count the HPA derived from this trigger (`None`: unavailable).
    pub proposal: Option<u32>,
}

/// One HPA sync, everything that decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncTrace {
    pub t: f64,
    /// `spec.replicas` before the sync.
    pub replicas_before: u32,
    pub triggers: Vec<TriggerTrace>,
    /// The largest proposal (`computeReplicasForMetrics`).
    pub max_proposal: Option<u32>,
    /// After the stabilization windows.
    pub stabilized: Option<u32>,
    /// The `ScalingLimited` reason of the rate limit and min/max.
    pub rate_limit: &'static str,
    pub replicas: u32,
    pub reason: String,
}

fn read_text(report: &TriggerReport) -> String {
    match report.scaler {
        Ok(value) => format!("{}", report.quantity.unwrap_or(value)),
        Err(ScalerError::EmptyResult) => "none".to_owned(),
        Err(_) => "error".to_owned(),
    }
}

impl Tick {
    /// The trace row of this step's HPA sync, if one ran.
    pub fn trace(&self, replicas_before: u32) -> Option<SyncTrace> {
        let sync = self.hpa.as_ref()?;
        let triggers = self
            .triggers
            .iter()
            .enumerate()
            .map(|(index, report)| TriggerTrace {
                name: report.name,
                read: read_text(report),
                failures: report.consecutive_failures,
                fallback: report.fallback_value,
                proposal: sync.per_metric.get(index).copied().flatten(),
            })
            .collect();
        Some(SyncTrace {
            t: self.now.as_secs_f64(),
            replicas_before,
            triggers,
            max_proposal: sync.metric_desired,
            stabilized: sync.stabilized,
            rate_limit: sync.limit.as_str(),
            replicas: sync.desired,
            reason: sync.explanation.clone(),
        })
    }
}

/// KEDA + HPA + Deployment for one ScaledObject.
#[derive(Debug, Clone)]
pub struct Cluster {
    scaled_object: ScaledObject,
    hpa: Hpa,
    pods: Pods,
    polling_interval: Duration,
    last_poll: Option<Duration>,
}

impl Cluster {
    /// A cluster running `config` with `initial_replicas` ready pods at time zero.
    pub fn new(
        config: &AutoscaleConfig,
        initial_replicas: u32,
        startup_delay: Duration,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Cluster {
            scaled_object: ScaledObject::new(config),
            hpa: Hpa::new(HpaConfig::for_scaled_object(config)),
            pods: Pods::new(initial_replicas, startup_delay),
            polling_interval: config.polling_interval,
            last_poll: None,
        })
    }

    /// What Prometheus would answer to each trigger for a queue `depth` and `level`.
    pub fn responses_for(&self, depth: f64, level: Level) -> Vec<PromResponse> {
        self.scaled_object
            .triggers()
            .iter()
            .map(|trigger| trigger.local_response(depth, level))
            .collect()
    }

    /// What Prometheus answers while mdp has withdrawn its depth sample: the
    /// depth trigger's query reads nothing, the others their values.
    pub fn responses_without_depth(&self, level: Level) -> Vec<PromResponse> {
        self.scaled_object
            .triggers()
            .iter()
            .map(|trigger| match trigger {
                super::Trigger::QueueDepth { .. } => PromResponse::Empty,
                other => other.local_response(0.0, level),
            })
            .collect()
    }

    /// Advance to `now` (non-decreasing) with Prometheus answering `responses`, one per
    /// trigger: the operator polls every `pollingInterval`, the HPA syncs every 15 s, and
    /// the pods follow whatever either decides.
    pub fn step(&mut self, now: Duration, responses: &[PromResponse]) -> Tick {
        let mut operator = None;
        if self
            .last_poll
            .is_none_or(|last| now >= last + self.polling_interval)
        {
            self.last_poll = Some(now);
            operator = self
                .scaled_object
                .poll(now, responses, self.pods.counts(now));
            if let Some(replicas) = operator {
                self.pods.scale_to(now, replicas);
            }
        }
        let (hpa, triggers) = if self.hpa.is_due(now) {
            let counts = self.pods.counts(now);
            let triggers = self.scaled_object.external_metrics(responses, counts.spec);
            let values: Vec<_> = triggers.iter().map(TriggerReport::hpa_value).collect();
            let result = self.hpa.sync(now, counts, &values);
            if result.rescale {
                self.pods.scale_to(now, result.desired);
            }
            (Some(result), triggers)
        } else {
            (None, Vec::new())
        };
        Tick {
            now,
            replicas: self.pods.total(),
            ready: self.pods.ready(now),
            hpa,
            triggers,
            operator,
        }
    }

    pub fn replicas(&self) -> u32 {
        self.pods.total()
    }

    pub fn pods(&self) -> &Pods {
        &self.pods
    }

    pub fn hpa(&self) -> &Hpa {
        &self.hpa
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::pods::DEFAULT_STARTUP_DELAY;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Runs the default configuration second by second through `phases` of
    /// (start second, depth, level), returning the replica count at each second.
    fn run(phases: &[(u64, f64, Level)], until: u64) -> Vec<u32> {
        let mut cluster = Cluster::new(&AutoscaleConfig::default(), 1, DEFAULT_STARTUP_DELAY)
            .expect("the default configuration is valid");
        (0..until)
            .map(|t| {
                let (_, depth, level) = phases
                    .iter()
                    .rev()
                    .find(|(start, ..)| *start <= t)
                    .copied()
                    .unwrap_or((0, 0.0, Level::Ok));
                let responses = cluster.responses_for(depth, level);
                cluster.step(secs(t), &responses).replicas
            })
            .collect()
    }

    // the replica matrix, the four scenarios, with metrics reaching KEDA instantly (the
    // simulation adds Prometheus' scrape delay on top).
    #[test]
    fn spec_scenarios_on_the_default_configuration() {
        let phases = [
            (0, 500.0, Level::Ok),
            (60, 6000.0, Level::Soft),
            (180, 9500.0, Level::Hard),
            (300, 800.0, Level::Ok),
        ];
        let replicas = run(&phases, 480);
        assert!(replicas[..60].iter().all(|&r| r == 1), "normal stays at 1");
        // Moderate: at least 3 within 15-45 s, never beyond the matrix' 5.
        assert!(replicas[60 + 45] >= 3);
        assert!(replicas[60..180].iter().all(|&r| r <= 5));
        // Overload: from there to 8 or more.
        assert!(replicas[180 + 30] >= 8);
        assert_eq!(replicas[299], 10);
        // Recovery: down to 1 within 90 s of the drain, not before the 70 s window
        // of scale-down stabilization has seen only low recommendations.
        let back_at_one = replicas[300..]
            .iter()
            .position(|&r| r == 1)
            .expect("recovers to one replica");
        assert!((45..=90).contains(&back_at_one), "took {back_at_one} s");
    }

    // KEDA docs, ScaledObject spec "fallback" with behavior currentReplicasIfHigher: with
    // Prometheus gone, the HPA goes to max(current, 6) once the failures pass
    // failureThreshold 3. Before KEDA 2.19 only the HPA's requests count (the fourth
    // failing sync, t=60); since, the operator's poll counts as well (t=30).
    #[test]
    fn prometheus_outage_falls_back_to_six_or_keeps_more() {
        for (keda, engaged) in [("2.18", 60), ("2.20", 30)] {
            for (start, want) in [(2, 6), (8, 8)] {
                let mut config = AutoscaleConfig::default();
                config.versions.keda = keda.parse().expect("modelled");
                let mut cluster = Cluster::new(&config, start, DEFAULT_STARTUP_DELAY)
                    .expect("the default configuration is valid");
                let depth = 2000.0 + 1000.0 * f64::from(start);
                let calm = cluster.responses_for(depth, Level::Soft);
                let down = [PromResponse::Unreachable, PromResponse::Unreachable];
                assert_eq!(cluster.step(secs(0), &calm).replicas, start);
                for t in (15..engaged).step_by(15) {
                    let tick = cluster.step(secs(t), &down);
                    assert_eq!(tick.replicas, start, "KEDA {keda} t={t}: held");
                }
                let tick = cluster.step(secs(engaged), &down);
                assert_eq!(tick.replicas, want, "KEDA {keda}");
                assert!(tick.triggers.iter().all(|t| t.fallback_value.is_some()));
            }
        }
    }

    // Without a fallback a dead Prometheus freezes the HPA at its current count
    // (kube: every metric invalid -> no scaling).
    #[test]
    fn without_fallback_an_outage_holds_the_count() {
        let config = AutoscaleConfig {
            fallback: None,
            ..AutoscaleConfig::default()
        };
        let mut cluster = Cluster::new(&config, 3, DEFAULT_STARTUP_DELAY).expect("valid");
        let down = [PromResponse::Unreachable, PromResponse::Unreachable];
        for t in (0..600).step_by(15) {
            assert_eq!(cluster.step(secs(t), &down).replicas, 3);
        }
    }

    #[test]
    fn invalid_configuration_is_refused() {
        let config = AutoscaleConfig {
            min_replicas: 5,
            max_replicas: 2,
            ..AutoscaleConfig::default()
        };
        assert!(Cluster::new(&config, 1, DEFAULT_STARTUP_DELAY).is_err());
    }
}
