//! The series the control loop writes on every event, looked up once.

use crate::rate::RateCoordinator;
use crate::telemetry::{Metrics, ProviderSeries, QUEUE_DEPTH_SOURCE};
use prometheus::{Gauge, IntGauge};

/// The series the loop writes on every event, looked up once: a label
/// lookup hashes and locks, and there is one per provider per event.
pub(super) struct Series {
    /// Providers the feedback applies to.
    pub(super) feedback: Vec<ProviderSeries>,
    /// `mdp_rate_effective_tokens_per_second`, in the rate coordinator's order.
    pub(super) effective_rate: Vec<Option<Gauge>>,
    pub(super) queue_depth: Gauge,
    pub(super) live: IntGauge,
    pub(super) stale: IntGauge,
}

impl Series {
    pub(super) fn new(
        metrics: &Metrics,
        rates: &RateCoordinator,
        feedback_providers: &[String],
    ) -> Self {
        let series = |name: &str| {
            let found = metrics.provider(name);
            if found.is_none() {
                tracing::warn!(
                    provider = name,
                    "provider without metrics; its series stay empty"
                );
            }
            found.cloned()
        };
        Series {
            feedback: feedback_providers
                .iter()
                .filter_map(|p| series(p))
                .collect(),
            effective_rate: rates
                .views()
                .iter()
                .map(|view| series(&view.name).map(|p| p.effective_rate))
                .collect(),
            queue_depth: metrics.queue_depth.with_label_values(&[QUEUE_DEPTH_SOURCE]),
            live: metrics.coordinators.with_label_values(&["live"]),
            stale: metrics.coordinators.with_label_values(&["stale"]),
        }
    }
}
