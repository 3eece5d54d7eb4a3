//! The providers file: every provider's pacing in one YAML file, refused with
//! one line that names the file, line, column, where and why.
//!
//! ```yaml
//! providers:
//!   polygon:
//!     rules:
//!       per_minute: {window: {count: 100, per: 1m}}
//!   ibkr: {profile: ibkr}
//! ```
//!
//! Positions: every check runs while serde_yaml_ng deserializes, inside the
//! visitor of the node it concerns (a provider or rule name, a rule, a
//! duration, a pushback policy), so the deserializer stamps the error with
//! that node's line, column and path. No check runs on the finished structs
//! and no line is searched for in the text. Rules and providers are maps
//! keyed by name, so the path reads `providers.polygon.rules.per_minute` and a
//! name given twice is a key given twice, refused where it appears.

use super::profile::{PROFILES, profile};
use super::rule::{
    DEFAULT_MAX_TRACKED, Limit, ProviderPacing, PushbackPolicy, Rule, RuleError, Scope,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

/// Why a providers file was refused; its Display is one line:
/// `providers.yaml:12:7: providers.polygon.rules.per_minute: a window must admit at least 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file as the user named it.
    pub origin: String,
    /// 1-based, when known.
    pub line: Option<usize>,
    /// 1-based, when known.
    pub column: Option<usize>,
    /// Where in the document (when known) and why.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.origin)?;
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(column) = self.column {
                write!(f, "{column}:")?;
            }
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for FileError {}

impl FileError {
    fn whole_file(origin: &str, message: impl Into<String>) -> FileError {
        FileError {
            origin: origin.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn from_yaml(origin: &str, error: &serde_yaml_ng::Error) -> FileError {
        let location = error.location();
        let mut message = error.to_string();
        // The deserializer appends the position in words; it goes in front instead.
        if let Some(at) = &location {
            let suffix = format!(" at line {} column {}", at.line(), at.column());
            if let Some(start) = message.find(&suffix) {
                message.replace_range(start..start + suffix.len(), "");
            }
        }
        FileError {
            origin: origin.to_owned(),
            line: location.as_ref().map(|at| at.line()),
            column: location.as_ref().map(|at| at.column()),
            message: one_line(&message),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the providers file at `path`.
pub fn load(path: &Path) -> Result<Vec<ProviderPacing>, FileError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError::whole_file(&origin, format!("cannot read the file: {e}")))?;
    parse(&text, &origin)
}

/// Parses a providers file; `origin` names it in errors. Every provider is
/// validated; names are unique.
pub fn parse(text: &str, origin: &str) -> Result<Vec<ProviderPacing>, FileError> {
    let has_content = text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && line != "---"
    });
    if !has_content {
        return Err(FileError::whole_file(
            origin,
            "the file is empty: it needs a `providers:` map with at least one provider",
        ));
    }
    let document: Document =
        serde_yaml_ng::from_str(text).map_err(|e| FileError::from_yaml(origin, &e))?;
    Ok(document.providers.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    providers: Providers,
}

/// The providers in file order.
struct Providers(Vec<ProviderPacing>);

impl<'de> Deserialize<'de> for Providers {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Providers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of providers by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Providers, A::Error> {
                let mut providers: Vec<ProviderPacing> = Vec::new();
                let mut names = Vec::new();
                while let Some(name) = map.next_key_seed(Name {
                    of: NameOf::Provider,
                    seen: &names,
                })? {
                    let provider = map.next_value_seed(ProviderSeed { name: &name })?;
                    names.push(name);
                    providers.push(provider);
                }
                if providers.is_empty() {
                    return Err(de::Error::custom(
                        "no providers: name at least one under `providers:`",
                    ));
                }
                Ok(Providers(providers))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[derive(Clone, Copy)]
enum NameOf {
    Provider,
    Rule,
}

/// A provider or rule name: well formed and not given before.
struct Name<'a> {
    of: NameOf,
    seen: &'a [String],
}

impl<'de> DeserializeSeed<'de> for Name<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Name<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<String, E> {
        let name = name.to_owned();
        let well_formed = crate::rate::is_label_safe(&name, 64);
        let error = match self.of {
            NameOf::Provider if !well_formed || name.contains(['.', ':']) => {
                Some(RuleError::ProviderName(name.clone()).to_string())
            }
            NameOf::Provider if self.seen.contains(&name) => {
                Some(format!("provider {name:?} is defined twice"))
            }
            NameOf::Rule if !well_formed => Some(RuleError::RuleName(name.clone()).to_string()),
            NameOf::Rule if self.seen.contains(&name) => {
                Some(RuleError::Duplicate(name.clone()).to_string())
            }
            _ => None,
        };
        match error {
            Some(message) => Err(E::custom(message)),
            None => Ok(name),
        }
    }
}

/// Deserializes a map as `R`, then turns it into `T` or a reason; the reason
/// is raised inside the map's own visitor so it carries the map's position.
struct Checked<R, F>(F, PhantomData<R>);

impl<R, F> Checked<R, F> {
    fn new(convert: F) -> Checked<R, F> {
        Checked(convert, PhantomData)
    }
}

impl<'de, R, T, F> Visitor<'de> for Checked<R, F>
where
    R: Deserialize<'de>,
    F: FnOnce(R) -> Result<T, String>,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.0)(raw).map_err(de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    profile: Option<Profile>,
    rules: Option<Rules>,
    pushback: Option<Pushback>,
    max_tracked_keys: Option<usize>,
}

struct ProviderSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for ProviderSeed<'_> {
    type Value = ProviderPacing;
    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<ProviderPacing, D::Error> {
        deserializer.deserialize_map(Checked::new(|raw: RawProvider| {
            let base = match (raw.profile, raw.rules) {
                (Some(Profile(pacing)), None) => pacing,
                (None, Some(Rules(rules))) => ProviderPacing::new(self.name, rules),
                (Some(_), Some(_)) => {
                    return Err("give `profile` or `rules`, not both".into());
                }
                (None, None) => {
                    return Err(format!(
                        "no rules: give `rules` or `profile` (one of {})",
                        PROFILES.join(", ")
                    ));
                }
            };
            let pacing = ProviderPacing {
                name: self.name.to_owned(),
                pushback: raw.pushback.map_or(base.pushback, |p| p.0),
                max_tracked: raw.max_tracked_keys.unwrap_or(base.max_tracked),
                rules: base.rules,
            };
            pacing.validate().map_err(|e| e.to_string())?;
            Ok(pacing)
        }))
    }
}

/// `profile: ibkr`: a built-in profile's rules and policy.
struct Profile(ProviderPacing);

impl<'de> Deserialize<'de> for Profile {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Known;
        impl Visitor<'_> for Known {
            type Value = Profile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a profile name ({})", PROFILES.join(", "))
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Profile, E> {
                profile(name).map(Profile).ok_or_else(|| {
                    E::custom(format!(
                        "unknown profile {name:?} (known: {})",
                        PROFILES.join(", ")
                    ))
                })
            }
        }
        deserializer.deserialize_str(Known)
    }
}

