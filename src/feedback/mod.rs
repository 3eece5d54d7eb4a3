//! Feedback intake: the store's pushed events (validated here) and the pull poller.

pub mod client;
pub mod exposition;
pub mod pull;

use crate::control::{Observation, Source};
use crate::level::Level;
use serde::Deserialize;

/// Longest coordinator id accepted; ids become label values.
pub const MAX_COORDINATOR_ID: usize = 64;
/// Longest free-text field (reason, source) kept.
pub const MAX_TEXT: usize = 256;

/// The union of the store broadcaster's payload
/// (`coordinator_id, queue_size, capacity, level, reason, utilization`) and the
/// core `FeedbackEvent` (`coordinator_id, queue_size, capacity, level, source, ts`).
/// Unknown fields are ignored; the types are strict.
#[derive(Debug, Deserialize)]
struct Payload {
    coordinator_id: String,
    queue_size: u64,
    capacity: u64,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    ts: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// Why an event was refused; `reason()` is its metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedbackError {
    #[error("body is not a valid feedback event: {0}")]
    Malformed(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Stamped further ahead of the receive time than the clocks may differ:
    /// accepted, it would make every later, honest event look older.
    #[error(
        "ts: {ahead:.1} s ahead of this server's clock, more than --max-clock-skew ({max:.0} s) allows; check the sender's clock"
    )]
    FromTheFuture { ahead: f64, max: f64 },
}

impl FeedbackError {
    /// Low-cardinality label for `mdp_feedback_events_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            FeedbackError::Malformed(_) => "malformed",
            FeedbackError::Invalid { .. } => "invalid",
            FeedbackError::FromTheFuture { .. } => "clock_skew",
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> FeedbackError {
    FeedbackError::Invalid {
        field,
        message: message.into(),
    }
}

/// Parses and validates one pushed event; `received_at` (Unix seconds) stands
/// in for a missing `ts`, and a `ts` more than `max_skew` ahead of it is refused.
pub fn parse_event(
    body: &[u8],
    received_at: f64,
    max_skew: std::time::Duration,
) -> Result<Observation, FeedbackError> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| FeedbackError::Malformed(e.to_string()))?;
    let observation = validate(payload, received_at)?;
    let ahead = observation.ts - received_at;
    if ahead > max_skew.as_secs_f64() {
        return Err(FeedbackError::FromTheFuture {
            ahead,
            max: max_skew.as_secs_f64(),
        });
    }
    Ok(observation)
}

