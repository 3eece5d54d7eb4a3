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
            // Histograms (the HTTP latency) are rare here: the crate's encoder writes them.
            _ => {
                use prometheus::Encoder;
                let encoded =
                    prometheus::TextEncoder::new().encode(std::slice::from_ref(family), out);
                debug_assert!(encoded.is_ok(), "a gathered family encodes");
                continue;
            }
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
                _ => metric.get_gauge().value(),
            };
            header.sample(out, &labels, value);
        }
    }
}
