//! Load profiles for `mdp simulate`: the built-in scenarios and the JSON scenario file.

use crate::level::Level;
use clap::ValueEnum;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Longest scenario accepted (a week of simulated time).
pub const MAX_SCENARIO: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest phase name (it is a table column and a CSV field).
const MAX_NAME: usize = 40;

/// The built-in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuiltinScenario {
    /// The replica matrix (docs/replica-matrix.md): idle 500, moderate 6000, high 8500, overload 9500, recovery 800.
    Matrix,
    /// The replica matrix's four seed scenarios in order: normal 500, moderate 6000, overload 9500, recovery 800.
    Seed,
    /// A store outage under load: a high queue (SOFT), then the store stops
    /// answering mdp's polls for three minutes, then it is back and drained.
    StoreOutage,
    /// The queue in closed loop: normal, a database slowdown, a stall, recovery;
    /// the depth follows from the granted rate and the pods' write throughput.
    ClosedLoop,
    /// Provider pacing: an IBKR workload (backfill, repeats, BID_ASK, live
    /// subscriptions, order bursts) through the ibkr profile and plain token
    /// buckets, judged by a checker of IBKR's published rules.
    Pacing,
}

/// What the metrics path answers KEDA during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsPath {
    /// Prometheus answers with the last scrape.
    #[default]
    Up,
    /// The series are gone (the query returns an empty vector).
    Empty,
    /// Prometheus cannot be reached.
    Down,
}

/// Whether the store answers mdp during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreState {
    /// Polled (or pushing) as usual.
    #[default]
    Up,
    /// Every poll fails: mdp withdraws the depth sample and holds the level.
    Down,
}

/// The store's queue depth over a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepthProfile {
    Constant(f64),
    /// Linear from `from` at the phase's start to `to` at its end.
    Ramp {
        from: f64,
        to: f64,
    },
}

impl DepthProfile {
    /// The depth `fraction` (0..1) of the way through the phase.
    pub fn at(&self, fraction: f64) -> f64 {
        match *self {
            DepthProfile::Constant(depth) => depth,
            DepthProfile::Ramp { from, to } => from + (to - from) * fraction.clamp(0.0, 1.0),
        }
    }

    fn values(&self) -> [f64; 2] {
        match *self {
            DepthProfile::Constant(depth) => [depth, depth],
            DepthProfile::Ramp { from, to } => [from, to],
        }
    }
}

/// One phase of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    pub depth: DepthProfile,
    /// The level the store reports with every event of the phase (None: its own).
    pub level: Option<Level>,
    /// Uniform noise of +-`jitter` messages added to the depth at every step.
    pub jitter: f64,
    pub prometheus: MetricsPath,
    pub store: StoreState,
}

impl Phase {
    fn steady(name: &str, seconds: u64, depth: f64) -> Phase {
        Phase {
            name: name.to_owned(),
            duration: Duration::from_secs(seconds),
            depth: DepthProfile::Constant(depth),
            level: None,
            jitter: 0.0,
            prometheus: MetricsPath::Up,
            store: StoreState::Up,
        }
    }
}

/// A named list of phases, run in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub phases: Vec<Phase>,
}

