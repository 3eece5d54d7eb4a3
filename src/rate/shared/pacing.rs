//! Every pacing rule in the shared budget: the rules that apply to one acquire
//! are checked and taken in Redis by one atomic script ([`PACING_SCRIPT`]),
//! all or nothing, on the server's clock, so every pod draws from the same
//! windows, intervals, leases and buckets.
//!
//! State per rule (and per key or fingerprint of a keyed rule), under one hash
//! tag per provider so a Redis Cluster keeps a provider's keys in one slot:
//! - an exact sliding window: a sorted set of grants scored by their time,
//!   trimmed to the window on every call (never more than N in any window W);
//! - a minimum interval: a key set with `PX` expiry for the interval;
//! - a concurrency cap: a sorted set of leases scored by their expiry, so a
//!   lease a crashed worker never returns stops counting when it expires;
//! - a token bucket: a hash of tokens and the time of the last call.
//!
//! Redis that fails or is slow turns the shared mode off exactly as for the
//! provider bucket ([`SharedBudget::take`]): the caller then paces with its
//! local share, and the probe turns the shared mode back on.

use super::SharedBudget;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The pacing script; see the comment at its top for its arguments.
pub const PACING_SCRIPT: &str = include_str!("../pacing.lua");

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PACING_SCRIPT));

/// One rule as the script applies it, with the backpressure scale already in
/// its figures (a count or rate of 0 holds everything).
#[derive(Debug, Clone, PartialEq)]
pub enum SharedLimit {
    /// Never more than `count` tokens in any window of `window`.
    Window { count: u64, window: Duration },
    /// At least `min` between two grants under the key.
    Interval { min: Duration },
    /// At most `max` leases at once, each expiring after `lease`.
    Lease { max: u64, lease: Duration },
    /// A token bucket of `rate` tokens/s holding at most `burst`.
    Bucket { rate: f64, burst: f64 },
}

/// A rule that applies to an acquire: where its state lives and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedRule {
    /// From [`SharedBudget::pacing_key`].
    pub key: String,
    pub limit: SharedLimit,
    /// Tokens the request takes under this rule (windows and buckets).
    pub cost: u64,
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedPace {
    /// Taken from every rule at `at_us`, the server's time in microseconds.
    Granted { at_us: u64 },
    /// Rule `rule` (index into the rules given) holds it; None: no wait will do.
    Held {
        rule: usize,
        retry_after: Option<Duration>,
    },
}

/// Why a rule cannot be sent to the script.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SharedRuleError {
    #[error("a rule's window, interval or lease must be at least 1 ms")]
    Duration,
    #[error("a bucket's rate and burst must be finite and >= 0")]
    Bucket,
}

fn millis(duration: Duration) -> Result<u64, SharedRuleError> {
    match u64::try_from(duration.as_millis()) {
        Ok(ms) if ms >= 1 => Ok(ms),
        _ => Err(SharedRuleError::Duration),
    }
}

impl SharedRule {
    /// The four script arguments of this rule.
    fn args(&self) -> Result<(&'static str, String, String, u64), SharedRuleError> {
        Ok(match self.limit {
            SharedLimit::Window { count, window } => (
                "window",
                count.to_string(),
                millis(window)?.to_string(),
                self.cost,
            ),
            SharedLimit::Interval { min } => ("interval", millis(min)?.to_string(), "0".into(), 0),
            SharedLimit::Lease { max, lease } => {
                ("lease", max.to_string(), millis(lease)?.to_string(), 0)
            }
            SharedLimit::Bucket { rate, burst } => {
                if !(rate.is_finite() && burst.is_finite() && rate >= 0.0 && burst >= 0.0) {
                    return Err(SharedRuleError::Bucket);
                }
                ("bucket", rate.to_string(), burst.to_string(), self.cost)
            }
        })
    }
}

impl SharedBudget {
    /// The Redis key of `rule` of `provider`, for one `key` (or fingerprint)
    /// of a keyed rule: `PREFIX:{PROVIDER}:pacing:RULE[:KEY]`.
    pub fn pacing_key(&self, provider: &str, rule: &str, key: Option<&str>) -> String {
        let base = format!("{}:{{{provider}}}:pacing:{rule}", self.config.key_prefix);
        match key {
            Some(key) => format!("{base}:{key}"),
            None => base,
        }
    }

    /// Checks and takes every rule in one atomic call; `member` names the
    /// grant (unique: it is the lease id under lease rules). None when Redis
    /// is down or did not answer in time (the mode turns local at once).
    pub async fn pace(
        self: &Arc<Self>,
        member: &str,
        rules: &[SharedRule],
    ) -> Result<Option<SharedPace>, SharedRuleError> {
        let mut call = SCRIPT.prepare_invoke();
        call.arg(member).arg(rules.len());
        for rule in rules {
            let (kind, a, b, cost) = rule.args()?;
            call.key(&rule.key).arg(kind).arg(a).arg(b).arg(cost);
        }
        if !self.is_up() {
            return Ok(None);
        }
        Ok(match self.invoke::<(i64, i64, i64)>(&call).await {
            Some((1, _, at_us)) => Some(SharedPace::Granted {
                at_us: at_us.unsigned_abs(),
            }),
            Some((_, rule, wait_ms)) => Some(SharedPace::Held {
                rule: usize::try_from(rule - 1).unwrap_or(0),
                retry_after: u64::try_from(wait_ms).ok().map(Duration::from_millis),
            }),
            None => None,
        })
    }

    /// Returns lease `member` under every lease rule key given. False when
    /// Redis did not answer (the lease then expires on its own).
    pub async fn release_lease(self: &Arc<Self>, keys: &[String], member: &str) -> bool {
        if !self.is_up() || keys.is_empty() {
            return false;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            pipe.zrem(key, member).ignore();
        }
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.config.timeout, pipe.query_async::<()>(&mut connection))
            .await
        {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                self.fall_back(&error.to_string());
                false
            }
            Err(_) => {
                self.fall_back(&format!("no answer within {:?}", self.config.timeout));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_script_arguments_and_nonsense_is_refused() {
        let window = SharedRule {
            key: "k".into(),
            limit: SharedLimit::Window {
                count: 60,
                window: Duration::from_secs(600),
            },
            cost: 2,
        };
        assert_eq!(
            window.args(),
            Ok(("window", "60".into(), "600000".into(), 2))
        );
        let zero = SharedRule {
            limit: SharedLimit::Interval {
                min: Duration::from_micros(10),
            },
            ..window.clone()
        };
        assert_eq!(zero.args(), Err(SharedRuleError::Duration));
        let bucket = SharedRule {
            limit: SharedLimit::Bucket {
                rate: f64::NAN,
                burst: 1.0,
            },
            ..window
        };
        assert_eq!(bucket.args(), Err(SharedRuleError::Bucket));
    }
}
