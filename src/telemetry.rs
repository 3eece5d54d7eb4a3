//! Telemetry: every metric declared once, with help text, in one registry.

use crate::level::Level;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// `pipeline_feedback_queue_depth`'s fixed `source` label.
pub const QUEUE_DEPTH_SOURCE: &str = "store_coordinator";

/// Buckets of the event -> new scale histogram, in seconds (1 us .. 100 ms).
pub const EVENT_TO_SCALE_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 1e-1,
];

/// Every metric mdp exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub scale_factor: GaugeVec,
    pub backpressure_state: GaugeVec,
    pub queue_depth: GaugeVec,
    pub events_processed: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub event_to_scale: Histogram,
    pub transitions: IntCounterVec,
    pub flaps_suppressed: IntCounter,
    pub coordinator_depth: IntGaugeVec,
    pub coordinator_capacity: IntGaugeVec,
    pub coordinator_level: IntGaugeVec,
    pub coordinator_stale: IntGaugeVec,
    pub coordinator_last_event: GaugeVec,
    pub coordinators: IntGaugeVec,
    pub tokens_granted: IntCounterVec,
    pub requests_throttled: IntCounterVec,
    pub effective_rate: GaugeVec,
    pub polls: IntCounterVec,
    pub replicas: IntGauge,
    pub unauthorized: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Registers every metric; the three seed gauges start at 1, 0, 0 for
    /// every provider.
    pub fn new(providers: &[&str]) -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry
                .register(c)
                .expect("metric names are unique constants");
        };
        macro_rules! metric {
            ($ty:ident, $name:expr, $help:expr, $labels:expr) => {{
                let m = $ty::new(opts($name, $help), $labels).expect("valid metric definition");
                reg(Box::new(m.clone()));
                m
            }};
            ($ty:ident, $name:expr, $help:expr) => {{
                let m = $ty::with_opts(opts($name, $help)).expect("valid metric definition");
                reg(Box::new(m.clone()));
                m
            }};
        }
        let metrics = Metrics {
            scale_factor: metric!(
                GaugeVec,
                "pipeline_rate_scale_factor",
                "Current rate scale factor applied to provider (0.0..1.0).",
                &["provider"]
            ),
            backpressure_state: metric!(
                GaugeVec,
                "pipeline_backpressure_state",
                "Backpressure state: 0=ok, 1=soft, 2=hard.",
                &["provider"]
            ),
            queue_depth: metric!(
                GaugeVec,
                "pipeline_feedback_queue_depth",
                "Queue depth reported by feedback source (echo of store).",
                &["source"]
            ),
            events_processed: metric!(
                IntCounterVec,
                "feedback_events_processed_total",
                "Feedback events applied, by provider they scale and level.",
                &["provider", "level"]
            ),
            events_rejected: metric!(
                IntCounterVec,
                "mdp_feedback_events_rejected_total",
                "Feedback events refused or ignored, by reason.",
                &["reason"]
            ),
            event_to_scale: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "mdp_feedback_event_to_scale_seconds",
                        "Time from receiving a feedback event to the new scale being in force.",
                    )
                    .buckets(EVENT_TO_SCALE_BUCKETS.to_vec()),
                )
                .expect("valid histogram definition");
                reg(Box::new(h.clone()));
                h
            },
            transitions: metric!(
                IntCounterVec,
                "mdp_backpressure_transitions_total",
                "Changes of the level driving the scale, by new level.",
                &["level"]
            ),
            flaps_suppressed: metric!(
                IntCounter,
                "mdp_backpressure_flaps_suppressed_total",
                "Raw level changes absorbed by the relax hold without changing the scale."
            ),
            coordinator_depth: metric!(
                IntGaugeVec,
                "mdp_coordinator_queue_depth",
                "Last reported queue depth per store coordinator.",
                &["coordinator"]
            ),
            coordinator_capacity: metric!(
                IntGaugeVec,
                "mdp_coordinator_queue_capacity",
                "Queue capacity per store coordinator.",
                &["coordinator"]
            ),
            coordinator_level: metric!(
                IntGaugeVec,
                "mdp_coordinator_level",
                "Level per store coordinator: 0=ok, 1=soft, 2=hard.",
                &["coordinator"]
            ),
            coordinator_stale: metric!(
                IntGaugeVec,
                "mdp_coordinator_stale",
                "1 when a coordinator's feedback is stale (TTL passed or polls failing).",
                &["coordinator"]
            ),
            coordinator_last_event: metric!(
                GaugeVec,
                "mdp_coordinator_last_event_timestamp_seconds",
                "Unix time of the last event applied per coordinator.",
                &["coordinator"]
            ),
            coordinators: metric!(
                IntGaugeVec,
                "mdp_coordinators",
                "Coordinators tracked, by state (live or stale).",
                &["state"]
            ),
            tokens_granted: metric!(
                IntCounterVec,
                "mdp_rate_tokens_granted_total",
                "Rate tokens granted per provider.",
                &["provider"]
            ),
            requests_throttled: metric!(
                IntCounterVec,
                "mdp_rate_requests_throttled_total",
                "Acquire requests refused per provider.",
                &["provider"]
            ),
            effective_rate: metric!(
                GaugeVec,
                "mdp_rate_effective_tokens_per_second",
                "Rate this replica grants per provider after scale and replica share.",
                &["provider"]
            ),
            polls: metric!(
                IntCounterVec,
                "mdp_pull_polls_total",
                "Polls of the store's metrics endpoint, by result.",
                &["result"]
            ),
            replicas: metric!(
                IntGauge,
                "mdp_replicas",
                "Replicas sharing each provider's budget, as this replica knows it."
            ),
            unauthorized: metric!(
                IntCounterVec,
                "mdp_http_unauthorized_total",
                "Requests refused for a missing or wrong bearer token, by route.",
                &["route"]
            ),
            registry: registry.clone(),
        };
        let build = IntGaugeVec::new(
            opts("mdp_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric definition");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        reg(Box::new(build));
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));

        for provider in providers {
            metrics
                .scale_factor
                .with_label_values(&[*provider])
                .set(1.0);
            metrics
                .backpressure_state
                .with_label_values(&[*provider])
                .set(0.0);
            metrics.tokens_granted.with_label_values(&[*provider]);
            metrics.requests_throttled.with_label_values(&[*provider]);
            metrics.effective_rate.with_label_values(&[*provider]);
            for level in Level::ALL {
                metrics
                    .events_processed
                    .with_label_values(&[*provider, level.as_str()]);
            }
        }
        metrics
            .queue_depth
            .with_label_values(&[QUEUE_DEPTH_SOURCE])
            .set(0.0);
        for level in Level::ALL {
            metrics.transitions.with_label_values(&[level.as_str()]);
        }
        for reason in REJECT_REASONS {
            metrics.events_rejected.with_label_values(&[reason]);
        }
        for state in ["live", "stale"] {
            metrics.coordinators.with_label_values(&[state]);
        }
        for result in ["ok", "error"] {
            metrics.polls.with_label_values(&[result]);
        }
        metrics.replicas.set(1);
        metrics
    }

    /// Counts one refused or ignored event.
    pub fn reject(&self, reason: &str) {
        self.events_rejected.with_label_values(&[reason]).inc();
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        out
    }
}

