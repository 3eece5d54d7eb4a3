//! The Prometheus text exposition format (version 0.0.4), one line at a time:
//! what pull mode reads from a store's `/metrics`, without a regex engine.
//!
//! A line is a sample (`name{label="value",...} value [timestamp]`), a `# TYPE`
//! comment, or something to skip (blank, `# HELP`, any other comment).

use std::borrow::Cow;

/// One line of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Sample(Sample<'a>),
    /// `# TYPE name kind`.
    Type {
        name: &'a str,
        kind: &'a str,
    },
    /// Blank, `# HELP`, or any other comment.
    Skip,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// Label names with their unescaped values, in the order written.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// `NaN`, `+Inf` and `-Inf` included.
    pub value: f64,
    /// Milliseconds since the epoch, when given.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// Why a line is not a valid sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(&'static str);

/// Parses one line (without its line break).
pub fn parse_line(line: &str) -> Result<Line<'_>, LineError> {
    let line = line.trim_matches(is_blank);
    if line.is_empty() {
        return Ok(Line::Skip);
    }
    if let Some(comment) = line.strip_prefix('#') {
        return Ok(parse_comment(comment));
    }
    let mut cursor = Cursor { rest: line };
    let name = cursor.metric_name()?;
    let blank_after_name = cursor.skip_blanks();
    let (labels, blank_before_value) = if cursor.eat('{') {
        let labels = cursor.labels()?;
        (labels, cursor.skip_blanks())
    } else {
        (Vec::new(), blank_after_name)
    };
    if cursor.rest.is_empty() {
        return Err(LineError("expected a value"));
    }
    if !blank_before_value {
        return Err(LineError("expected a blank before the value"));
    }
    let value = parse_value(cursor.token())?;
    cursor.skip_blanks();
    let timestamp_ms = match cursor.token() {
        "" => None,
        text => Some(
            text.parse()
                .map_err(|_| LineError("timestamp is not an integer"))?,
        ),
    };
    cursor.skip_blanks();
    if !cursor.rest.is_empty() {
        return Err(LineError("unexpected text after the timestamp"));
    }
    Ok(Line::Sample(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    }))
}

fn parse_comment(comment: &str) -> Line<'_> {
    let mut words = comment.split(is_blank).filter(|word| !word.is_empty());
    match (words.next(), words.next(), words.next()) {
        (Some("TYPE"), Some(name), Some(kind)) => Line::Type { name, kind },
        _ => Line::Skip,
    }
}

