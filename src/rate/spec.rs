//! Parsing provider specifications such as `ibkr=60/s,burst=100`.

use super::TokenBucket;
use std::str::FromStr;
use std::time::Duration;

/// A provider's name, base rate (tokens per second) and burst.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: String,
    pub rate: f64,
    pub burst: f64,
}

/// Why a provider specification was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderSpecError {
    #[error("expected NAME=RATE[/UNIT][,burst=N], e.g. ibkr=60/s,burst=100; got {0:?}")]
    Shape(String),
    #[error("provider name {0:?} must be 1-64 characters of A-Z a-z 0-9 _ -")]
    Name(String),
    #[error("rate {0:?} must be a number > 0 per s, m, h or a duration such as 2s")]
    Rate(String),
    #[error("burst {0:?} must be a number >= 1")]
    Burst(String),
}

impl Default for ProviderSpec {
    /// The Python service's default: ibkr, 60 requests/s, burst 100.
    fn default() -> Self {
        ProviderSpec {
            name: "ibkr".into(),
            rate: 60.0,
            burst: 100.0,
        }
    }
}

impl ProviderSpec {
    pub(super) fn bucket(&self, now: Duration) -> TokenBucket {
        TokenBucket::try_new(self.rate, self.burst, now)
            .expect("ProviderSpec::from_str validated rate and burst")
    }
}

/// Whether `name` is safe as a Prometheus label value and a URL segment.
pub fn is_label_safe(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn parse_rate(text: &str) -> Option<f64> {
    let (count, per) = match text.split_once('/') {
        Some((count, unit)) => {
            let per = match unit.trim() {
                "s" | "sec" => Duration::from_secs(1),
                "m" | "min" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                other => humantime::parse_duration(other).ok()?,
            };
            (count, per)
        }
        None => (text, Duration::from_secs(1)),
    };
    let count: f64 = count.trim().parse().ok()?;
    let rate = count / per.as_secs_f64();
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

impl FromStr for ProviderSpec {
    type Err = ProviderSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| ProviderSpecError::Shape(text.to_owned()))?;
        let name = name.trim();
        if !is_label_safe(name, 64) || name.contains(['.', ':']) {
            return Err(ProviderSpecError::Name(name.to_owned()));
        }
        let mut parts = rest.split(',');
        let rate_text = parts.next().unwrap_or_default();
        let rate =
            parse_rate(rate_text).ok_or_else(|| ProviderSpecError::Rate(rate_text.into()))?;
        let mut burst = rate.max(1.0);
        for part in parts {
            match part.trim().split_once('=') {
                Some(("burst", value)) => {
                    burst = value
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|b| b.is_finite() && *b >= 1.0)
                        .ok_or_else(|| ProviderSpecError::Burst(value.into()))?;
                }
                _ => return Err(ProviderSpecError::Shape(text.to_owned())),
            }
        }
        Ok(ProviderSpec {
            name: name.to_owned(),
            rate,
            burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let spec: ProviderSpec = "ibkr=60/s,burst=100".parse().expect("valid");
        assert_eq!(spec, ProviderSpec::default());
        let spec: ProviderSpec = "slow=120/m".parse().expect("valid");
        assert_eq!((spec.rate, spec.burst), (2.0, 2.0));
        let spec: ProviderSpec = "x=5/500ms,burst=3".parse().expect("valid");
        assert_eq!((spec.rate, spec.burst), (10.0, 3.0));
        let spec: ProviderSpec = "y=0.5".parse().expect("valid");
        assert_eq!((spec.rate, spec.burst), (0.5, 1.0));
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        for bad in [
            "ibkr",
            "=60/s",
            "ib kr=60/s",
            "ibkr=0/s",
            "ibkr=-1/s",
            "ibkr=NaN/s",
            "ibkr=60/fortnightly",
            "ibkr=60/s,burst=0",
            "ibkr=60/s,burst=inf",
            "ibkr=60/s,bust=10",
        ] {
            assert!(bad.parse::<ProviderSpec>().is_err(), "{bad} was accepted");
        }
    }
}
