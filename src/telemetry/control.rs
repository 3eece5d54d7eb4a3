//! The control loop's families: the seed gauges, the per-provider and
//! per-coordinator series, and the loop's counters. Only the loop (and the
//! feedback route's refusals) write them, each write through a method that
//! bumps the section's version, so a scrape between writes copies the text
//! it encoded last. Going through the prometheus crate's `gather` instead
//! cloned every label and sorted every family on each scrape (1 µs a series,
//! 14 ms at 1000 providers and 1000 coordinators).

use super::catalogue::{self as family, Family};
use super::cells::{Counter, Histogram};
use super::exposition::{Cached, Section, lock};
use super::text::{self, header, sample_f64, sample_i64, sample_u64};
use super::{EVENT_TO_SCALE_BUCKETS, QUEUE_DEPTH_SOURCE, REJECT_REASONS};
use crate::level::Level;
use prometheus::core::{Atomic, AtomicF64, AtomicI64, AtomicU64};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// No sample: the depth while it is unknown, `mdp_store_up` before a poll.
const ABSENT: u64 = u64::MAX;

/// Levels in label order (`hard`, `ok`, `soft`), as the exposition sorts them.
const LEVELS_BY_NAME: [Level; 3] = [Level::Hard, Level::Ok, Level::Soft];

fn level_index(level: Level) -> usize {
    usize::try_from(level.as_gauge()).expect("levels are 0, 1, 2")
}

/// A provider's series. The control loop holds clones and writes through
/// them; the rate coordinator counts into [`ProviderSeries::tokens_granted`]
/// and [`ProviderSeries::requests_throttled`].
#[derive(Clone)]
pub struct ProviderSeries {
    cells: Arc<ProviderCells>,
    section: Arc<Cached>,
}

pub(super) struct ProviderCells {
    pub(super) name: String,
    scale: AtomicF64,
    state: AtomicI64,
    /// Indexed by [`Level::as_gauge`].
    events: [AtomicU64; 3],
    effective_rate: AtomicF64,
    pub(super) granted: Counter,
    pub(super) throttled: Counter,
    keys: ProviderKeys,
}

struct ProviderKeys {
    scale: String,
    state: String,
    /// Indexed by [`Level::as_gauge`].
    events: [String; 3],
    effective_rate: String,
    granted: String,
    throttled: String,
}

impl ProviderCells {
    pub(super) fn granted_key(&self) -> &str {
        &self.keys.granted
    }

    pub(super) fn throttled_key(&self) -> &str {
        &self.keys.throttled
    }
}

impl ProviderSeries {
    fn new(name: &str, section: Arc<Cached>) -> Self {
        let by_provider = |f: &Family| text::series_key(f.name, &[("provider", name)]);
        let event_key = |level: Level| {
            text::series_key(
                family::EVENTS_PROCESSED.name,
                &[("level", level.as_str()), ("provider", name)],
            )
        };
        let keys = ProviderKeys {
            scale: by_provider(&family::SCALE_FACTOR),
            state: by_provider(&family::BACKPRESSURE_STATE),
            events: Level::ALL.map(event_key),
            effective_rate: by_provider(&family::EFFECTIVE_RATE),
            granted: by_provider(&family::TOKENS_GRANTED),
            throttled: by_provider(&family::REQUESTS_THROTTLED),
        };
        ProviderSeries {
            cells: Arc::new(ProviderCells {
                name: name.to_owned(),
                scale: AtomicF64::new(1.0),
                state: AtomicI64::new(0),
                events: [0; 3].map(AtomicU64::new),
                effective_rate: AtomicF64::new(0.0),
                granted: Counter::standalone(),
                throttled: Counter::standalone(),
                keys,
            }),
            section,
        }
    }

    pub fn name(&self) -> &str {
        &self.cells.name
    }

    /// Sets the scale factor and the level driving it.
    pub fn set_scale(&self, scale: f64, level: Level) {
        self.cells.scale.set(scale);
        self.cells.state.set(level.as_gauge());
        self.section.bump();
    }

