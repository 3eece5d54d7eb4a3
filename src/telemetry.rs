//! Telemetry: every metric declared once, with help text, and the exposition.
//!
//! A scrape stays cheap however often it comes and however many providers
//! and coordinators there are:
//! - the families only the control loop (and [`MetricSet::reject`]) change are
//!   encoded again only after [`MetricSet::touch`] says they changed; the loop
//!   touches after every command and at least once a second, so a change made
//!   without a touch shows within a second at worst;
//! - the families that grow with the configuration (per provider, per
//!   coordinator) are kept as values with their label text built once
//!   ([`series`]), and written straight into the exposition;
//! - the families other modules change at will (tokens, throttles, refused
//!   tokens, replicas) are encoded on every scrape;
//! - the process metrics are read from `/proc` at most once a second (reading
//!   `/proc/self/limits` alone cost more than all the rest of a scrape).

mod exposition;
mod series;
mod text;

pub use series::{CoordinatorSample, ProviderSeries};

use crate::level::Level;
use exposition::{Exposition, lock};
use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};
use series::CoordinatorRow;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `pipeline_feedback_queue_depth`'s fixed `source` label.
pub const QUEUE_DEPTH_SOURCE: &str = "store_coordinator";

/// Buckets of the event -> new scale histogram, in seconds (1 us .. 100 ms).
pub const EVENT_TO_SCALE_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 1e-1,
];

/// The process metrics are read from `/proc` at most this often.
pub const PROCESS_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Every metric mdp exports, behind one `Arc`: request handlers clone it per
/// request, and one reference count is cheaper than one per metric.
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

impl Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

/// The metrics themselves.
pub struct MetricSet {
    exposition: Exposition,
    // The control loop's, per provider and per coordinator (see `provider`
    // and `set_coordinator`):
    providers: Vec<ProviderSeries>,
    coordinator_rows: Mutex<BTreeMap<String, CoordinatorRow>>,
    // The control loop's, of fixed size:
    pub queue_depth: GaugeVec,
    pub events_rejected: IntCounterVec,
    pub event_to_scale: Histogram,
    pub transitions: IntCounterVec,
    pub flaps_suppressed: IntCounter,
    pub coordinators: IntGaugeVec,
    pub polls: IntCounterVec,
    /// No series until the store is polled (push mode never has one).
    pub store_up: IntGaugeVec,
    // Changed by other modules, encoded on every scrape:
    pub tokens_granted: IntCounterVec,
    pub requests_throttled: IntCounterVec,
    pub replicas: IntGauge,
    pub unauthorized: IntCounterVec,
    pub budget_mode: IntGaugeVec,
    /// HTTP requests by route (a fixed set of names, never raw paths) and status.
    pub http_requests: IntCounterVec,
    /// Time to the response head, by route.
    pub http_duration: HistogramVec,
}

/// Where a pod's tokens come from (`mdp_budget_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetMode {
    /// The local 1/N share, as configured (no shared budget).
    Split,
    /// One bucket in Redis for all pods.
    Shared,
    /// A shared budget is configured but Redis does not answer: the local share.
    Fallback,
}

impl BudgetMode {
    pub const ALL: [BudgetMode; 3] = [BudgetMode::Split, BudgetMode::Shared, BudgetMode::Fallback];

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetMode::Split => "split",
            BudgetMode::Shared => "shared",
            BudgetMode::Fallback => "fallback",
        }
    }
}

