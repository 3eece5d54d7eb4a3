//! Pull mode: poll the store's own Prometheus endpoint for `mds_coord_queue_depth`.
//!
//! In Kubernetes every replica polls the same store, so every replica sees the
//! same feedback without the store knowing how many replicas there are.

use super::client::{FetchError, HttpClient};
use super::exposition::{self, Line, Sample};
use std::time::Duration;
use tokio::sync::watch;

/// Settings for polling the store.
#[derive(Debug, Clone, PartialEq)]
pub struct PullConfig {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Gauge to read, one series per coordinator.
    pub metric: String,
    /// Label naming the coordinator.
    pub label: String,
    /// Capacity assumed for every pulled coordinator (the store does not export it).
    pub capacity: u64,
}

/// One poll's result.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// Depth per coordinator id.
    Depths(Vec<(String, u64)>),
    Failed(PullError),
}

/// Why a poll failed; `reason()` is its metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PullError {
    #[error("request to the store failed: {0}")]
    Request(String),
    #[error("store answered HTTP {0}")]
    Status(u16),
    #[error("store metrics unreadable: {0}")]
    Parse(String),
    #[error("store metrics have no {0} series")]
    Missing(String),
}

impl PullError {
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::Request(_) => "request",
            PullError::Status(_) => "status",
            PullError::Parse(_) => "parse",
            PullError::Missing(_) => "missing",
        }
    }
}

/// Reads `metric{label="..."}` from a Prometheus text exposition. Series
/// without the label, with ids that are not label-safe, with values that are
/// not finite non-negative numbers, or of a metric declared as anything but a
/// gauge (or untyped) are skipped; none at all is an error. Lines of other
/// metrics are not looked at beyond their name.
pub fn parse_depths(
    text: &str,
    metric: &str,
    label: &str,
) -> Result<Vec<(String, u64)>, PullError> {
    let mut kind = None;
    let mut unreadable = None;
    let mut depths: Vec<(String, u64)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let start = line.trim_start_matches([' ', '\t']);
        if !start.starts_with('#') && !names(start, metric) {
            continue;
        }
        match exposition::parse_line(line) {
            Ok(Line::Type {
                name,
                kind: declared,
            }) if name == metric => kind = Some(declared),
            Ok(Line::Sample(sample)) if sample.name == metric => {
                if let Some(depth) = depth(&sample, label) {
                    depths.push(depth);
                }
            }
            Ok(_) => {}
            Err(error) => {
                unreadable.get_or_insert_with(|| format!("line {}: {error}", number + 1));
            }
        }
    }
    if !matches!(kind, None | Some("gauge" | "untyped")) {
        depths.clear();
    }
    if depths.is_empty() {
        return Err(match unreadable {
            Some(why) => PullError::Parse(why),
            None => PullError::Missing(format!("{metric}{{{label}}}")),
        });
    }
    depths.sort();
    depths.dedup_by(|a, b| a.0 == b.0);
    Ok(depths)
}

/// Whether a sample line starts with exactly this metric name.
fn names(line: &str, metric: &str) -> bool {
    line.strip_prefix(metric)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '{']))
}

fn depth(sample: &Sample<'_>, label: &str) -> Option<(String, u64)> {
    let id = sample.label(label)?;
    let valid = crate::rate::is_label_safe(id, super::MAX_COORDINATOR_ID)
        && (0.0..9.0e15).contains(&sample.value);
    valid.then(|| (id.to_owned(), sample.value.round() as u64))
}

/// Polls once.
pub async fn poll_once(client: &HttpClient, config: &PullConfig) -> PollOutcome {
    match fetch(client, config).await {
        Ok(text) => match parse_depths(&text, &config.metric, &config.label) {
            Ok(depths) => PollOutcome::Depths(depths),
            Err(e) => PollOutcome::Failed(e),
        },
        Err(e) => PollOutcome::Failed(e),
    }
}

/// Polls the store every interval and hands each result to `deliver`, until
/// shutdown (or until `deliver` says nobody listens any more).
pub async fn run<F, Fut>(
    client: HttpClient,
    config: PullConfig,
    mut deliver: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: FnMut(PollOutcome) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(url = %config.url, interval = ?config.interval, "polling the store's metrics");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let outcome = poll_once(&client, &config).await;
        if !deliver(outcome).await {
            return;
        }
    }
}

/// The most of a store's exposition read; a larger one is refused.
const MAX_EXPOSITION: usize = 8 * 1024 * 1024;