    /// Counts one applied event at `level`.
    pub fn count_event(&self, level: Level) {
        self.cells.events[level_index(level)].inc_by(1);
        self.section.bump();
    }

    pub fn set_effective_rate(&self, rate: f64) {
        self.cells.effective_rate.set(rate);
        self.section.bump();
    }

    /// Tokens granted (`mdp_rate_tokens_granted_total`).
    pub fn tokens_granted(&self) -> Counter {
        self.cells.granted.clone()
    }

    /// Acquire requests refused (`mdp_rate_requests_throttled_total`).
    pub fn requests_throttled(&self) -> Counter {
        self.cells.throttled.clone()
    }

    pub(super) fn cells(&self) -> &ProviderCells {
        &self.cells
    }

    #[cfg(test)]
    pub(super) fn scale(&self) -> f64 {
        self.cells.scale.get()
    }
}

/// What the exposition shows of one coordinator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordinatorSample {
    pub queue_size: u64,
    pub capacity: u64,
    pub level: Level,
    pub stale: bool,
    /// Unix time of the last event applied.
    pub last_event_ts: f64,
}

struct CoordinatorRow {
    /// `{coordinator="..."}`, escaped.
    labels: String,
    sample: CoordinatorSample,
}

/// The section's values.
pub(super) struct ControlSection {
    cache: Arc<Cached>,
    /// Sorted by name.
    pub(super) providers: Arc<[ProviderSeries]>,
    coordinators: Mutex<BTreeMap<String, CoordinatorRow>>,
    /// [`ABSENT`] while the depth is unknown.
    queue_depth: AtomicU64,
    /// Indexed like [`REJECT_REASONS`].
    rejected: Box<[AtomicU64]>,
    event_to_scale: Histogram,
    /// Indexed by [`Level::as_gauge`].
    transitions: [AtomicU64; 3],
    flaps_suppressed: AtomicU64,
    live: AtomicI64,
    stale: AtomicI64,
    polls_ok: AtomicU64,
    polls_error: AtomicU64,
    /// 0 or 1; [`ABSENT`] until the store is polled (push mode never has one).
    store_up: AtomicU64,
    build_info: String,
}

impl ControlSection {
    pub(super) fn new(providers: &[&str]) -> Self {
        let cache = Arc::new(Cached::new());
        let mut names: Vec<&str> = providers.to_vec();
        names.sort_unstable();
        names.dedup();
        ControlSection {
            providers: names
                .into_iter()
                .map(|name| ProviderSeries::new(name, cache.clone()))
                .collect(),
            cache,
            coordinators: Mutex::new(BTreeMap::new()),
            queue_depth: AtomicU64::new(0),
            rejected: REJECT_REASONS.iter().map(|_| AtomicU64::new(0)).collect(),
            event_to_scale: Histogram::new(
                family::EVENT_TO_SCALE.name,
                &[],
                EVENT_TO_SCALE_BUCKETS,
            ),
            transitions: [0; 3].map(AtomicU64::new),
            flaps_suppressed: AtomicU64::new(0),
            live: AtomicI64::new(0),
            stale: AtomicI64::new(0),
            polls_ok: AtomicU64::new(0),
            polls_error: AtomicU64::new(0),
            store_up: AtomicU64::new(ABSENT),
            build_info: text::series_key(
                family::BUILD_INFO.name,
                &[
                    ("commit", env!("MDP_GIT_COMMIT")),
                    ("rustc", env!("MDP_RUSTC_VERSION")),
                    ("version", env!("CARGO_PKG_VERSION")),
                ],
            ),
        }
    }

    /// Marks the section changed (every write below calls it).
    pub(super) fn touch(&self) {
        self.cache.bump();
    }

    pub(super) fn provider(&self, name: &str) -> Option<&ProviderSeries> {
        self.providers
            .binary_search_by(|p| p.name().cmp(name))
            .ok()
            .map(|i| &self.providers[i])
    }