/// Buckets of `mdp_http_request_duration_seconds`: few, so a scrape stays small.
pub const HTTP_DURATION_BUCKETS: [f64; 7] = [0.0005, 0.002, 0.01, 0.05, 0.25, 1.0, 10.0];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    /// Registers every metric; the three seed gauges start at 1, 0, 0 for
    /// every provider.
    pub fn new(providers: &[&str]) -> Self {
        let owned = Registry::new();
        let mut shared: Vec<Box<dyn Collector>> = Vec::new();
        let mut register = |registry: Option<&Registry>, c: Box<dyn Collector>| match registry {
            Some(registry) => registry
                .register(c)
                .expect("metric names are unique constants"),
            None => shared.push(c),
        };
        // Names must be unique across the registry, the shared collectors and
        // the families of `series` (the test `every_family_appears_once`).
        macro_rules! metric {
            ($registry:expr, $ty:ident, $name:expr, $help:expr, $labels:expr) => {{
                let m = $ty::new(opts($name, $help), $labels).expect("valid metric definition");
                register($registry, Box::new(m.clone()));
                m
            }};
            ($registry:expr, $ty:ident, $name:expr, $help:expr) => {{
                let m = $ty::with_opts(opts($name, $help)).expect("valid metric definition");
                register($registry, Box::new(m.clone()));
                m
            }};
        }
        let mine = Some(&owned);
        let queue_depth = metric!(
            mine,
            GaugeVec,
            "pipeline_feedback_queue_depth",
            "Queue depth reported by feedback source (echo of store).",
            &["source"]
        );
        let events_rejected = metric!(
            mine,
            IntCounterVec,
            "mdp_feedback_events_rejected_total",
            "Feedback events refused or ignored, by reason.",
            &["reason"]
        );
        let event_to_scale = Histogram::with_opts(
            HistogramOpts::new(
                "mdp_feedback_event_to_scale_seconds",
                "Time from receiving a feedback event to the new scale being in force.",
            )
            .buckets(EVENT_TO_SCALE_BUCKETS.to_vec()),
        )
        .expect("valid histogram definition");
        register(mine, Box::new(event_to_scale.clone()));
        let transitions = metric!(
            mine,
            IntCounterVec,
            "mdp_backpressure_transitions_total",
            "Changes of the level driving the scale, by new level.",
            &["level"]
        );
        let flaps_suppressed = metric!(
            mine,
            IntCounter,
            "mdp_backpressure_flaps_suppressed_total",
            "Raw level changes absorbed by the relax hold without changing the scale."
        );
        let coordinators = metric!(
            mine,
            IntGaugeVec,
            "mdp_coordinators",
            "Coordinators tracked, by state (live or stale).",
            &["state"]
        );
        let polls = metric!(
            mine,
            IntCounterVec,
            "mdp_pull_polls_total",
            "Polls of the store's metrics endpoint, by result.",
            &["result"]
        );
        let store_up = metric!(
            mine,
            IntGaugeVec,
            "mdp_store_up",
            "Whether the polled store answered its last poll (1) or not (0); absent in push mode.",
            &[]
        );
        let build = metric!(
            mine,
            IntGaugeVec,
            "mdp_build_info",
            "Build information; always 1.",
            &["version", "commit", "rustc"]
        );
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("MDP_GIT_COMMIT"),
                env!("MDP_RUSTC_VERSION"),
            ])
            .set(1);
        let tokens_granted = metric!(
            None,
            IntCounterVec,
            "mdp_rate_tokens_granted_total",
            "Rate tokens granted per provider.",
            &["provider"]
        );
        let requests_throttled = metric!(
            None,
            IntCounterVec,
            "mdp_rate_requests_throttled_total",
            "Acquire requests refused per provider.",
            &["provider"]
        );
        let replicas = metric!(
            None,
            IntGauge,
            "mdp_replicas",
            "Replicas sharing each provider's budget, as this replica knows it."
        );
        let unauthorized = metric!(
            None,
            IntCounterVec,
            "mdp_http_unauthorized_total",
            "Requests refused for a missing or wrong bearer token, by route.",
            &["route"]
        );
        let budget_mode = metric!(
            None,
            IntGaugeVec,
            "mdp_budget_mode",
            "Where this pod takes tokens from: 1 for the mode in force (split: its local share; shared: one bucket in Redis; fallback: the local share because Redis does not answer).",
            &["mode"]
        );
        for mode in BudgetMode::ALL {
            budget_mode
                .with_label_values(&[mode.as_str()])
                .set(i64::from(mode == BudgetMode::Split));
        }
        let http_requests = metric!(
            None,
            IntCounterVec,
            "mdp_http_requests_total",
            "HTTP requests answered, by route and status code.",
            &["route", "status"]
        );
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "mdp_http_request_duration_seconds",
                "Time from a request to its response head, by route.",
            )
            .buckets(HTTP_DURATION_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid histogram definition");
        register(None, Box::new(http_duration.clone()));

        let mut names: Vec<&str> = providers.to_vec();
        names.sort_unstable();
        names.dedup();
        for provider in &names {
            tokens_granted.with_label_values(&[*provider]);
            requests_throttled.with_label_values(&[*provider]);
        }
        queue_depth
            .with_label_values(&[QUEUE_DEPTH_SOURCE])
            .set(0.0);
        for level in Level::ALL {
            transitions.with_label_values(&[level.as_str()]);
        }
        for reason in REJECT_REASONS {
            events_rejected.with_label_values(&[reason]);
        }
        for state in ["live", "stale"] {
            coordinators.with_label_values(&[state]);
        }
        for result in ["ok", "error"] {
            polls.with_label_values(&[result]);
        }
        replicas.set(1);
        Metrics(Arc::new(MetricSet {
            exposition: Exposition::new(owned, shared),
            providers: names.into_iter().map(ProviderSeries::new).collect(),
            coordinator_rows: Mutex::new(BTreeMap::new()),
            queue_depth,
            events_rejected,
            event_to_scale,
            transitions,
            flaps_suppressed,
            coordinators,
            polls,
            store_up,
            tokens_granted,
            requests_throttled,
            replicas,
            unauthorized,
            budget_mode,
            http_requests,
            http_duration,
        }))
    }
}