/// One GET of the store's metrics, body included, within the poll timeout.
async fn fetch(client: &HttpClient, config: &PullConfig) -> Result<String, PullError> {
    let response = tokio::time::timeout(config.timeout, client.get(&config.url, MAX_EXPOSITION))
        .await
        .map_err(|_| {
            PullError::Request(format!(
                "no answer within {}",
                humantime::format_duration(config.timeout)
            ))
        })?
        .map_err(|error| match error {
            FetchError::TooLarge(_) => PullError::Parse(error.to_string()),
            FetchError::Request(why) => PullError::Request(why),
        })?;
    if !response.status.is_success() {
        return Err(PullError::Status(response.status.as_u16()));
    }
    String::from_utf8(response.body.into()).map_err(|_| PullError::Parse("not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "\
# HELP mds_coord_queue_depth Current queue depth.
# TYPE mds_coord_queue_depth gauge
mds_coord_queue_depth{coord_id=\"store_01\"} 6000
mds_coord_queue_depth{coord_id=\"store_02\"} 120.0
mds_coord_queue_depth{other=\"x\"} 5
mds_coord_queue_depth{coord_id=\"bad id\"} 5
mds_coord_queue_depth{coord_id=\"neg\"} -3
mds_coord_queue_depth{coord_id=\"nan\"} NaN
# TYPE mds_other gauge
mds_other{coord_id=\"store_03\"} 9999
";

    #[test]
    fn reads_one_depth_per_coordinator() {
        let depths = parse_depths(STORE, "mds_coord_queue_depth", "coord_id").expect("valid");
        assert_eq!(
            depths,
            vec![("store_01".to_owned(), 6000), ("store_02".to_owned(), 120)]
        );
    }

    #[test]
    fn garbage_or_absence_is_an_error() {
        assert!(parse_depths("", "mds_coord_queue_depth", "coord_id").is_err());
        assert!(parse_depths("<html>oops</html>", "mds_coord_queue_depth", "coord_id").is_err());
        assert!(parse_depths("mds_other 1\n", "mds_coord_queue_depth", "coord_id").is_err());
    }

    fn depths(text: &str) -> Result<Vec<(String, u64)>, PullError> {
        parse_depths(text, "mds_coord_queue_depth", "coord_id")
    }

    #[test]
    fn only_the_metric_itself_is_read() {
        let text = "\
mds_coord_queue_depth_max{coord_id=\"a\"} 1
mds_coord_queue_depthx{coord_id=\"b\"} 2
<html>not { metrics=\"\"
mds_coord_queue_depth{zone=\"x\",coord_id=\"c\"} 3 1712345678901
mds_coord_queue_depth {coord_id=\"d\",} 4.4
";
        assert_eq!(
            depths(text),
            Ok(vec![("c".to_owned(), 3), ("d".to_owned(), 4)])
        );
    }

    #[test]
    fn a_metric_declared_as_a_counter_is_not_a_depth() {
        let text =
            "# TYPE mds_coord_queue_depth counter\nmds_coord_queue_depth{coord_id=\"a\"} 1\n";
        assert_eq!(
            depths(text),
            Err(PullError::Missing("mds_coord_queue_depth{coord_id}".into()))
        );
        let untyped =
            "# TYPE mds_coord_queue_depth untyped\nmds_coord_queue_depth{coord_id=\"a\"} 1\n";
        assert_eq!(depths(untyped), Ok(vec![("a".to_owned(), 1)]));
    }

    #[test]
    fn a_malformed_line_of_the_metric_is_skipped_and_named_if_nothing_else_is_left() {
        let broken = "# HELP x\nmds_coord_queue_depth{coord_id=\"a} 1\n";
        assert_eq!(
            depths(broken),
            Err(PullError::Parse("line 2: unterminated label value".into()))
        );
        let mixed = format!("{broken}mds_coord_queue_depth{{coord_id=\"b\"}} 7\n");
        assert_eq!(depths(&mixed), Ok(vec![("b".to_owned(), 7)]));
    }

    #[test]
    fn escaped_or_hostile_ids_are_not_coordinators() {
        let text = format!(
            "mds_coord_queue_depth{{coord_id=\"a\\\"b\"}} 1\n\
             mds_coord_queue_depth{{coord_id=\"{}\"}} 1\n\
             mds_coord_queue_depth{{coord_id=\"x\\ny\"}} 1\n\
             mds_coord_queue_depth{{coord_id=\"big\"}} 1e300\n\
             mds_coord_queue_depth{{coord_id=\"inf\"}} +Inf\n\
             mds_coord_queue_depth{{coord_id=\"ok\"}} 0\n",
            "x".repeat(65)
        );
        assert_eq!(depths(&text), Ok(vec![("ok".to_owned(), 0)]));
    }
}
