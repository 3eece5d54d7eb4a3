//! The series the control loop writes on every event, looked up once.

use crate::control::Depth;
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
    /// `pipeline_feedback_queue_depth`; None while its sample is withdrawn.
    queue_depth: Option<Gauge>,
    /// `mdp_store_up`, once the store has been polled.
    store_up: Option<IntGauge>,
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
            queue_depth: Some(metrics.queue_depth.with_label_values(&[QUEUE_DEPTH_SOURCE])),
            store_up: None,
            live: metrics.coordinators.with_label_values(&["live"]),
            stale: metrics.coordinators.with_label_values(&["stale"]),
        }
    }
}

impl Series {
    /// Sets the depth sample, or withdraws it while the depth is unknown: an
    /// absent sample is what KEDA's fallback and `absent()` alerts see, where
    /// a 0 would read as an empty queue.
    pub(super) fn set_queue_depth(&mut self, metrics: &Metrics, depth: Depth) {
        match depth.value() {
            Some(depth) => self
                .queue_depth
                .get_or_insert_with(|| metrics.queue_depth.with_label_values(&[QUEUE_DEPTH_SOURCE]))
                .set(depth as f64),
            None => {
                if self.queue_depth.take().is_some() {
                    // Absent already is fine: the sample is withdrawn either way.
                    let _ = metrics
                        .queue_depth
                        .remove_label_values(&[QUEUE_DEPTH_SOURCE]);
                }
            }
        }
    }

    /// `mdp_store_up`: 1 while the polled store answers, 0 while it does not.
    pub(super) fn set_store_up(&mut self, metrics: &Metrics, up: bool) {
        self.store_up
            .get_or_insert_with(|| metrics.store_up.with_label_values::<&str>(&[]))
            .set(i64::from(up));
    }
}
