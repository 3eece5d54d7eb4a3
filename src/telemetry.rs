//! Telemetry: every metric family mdp exports, its values, and the exposition.
//!
//! The families are listed once, in [`catalogue`]; the exposition is the
//! sections of [`MetricSet::sections`], each writing one catalogue list. Values
//! live in the prometheus crate's atomics, private to their section, and
//! change only through the methods below, each of which publishes the change:
//! the sections written rarely (the control loop's, the pod's budget) keep
//! their encoded text and encode again only after a write; the ones written
//! on every request (tokens, HTTP) build their series text once and write
//! their values on every scrape. A scrape stays cheap however often it comes
//! and however many providers and coordinators there are (see BENCHMARKS.md).
//!
//! A new group of families (say, pacing) is a list in [`catalogue`], a
//! section here writing exactly it (a file of its own, implementing
//! `exposition::Section`), one field of [`MetricSet`] with its write methods,
//! and one entry in [`MetricSet::sections`].

mod budget;
pub mod catalogue;
mod cells;
mod control;
mod exposition;
mod http;
mod pacing;
mod text;

pub use catalogue::QUEUE_DEPTH_SOURCE;
pub use cells::Counter;
pub use control::{CoordinatorSample, ProviderSeries};
pub use http::{HTTP_DURATION_BUCKETS, HttpRoute};
pub use pacing::{PacingLabels, PacingSeries};

use crate::level::Level;
use budget::{PodsSection, RatesSection};
use control::ControlSection;
use exposition::{ProcessSection, Section};
use http::HttpSection;
use pacing::PacingSection;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// The metrics themselves: one field per section.
pub struct MetricSet {
    control: ControlSection,
    rates: RatesSection,
    pods: PodsSection,
    pacing: PacingSection,
    http: HttpSection,
    process: ProcessSection,
    /// Length of the last exposition, to allocate the next one at once.
    last_len: AtomicUsize,
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

impl Metrics {
    /// Every family of `providers` (each once, whatever the order): scale 1,
    /// level 0, counts 0; one replica, split budget.
    pub fn new(providers: &[&str]) -> Self {
        Metrics::with_pacing(providers, &[])
    }

    /// As [`Metrics::new`], with the pacing series of the paced providers
    /// (which are among `providers` too).
    pub fn with_pacing(providers: &[&str], paced: &[PacingLabels]) -> Self {
        let control = ControlSection::new(providers);
        let rates = RatesSection {
            providers: control.providers.clone(),
        };
        let set = MetricSet {
            control,
            rates,
            pods: PodsSection::new(),
            pacing: PacingSection::new(paced),
            http: HttpSection::default(),
            process: ProcessSection::new(),
            last_len: AtomicUsize::new(8 * 1024),
        };
        debug_assert!(
            set.sections()
                .iter()
                .flat_map(|s| s.families())
                .eq(catalogue::all()),
            "the sections write the catalogue, in its order"
        );
        Metrics(Arc::new(set))
    }
}

impl MetricSet {
    /// The exposition, in order.
    fn sections(&self) -> [&dyn Section; 6] {
        [
            &self.control,
            &self.rates,
            &self.pods,
            &self.pacing,
            &self.http,
            &self.process,
        ]
    }

    /// Prometheus text format 0.0.4.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 512);
        for section in self.sections() {
            section.append_to(&mut out);
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }

    /// Makes the next scrape encode every section again, as after a write
    /// to each (what the benches measure).
    pub fn touch(&self) {
        self.control.touch();
        self.pods.touch();
    }

    // ---- The control loop's.

    /// A paced provider's pacing series.
    pub fn pacing(&self, provider: &str) -> Option<&PacingSeries> {
        self.pacing
            .providers
            .iter()
            .find(|(name, _)| name == provider)
            .map(|(_, series)| series)
    }

    /// A configured provider's series.
    pub fn provider(&self, name: &str) -> Option<&ProviderSeries> {
        self.control.provider(name)
    }

    /// `pipeline_feedback_queue_depth`; None withdraws the sample while the
    /// depth is unknown: an absent sample is what KEDA's fallback and
    /// `absent()` alerts see, where a 0 would read as an empty queue.
    pub fn set_queue_depth(&self, depth: Option<u64>) {
        self.control.set_queue_depth(depth);
    }

    /// `mdp_store_up`: whether the polled store answered (absent until the first poll).
    pub fn set_store_up(&self, up: bool) {
        self.control.set_store_up(up);
    }

    /// `mdp_coordinators`: how many are live and how many stale.
    pub fn set_coordinator_counts(&self, live: usize, stale: usize) {
        self.control.set_coordinator_counts(live, stale);
    }

    /// Counts one poll of the store, answered or not.
    pub fn count_poll(&self, ok: bool) {
        self.control.count_poll(ok);
    }

    /// Counts one change of the level driving the scale.
    pub fn count_transition(&self, to: Level) {
        self.control.count_transition(to);
    }

