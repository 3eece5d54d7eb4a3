//! The HTTP families: requests refused for a bad token, requests by route
//! and status, and the time to the response head by route. A route's series exist once it is first asked
//! for ([`super::MetricSet::http_route`]), each counter and histogram bucket a
//! prometheus atomic with its series text built once: recording takes no lock
//! and a scrape formats no label.

use super::catalogue::{self as family, Family};
use super::cells::Histogram;
use super::exposition::{Section, lock};
use super::text::{self, header};
use prometheus::core::{Atomic, AtomicU64};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Buckets of `mdp_http_request_duration_seconds`: few, so a scrape stays small.
pub const HTTP_DURATION_BUCKETS: [f64; 7] = [0.0005, 0.002, 0.01, 0.05, 0.25, 1.0, 10.0];

/// Distinct status codes counted per route; a route answers with a handful.
const STATUS_SLOTS: usize = 16;

/// One route's series; the HTTP layer holds it and records every answer.
#[derive(Clone)]
pub struct HttpRoute(Arc<RouteSeries>);

struct RouteSeries {
    route: String,
    duration: Histogram,
    /// Claimed in order, first come; a status is in one slot at most.
    statuses: [OnceLock<StatusCount>; STATUS_SLOTS],
    /// Statuses beyond the slots (not expected: routes answer a fixed few).
    overflow: Mutex<BTreeMap<u16, u64>>,
}

struct StatusCount {
    status: u16,
    /// `mdp_http_requests_total{route="...",status="..."}`
    key: String,
    count: AtomicU64,
}

impl HttpRoute {
    /// Counts one answer with `status`, given `seconds` after the request came.
    pub fn record(&self, status: u16, seconds: f64) {
        let series = &*self.0;
        series.duration.observe(seconds);
        for slot in &series.statuses {
            let cell = slot.get_or_init(|| StatusCount {
                status,
                key: text::series_key(
                    family::HTTP_REQUESTS.name,
                    &[("route", &series.route), ("status", &status.to_string())],
                ),
                count: AtomicU64::new(0),
            });
            if cell.status == status {
                cell.count.inc_by(1);
                return;
            }
        }
        *lock(&series.overflow).entry(status).or_default() += 1;
    }
}

/// Every route asked for so far, by name, and the refusals by route.
#[derive(Default)]
pub(super) struct HttpSection {
    routes: Mutex<BTreeMap<String, HttpRoute>>,
    unauthorized: Mutex<BTreeMap<&'static str, u64>>,
}

impl HttpSection {
    pub(super) fn count_unauthorized(&self, route: &'static str) {
        *lock(&self.unauthorized).entry(route).or_default() += 1;
    }

    pub(super) fn route(&self, name: &str) -> HttpRoute {
        lock(&self.routes)
            .entry(name.to_owned())
            .or_insert_with(|| {
                HttpRoute(Arc::new(RouteSeries {
                    route: name.to_owned(),
                    duration: Histogram::new(
                        family::HTTP_DURATION.name,
                        &[("route", name)],
                        &HTTP_DURATION_BUCKETS,
                    ),
                    statuses: Default::default(),
                    overflow: Mutex::new(BTreeMap::new()),
                }))
            })
            .clone()
    }

    fn encode_unauthorized(&self, out: &mut Vec<u8>) {
        let refused = lock(&self.unauthorized);
        if refused.is_empty() {
            return;
        }
        header(out, &family::UNAUTHORIZED);
        for (route, count) in refused.iter() {
            let key = text::series_key(family::UNAUTHORIZED.name, &[("route", route)]);
            text::sample_u64(out, &key, *count);
        }
    }
}

impl Section for HttpSection {
    fn families(&self) -> &'static [Family] {
        family::HTTP
    }

    /// Series in label order; none of a route before its first request.
    fn append_to(&self, out: &mut Vec<u8>) {
        self.encode_unauthorized(out);
        let routes = lock(&self.routes);
        if routes.is_empty() {
            return;
        }
        header(out, &family::HTTP_REQUESTS);
        for route in routes.values() {
            let series = &*route.0;
            // Slots are claimed in arrival order: sort them, on the stack.
            let mut counts = [(0u16, "", 0u64); STATUS_SLOTS];
            let mut n = 0;
            for cell in series.statuses.iter().map_while(OnceLock::get) {
                counts[n] = (cell.status, cell.key.as_str(), cell.count.get());
                n += 1;
            }
            counts[..n].sort_unstable_by_key(|(status, _, _)| *status);
            for (_, key, count) in &counts[..n] {
                text::sample_u64(out, key, *count);
            }
            for (status, count) in lock(&series.overflow).iter() {
                let key = text::series_key(
                    family::HTTP_REQUESTS.name,
                    &[("route", &series.route), ("status", &status.to_string())],
                );
                text::sample_u64(out, &key, *count);
            }
        }
        header(out, &family::HTTP_DURATION);
        for route in routes.values() {
            route.0.duration.encode(out);
        }
    }
}