fn validate(payload: Payload, received_at: f64) -> Result<Observation, FeedbackError> {
    let id = payload.coordinator_id;
    if !crate::rate::is_label_safe(&id, MAX_COORDINATOR_ID) {
        return Err(invalid(
            "coordinator_id",
            format!("must be 1-{MAX_COORDINATOR_ID} characters of A-Z a-z 0-9 _ - . :"),
        ));
    }
    if payload.capacity == 0 {
        return Err(invalid("capacity", "must be > 0"));
    }
    // u64 in JSON goes beyond what f64 holds exactly; no real queue is that deep.
    const MAX_DEPTH: u64 = 1 << 53;
    if payload.capacity > MAX_DEPTH || payload.queue_size > MAX_DEPTH {
        return Err(invalid(
            "queue_size",
            "queue_size and capacity must be <= 2^53",
        ));
    }
    let level = payload
        .level
        .map(|text| text.parse::<Level>())
        .transpose()
        .map_err(|e| invalid("level", e.to_string()))?;
    let ts = match payload.ts {
        None => received_at,
        Some(ts) if ts.is_finite() && ts >= 0.0 => ts,
        Some(ts) => {
            return Err(invalid(
                "ts",
                format!("must be Unix seconds >= 0, got {ts}"),
            ));
        }
    };
    let reason = payload.reason.map(|r| truncate(r, MAX_TEXT));
    // `source` names the sender in the core event; it is informational only.
    let _ = payload.source;
    Ok(Observation {
        coordinator_id: id,
        queue_size: payload.queue_size,
        capacity: payload.capacity,
        level,
        ts,
        source: Source::Push,
        reason,
    })
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn events_from_the_future_are_refused_within_the_skew_accepted() {
        let at = |ts: &str| {
            let body =
                format!(r#"{{"coordinator_id":"c","queue_size":1,"capacity":10,"ts":{ts}}}"#);
            parse_event(body.as_bytes(), 1_700_000_000.0, SKEW)
        };
        assert!(at("1700000060").is_ok(), "exactly the skew is allowed");
        let refused = at("1700000060.5").expect_err("beyond the skew");
        assert_eq!(refused.reason(), "clock_skew");
        assert!(refused.to_string().contains("60.5 s ahead"), "{refused}");
        assert_eq!(at("1e30").expect_err("far future").reason(), "clock_skew");
        assert!(
            at("1600000000").is_ok(),
            "the past is for the ordering rule"
        );
    }

    #[test]
    fn accepts_the_store_broadcaster_payload() {
        let body = br#"{"coordinator_id":"store_01","queue_size":6000,"capacity":10000,"level":"soft","reason":null,"utilization":0.6}"#;
        let obs = parse_event(body, 42.0, SKEW).expect("valid");
        assert_eq!(obs.coordinator_id, "store_01");
        assert_eq!((obs.queue_size, obs.capacity), (6000, 10_000));
        assert_eq!(obs.level, Some(Level::Soft));
        assert_eq!(obs.ts, 42.0);
    }

    #[test]
    fn accepts_the_core_feedback_event() {
        let body = br#"{"coordinator_id":"c","queue_size":800,"capacity":10000,"level":"ok","source":"store","ts":1700000000.5}"#;
        let obs = parse_event(body, 1_700_000_001.0, SKEW).expect("valid");
        assert_eq!(obs.ts, 1_700_000_000.5);
        assert_eq!(obs.level, Some(Level::Ok));
    }

    #[test]
    fn level_is_optional() {
        let body = br#"{"coordinator_id":"c","queue_size":8000,"capacity":10000}"#;
        assert_eq!(parse_event(body, 1.0, SKEW).expect("valid").level, None);
    }

    #[test]
    fn refuses_bad_events_with_a_reason() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"[]",
            br#"{"queue_size":1,"capacity":10}"#,
            br#"{"coordinator_id":"","queue_size":1,"capacity":10}"#,
            br#"{"coordinator_id":"a b","queue_size":1,"capacity":10}"#,
            br#"{"coordinator_id":"a\"}","queue_size":1,"capacity":10}"#,
            br#"{"coordinator_id":"c","queue_size":-1,"capacity":10}"#,
            br#"{"coordinator_id":"c","queue_size":1.5,"capacity":10}"#,
            br#"{"coordinator_id":"c","queue_size":"1","capacity":10}"#,
            br#"{"coordinator_id":"c","queue_size":1,"capacity":0}"#,
            br#"{"coordinator_id":"c","queue_size":1,"capacity":10,"level":"panic"}"#,
            br#"{"coordinator_id":"c","queue_size":1,"capacity":10,"ts":-5}"#,
            br#"{"coordinator_id":"c","queue_size":1,"capacity":10,"ts":"now"}"#,
            br#"{"coordinator_id":"c","queue_size":1e300,"capacity":10}"#,
            br#"{"coordinator_id":"c","queue_size":99999999999999999999,"capacity":10}"#,
        ];
        for body in cases {
            assert!(
                parse_event(body, 1.0, SKEW).is_err(),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(300);
        let body =
            format!(r#"{{"coordinator_id":"c","queue_size":1,"capacity":10,"reason":"{reason}"}}"#);
        let obs = parse_event(body.as_bytes(), 1.0, SKEW).expect("valid");
        assert!(obs.reason.expect("kept").len() <= MAX_TEXT);
    }
}