/// A float as Go's `strconv.ParseFloat` writes it: `NaN`, `+Inf`, `-Inf`, or digits.
fn parse_value(text: &str) -> Result<f64, LineError> {
    if text.is_empty() {
        return Err(LineError("expected a value"));
    }
    text.parse().map_err(|_| LineError("value is not a number"))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Skips spaces and tabs; whether there were any.
    fn skip_blanks(&mut self) -> bool {
        let before = self.rest.len();
        self.rest = self.rest.trim_start_matches(is_blank);
        self.rest.len() < before
    }

    /// Everything up to the next blank.
    fn token(&mut self) -> &'a str {
        let end = self.rest.find(is_blank).unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        token
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn metric_name(&mut self) -> Result<&'a str, LineError> {
        self.identifier(|b| b == b':')
            .ok_or(LineError("expected a metric name"))
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    fn label_name(&mut self) -> Result<&'a str, LineError> {
        self.identifier(|_| false)
            .ok_or(LineError("expected a label name"))
    }

    fn identifier(&mut self, also: impl Fn(u8) -> bool) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        let first = *bytes.first()?;
        if !(first.is_ascii_alphabetic() || first == b'_' || also(first)) {
            return None;
        }
        let len = bytes
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || also(b)))
            .unwrap_or(bytes.len());
        let (name, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(name)
    }

    /// The label set after its `{`, through its `}`; a trailing comma is allowed.
    fn labels(&mut self) -> Result<Vec<(&'a str, Cow<'a, str>)>, LineError> {
        let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::new();
        loop {
            self.skip_blanks();
            if self.eat('}') {
                return Ok(labels);
            }
            let name = self.label_name()?;
            if labels.iter().any(|(seen, _)| *seen == name) {
                return Err(LineError("duplicate label name"));
            }
            self.skip_blanks();
            if !self.eat('=') {
                return Err(LineError("expected '=' after a label name"));
            }
            self.skip_blanks();
            let value = self.label_value()?;
            labels.push((name, value));
            self.skip_blanks();
            if self.eat('}') {
                return Ok(labels);
            }
            if !self.eat(',') {
                return Err(LineError("expected ',' or '}' after a label value"));
            }
        }
    }

    /// A double-quoted label value; `\\`, `\"` and `\n` are its escapes.
    fn label_value(&mut self) -> Result<Cow<'a, str>, LineError> {
        if !self.eat('"') {
            return Err(LineError("expected '\"' to open a label value"));
        }
        let end = self
            .rest
            .find(['"', '\\'])
            .ok_or(LineError("unterminated label value"))?;
        let (plain, after) = self.rest.split_at(end);
        if let Some(rest) = after.strip_prefix('"') {
            self.rest = rest;
            return Ok(Cow::Borrowed(plain));
        }
        let mut value = plain.to_owned();
        let mut chars = after.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &after[at + 1..];
                    return Ok(Cow::Owned(value));
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some(_) => return Err(LineError("unknown escape in a label value")),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(LineError("unterminated label value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> Sample<'_> {
        match parse_line(line) {
            Ok(Line::Sample(sample)) => sample,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn error(line: &str) -> LineError {
        match parse_line(line) {
            Err(error) => error,
            Ok(other) => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn a_bare_sample() {
        let s = sample("up 1");
        assert_eq!((s.name, s.value, s.timestamp_ms), ("up", 1.0, None));
        assert!(s.labels.is_empty());
    }

    #[test]
    fn labels_values_and_timestamps() {
        let s =
            sample("mds_coord_queue_depth{coord_id=\"store_01\",zone=\"a\"} 6000 1712345678901");
        assert_eq!(s.name, "mds_coord_queue_depth");
        assert_eq!(s.label("coord_id"), Some("store_01"));
        assert_eq!(s.label("zone"), Some("a"));
        assert_eq!(s.label("absent"), None);
        assert_eq!(s.value, 6000.0);
        assert_eq!(s.timestamp_ms, Some(1_712_345_678_901));
        let s = sample("ns:metric_total{ a = \"x\" , } -1.5e3 -5");
        assert_eq!(
            (s.name, s.label("a"), s.value),
            ("ns:metric_total", Some("x"), -1500.0)
        );
        assert_eq!(s.timestamp_ms, Some(-5));
        assert_eq!(sample("m{} 2").value, 2.0);
        assert_eq!(sample("\t m \t 3 \t").value, 3.0);
    }

    #[test]
    fn special_values() {
        assert!(sample("m NaN").value.is_nan());
        assert_eq!(sample("m +Inf").value, f64::INFINITY);
        assert_eq!(sample("m -Inf").value, f64::NEG_INFINITY);
        assert_eq!(sample("m 1e400").value, f64::INFINITY);
    }

    #[test]
    fn escaped_label_values() {
        let s = sample(r#"m{path="C:\\dir",quote="say \"hi\"",nl="a\nb",brace="}{,="} 1"#);
        assert_eq!(s.label("path"), Some(r"C:\dir"));
        assert_eq!(s.label("quote"), Some(r#"say "hi""#));
        assert_eq!(s.label("nl"), Some("a\nb"));
        assert_eq!(s.label("brace"), Some("}{,="));
        assert_eq!(
            sample("m{a=\"\u{e9}\\\\\u{1f600}\"} 1").label("a"),
            Some("\u{e9}\\\u{1f600}")
        );
    }

    #[test]
    fn comments_and_types() {
        assert_eq!(parse_line(""), Ok(Line::Skip));
        assert_eq!(parse_line("   "), Ok(Line::Skip));
        assert_eq!(
            parse_line("# HELP m Some help {with} \"quotes\""),
            Ok(Line::Skip)
        );
        assert_eq!(parse_line("# just a comment"), Ok(Line::Skip));
        assert_eq!(parse_line("#TYPE"), Ok(Line::Skip));
        assert_eq!(
            parse_line("# TYPE m gauge"),
            Ok(Line::Type {
                name: "m",
                kind: "gauge"
            })
        );
        assert_eq!(
            parse_line("#\tTYPE  m_total   counter "),
            Ok(Line::Type {
                name: "m_total",
                kind: "counter"
            })
        );
    }

    #[test]
    fn malformed_lines_say_why() {
        assert_eq!(
            error("<html>oops</html>"),
            LineError("expected a metric name")
        );
        assert_eq!(error("9m 1"), LineError("expected a metric name"));
        assert_eq!(error("m"), LineError("expected a value"));
        assert_eq!(error("m{a=\"x\"}"), LineError("expected a value"));
        assert_eq!(
            error("m{a=\"x\"}1"),
            LineError("expected a blank before the value")
        );
        assert_eq!(error("m one"), LineError("value is not a number"));
        assert_eq!(error("m 1 2.5"), LineError("timestamp is not an integer"));
        assert_eq!(
            error("m 1 2 3"),
            LineError("unexpected text after the timestamp")
        );
        assert_eq!(
            error("m{a=\"x\" 1"),
            LineError("expected ',' or '}' after a label value")
        );
        assert_eq!(
            error("m{a=x} 1"),
            LineError("expected '\"' to open a label value")
        );
        assert_eq!(
            error("m{a} 1"),
            LineError("expected '=' after a label name")
        );
        assert_eq!(error("m{,} 1"), LineError("expected a label name"));
        assert_eq!(error("m{9=\"x\"} 1"), LineError("expected a label name"));
        assert_eq!(
            error("m{a=\"x\",a=\"y\"} 1"),
            LineError("duplicate label name")
        );
        assert_eq!(error("m{a=\"x} 1"), LineError("unterminated label value"));
        assert_eq!(
            error("m{a=\"x\\\"} 1"),
            LineError("unterminated label value")
        );
        assert_eq!(error("m{a=\"x\\"), LineError("unterminated label value"));
        assert_eq!(
            error("m{a=\"\\t\"} 1"),
            LineError("unknown escape in a label value")
        );
        assert_eq!(
            error("m{a=\"x\"} 1 99999999999999999999"),
            LineError("timestamp is not an integer")
        );
    }

    #[test]
    fn hostile_input_is_refused_not_panicked_on() {
        let long = format!("m{{a=\"{}\"}} 1", "x".repeat(100_000));
        assert_eq!(sample(&long).label("a").map(str::len), Some(100_000));
        let many = format!(
            "m{{{}}} 1",
            (0..2000)
                .map(|i| format!("l{i}=\"v\","))
                .collect::<String>()
        );
        assert_eq!(sample(&many).labels.len(), 2000);
        for line in [
            "m{",
            "m{\"",
            "m{a=",
            "m{a=\"",
            "m{a=\"\\",
            "{a=\"b\"} 1",
            "m\u{0} 1",
            "m{a=\"b\"}\u{1f600} 1",
            "\u{1f600} 1",
            "m 0x10",
            "m 1_000",
        ] {
            assert!(parse_line(line).is_err(), "{line:?}");
        }
    }
}