    /// The relax hold's count of absorbed flaps (a total; never goes back).
    pub fn set_flaps_suppressed(&self, total: u64) {
        self.control.set_flaps_suppressed(total);
    }

    /// One event's time from its arrival to its scale being in force.
    pub fn observe_event_to_scale(&self, seconds: f64) {
        self.control.observe_event_to_scale(seconds);
    }

    /// Sets a coordinator's series, adding them the first time.
    pub fn set_coordinator(&self, id: &str, sample: CoordinatorSample) {
        self.control.set_coordinator(id, sample);
    }

    /// Marks a known coordinator stale or fresh.
    pub fn set_coordinator_stale(&self, id: &str, stale: bool) {
        self.control.set_coordinator_stale(id, stale);
    }

    /// Removes a forgotten coordinator's series.
    pub fn remove_coordinator(&self, id: &str) {
        self.control.remove_coordinator(id);
    }

    /// What the exposition shows of a coordinator, if anything.
    pub fn coordinator(&self, id: &str) -> Option<CoordinatorSample> {
        self.control.coordinator(id)
    }

    /// Counts one refused or ignored event; `reason` is one of [`REJECT_REASONS`].
    pub fn reject(&self, reason: &str) {
        self.control.reject(reason);
    }

    // ---- The pod's budget.

    /// `mdp_replicas`: replicas sharing each provider's budget.
    pub fn set_replicas(&self, count: u32) {
        self.pods.set_replicas(count);
    }

    /// Sets `mdp_budget_mode`: 1 for `mode`, 0 for the others.
    pub fn set_budget_mode(&self, mode: BudgetMode) {
        self.pods.set_budget_mode(mode);
    }

    // ---- HTTP.

    /// Counts one request refused for a missing or wrong token on `route`.
    pub fn count_unauthorized(&self, route: &'static str) {
        self.http.count_unauthorized(route);
    }

    /// The request series of `route` (made the first time it is asked for).
    pub fn http_route(&self, route: &str) -> HttpRoute {
        self.http.route(route)
    }
}

/// Content type of [`MetricSet::render`].
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

