//! The pacing section: grants and refusals of the paced providers by class
//! and rule, leases held, pushbacks by kind and the pushback factor. Every
//! series is built at start from the configured rules and classes (a class
//! no rule names counts as `other`, a request without one as `none`), so a
//! worker's input can never add series.

use super::catalogue::{self as family, Family};
use super::exposition::Section;
use super::text::{header, sample_f64, sample_u64, series_key};
use prometheus::core::{Atomic, AtomicF64, AtomicU64};
use std::sync::Arc;

/// The class label of a request without a class.
pub(super) const NO_CLASS: &str = "none";
/// The class label of a class no rule names.
pub(super) const OTHER_CLASS: &str = "other";
/// The class label of the provider-wide pushback factor.
pub(super) const ALL_CLASSES: &str = "*";
/// The pushback kinds, as the `kind` label spells them.
pub(super) const PUSHBACK_KINDS: [&str; 2] = ["pacing_violation", "rate_limited"];
/// What holds a request besides a rule: a HARD pause, a pushback hold.
pub(super) const HOLDERS: [&str; 2] = ["paused", "pushback"];

/// What the series of one paced provider are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacingLabels {
    pub provider: String,
    /// The classes its rules name.
    pub classes: Vec<String>,
    /// Its rules' names.
    pub rules: Vec<String>,
}

struct Cell<A> {
    key: String,
    value: A,
}

fn cells<A>(
    family: &Family,
    labels: Vec<Vec<(&str, &str)>>,
    new: impl Fn() -> A,
) -> Box<[Cell<A>]> {
    labels
        .into_iter()
        .map(|l| Cell {
            key: series_key(family.name, &l),
            value: new(),
        })
        .collect()
}

/// The pacing series of one provider; cheap to clone.
#[derive(Clone)]
pub struct PacingSeries(Arc<Series>);

struct Series {
    /// Configured classes, then `none`, then `other`.
    classes: Vec<String>,
    /// Rule names, then [`HOLDERS`].
    holders: Vec<String>,
    grants: Box<[Cell<AtomicU64>]>,
    /// [class][holder].
    refusals: Box<[Cell<AtomicU64>]>,
    /// [class][kind].
    pushbacks: Box<[Cell<AtomicU64>]>,
    /// `*`, then one per class.
    factors: Box<[Cell<AtomicF64>]>,
    leases: Cell<AtomicU64>,
}

impl PacingSeries {
    fn new(labels: &PacingLabels) -> Self {
        let provider = labels.provider.as_str();
        let mut classes = labels.classes.clone();
        classes.sort();
        classes.dedup();
        classes.extend([NO_CLASS.to_owned(), OTHER_CLASS.to_owned()]);
        let holders: Vec<String> = labels
            .rules
            .iter()
            .cloned()
            .chain(HOLDERS.iter().map(|h| (*h).to_owned()))
            .collect();
        let by_class = classes
            .iter()
            .map(|c| vec![("provider", provider), ("class", c.as_str())])
            .collect();
        let mut by_rule = Vec::new();
        let mut by_kind = Vec::new();
        for class in &classes {
            for rule in &holders {
                by_rule.push(vec![
                    ("provider", provider),
                    ("class", class.as_str()),
                    ("rule", rule.as_str()),
                ]);
            }
            for kind in PUSHBACK_KINDS {
                by_kind.push(vec![
                    ("provider", provider),
                    ("class", class.as_str()),
                    ("kind", kind),
                ]);
            }
        }
        let factor_classes = std::iter::once(ALL_CLASSES)
            .chain(classes.iter().map(String::as_str))
            .map(|c| vec![("provider", provider), ("class", c)])
            .collect();
        let series = Series {
            grants: cells(&family::PACING_GRANTS, by_class, || AtomicU64::new(0)),
            refusals: cells(&family::PACING_REFUSALS, by_rule, || AtomicU64::new(0)),
            pushbacks: cells(&family::PACING_PUSHBACKS, by_kind, || AtomicU64::new(0)),
            factors: cells(&family::PACING_FACTOR, factor_classes, || {
                AtomicF64::new(1.0)
            }),
            leases: Cell {
                key: series_key(family::PACING_LEASES.name, &[("provider", provider)]),
                value: AtomicU64::new(0),
            },
            classes,
            holders,
        };
        PacingSeries(Arc::new(series))
    }

    /// The index of a request's class label.
    fn class(&self, class: Option<&str>) -> usize {
        let classes = &self.0.classes;
        let configured = classes.len() - 2;
        match class {
            None => configured,
            Some(c) => classes[..configured]
                .iter()
                .position(|k| k == c)
                .unwrap_or(configured + 1),
        }
    }

    /// One request of `class` granted.
    pub fn grant(&self, class: Option<&str>) {
        self.0.grants[self.class(class)].value.inc_by(1);
    }