    pub(super) fn set_queue_depth(&self, depth: Option<u64>) {
        // u64::MAX itself reads as absent: no queue is that deep.
        self.queue_depth.set(depth.unwrap_or(ABSENT));
        self.touch();
    }

    pub(super) fn reject(&self, reason: &str) {
        // An unknown reason is a programming error; it is still counted, as
        // the last reason, rather than lost.
        let index = REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REJECT_REASONS.len() - 1);
        debug_assert!(REJECT_REASONS.contains(&reason), "unknown reason {reason}");
        self.rejected[index].inc_by(1);
        self.touch();
    }

    #[cfg(test)]
    pub(super) fn rejected(&self, reason: &str) -> u64 {
        let index = REJECT_REASONS.iter().position(|r| *r == reason);
        index.map_or(0, |i| self.rejected[i].get())
    }

    pub(super) fn observe_event_to_scale(&self, seconds: f64) {
        self.event_to_scale.observe(seconds);
        self.touch();
    }

    pub(super) fn count_transition(&self, to: Level) {
        self.transitions[level_index(to)].inc_by(1);
        self.touch();
    }

    pub(super) fn set_flaps_suppressed(&self, total: u64) {
        // A counter: never backwards.
        let now = self.flaps_suppressed.get();
        if total > now {
            self.flaps_suppressed.set(total);
            self.touch();
        }
    }

    pub(super) fn set_coordinator_counts(&self, live: usize, stale: usize) {
        let clamp = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.live.set(clamp(live));
        self.stale.set(clamp(stale));
        self.touch();
    }

    pub(super) fn count_poll(&self, ok: bool) {
        if ok {
            &self.polls_ok
        } else {
            &self.polls_error
        }
        .inc_by(1);
        self.touch();
    }

    pub(super) fn set_store_up(&self, up: bool) {
        self.store_up.set(u64::from(up));
        self.touch();
    }

    pub(super) fn set_coordinator(&self, id: &str, sample: CoordinatorSample) {
        let mut rows = lock(&self.coordinators);
        match rows.get_mut(id) {
            Some(row) => row.sample = sample,
            None => {
                let labels = text::series_key("", &[("coordinator", id)]);
                rows.insert(id.to_owned(), CoordinatorRow { labels, sample });
            }
        }
        drop(rows);
        self.touch();
    }

    pub(super) fn set_coordinator_stale(&self, id: &str, stale: bool) {
        if let Some(row) = lock(&self.coordinators).get_mut(id) {
            row.sample.stale = stale;
        }
        self.touch();
    }

    pub(super) fn remove_coordinator(&self, id: &str) {
        lock(&self.coordinators).remove(id);
        self.touch();
    }

    pub(super) fn coordinator(&self, id: &str) -> Option<CoordinatorSample> {
        lock(&self.coordinators).get(id).map(|row| row.sample)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let providers = &*self.providers;
        if !providers.is_empty() {
            let gauges: [Column<ProviderCells>; 2] = [
                (&family::SCALE_FACTOR, |p, out| {
                    sample_f64(out, &p.keys.scale, p.scale.get())
                }),
                (&family::BACKPRESSURE_STATE, |p, out| {
                    sample_i64(out, &p.keys.state, p.state.get())
                }),
            ];
            for (family, write) in gauges {
                header(out, family);
                for p in providers {
                    write(&p.cells, out);
                }
            }
        }
        let depth = self.queue_depth.get();
        if depth != ABSENT {
            header(out, &family::QUEUE_DEPTH);
            let key = text::series_key(family::QUEUE_DEPTH.name, &[("source", QUEUE_DEPTH_SOURCE)]);
            sample_u64(out, &key, depth);
        }
        if !providers.is_empty() {
            header(out, &family::EVENTS_PROCESSED);
            for p in providers {
                for level in LEVELS_BY_NAME {
                    let index = level_index(level);
                    sample_u64(
                        out,
                        &p.cells.keys.events[index],
                        p.cells.events[index].get(),
                    );
                }
            }
            header(out, &family::EFFECTIVE_RATE);
            for p in providers {
                sample_f64(
                    out,
                    &p.cells.keys.effective_rate,
                    p.cells.effective_rate.get(),
                );
            }
        }
        let by = |f: &Family, label: &str, value: &str| text::series_key(f.name, &[(label, value)]);
        header(out, &family::EVENTS_REJECTED);
        let mut reasons: Vec<(&str, u64)> = REJECT_REASONS
            .iter()
            .zip(self.rejected.iter())
            .map(|(reason, count)| (*reason, count.get()))
            .collect();
        reasons.sort_unstable();
        for (reason, count) in reasons {
            sample_u64(out, &by(&family::EVENTS_REJECTED, "reason", reason), count);
        }
        header(out, &family::EVENT_TO_SCALE);
        self.event_to_scale.encode(out);
        header(out, &family::TRANSITIONS);
        for level in LEVELS_BY_NAME {
            let count = self.transitions[level_index(level)].get();
            sample_u64(
                out,
                &by(&family::TRANSITIONS, "level", level.as_str()),
                count,
            );
        }
        header(out, &family::FLAPS_SUPPRESSED);
        sample_u64(
            out,
            family::FLAPS_SUPPRESSED.name,
            self.flaps_suppressed.get(),
        );
        header(out, &family::COORDINATORS);
        sample_i64(
            out,
            &by(&family::COORDINATORS, "state", "live"),
            self.live.get(),
        );
        sample_i64(
            out,
            &by(&family::COORDINATORS, "state", "stale"),
            self.stale.get(),
        );
        header(out, &family::POLLS);
        sample_u64(
            out,
            &by(&family::POLLS, "result", "error"),
            self.polls_error.get(),
        );
        sample_u64(
            out,
            &by(&family::POLLS, "result", "ok"),
            self.polls_ok.get(),
        );
        let up = self.store_up.get();
        if up != ABSENT {
            header(out, &family::STORE_UP);
            sample_u64(out, family::STORE_UP.name, up);
        }
        self.encode_coordinators(out);
        header(out, &family::BUILD_INFO);
        sample_u64(out, &self.build_info, 1);
    }

    fn encode_coordinators(&self, out: &mut Vec<u8>) {
        let rows = lock(&self.coordinators);
        if rows.is_empty() {
            return;
        }
        let clamp = |n: u64| n.min(i64::MAX as u64);
        let columns: [(&Family, CoordinatorValue); 5] = [
            (&family::COORDINATOR_DEPTH, |s| Value::Count(s.queue_size)),
            (&family::COORDINATOR_CAPACITY, |s| Value::Count(s.capacity)),
            (&family::COORDINATOR_LEVEL, |s| {
                Value::Count(level_index(s.level) as u64)
            }),
            (&family::COORDINATOR_STALE, |s| {
                Value::Count(u64::from(s.stale))
            }),
            (&family::COORDINATOR_LAST_EVENT, |s| {
                Value::Float(s.last_event_ts)
            }),
        ];
        let mut key = String::new();
        for (family, value) in columns {
            header(out, family);
            for row in rows.values() {
                key.clear();
                key.push_str(family.name);
                key.push_str(&row.labels);
                match value(&row.sample) {
                    Value::Count(n) => sample_u64(out, &key, clamp(n)),
                    Value::Float(x) => sample_f64(out, &key, x),
                }
            }
        }
    }
}

/// A family and how to write a row's sample of it.
type Column<T> = (&'static Family, fn(&T, &mut Vec<u8>));

/// How to read a coordinator's sample of a family.
type CoordinatorValue = fn(&CoordinatorSample) -> Value;

enum Value {
    Count(u64),
    Float(f64),
}

impl Section for ControlSection {
    fn families(&self) -> &'static [Family] {
        family::CONTROL
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        self.cache.append_to(out, |text| self.encode(text));
    }
}
