//! Prometheus text format 0.0.4, written the way the prometheus crate's
//! `TextEncoder` writes it (same escaping, same number formatting), for the
//! families encoded without it.

use prometheus::proto::MetricFamily;
use std::io::Write;

/// A family's name, help and type.
pub(super) struct Family<'a> {
    pub(super) name: &'a str,
    help: &'a str,
    kind: &'a str,
}

impl Family<'static> {
    pub(super) const fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: "gauge",
        }
    }

    pub(super) const fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: "counter",
        }
    }
}

impl Family<'_> {
    /// `# HELP` and `# TYPE` lines (help texts are constants without `\` or newlines).
    pub(super) fn header(&self, out: &mut Vec<u8>) {
        for part in [
            "# HELP ",
            self.name,
            " ",
            self.help,
            "\n# TYPE ",
            self.name,
            " ",
            self.kind,
            "\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
    }

    /// One sample; `labels` is `{...}` already escaped, or empty.
    pub(super) fn sample(&self, out: &mut Vec<u8>, labels: &str, value: f64) {
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(labels.as_bytes());
        push_value(out, value);
    }
}

/// ` <value>\n`, formatted as the prometheus crate formats it (`f64` display).
pub(super) fn push_value(out: &mut Vec<u8>, value: f64) {
    writeln!(out, " {value}").expect("writing into a Vec cannot fail");
}

/// `name="value"` with the value escaped (`\`, newline, `"`).
pub(super) fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Encodes collected counter and gauge families, each family's series in
/// label order. Sorting references is what makes this cheaper than
/// `Registry::gather`, which sorts the series themselves.
pub(super) fn encode_collected(families: &[MetricFamily], out: &mut Vec<u8>) {
    use prometheus::proto::MetricType;
    // Like `Registry::gather`, a family without series is left out.
    for family in families.iter().filter(|f| !f.get_metric().is_empty()) {
        let kind = match family.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            other => unreachable!("counters, gauges and histograms only, got {other:?}"),
        };
        let header = Family {
            name: family.name(),
            help: family.help(),
            kind,
        };
        header.header(out);
        let mut metrics: Vec<_> = family.get_metric().iter().collect();
        metrics.sort_unstable_by(|a, b| {
            let (a, b) = (a.get_label(), b.get_label());
            a.iter().map(|l| l.value()).cmp(b.iter().map(|l| l.value()))
        });
        let mut labels = String::new();
        for metric in metrics {
            labels.clear();
            for (i, pair) in metric.get_label().iter().enumerate() {
                labels.push(if i == 0 { '{' } else { ',' });
                push_label(&mut labels, pair.name(), pair.value());
            }
            if !labels.is_empty() {
                labels.push('}');
            }
            let value = match kind {
                "counter" => metric.get_counter().value(),
                "histogram" => {
                    histogram(out, family.name(), &labels, metric.get_histogram());
                    continue;
                }
                _ => metric.get_gauge().value(),
            };
            header.sample(out, &labels, value);
        }
    }
}

/// A histogram's `_bucket` (cumulative, `le` last among the labels, `+Inf`
/// last), `_sum` and `_count` lines, as `TextEncoder` writes them.
fn histogram(out: &mut Vec<u8>, name: &str, labels: &str, h: &prometheus::proto::Histogram) {
    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
    let with_le = |le: &str| match inner {
        Some(inner) => format!("{{{inner},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    };
    let bucket = format!("{name}_bucket");
    for b in h.get_bucket() {
        out.extend_from_slice(bucket.as_bytes());
        out.extend_from_slice(with_le(&b.upper_bound().to_string()).as_bytes());
        push_value(out, b.cumulative_count() as f64);
    }
    out.extend_from_slice(bucket.as_bytes());
    out.extend_from_slice(with_le("+Inf").as_bytes());
    push_value(out, h.get_sample_count() as f64);
    for (suffix, value) in [
        ("_sum", h.get_sample_sum()),
        ("_count", h.get_sample_count() as f64),
    ] {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        out.extend_from_slice(labels.as_bytes());
        push_value(out, value);
    }
}

#[cfg(test)]
mod histogram_tests {
    use prometheus::core::Collector;
    use prometheus::{Encoder, HistogramOpts, HistogramVec, TextEncoder};

    #[test]
    fn histograms_are_written_as_the_text_encoder_writes_them() {
        let h = HistogramVec::new(
            HistogramOpts::new("x_seconds", "Help.").buckets(vec![0.0005, 0.01, 1.0]),
            &["route"],
        )
        .expect("valid");
        h.with_label_values(&["a"]).observe(0.002);
        h.with_label_values(&["b"]).observe(5.0);
        let families = h.collect();
        let mut ours = Vec::new();
        super::encode_collected(&families, &mut ours);
        let mut theirs = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut theirs)
            .expect("encodes");
        let sorted = |b: Vec<u8>| {
            let mut lines: Vec<String> = String::from_utf8(b)
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(sorted(ours), sorted(theirs));
    }
}