    /// One request of `class` refused, held last by `rule` (a rule name,
    /// `paused` or `pushback`; anything else counts as `pushback`).
    pub fn refuse(&self, class: Option<&str>, rule: &str) {
        let holders = &self.0.holders;
        let h = holders
            .iter()
            .position(|r| r == rule)
            .unwrap_or(holders.len() - 1);
        let i = self.class(class) * holders.len() + h;
        self.0.refusals[i].value.inc_by(1);
    }

    /// One pushback report of `kind` (see [`PUSHBACK_KINDS`]) for `class`.
    pub fn pushback(&self, class: Option<&str>, kind: &str) {
        let k = PUSHBACK_KINDS.iter().position(|x| *x == kind).unwrap_or(0);
        let i = self.class(class) * PUSHBACK_KINDS.len() + k;
        self.0.pushbacks[i].value.inc_by(1);
    }

    /// The provider-wide factor (`class` None) or a class's own.
    pub fn set_factor(&self, class: Option<&str>, factor: f64) {
        let i = match class {
            None => 0,
            Some(_) => 1 + self.class(class),
        };
        self.0.factors[i].value.set(factor);
    }

    /// Puts every class factor back to 1 (before setting the ones in force).
    pub fn reset_class_factors(&self) {
        for cell in &self.0.factors[1..] {
            cell.value.set(1.0);
        }
    }

    pub fn set_leases(&self, held: usize) {
        self.0.leases.value.set(held as u64);
    }

    #[cfg(test)]
    pub(super) fn granted(&self, class: Option<&str>) -> u64 {
        self.0.grants[self.class(class)].value.get()
    }
}

/// Written on every scrape from the cells (counted on every acquire).
pub(super) struct PacingSection {
    pub(super) providers: Vec<(String, PacingSeries)>,
}

impl PacingSection {
    pub(super) fn new(labels: &[PacingLabels]) -> Self {
        PacingSection {
            providers: labels
                .iter()
                .map(|l| (l.provider.clone(), PacingSeries::new(l)))
                .collect(),
        }
    }
}

impl Section for PacingSection {
    fn families(&self) -> &'static [Family] {
        family::PACING
    }

    fn append_to(&self, out: &mut Vec<u8>) {
        if self.providers.is_empty() {
            return;
        }
        let each =
            |out: &mut Vec<u8>, family: &Family, cells: &dyn Fn(&Series) -> &[Cell<AtomicU64>]| {
                header(out, family);
                for (_, p) in &self.providers {
                    for cell in cells(&p.0) {
                        sample_u64(out, &cell.key, cell.value.get());
                    }
                }
            };
        each(out, &family::PACING_GRANTS, &|s| &s.grants);
        each(out, &family::PACING_REFUSALS, &|s| &s.refusals);
        each(out, &family::PACING_PUSHBACKS, &|s| &s.pushbacks);
        each(out, &family::PACING_LEASES, &|s| {
            std::slice::from_ref(&s.leases)
        });
        header(out, &family::PACING_FACTOR);
        for (_, p) in &self.providers {
            for cell in p.0.factors.iter() {
                sample_f64(out, &cell.key, cell.value.get());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> PacingLabels {
        PacingLabels {
            provider: "ibkr".into(),
            classes: vec!["historical".into()],
            rules: vec!["messages".into(), "historical".into()],
        }
    }

    #[test]
    fn a_class_no_rule_names_counts_as_other_and_none_as_none() {
        let series = PacingSeries::new(&labels());
        series.grant(Some("historical"));
        series.grant(Some("made-up"));
        series.grant(Some("another"));
        series.grant(None);
        assert_eq!(series.granted(Some("historical")), 1);
        assert_eq!(series.granted(Some("other")), 2);
        assert_eq!(series.granted(None), 1);
    }

    #[test]
    fn every_series_is_written_from_the_start_and_counts_show() {
        let section = PacingSection::new(&[labels()]);
        let series = &section.providers[0].1;
        series.refuse(Some("historical"), "historical");
        series.refuse(None, "no-such-rule");
        series.pushback(Some("historical"), "pacing_violation");
        series.set_factor(Some("historical"), 0.5);
        series.set_leases(3);
        let mut out = Vec::new();
        section.append_to(&mut out);
        let text = String::from_utf8(out).expect("utf-8");
        for line in [
            r#"mdp_pacing_grants_total{provider="ibkr",class="historical"} 0"#,
            r#"mdp_pacing_refusals_total{provider="ibkr",class="historical",rule="historical"} 1"#,
            r#"mdp_pacing_refusals_total{provider="ibkr",class="none",rule="pushback"} 1"#,
            r#"mdp_pacing_pushbacks_total{provider="ibkr",class="historical",kind="pacing_violation"} 1"#,
            r#"mdp_pacing_leases_held{provider="ibkr"} 3"#,
            r#"mdp_pacing_pushback_factor{provider="ibkr",class="*"} 1"#,
            r#"mdp_pacing_pushback_factor{provider="ibkr",class="historical"} 0.5"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // 3 classes x 4 holders refusal series, each written once.
        let refusals = text
            .lines()
            .filter(|l| l.starts_with("mdp_pacing_refusals_total{"))
            .count();
        assert_eq!(refusals, 12);
    }
}
