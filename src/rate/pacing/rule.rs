//! Pacing rules as providers publish them: a scope, a limit and request weights,
//! in plain numbers and durations (so a server-side script can apply them too).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Which requests a rule counts, and whether it keeps one count per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every request of the provider, whatever its class.
    Provider,
    /// Every request of one class (`historical`, `market_data`, ...).
    Class(String),
    /// One count per `key` (a contract, an endpoint), among the requests of
    /// `class` (or of every class when None). A request without a key is not
    /// counted by the rule.
    Key { class: Option<String> },
    /// One count per `fingerprint` (an identical request), among the requests
    /// of `class` (or of every class). A request without one is not counted.
    Fingerprint { class: Option<String> },
}

impl Scope {
    /// The class the rule is limited to, if any.
    pub fn class(&self) -> Option<&str> {
        match self {
            Scope::Provider => None,
            Scope::Class(class) => Some(class),
            Scope::Key { class } | Scope::Fingerprint { class } => class.as_deref(),
        }
    }

    /// Whether the rule keeps one count per key or fingerprint.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Scope::Key { .. } | Scope::Fingerprint { .. })
    }

    /// Whether a request of `class` is counted (before the key check).
    pub fn covers_class(&self, class: Option<&str>) -> bool {
        match self.class() {
            None => true,
            Some(wanted) => class == Some(wanted),
        }
    }
}

impl fmt::Display for Scope {
    /// `provider`, `class historical`, `each key of historical`, `each fingerprint`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = |class: &Option<String>| match class {
            Some(class) => format!(" of {class}"),
            None => String::new(),
        };
        match self {
            Scope::Provider => f.write_str("provider"),
            Scope::Class(class) => write!(f, "class {class}"),
            Scope::Key { class } => write!(f, "each key{}", of(class)),
            Scope::Fingerprint { class } => write!(f, "each fingerprint{}", of(class)),
        }
    }
}

/// What a rule allows within its scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// Never more than `count` tokens in any window of `window`, kept exactly.
    Window { count: u32, window: Duration },
    /// A token bucket: `rate` tokens per second, at most `burst` saved.
    Bucket { rate: f64, burst: f64 },
    /// At least `min` between two grants in the same scope (or key).
    Interval { min: Duration },
    /// At most `max` requests in flight, each holding a lease until it is
    /// released or `lease` has passed.
    Concurrency { max: u32, lease: Duration },
}

impl Limit {
    /// Whether the backpressure scale and pushback factor slow this limit.
    pub fn is_rate(&self) -> bool {
        !matches!(self, Limit::Concurrency { .. })
    }
}

impl fmt::Display for Limit {
    /// `60 in 10m`, `50/s burst 50`, `1 per 15s`, `50 open`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Window { count, window } => {
                write!(f, "{count} in {}", humantime::format_duration(*window))
            }
            Limit::Bucket { rate, burst } => write!(f, "{rate}/s burst {burst}"),
            Limit::Interval { min } => write!(f, "1 per {}", humantime::format_duration(*min)),
            Limit::Concurrency { max, .. } => write!(f, "{max} open"),
        }
    }
}

/// One rule of a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique within the provider; shown as `provider/name`.
    pub name: String,
    pub scope: Scope,
    pub limit: Limit,
    /// Multipliers of a request's `tokens` under this rule, looked up by the
    /// request's `kind` first, then by its `class` (1 when neither is listed):
    /// IBKR's `BID_ASK` historical requests count twice. Not used by interval
    /// and concurrency rules (one request is one request there).
    pub weights: BTreeMap<String, u32>,
}

impl Rule {
    pub fn new(name: &str, scope: Scope, limit: Limit) -> Rule {
        Rule {
            name: name.to_owned(),
            scope,
            limit,
            weights: BTreeMap::new(),
        }
    }

    /// The same rule with a weight for requests of `kind` (or class).
    pub fn weight(mut self, kind: &str, weight: u32) -> Rule {
        self.weights.insert(kind.to_owned(), weight);
        self
    }

    /// What one request of `tokens` costs under this rule.
    pub fn cost(&self, tokens: u32, class: Option<&str>, kind: Option<&str>) -> u64 {
        match self.limit {
            Limit::Interval { .. } | Limit::Concurrency { .. } => 1,
            Limit::Window { .. } | Limit::Bucket { .. } => {
                let weight = kind
                    .and_then(|k| self.weights.get(k))
                    .or_else(|| class.and_then(|c| self.weights.get(c)))
                    .copied()
                    .unwrap_or(1);
                u64::from(tokens) * u64::from(weight)
            }
        }
    }
}