/// Why a scenario file was refused; always one line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("invalid --scenario-file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl Scenario {
    /// The builtin open-loop scenario `kind`; `None` for the closed loop, whose
    /// phases live with its model (`Scenario::builtin` in the module's root
    /// gives every builtin, the closed loop as its outline).
    pub fn open_loop(kind: BuiltinScenario) -> Option<Scenario> {
        let (name, phases) = match kind {
            BuiltinScenario::Matrix => (
                "matrix",
                vec![
                    Phase::steady("idle", 60, 500.0),
                    Phase::steady("moderate", 120, 6000.0),
                    Phase::steady("high", 120, 8500.0),
                    Phase::steady("overload", 120, 9500.0),
                    Phase::steady("recovery", 180, 800.0),
                ],
            ),
            BuiltinScenario::StoreOutage => (
                "store-outage",
                vec![
                    Phase::steady("normal", 60, 500.0),
                    Phase::steady("high", 180, 8500.0),
                    // SOFT, not HARD: only the depth trigger holds the pods up,
                    // so what its empty query does is what the pods do.
                    Phase {
                        store: StoreState::Down,
                        ..Phase::steady("store-down", 180, 8500.0)
                    },
                    Phase::steady("recovery", 180, 800.0),
                ],
            ),
            BuiltinScenario::ClosedLoop => return None,
            // Not a load profile (see simulate::pacing): an idle outline.
            BuiltinScenario::Pacing => ("pacing", vec![Phase::steady("pacing", 60, 0.0)]),
            BuiltinScenario::Seed => (
                "seed",
                vec![
                    Phase::steady("normal", 60, 500.0),
                    Phase::steady("moderate", 120, 6000.0),
                    Phase::steady("overload", 120, 9500.0),
                    Phase::steady("recovery", 180, 800.0),
                ],
            ),
        };
        Some(Scenario {
            name: name.to_owned(),
            phases,
        })
    }

    /// Reads and validates a scenario file (see [`Scenario::from_json`]).
    pub fn from_file(path: &Path, capacity: u64) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let refuse = |message: String| ScenarioError::File {
            path: shown.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
        let name = path
            .file_stem()
            .map_or_else(|| "file".to_owned(), |s| s.to_string_lossy().into_owned());
        Scenario::from_json(&name, &text, capacity).map_err(|e| match e {
            ScenarioError::Invalid(message) => refuse(message),
            other => other,
        })
    }

    /// Parses a JSON list of phases (or `{"phases": [...]}`), each
    /// `{"name", "duration", "depth", "level"?, "jitter"?, "prometheus"?, "store"?}`.
    pub fn from_json(name: &str, text: &str, capacity: u64) -> Result<Scenario, ScenarioError> {
        let invalid = ScenarioError::Invalid;
        let value: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let list = match value {
            Value::Array(list) => list,
            Value::Object(mut object) if object.len() == 1 && object.contains_key("phases") => {
                match object.remove("phases") {
                    Some(Value::Array(list)) => list,
                    _ => return Err(invalid("\"phases\" must be a list".to_owned())),
                }
            }
            _ => {
                return Err(invalid(
                    "expected a JSON list of phases (or {\"phases\": [...]})".to_owned(),
                ));
            }
        };
        let phases = list
            .into_iter()
            .enumerate()
            .map(|(index, raw)| parse_phase(index + 1, raw, capacity).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let scenario = Scenario {
            name: name.to_owned(),
            phases,
        };
        scenario.validate(capacity)?;
        Ok(scenario)
    }

    /// Checks what any scenario needs: phases, a bounded length, depths within capacity.
    pub fn validate(&self, capacity: u64) -> Result<(), ScenarioError> {
        if self.phases.is_empty() {
            return Err(ScenarioError::Invalid("no phases".to_owned()));
        }
        if self.duration() > MAX_SCENARIO {
            return Err(ScenarioError::Invalid(format!(
                "{} of phases is longer than the {} allowed",
                humantime::format_duration(self.duration()),
                humantime::format_duration(MAX_SCENARIO)
            )));
        }
        for (index, phase) in self.phases.iter().enumerate() {
            for depth in phase.depth.values() {
                if depth > capacity as f64 {
                    return Err(ScenarioError::Invalid(format!(
                        "phase {} ({:?}): depth {depth} exceeds --store-capacity {capacity}",
                        index + 1,
                        phase.name
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn duration(&self) -> Duration {
        self.phases.iter().map(|p| p.duration).sum()
    }
}

/// A phase as written in the file, before its fields are checked one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Option<String>,
    duration: Option<Value>,
    depth: Option<Value>,
    level: Option<String>,
    jitter: Option<f64>,
    #[serde(default)]
    prometheus: MetricsPath,
    #[serde(default)]
    store: StoreState,
}

/// One phase; errors read `phase N ("name"): what is wrong`.
fn parse_phase(number: usize, raw: Value, capacity: u64) -> Result<Phase, String> {
    let raw: RawPhase = serde_json::from_value(raw).map_err(|e| format!("phase {number}: {e}"))?;
    let name = raw
        .name
        .ok_or(format!("phase {number}: \"name\" is missing"))?;
    let valid_name = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c));
    if !valid_name {
        return Err(format!(
            "phase {number}: name {name:?} must be 1-{MAX_NAME} letters, digits, spaces, '_', '.' or '-'"
        ));
    }
    let context = |message: String| format!("phase {number} ({name:?}): {message}");
    let duration = parse_duration(raw.duration.as_ref()).map_err(context)?;
    let depth = parse_depth(raw.depth.as_ref(), capacity).map_err(context)?;
    let level = raw
        .level
        .map(|text| text.parse::<Level>().map_err(|e| context(e.to_string())))
        .transpose()?;
    let jitter = raw.jitter.unwrap_or(0.0);
    if !(jitter.is_finite() && jitter >= 0.0) {
        return Err(context(format!(
            "jitter must be a number of messages >= 0, got {jitter}"
        )));
    }
    Ok(Phase {
        name,
        duration,
        depth,
        level,
        jitter,
        prometheus: raw.prometheus,
        store: raw.store,
    })
}

/// A whole number of seconds, as a number (`90`) or a humantime string (`"1m30s"`).
fn parse_duration(value: Option<&Value>) -> Result<Duration, String> {
    let duration = match value {
        None => return Err("\"duration\" is missing".to_owned()),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or(format!("duration {n} must be a whole number of seconds"))?,
        Some(Value::String(text)) => {
            humantime::parse_duration(text).map_err(|e| format!("duration {text:?}: {e}"))?
        }
        Some(other) => {
            return Err(format!(
                "duration must be seconds or a string like \"2m\", got {other}"
            ));
        }
    };
    if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
        return Err(format!(
            "duration must be a whole number of seconds, at least 1s, got {}",
            humantime::format_duration(duration)
        ));
    }
    Ok(duration)
}

/// A depth (`6000`) or a ramp (`[500, 9500]`), in messages within [0, capacity].
fn parse_depth(value: Option<&Value>, capacity: u64) -> Result<DepthProfile, String> {
    let number = |value: &Value| -> Result<f64, String> {
        let depth = value
            .as_f64()
            .ok_or(format!("depth must be a number of messages, got {value}"))?;
        if depth.is_finite() && (0.0..=capacity as f64).contains(&depth) {
            Ok(depth)
        } else {
            Err(format!(
                "depth {depth} must be within 0..={capacity} (--store-capacity)"
            ))
        }
    };
    match value {
        None => Err("\"depth\" is missing".to_owned()),
        Some(Value::Array(ends)) if ends.len() == 2 => Ok(DepthProfile::Ramp {
            from: number(&ends[0])?,
            to: number(&ends[1])?,
        }),
        Some(Value::Array(_)) => Err("a depth ramp is a list of two depths, [from, to]".to_owned()),
        Some(value) => number(value).map(DepthProfile::Constant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_follow_spec_section_8() {
        let matrix = Scenario::builtin(BuiltinScenario::Matrix);
        let names: Vec<_> = matrix.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["idle", "moderate", "high", "overload", "recovery"]);
        assert_eq!(matrix.duration(), Duration::from_secs(600));
        let seed = Scenario::builtin(BuiltinScenario::Seed);
        let depths: Vec<_> = seed.phases.iter().map(|p| p.depth.at(0.5)).collect();
        assert_eq!(depths, [500.0, 6000.0, 9500.0, 800.0]);
        assert!(matrix.validate(10_000).is_ok() && seed.validate(10_000).is_ok());
    }

    #[test]
    fn parses_every_field_and_both_shapes() {
        let text = r#"[
            {"name": "warm", "duration": 30, "depth": 500},
            {"name": "surge", "duration": "2m", "depth": [500, 9500], "jitter": 50},
            {"name": "dark", "duration": "1m", "depth": 9500, "level": "HARD", "prometheus": "down"}
        ]"#;
        let scenario = Scenario::from_json("mine", text, 10_000).expect("valid");
        assert_eq!(scenario.duration(), Duration::from_secs(210));
        let surge = &scenario.phases[1];
        assert_eq!(
            surge.depth,
            DepthProfile::Ramp {
                from: 500.0,
                to: 9500.0
            }
        );
        assert_eq!(surge.depth.at(0.5), 5000.0);
        assert_eq!(surge.jitter, 50.0);
        assert_eq!(scenario.phases[2].level, Some(Level::Hard));
        assert_eq!(scenario.phases[2].prometheus, MetricsPath::Down);
        let wrapped = format!("{{\"phases\": {text}}}");
        assert_eq!(
            Scenario::from_json("mine", &wrapped, 10_000).ok(),
            Some(scenario)
        );
    }

    #[test]
    fn refuses_bad_files_with_one_line_naming_the_phase() {
        let cases = [
            ("[]", "no phases"),
            ("{\"phase\": []}", "expected a JSON list"),
            (
                "[{\"name\": \"a\", \"duration\": 10}]",
                "phase 1 (\"a\"): \"depth\" is missing",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 0, \"depth\": 1}]",
                "at least 1s",
            ),
            (
                "[{\"name\": \"a\", \"duration\": \"1.5s\", \"depth\": 1}]",
                "whole number",
            ),
            (
                "[{\"name\": \"a\", \"duration\": \"soon\", \"depth\": 1}]",
                "duration \"soon\"",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": 20000}]",
                "within 0..=10000",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": [1, 2, 3]}]",
                "[from, to]",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": -1}]",
                "within",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": 1, \"level\": \"red\"}]",
                "unknown level",
            ),
            (
                "[{\"name\": \"a,b\", \"duration\": 5, \"depth\": 1}]",
                "letters, digits",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": 1, \"deep\": 1}]",
                "unknown field",
            ),
            (
                "[{\"name\": \"a\", \"duration\": 5, \"depth\": 1, \"jitter\": -2}]",
                "jitter",
            ),
            (
                "[{\"name\": \"a\", \"duration\": \"30d\", \"depth\": 1}]",
                "longer than",
            ),
            ("[{\"name\": \"a\"", "EOF"),
        ];
        for (text, expected) in cases {
            let error = Scenario::from_json("t", text, 10_000)
                .expect_err(text)
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains('\n'), "{text}: {error}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Scenario::from_file(Path::new("/nonexistent/x.json"), 10_000)
            .expect_err("no such file")
            .to_string();
        assert!(
            error.starts_with("invalid --scenario-file /nonexistent/x.json: "),
            "{error}"
        );
    }
}
