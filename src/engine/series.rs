//! The provider series the control loop writes on every event, looked up once.

use crate::rate::RateCoordinator;
use crate::telemetry::{Metrics, ProviderSeries};

/// The series the loop writes on every event, looked up once: there is one
/// per provider per event.
pub(super) struct Series {
    /// Providers the feedback applies to.
    pub(super) feedback: Vec<ProviderSeries>,
    /// `mdp_rate_effective_tokens_per_second`, in the rate coordinator's order.
    pub(super) effective_rate: Vec<Option<ProviderSeries>>,
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
                .map(|view| series(&view.name))
                .collect(),
        }
    }
}