/// A provider's rules in file order.
struct Rules(Vec<Rule>);

impl<'de> Deserialize<'de> for Rules {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Rules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of rules by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rules, A::Error> {
                let mut rules: Vec<Rule> = Vec::new();
                let mut names = Vec::new();
                while let Some(name) = map.next_key_seed(Name {
                    of: NameOf::Rule,
                    seen: &names,
                })? {
                    rules.push(map.next_value_seed(RuleSeed { name: &name })?);
                    names.push(name);
                }
                if rules.is_empty() {
                    return Err(de::Error::custom("no rules: name at least one"));
                }
                Ok(Rules(rules))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Per {
    Key,
    Fingerprint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    class: Option<String>,
    per: Option<Per>,
    window: Option<RawWindow>,
    bucket: Option<RawBucket>,
    interval: Option<Humantime>,
    concurrency: Option<RawConcurrency>,
    #[serde(default)]
    weights: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    count: u32,
    per: Humantime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcurrency {
    max: u32,
    lease: Humantime,
}

const LIMIT_KINDS: &str = "window, bucket, interval or concurrency";

impl RawRule {
    fn limit(&self) -> Result<Limit, String> {
        let mut limits = Vec::new();
        if let Some(w) = &self.window {
            limits.push((
                "window",
                Limit::Window {
                    count: w.count,
                    window: w.per.0,
                },
            ));
        }
        if let Some(b) = &self.bucket {
            limits.push((
                "bucket",
                Limit::Bucket {
                    rate: b.rate,
                    burst: b.burst,
                },
            ));
        }
        if let Some(min) = &self.interval {
            limits.push(("interval", Limit::Interval { min: min.0 }));
        }
        if let Some(c) = &self.concurrency {
            limits.push((
                "concurrency",
                Limit::Concurrency {
                    max: c.max,
                    lease: c.lease.0,
                },
            ));
        }
        match limits.len() {
            0 => Err(format!("no limit: give one of {LIMIT_KINDS}")),
            1 => Ok(limits.remove(0).1),
            _ => {
                let kinds: Vec<&str> = limits.iter().map(|(kind, _)| *kind).collect();
                Err(format!(
                    "one limit per rule, found {}: split it into rules",
                    kinds.join(" and ")
                ))
            }
        }
    }

    fn scope(&self) -> Scope {
        let class = self.class.clone();
        match (self.per, class) {
            (None, None) => Scope::Provider,
            (None, Some(class)) => Scope::Class(class),
            (Some(Per::Key), class) => Scope::Key { class },
            (Some(Per::Fingerprint), class) => Scope::Fingerprint { class },
        }
    }
}

struct RuleSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for RuleSeed<'_> {
    type Value = Rule;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Rule, D::Error> {
        deserializer.deserialize_map(Checked::new(|raw: RawRule| {
            let rule = Rule {
                name: self.name.to_owned(),
                limit: raw.limit()?,
                scope: raw.scope(),
                weights: raw.weights,
            };
            // The rule's own figures, checked here for the rule's position.
            match ProviderPacing::new("check", vec![rule.clone()]).validate() {
                Ok(()) => Ok(rule),
                Err(RuleError::Limit { reason, .. }) => Err(reason),
                Err(other) => Err(other.to_string()),
            }
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPushback {
    decrease: Option<f64>,
    floor: Option<f64>,
    hold: Option<Humantime>,
    recovery: Option<Humantime>,
}

/// A pushback policy; what it leaves out is the default.
struct Pushback(PushbackPolicy);

impl<'de> Deserialize<'de> for Pushback {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Checked::new(|raw: RawPushback| {
            let default = PushbackPolicy::default();
            let policy = PushbackPolicy {
                decrease: raw.decrease.unwrap_or(default.decrease),
                floor: raw.floor.unwrap_or(default.floor),
                hold: raw.hold.map_or(default.hold, |d| d.0),
                recovery: raw.recovery.map_or(default.recovery, |d| d.0),
            };
            let probe = Rule::new("probe", Scope::Provider, Limit::Interval { min: SECOND });
            let mut check = ProviderPacing::new("check", vec![probe]);
            check.pushback = policy.clone();
            check.max_tracked = DEFAULT_MAX_TRACKED;
            match check.validate() {
                Ok(()) => Ok(Pushback(policy)),
                Err(RuleError::Pushback(reason)) => Err(reason),
                Err(other) => Err(other.to_string()),
            }
        }))
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// A duration as people write it: `15s`, `10m`, `2h`, `1d`.
struct Humantime(Duration);

impl<'de> Deserialize<'de> for Humantime {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Humantime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 15s, 10m, 2h or 1d")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Humantime, E> {
                humantime::parse_duration(text).map(Humantime).map_err(|e| {
                    E::custom(format!(
                        "{text:?} is not a duration ({e}); write e.g. 15s, 10m, 2h, 1d"
                    ))
                })
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::pacing::Pacer;

    fn error(text: &str) -> String {
        parse(text, "providers.yaml")
            .expect_err("the file is refused")
            .to_string()
    }

    /// A provider `p` whose rules are `rules` (indented under `rules:`).
    fn with_rules(rules: &str) -> String {
        format!("providers:\n  p:\n    rules:\n{rules}")
    }

    const EXAMPLE: &str = "\
providers:
  polygon:
    pushback: {decrease: 0.25, floor: 0.1, hold: 20s, recovery: 2m}
    max_tracked_keys: 500
    rules:
      per_minute:
        window: {count: 100, per: 1m}
      per_day: {window: {count: 50000, per: 1d}}
      smooth:
        bucket: {rate: 5, burst: 10}
      aggs:
        class: aggregates
        per: key
        window: {count: 10, per: 1s}
        weights: {snapshot: 2}
      identical:
        class: historical
        per: fingerprint
        interval: 15s
      open:
        class: historical
        concurrency: {max: 50, lease: 2m}
      everything_once:
        per: fingerprint
        interval: 500ms
  ibkr: {profile: ibkr}
  ibkr_paper:
    profile: ibkr
    max_tracked_keys: 100
";

    #[test]
    fn the_example_parses_to_the_rules_it_spells() {
        let s = Duration::from_secs;
        let historical = Some("historical".to_owned());
        let polygon = ProviderPacing {
            name: "polygon".into(),
            rules: vec![
                Rule::new(
                    "per_minute",
                    Scope::Provider,
                    Limit::Window {
                        count: 100,
                        window: s(60),
                    },
                ),
                Rule::new(
                    "per_day",
                    Scope::Provider,
                    Limit::Window {
                        count: 50_000,
                        window: s(86_400),
                    },
                ),
                Rule::new(
                    "smooth",
                    Scope::Provider,
                    Limit::Bucket {
                        rate: 5.0,
                        burst: 10.0,
                    },
                ),
                Rule::new(
                    "aggs",
                    Scope::Key {
                        class: Some("aggregates".into()),
                    },
                    Limit::Window {
                        count: 10,
                        window: s(1),
                    },
                )
                .weight("snapshot", 2),
                Rule::new(
                    "identical",
                    Scope::Fingerprint {
                        class: historical.clone(),
                    },
                    Limit::Interval { min: s(15) },
                ),
                Rule::new(
                    "open",
                    Scope::Class("historical".into()),
                    Limit::Concurrency {
                        max: 50,
                        lease: s(120),
                    },
                ),
                Rule::new(
                    "everything_once",
                    Scope::Fingerprint { class: None },
                    Limit::Interval {
                        min: Duration::from_millis(500),
                    },
                ),
            ],
            pushback: PushbackPolicy {
                decrease: 0.25,
                floor: 0.1,
                hold: s(20),
                recovery: s(120),
            },
            max_tracked: 500,
        };
        let ibkr = profile("ibkr").expect("built in");
        let mut paper = ibkr.clone();
        paper.name = "ibkr_paper".into();
        paper.max_tracked = 100;
        let parsed = parse(EXAMPLE, "providers.yaml").expect("the example is valid");
        assert_eq!(parsed, vec![polygon, ibkr, paper]);
        Pacer::new(parsed).expect("the pacer takes what the file gives");
    }

    #[test]
    fn examples_providers_yaml_is_valid() {
        let text = include_str!("../../../examples/providers.yaml");
        let providers = parse(text, "examples/providers.yaml").expect("the example file is valid");
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["rest_vendor", "ibkr"]);
        assert_eq!(providers[1], profile("ibkr").expect("built in"));
        let vendor = &providers[0];
        assert_eq!(vendor.rules.len(), 6);
        let per_minute = &vendor.rules[0];
        assert_eq!(per_minute.cost(1, Some("snapshots"), None), 10);
        assert_eq!(per_minute.cost(1, Some("quotes"), None), 1);
        assert_eq!(vendor.max_tracked, 20_000);
        Pacer::new(providers).expect("the pacer takes the example");
    }

    /// The first fenced block of `lang` after `heading` in `doc`.
    fn fenced<'a>(doc: &'a str, heading: &str, lang: &str) -> &'a str {
        let section = &doc[doc.find(heading).expect("the heading is in the guide")..];
        let open = format!("```{lang}\n");
        let start = section.find(&open).expect("the block is in the section") + open.len();
        let len = section[start..].find("```").expect("the block is closed");
        &section[start..start + len]
    }

    #[test]
    fn the_guide_shows_a_valid_file_and_the_errors_it_really_gives() {
        let guide = include_str!("../../../docs/pacing.md");
        let file = fenced(guide, "## The providers file", "yaml");
        let providers = parse(file, "providers.yaml").expect("the guide's file is valid");
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["polygon", "ibkr"]);
        let shown = fenced(guide, "## The providers file", "text");
        let broken = [
            file.replacen("count: 100,", "count: 0,", 1),
            file.replacen("per: 1d", "per: ten minutes", 1),
            file.replacen("profile: ibkr", "profile: ibkrr", 1),
            format!("{file}  polygon: {{profile: ibkr}}\n"),
        ];
        let errors: Vec<String> = broken.iter().map(|text| error(text)).collect();
        assert_eq!(shown.lines().collect::<Vec<_>>(), errors);
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let providers = load(&dir.join("examples/providers.yaml")).expect("the example loads");
        assert_eq!(providers.len(), 2);
        let missing = load(&dir.join("examples/no-such-providers.yaml")).expect_err("no file");
        assert_eq!(missing.line, None);
        let text = missing.to_string();
        assert!(
            text.contains("no-such-providers.yaml: cannot read the file: "),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_zero_count_is_refused_at_its_rule() {
        let text = with_rules("      per_minute:\n        window: {count: 0, per: 1m}\n");
        assert_eq!(
            error(&text),
            "providers.yaml:5:9: providers.p.rules.per_minute: a window must admit at least 1"
        );
        let flow = with_rules("      per_minute: {window: {count: 0, per: 1m}}\n");
        assert_eq!(
            error(&flow),
            "providers.yaml:4:19: providers.p.rules.per_minute: a window must admit at least 1"
        );
    }

    #[test]
    fn a_rule_needs_exactly_one_limit() {
        let none = with_rules("      a:\n        class: historical\n");
        assert_eq!(
            error(&none),
            "providers.yaml:5:9: providers.p.rules.a: \
             no limit: give one of window, bucket, interval or concurrency"
        );
        let two = with_rules(
            "      ok: {interval: 1s}\n      a:\n        interval: 1s\n        bucket: {rate: 1, burst: 2}\n",
        );
        assert_eq!(
            error(&two),
            "providers.yaml:6:9: providers.p.rules.a: \
             one limit per rule, found bucket and interval: split it into rules"
        );
    }

    #[test]
    fn unknown_fields_are_refused_where_they_stand() {
        let in_rule = with_rules("      a:\n        interval: 1s\n        colour: red\n");
        assert_eq!(
            error(&in_rule),
            "providers.yaml:6:9: providers.p.rules.a: unknown field `colour`, expected one of \
             `class`, `per`, `window`, `bucket`, `interval`, `concurrency`, `weights`"
        );
        let in_window = with_rules("      a: {window: {count: 1, per: 1s, burst: 3}}\n");
        assert_eq!(
            error(&in_window),
            "providers.yaml:4:39: providers.p.rules.a.window: \
             unknown field `burst`, expected `count` or `per`"
        );
        let at_top = "providers:\n  p: {rules: {a: {interval: 1s}}}\nprovider_defaults: {}\n";
        assert_eq!(
            error(at_top),
            "providers.yaml:3:1: unknown field `provider_defaults`, expected `providers`"
        );
        let per = with_rules("      a: {interval: 1s, per: keys}\n");
        assert_eq!(
            error(&per),
            "providers.yaml:4:30: providers.p.rules.a.per: \
             unknown variant `keys`, expected `key` or `fingerprint`"
        );
    }

    #[test]
    fn durations_need_a_unit_humantime_understands() {
        let words = with_rules("      a:\n        window: {count: 1, per: ten minutes}\n");
        assert_eq!(
            error(&words),
            "providers.yaml:5:33: providers.p.rules.a.window.per: \"ten minutes\" is not a \
             duration (expected number at 0); write e.g. 15s, 10m, 2h, 1d"
        );
        let bare = with_rules("      a: {interval: 60}\n");
        assert_eq!(
            error(&bare),
            "providers.yaml:4:21: providers.p.rules.a.interval: \"60\" is not a duration \
             (time unit needed, for example 60sec or 60ms); write e.g. 15s, 10m, 2h, 1d"
        );
        let spelled = with_rules("      a: {interval: 10 minutes}\n");
        assert!(
            parse(&spelled, "p.yaml").is_ok(),
            "humantime reads `10 minutes`"
        );
        let zero = with_rules("      a: {concurrency: {max: 2, lease: 0s}}\n");
        assert_eq!(
            error(&zero),
            "providers.yaml:4:10: providers.p.rules.a: a lease must last more than 0s"
        );
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let rule = with_rules(
            "      a: {interval: 1s}\n      b: {interval: 2s}\n      a: {interval: 3s}\n",
        );
        assert_eq!(
            error(&rule),
            "providers.yaml:6:7: providers.p.rules: rule \"a\" is defined twice"
        );
        let provider = "providers:\n  p: {rules: {a: {interval: 1s}}}\n  q: {profile: ibkr}\n  p: {profile: ibkr}\n";
        assert_eq!(
            error(provider),
            "providers.yaml:4:3: providers: provider \"p\" is defined twice"
        );
        let dotted = "providers:\n  poly.gon: {rules: {a: {interval: 1s}}}\n";
        assert_eq!(
            error(dotted),
            "providers.yaml:2:3: providers: provider name \"poly.gon\" must be 1-64 characters \
             of A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn an_unknown_profile_names_the_known_ones() {
        let text = "providers:\n  broker:\n    profile: ibkrr\n";
        assert_eq!(
            error(text),
            "providers.yaml:3:14: providers.broker.profile: unknown profile \"ibkrr\" (known: ibkr)"
        );
        let both = "providers:\n  broker:\n    profile: ibkr\n    rules: {a: {interval: 1s}}\n";
        assert_eq!(
            error(both),
            "providers.yaml:3:5: providers.broker: give `profile` or `rules`, not both"
        );
    }

    #[test]
    fn provider_figures_are_checked_at_the_provider() {
        let pushback =
            "providers:\n  p:\n    pushback: {decrease: 2}\n    rules: {a: {interval: 1s}}\n";
        assert_eq!(
            error(pushback),
            "providers.yaml:3:15: providers.p.pushback: decrease must be in (0, 1), got 2"
        );
        let tracked = "providers:\n  p:\n    max_tracked_keys: 0\n    rules: {a: {interval: 1s}}\n";
        assert_eq!(
            error(tracked),
            "providers.yaml:3:5: providers.p: max_tracked_keys must be at least 1"
        );
        let weights = with_rules("      a: {bucket: {rate: 5, burst: 10}, weights: {x: 0}}\n");
        assert_eq!(
            error(&weights),
            "providers.yaml:4:10: providers.p.rules.a: weights must be at least 1"
        );
    }

    #[test]
    fn empty_files_and_empty_maps_are_refused() {
        for text in ["", "\n  \n", "# nothing yet\n", "---\n"] {
            assert_eq!(
                error(text),
                "providers.yaml: the file is empty: it needs a `providers:` map with at least \
                 one provider"
            );
        }
        assert_eq!(
            error("providers:\n"),
            "providers.yaml:1:11: providers: no providers: name at least one under `providers:`"
        );
        assert_eq!(
            error("providers: {}\n"),
            "providers.yaml:1:12: providers: no providers: name at least one under `providers:`"
        );
        assert_eq!(
            error("providers:\n  p: {}\n"),
            "providers.yaml:2:6: providers.p: no rules: give `rules` or `profile` (one of ibkr)"
        );
        assert_eq!(
            error("providers:\n  p:\n    rules: {}\n"),
            "providers.yaml:3:12: providers.p.rules: no rules: name at least one"
        );
    }

    #[test]
    fn yaml_syntax_errors_keep_their_position_on_one_line() {
        let text = with_rules("      a: {interval: 1s}\n     b: {interval: 1s}\n");
        let refused = parse(&text, "providers.yaml").expect_err("bad indentation");
        assert_eq!((refused.line, refused.column), (Some(5), Some(6)));
        assert_eq!(
            refused.to_string(),
            "providers.yaml:5:6: did not find expected key, \
             while parsing a block mapping at line 3 column 5"
        );
        let unclosed = "providers:\n  p: {rules: {a: {interval: 1s}}\n";
        assert_eq!(
            error(unclosed),
            "providers.yaml:3:1: did not find expected ',' or '}', \
             while parsing a flow mapping at line 2 column 6"
        );
    }
}
