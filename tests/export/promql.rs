//! Just enough PromQL for the export tests: a tokenizer, the metric names an
//! expression reads, the old dashboards' mistakes, and a scrape's names and types.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, PartialEq)]
pub enum Token {
    Ident(String),
    Punct(char),
    Other,
}

/// A PromQL tokenizer good enough to find metric and function names. With `strings`
/// false, quotes are punctuation: whole YAML or JSON files can be scanned for calls.
pub fn tokens(text: &str, strings: bool) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if strings && (c == '"' || c == '\'' || c == '`') {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push(Token::Other);
        } else if c.is_ascii_digit() || c == '$' {
            while i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '.' | '_'))
            {
                i += 1;
            }
            out.push(Token::Other);
        } else if !c.is_whitespace() {
            out.push(Token::Punct(c));
        }
        i += 1;
    }
    out
}

/// The metric names an expression reads.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset", "inf", "nan"];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let tokens = tokens(expr, true);
    let mut names = BTreeSet::new();
    let (mut i, mut braces) = (0, 0i32);
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') | Token::Punct('[') => braces += 1,
            Token::Punct('}') | Token::Punct(']') => braces -= 1,
            Token::Ident(word) if braces == 0 => {
                // `f(...)` is a call, and `sum by (x) (...)` an aggregation.
                let called = match tokens.get(i + 1) {
                    Some(Token::Punct('(')) => true,
                    Some(Token::Ident(next)) => matches!(next.as_str(), "by" | "without"),
                    _ => false,
                };
                if GROUPING.contains(&word.as_str()) && called {
                    while i < tokens.len() && tokens[i] != Token::Punct(')') {
                        i += 1;
                    }
                } else if !called && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word.clone());
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Sample names of an exposition, and the declared type of each family.
pub fn scrape_names(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut samples = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_owned(), kind.to_owned());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    (samples, types)
}

/// The old dashboards' mistakes in `text`: `rate()`-like calls over anything but a
/// counter (`types` from a scrape), and a `phase` label on `kube_pod_info`.
/// Returns the mistakes and how many `rate()`-like calls were checked.
pub fn old_mistakes(text: &str, types: &BTreeMap<String, String>) -> (Vec<String>, usize) {
    let kind = |name: &str| -> Option<&String> {
        types.get(name).or_else(|| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| types.get(name.strip_suffix(suffix)?))
        })
    };
    let (mut mistakes, mut checked) = (Vec::new(), 0);
    for window in tokens(text, false).windows(3) {
        if let [
            Token::Ident(function),
            Token::Punct('('),
            Token::Ident(metric),
        ] = window
            && matches!(function.as_str(), "rate" | "irate" | "increase")
        {
            checked += 1;
            let counter = match kind(metric).map(String::as_str) {
                Some(kind) => matches!(kind, "counter" | "histogram" | "summary"),
                None => metric.ends_with("_total"),
            };
            if !counter {
                mistakes.push(format!(
                    "{function}() over {metric}, which is not a counter"
                ));
            }
        }
    }
    let mut rest = text;
    while let Some(at) = rest.find("kube_pod_info") {
        rest = &rest[at + "kube_pod_info".len()..];
        let selector = rest
            .strip_prefix('{')
            .map_or("", |s| s.split('}').next().unwrap_or(""));
        if selector.contains("phase") {
            mistakes.push("a phase label on kube_pod_info, which has none".into());
        }
    }
    (mistakes, checked)
}

/// Every selector of a metric in `expr`: the metric's name and the text between its
/// braces (empty when it has none).
pub fn selectors(expr: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for name in metric_names(expr) {
        let mut from = 0;
        while let Some(at) = expr[from..].find(&name) {
            let start = from + at;
            let end = start + name.len();
            from = end;
            let before = expr[..start].chars().next_back();
            let after = expr[end..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if word(before) || word(after) {
                continue;
            }
            let matchers = expr[end..]
                .strip_prefix('{')
                .and_then(|rest| rest.split_once('}'))
                .map_or("", |(inside, _)| inside);
            found.push((name.clone(), matchers.to_owned()));
        }
    }
    found
}
