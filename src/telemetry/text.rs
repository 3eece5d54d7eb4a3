//! Prometheus text format 0.0.4, written the way the prometheus crate's
//! `TextEncoder` writes it (same escaping, same number formatting): series
//! text (`name{labels}`) is built once per series, a scrape writes values.

use super::catalogue::Family;
use std::io::Write;

/// `# HELP` and `# TYPE` lines (help texts are constants without `\` or
/// newlines, see the catalogue test).
pub(super) fn header(out: &mut Vec<u8>, family: &Family) {
    for part in [
        "# HELP ",
        family.name,
        " ",
        family.help,
        "\n# TYPE ",
        family.name,
        " ",
        family.kind.as_str(),
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// `name{label="value",...}` with the values escaped; `name` alone without labels.
pub(super) fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut key = String::with_capacity(name.len() + 24 * labels.len());
    key.push_str(name);
    for (i, (label, value)) in labels.iter().enumerate() {
        key.push(if i == 0 { '{' } else { ',' });
        push_label(&mut key, label, value);
    }
    if !labels.is_empty() {
        key.push('}');
    }
    key
}

/// `key value\n` for a float, formatted as the prometheus crate formats it (`f64` display).
pub(super) fn sample_f64(out: &mut Vec<u8>, key: &str, value: f64) {
    out.extend_from_slice(key.as_bytes());
    writeln!(out, " {value}").expect("writing into a Vec cannot fail");
}

/// `key value\n` for a count; the same digits as the `f64` display of the
/// count (below 2^53), without formatting a float.
pub(super) fn sample_u64(out: &mut Vec<u8>, key: &str, value: u64) {
    out.extend_from_slice(key.as_bytes());
    out.push(b' ');
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.push(b'\n');
}

/// [`sample_u64`] for a gauge that may go below zero.
pub(super) fn sample_i64(out: &mut Vec<u8>, key: &str, value: i64) {
    match u64::try_from(value) {
        Ok(value) => sample_u64(out, key, value),
        Err(_) => sample_f64(out, key, value as f64),
    }
}

/// `name="value"` with the value escaped (`\`, newline, `"`).
fn push_label(out: &mut String, name: &str, value: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_written_as_their_float_display() {
        for n in [0u64, 1, 9, 10, 99, 100, 12_345, 1 << 40, (1 << 53) - 1] {
            let mut ours = Vec::new();
            sample_u64(&mut ours, "x", n);
            let mut float = Vec::new();
            sample_f64(&mut float, "x", n as f64);
            assert_eq!(ours, float, "{n}");
        }
        let mut negative = Vec::new();
        sample_i64(&mut negative, "x", -3);
        assert_eq!(negative, b"x -3\n");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            series_key("m", &[("a", "x\"y\\z\nw"), ("b", "")]),
            r#"m{a="x\"y\\z\nw",b=""}"#
        );
        assert_eq!(series_key("m", &[]), "m");
    }
}
