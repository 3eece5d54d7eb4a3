//! The value cells of the series: the prometheus crate's atomics, each with
//! the text of its series (`name{labels}`) built once, so a scrape only loads
//! values and writes bytes.

use super::text;
use prometheus::core::{Atomic, AtomicF64, AtomicU64};
use std::fmt;
use std::sync::Arc;

/// A count that only grows, shared by its clones: what the rate coordinator
/// counts grants and refusals in, and what `/metrics` and the state API read.
#[derive(Clone)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A count of its own, shown nowhere until it replaces a series' counter.
    pub fn standalone() -> Self {
        Counter(Arc::new(AtomicU64::new(0)))
    }

    pub fn inc(&self) {
        self.0.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counter({})", self.get())
    }
}

/// A histogram: a count per bucket (not cumulative; the last one counts what
/// is above every bound), the sum, and the series text of each line.
pub(super) struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum: AtomicF64,
    /// `name_bucket{...,le="bound"}` for each bound, then `le="+Inf"`.
    bucket_keys: Box<[String]>,
    sum_key: String,
    count_key: String,
}

impl Histogram {
    /// `labels` are the series' own labels (`le` comes last, after them).
    pub(super) fn new(name: &str, labels: &[(&str, &str)], bounds: &'static [f64]) -> Self {
        let bucket = format!("{name}_bucket");
        let bucket_keys = bounds
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_owned()))
            .map(|le| {
                let mut all = labels.to_vec();
                all.push(("le", &le));
                text::series_key(&bucket, &all)
            })
            .collect();
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::new(0.0),
            bucket_keys,
            sum_key: text::series_key(&format!("{name}_sum"), labels),
            count_key: text::series_key(&format!("{name}_count"), labels),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    pub(super) fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[index].inc_by(1);
        self.sum.inc_by(value);
    }

    /// The `_bucket` lines (cumulative, `+Inf` last), `_sum` and `_count`;
    /// `+Inf` and `_count` are the same total, read once.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let mut cumulative = 0;
        for (key, count) in self.bucket_keys.iter().zip(self.counts.iter()) {
            cumulative += count.get();
            text::sample_u64(out, key, cumulative);
        }
        text::sample_f64(out, &self.sum_key, self.sum.get());
        text::sample_u64(out, &self.count_key, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;
    use prometheus::{Encoder, HistogramOpts, TextEncoder};

    #[test]
    fn histograms_are_written_as_the_text_encoder_writes_them() {
        const BOUNDS: &[f64] = &[0.0005, 0.01, 1.0];
        let theirs = prometheus::Histogram::with_opts(
            HistogramOpts::new("x_seconds", "Help.")
                .const_label("route", "a")
                .buckets(BOUNDS.to_vec()),
        )
        .expect("valid");
        let ours = super::Histogram::new("x_seconds", &[("route", "a")], BOUNDS);
        for v in [0.0001, 0.0005, 0.002, 0.5, 1.0, 5.0, 7.25] {
            theirs.observe(v);
            ours.observe(v);
        }
        let mut expected = Vec::new();
        TextEncoder::new()
            .encode(&theirs.collect(), &mut expected)
            .expect("encodes");
        let expected = String::from_utf8(expected).expect("utf-8");
        let expected: String = expected
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut written = Vec::new();
        ours.encode(&mut written);
        assert_eq!(String::from_utf8(written).expect("utf-8"), expected);
    }
}