/// How a provider backs off when it pushes back (an IBKR error 162, an HTTP
/// 429): the factor is multiplied by `decrease` at once (not below `floor`),
/// nothing of the class is granted before the retry-after has passed (`hold`
/// when the report gives none), then the factor climbs back linearly, by 1.0
/// per `recovery`.
#[derive(Debug, Clone, PartialEq)]
pub struct PushbackPolicy {
    pub decrease: f64,
    pub floor: f64,
    pub hold: Duration,
    pub recovery: Duration,
}

impl Default for PushbackPolicy {
    fn default() -> Self {
        PushbackPolicy {
            decrease: 0.5,
            floor: 0.05,
            hold: Duration::from_secs(10),
            recovery: Duration::from_secs(300),
        }
    }
}

/// The most keys (or fingerprints) one keyed rule tracks by default.
pub const DEFAULT_MAX_TRACKED: usize = 10_000;

/// A provider's pacing: its rules, pushback policy and memory bound.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderPacing {
    pub name: String,
    pub rules: Vec<Rule>,
    pub pushback: PushbackPolicy,
    /// The most keys one keyed rule tracks at once (and the most classes
    /// with a pushback of their own); beyond, a new key is refused.
    pub max_tracked: usize,
}

/// Why a provider's pacing was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("provider name {0:?} must be 1-64 characters of A-Z a-z 0-9 _ -")]
    ProviderName(String),
    #[error("provider {0:?} has no rules")]
    NoRules(String),
    #[error("rule name {0:?} must be 1-64 characters of A-Z a-z 0-9 _ - . :")]
    RuleName(String),
    #[error("rule {0:?} is defined twice")]
    Duplicate(String),
    #[error("rule {rule:?}: {reason}")]
    Limit { rule: String, reason: String },
    #[error("pushback: {0}")]
    Pushback(String),
    #[error("max_tracked_keys must be at least 1")]
    MaxTracked,
}

impl ProviderPacing {
    /// Rules with the default pushback policy and key bound.
    pub fn new(name: &str, rules: Vec<Rule>) -> ProviderPacing {
        ProviderPacing {
            name: name.to_owned(),
            rules,
            pushback: PushbackPolicy::default(),
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }

    /// Checks every figure: what passes here can never make the engine divide
    /// by zero or hold a window that admits nothing.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !super::super::is_label_safe(&self.name, 64) || self.name.contains(['.', ':']) {
            return Err(RuleError::ProviderName(self.name.clone()));
        }
        if self.rules.is_empty() {
            return Err(RuleError::NoRules(self.name.clone()));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !super::super::is_label_safe(&rule.name, 64) {
                return Err(RuleError::RuleName(rule.name.clone()));
            }
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(RuleError::Duplicate(rule.name.clone()));
            }
            validate_limit(&rule.limit).map_err(|reason| RuleError::Limit {
                rule: rule.name.clone(),
                reason,
            })?;
            if rule.weights.values().any(|w| *w == 0) {
                return Err(RuleError::Limit {
                    rule: rule.name.clone(),
                    reason: "weights must be at least 1".into(),
                });
            }
        }
        let p = &self.pushback;
        if !(p.decrease > 0.0 && p.decrease < 1.0) {
            return Err(RuleError::Pushback(format!(
                "decrease must be in (0, 1), got {}",
                p.decrease
            )));
        }
        if !(p.floor > 0.0 && p.floor <= 1.0) {
            return Err(RuleError::Pushback(format!(
                "floor must be in (0, 1], got {}",
                p.floor
            )));
        }
        if p.recovery.is_zero() {
            return Err(RuleError::Pushback("recovery must be > 0".into()));
        }
        if self.max_tracked == 0 {
            return Err(RuleError::MaxTracked);
        }
        Ok(())
    }
}

fn validate_limit(limit: &Limit) -> Result<(), String> {
    match limit {
        Limit::Window { count, window } => {
            if *count == 0 {
                return Err("a window must admit at least 1".into());
            }
            if window.is_zero() {
                return Err("a window must last more than 0s".into());
            }
        }
        Limit::Bucket { rate, burst } => {
            super::super::TokenBucket::try_new(*rate, *burst, Duration::ZERO)
                .map_err(|e| e.to_string())?;
        }
        Limit::Interval { min } => {
            if min.is_zero() {
                return Err("an interval must be more than 0s".into());
            }
        }
        Limit::Concurrency { max, lease } => {
            if *max == 0 {
                return Err("a concurrency cap must be at least 1".into());
            }
            if lease.is_zero() {
                return Err("a lease must last more than 0s".into());
            }
        }
    }
    Ok(())
}