    fn scrape(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).expect("utf-8")
    }

    #[test]
    fn seed_gauges_carry_values_from_start() {
        let text = scrape(&Metrics::new(&["ibkr"]));
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

    /// Metrics with a series in every family.
    fn every_family_present() -> Metrics {
        let paced = PacingLabels {
            provider: "ibkr".into(),
            classes: vec!["historical".into()],
            rules: vec!["historical".into()],
        };
        let metrics = Metrics::with_pacing(&["ibkr", "polygon"], &[paced]);
        metrics.set_store_up(true);
        metrics.set_coordinator(
            "store-a",
            CoordinatorSample {
                queue_size: 10,
                capacity: 100,
                level: Level::Soft,
                stale: false,
                last_event_ts: 1.5e9,
            },
        );
        metrics.count_unauthorized("feedback");
        metrics.http_route("health").record(200, 0.001);
        metrics
    }

    #[test]
    fn the_exposition_writes_exactly_the_catalogue_in_its_order() {
        let metrics = every_family_present();
        let text = scrape(&metrics);
        let written: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(name, _)| !name.starts_with("process_"))
            .collect();
        let listed: Vec<(&str, &str)> = metrics
            .sections()
            .iter()
            .flat_map(|s| s.families())
            .map(|f| (f.name, f.kind.as_str()))
            .collect();
        assert_eq!(written, listed);
        let all: Vec<_> = catalogue::all()
            .map(|f| (f.name, f.kind.as_str()))
            .collect();
        assert_eq!(
            listed, all,
            "a section writes a list that is not the catalogue's"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
    }

    #[test]
    fn every_sample_carries_its_familys_labels_and_help() {
        let text = scrape(&every_family_present());
        for family in catalogue::all() {
            let help = format!("# HELP {} {}", family.name, family.help);
            assert!(text.lines().any(|l| l == help), "no {help:?}");
            assert!(!family.help.contains(['\\', '\n']), "{}", family.name);
            let samples: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| {
                    let name = l.split(['{', ' ']).next().unwrap_or("");
                    name == family.name
                        || (family.kind == catalogue::Kind::Histogram
                            && ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|s| name.strip_suffix(s) == Some(family.name)))
                })
                .collect();
            assert!(!samples.is_empty(), "no sample of {}", family.name);
            for sample in samples {
                let labels: Vec<&str> = sample
                    .split_once('{')
                    .and_then(|(_, rest)| rest.split_once('}'))
                    .map(|(labels, _)| {
                        labels
                            .split(',')
                            .filter_map(|p| p.split_once('=').map(|(k, _)| k))
                            .filter(|k| *k != "le")
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(labels, family.labels, "{sample}");
            }
        }
    }

    #[test]
    fn the_exposition_parses_as_prometheus_text() {
        let text = scrape(&every_family_present());
        let mut samples = 0;
        for line in text.lines() {
            match crate::feedback::exposition::parse_line(line) {
                Ok(crate::feedback::exposition::Line::Sample(_)) => samples += 1,
                Ok(_) => {}
                Err(error) => panic!("{line:?}: {error}"),
            }
        }
        assert!(samples > 40, "{samples} samples");
    }

    fn value(metrics: &Metrics, series: &str) -> Option<f64> {
        scrape(metrics)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_write_shows_in_the_next_scrape() {
        let metrics = Metrics::new(&["ibkr"]);
        let series = "pipeline_rate_scale_factor{provider=\"ibkr\"}";
        assert_eq!(value(&metrics, series), Some(1.0));
        let ibkr = metrics.provider("ibkr").expect("configured");
        ibkr.set_scale(0.5, Level::Soft);
        assert_eq!(value(&metrics, series), Some(0.5));
        assert_eq!(ibkr.scale(), 0.5);
        let state = "pipeline_backpressure_state{provider=\"ibkr\"}";
        assert_eq!(value(&metrics, state), Some(1.0));
        metrics.set_replicas(3);
        assert_eq!(value(&metrics, "mdp_replicas"), Some(3.0));
        metrics.set_budget_mode(BudgetMode::Fallback);
        assert_eq!(
            value(&metrics, "mdp_budget_mode{mode=\"fallback\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&metrics, "mdp_budget_mode{mode=\"split\"}"),
            Some(0.0)
        );
        metrics.count_transition(Level::Hard);
        let hard = "mdp_backpressure_transitions_total{level=\"hard\"}";
        assert_eq!(value(&metrics, hard), Some(1.0));
    }

    #[test]
    fn counts_made_on_request_paths_show_at_once() {
        let metrics = Metrics::new(&["ibkr"]);
        let series = "mdp_rate_tokens_granted_total{provider=\"ibkr\"}";
        assert_eq!(value(&metrics, series), Some(0.0));
        let granted = metrics
            .provider("ibkr")
            .expect("configured")
            .tokens_granted();
        granted.inc_by(3);
        assert_eq!(value(&metrics, series), Some(3.0));
        metrics.reject("malformed");
        let rejected = "mdp_feedback_events_rejected_total{reason=\"malformed\"}";
        assert_eq!(value(&metrics, rejected), Some(1.0));
        assert_eq!(metrics.control.rejected("malformed"), 1);
        let route = metrics.http_route("metrics");
        route.record(200, 0.0001);
        route.record(200, 0.003);
        route.record(404, 20.0);
        let ok = "mdp_http_requests_total{route=\"metrics\",status=\"200\"}";
        assert_eq!(value(&metrics, ok), Some(2.0));
        let bucket = "mdp_http_request_duration_seconds_bucket{route=\"metrics\",le=\"0.01\"}";
        assert_eq!(value(&metrics, bucket), Some(2.0));
        let inf = "mdp_http_request_duration_seconds_bucket{route=\"metrics\",le=\"+Inf\"}";
        assert_eq!(value(&metrics, inf), Some(3.0));
        let count = "mdp_http_request_duration_seconds_count{route=\"metrics\"}";
        assert_eq!(value(&metrics, count), Some(3.0));
    }

    #[test]
    fn unknown_depth_and_unpolled_store_have_no_sample() {
        let metrics = Metrics::new(&["ibkr"]);
        assert!(!scrape(&metrics).contains("mdp_store_up"));
        metrics.set_queue_depth(None);
        assert!(!scrape(&metrics).contains("pipeline_feedback_queue_depth"));
        metrics.set_queue_depth(Some(42));
        let depth = "pipeline_feedback_queue_depth{source=\"store_coordinator\"}";
        assert_eq!(value(&metrics, depth), Some(42.0));
        metrics.set_store_up(false);
        assert_eq!(value(&metrics, "mdp_store_up"), Some(0.0));
    }

    #[test]
    fn many_statuses_on_one_route_are_all_counted() {
        let metrics = Metrics::new(&[]);
        let route = metrics.http_route("asset");
        for status in 200..240u16 {
            route.record(status, 0.0);
            route.record(status, 0.0);
        }
        let text = scrape(&metrics);
        for status in 200..240u16 {
            let series =
                format!("mdp_http_requests_total{{route=\"asset\",status=\"{status}\"}} 2");
            assert!(text.lines().any(|l| l == series), "no {series}");
        }
        // The same route asked for again shares the series.
        metrics.http_route("asset").record(200, 0.0);
        let series = "mdp_http_requests_total{route=\"asset\",status=\"200\"}";
        assert_eq!(value(&metrics, series), Some(3.0));
    }

    #[test]
    fn clones_share_the_metrics() {
        let metrics = Metrics::new(&["ibkr"]);
        let clone = metrics.clone();
        clone.set_replicas(4);
        assert_eq!(metrics.pods.replicas(), 4);
    }
}