/// Content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every reason label of `mdp_feedback_events_rejected_total`, present from start.
pub const REJECT_REASONS: &[&str] = &[
    "malformed",
    "invalid",
    "too_large",
    "unsupported_media_type",
    "out_of_order",
    "too_many_coordinators",
    "disabled",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_gauges_carry_values_from_start() {
        let text = String::from_utf8(Metrics::new(&["ibkr"]).render()).expect("utf-8");
        for line in [
            "# HELP pipeline_rate_scale_factor Current rate scale factor applied to provider (0.0..1.0).",
            "# TYPE pipeline_rate_scale_factor gauge",
            "pipeline_rate_scale_factor{provider=\"ibkr\"} 1",
            "# HELP pipeline_backpressure_state Backpressure state: 0=ok, 1=soft, 2=hard.",
            "# TYPE pipeline_backpressure_state gauge",
            "pipeline_backpressure_state{provider=\"ibkr\"} 0",
            "# HELP pipeline_feedback_queue_depth Queue depth reported by feedback source (echo of store).",
            "# TYPE pipeline_feedback_queue_depth gauge",
            "pipeline_feedback_queue_depth{source=\"store_coordinator\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn rejections_are_counted_by_reason() {
        let metrics = Metrics::new(&["ibkr"]);
        let before = metrics
            .events_rejected
            .with_label_values(&["malformed"])
            .get();
        metrics.reject("malformed");
        assert_eq!(
            metrics
                .events_rejected
                .with_label_values(&["malformed"])
                .get(),
            before + 1
        );
    }
}