impl MetricSet {
    /// Sets `mdp_budget_mode`: 1 for `mode`, 0 for the others.
    pub fn set_budget_mode(&self, mode: BudgetMode) {
        for other in BudgetMode::ALL {
            self.budget_mode
                .with_label_values(&[other.as_str()])
                .set(i64::from(other == mode));
        }
    }

    /// A configured provider's series (scale, state, events, effective rate).
    pub fn provider(&self, name: &str) -> Option<&ProviderSeries> {
        self.providers
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.providers[i])
    }

    /// Sets a coordinator's series, adding them the first time.
    pub fn set_coordinator(&self, id: &str, sample: CoordinatorSample) {
        let mut rows = lock(&self.coordinator_rows);
        match rows.get_mut(id) {
            Some(row) => row.sample = sample,
            None => {
                rows.insert(id.to_owned(), CoordinatorRow::new(id, sample));
            }
        }
    }

    /// Marks a known coordinator stale or fresh.
    pub fn set_coordinator_stale(&self, id: &str, stale: bool) {
        if let Some(row) = lock(&self.coordinator_rows).get_mut(id) {
            row.sample.stale = stale;
        }
    }

    /// Removes a forgotten coordinator's series.
    pub fn remove_coordinator(&self, id: &str) {
        lock(&self.coordinator_rows).remove(id);
    }

    /// What the exposition shows of a coordinator, if anything.
    pub fn coordinator(&self, id: &str) -> Option<CoordinatorSample> {
        lock(&self.coordinator_rows).get(id).map(|row| row.sample)
    }

    /// Counts one refused or ignored event.
    pub fn reject(&self, reason: &str) {
        self.events_rejected.with_label_values(&[reason]).inc();
        self.touch();
    }

    /// Says that families of the control loop changed: the next scrape
    /// encodes them again. Call it after the change, before anyone can learn
    /// of it (a reply, a published snapshot).
    pub fn touch(&self) {
        self.exposition.touch();
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> Vec<u8> {
        self.exposition.render(|out| {
            series::encode_providers(&self.providers, out);
            series::encode_coordinators(&lock(&self.coordinator_rows), out);
        })
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
    "clock_skew",
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
    fn every_family_appears_once() {
        let text = String::from_utf8(Metrics::new(&["ibkr"]).render()).expect("utf-8");
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(line.to_owned()), "{line} twice");
        }
        for name in [
            "pipeline_rate_scale_factor",
            "mdp_rate_tokens_granted_total",
            "mdp_replicas",
            "mdp_build_info",
        ] {
            assert!(
                seen.iter().any(|l| l.split(' ').nth(2) == Some(name)),
                "no {name}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(seen.iter().any(|l| l.contains("process_cpu_seconds_total")));
    }

    fn value(metrics: &Metrics, series: &str) -> Option<f64> {
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_touched_change_shows_in_the_next_scrape() {
        let metrics = Metrics::new(&["ibkr"]);
        let series = "pipeline_rate_scale_factor{provider=\"ibkr\"}";
        assert_eq!(value(&metrics, series), Some(1.0));
        metrics.provider("ibkr").expect("configured").scale.set(0.5);
        metrics.touch();
        assert_eq!(value(&metrics, series), Some(0.5));
    }

    #[test]
    fn changes_made_outside_the_loop_show_without_a_touch() {
        let metrics = Metrics::new(&["ibkr"]);
        let series = "mdp_rate_tokens_granted_total{provider=\"ibkr\"}";
        assert_eq!(value(&metrics, series), Some(0.0));
        metrics
            .tokens_granted
            .with_label_values(&["ibkr"])
            .inc_by(3);
        assert_eq!(value(&metrics, series), Some(3.0));
        metrics.reject("malformed");
        let rejected = "mdp_feedback_events_rejected_total{reason=\"malformed\"}";
        assert_eq!(value(&metrics, rejected), Some(1.0));
    }

    #[test]
    fn clones_share_the_metrics() {
        let metrics = Metrics::new(&["ibkr"]);
        let clone = metrics.clone();
        clone.replicas.set(4);
        assert_eq!(metrics.replicas.get(), 4);
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
