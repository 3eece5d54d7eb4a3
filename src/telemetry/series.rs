//! The families that grow with the configuration: one series per provider
//! (fixed at start) and one per coordinator (as they report). They are held
//! as plain values with their label text built once, and encoded straight
//! into the exposition: going through the prometheus crate's `gather` clones
//! every label and sorts the family on each scrape, which cost 1 µs a series
//! (14 ms at 1000 providers and 1000 coordinators).

use super::text::{Family, push_label, push_value};
use crate::level::Level;
use prometheus::{Gauge, IntCounter};
use std::collections::BTreeMap;

/// A provider's series; the control loop holds clones of the handles.
#[derive(Clone)]
pub struct ProviderSeries {
    pub name: String,
    /// `{provider="..."}`, escaped.
    label: String,
    /// `pipeline_rate_scale_factor`
    pub scale: Gauge,
    /// `pipeline_backpressure_state`
    pub state: Gauge,
    /// `feedback_events_processed_total`, indexed by [`Level::as_gauge`].
    pub events: [IntCounter; 3],
    /// `mdp_rate_effective_tokens_per_second`
    pub effective_rate: Gauge,
}

fn value_handle<T>(make: impl FnOnce() -> prometheus::Result<T>) -> T {
    make().expect("an unregistered value with a constant valid name")
}

impl ProviderSeries {
    pub(super) fn new(name: &str) -> Self {
        let gauge = || value_handle(|| Gauge::new("value", "value"));
        let counter = || value_handle(|| IntCounter::new("value", "value"));
        let mut label = String::with_capacity(name.len() + 12);
        label.push('{');
        push_label(&mut label, "provider", name);
        label.push('}');
        let series = ProviderSeries {
            name: name.to_owned(),
            label,
            scale: gauge(),
            state: gauge(),
            events: [counter(), counter(), counter()],
            effective_rate: gauge(),
        };
        series.scale.set(1.0);
        series
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

pub(super) struct CoordinatorRow {
    /// `{coordinator="..."}`, escaped.
    label: String,
    pub(super) sample: CoordinatorSample,
}

impl CoordinatorRow {
    pub(super) fn new(id: &str, sample: CoordinatorSample) -> Self {
        let mut label = String::with_capacity(id.len() + 16);
        label.push('{');
        push_label(&mut label, "coordinator", id);
        label.push('}');
        CoordinatorRow { label, sample }
    }
}

pub(super) const SCALE: Family<'static> = Family::gauge(
    "pipeline_rate_scale_factor",
    "Current rate scale factor applied to provider (0.0..1.0).",
);
pub(super) const STATE: Family<'static> = Family::gauge(
    "pipeline_backpressure_state",
    "Backpressure state: 0=ok, 1=soft, 2=hard.",
);
pub(super) const EVENTS: Family<'static> = Family::counter(
    "feedback_events_processed_total",
    "Feedback events applied, by provider they scale and level.",
);
pub(super) const EFFECTIVE_RATE: Family<'static> = Family::gauge(
    "mdp_rate_effective_tokens_per_second",
    "Rate this replica grants per provider after scale and replica share.",
);
pub(super) const DEPTH: Family<'static> = Family::gauge(
    "mdp_coordinator_queue_depth",
    "Last reported queue depth per store coordinator.",
);
pub(super) const CAPACITY: Family<'static> = Family::gauge(
    "mdp_coordinator_queue_capacity",
    "Queue capacity per store coordinator.",
);
pub(super) const LEVEL: Family<'static> = Family::gauge(
    "mdp_coordinator_level",
    "Level per store coordinator: 0=ok, 1=soft, 2=hard.",
);
pub(super) const STALE: Family<'static> = Family::gauge(
    "mdp_coordinator_stale",
    "1 when a coordinator's feedback is stale (TTL passed or polls failing).",
);
pub(super) const LAST_EVENT: Family<'static> = Family::gauge(
    "mdp_coordinator_last_event_timestamp_seconds",
    "Unix time of the last event applied per coordinator.",
);

/// A family and how to read its value from a row.
type Column<T> = (&'static Family<'static>, fn(&T) -> f64);

/// Encodes the per-provider families; `providers` is sorted by name.
pub(super) fn encode_providers(providers: &[ProviderSeries], out: &mut Vec<u8>) {
    if providers.is_empty() {
        return;
    }
    EVENTS.header(out);
    for p in providers {
        // Labels in name order, as the prometheus crate writes them.
        for level in [Level::Hard, Level::Ok, Level::Soft] {
            let index = usize::try_from(level.as_gauge()).expect("levels are 0, 1, 2");
            out.extend_from_slice(EVENTS.name.as_bytes());
            out.extend_from_slice(b"{level=\"");
            out.extend_from_slice(level.as_str().as_bytes());
            out.extend_from_slice(b"\",");
            out.extend_from_slice(&p.label.as_bytes()[1..]);
            push_value(out, p.events[index].get() as f64);
        }
    }
    let gauges: [Column<ProviderSeries>; 3] = [
        (&EFFECTIVE_RATE, |p| p.effective_rate.get()),
        (&STATE, |p| p.state.get()),
        (&SCALE, |p| p.scale.get()),
    ];
    for (family, value) in gauges {
        family.header(out);
        for p in providers {
            family.sample(out, &p.label, value(p));
        }
    }
}

/// Encodes the per-coordinator families (nothing when there is none yet).
pub(super) fn encode_coordinators(rows: &BTreeMap<String, CoordinatorRow>, out: &mut Vec<u8>) {
    if rows.is_empty() {
        return;
    }
    let families: [Column<CoordinatorSample>; 5] = [
        (&LAST_EVENT, |s| s.last_event_ts),
        (&LEVEL, |s| s.level.as_gauge() as f64),
        (&CAPACITY, |s| clamp_i64(s.capacity) as f64),
        (&DEPTH, |s| clamp_i64(s.queue_size) as f64),
        (&STALE, |s| f64::from(u8::from(s.stale))),
    ];
    for (family, value) in families {
        family.header(out);
        for row in rows.values() {
            family.sample(out, &row.label, value(&row.sample));
        }
    }
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
