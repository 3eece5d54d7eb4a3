//! Backpressure level: the one vocabulary shared by intake, control, metrics and export.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Backpressure level reported by (or derived for) the store, ordered by severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The queue drains: full rate.
    #[default]
    Ok,
    /// The queue is filling: slow down.
    Soft,
    /// The queue is nearly full: pause.
    Hard,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Ok, Level::Soft, Level::Hard];

    /// Numeric value exported as `pipeline_backpressure_state` (0=ok, 1=soft, 2=hard).
    pub fn as_gauge(self) -> i64 {
        match self {
            Level::Ok => 0,
            Level::Soft => 1,
            Level::Hard => 2,
        }
    }

    /// Lower-case name used in JSON, labels and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Soft => "soft",
            Level::Hard => "hard",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a string that names no level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected ok, soft or hard)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ok" => Ok(Level::Ok),
            "soft" => Ok(Level::Soft),
            "hard" => Ok(Level::Hard),
            _ => Err(UnknownLevel(s.to_owned())),
        }
    }
}
