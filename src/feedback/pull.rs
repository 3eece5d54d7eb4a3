//! Pull mode: poll the store's own Prometheus endpoint for `mds_coord_queue_depth`.
//!
//! In Kubernetes every replica polls the same store, so every replica sees the
//! same feedback without the store knowing how many replicas there are.

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
/// without the label, with ids that are not label-safe, or with values that
/// are not finite non-negative numbers are skipped; none at all is an error.
pub fn parse_depths(
    text: &str,
    metric: &str,
    label: &str,
) -> Result<Vec<(String, u64)>, PullError> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape =
        prometheus_parse::Scrape::parse(lines).map_err(|e| PullError::Parse(e.to_string()))?;
    let mut depths: Vec<(String, u64)> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter_map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let id = sample.labels.get(label)?;
            let valid = crate::rate::is_label_safe(id, super::MAX_COORDINATOR_ID)
                && (0.0..9.0e15).contains(&value);
            valid.then(|| (id.to_owned(), value.round() as u64))
        })
        .collect();
    if depths.is_empty() {
        return Err(PullError::Missing(format!("{metric}{{{label}}}")));
    }
    depths.sort();
    depths.dedup_by(|a, b| a.0 == b.0);
    Ok(depths)
}

/// Polls once.
pub async fn poll_once(client: &reqwest::Client, config: &PullConfig) -> PollOutcome {
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
    client: reqwest::Client,
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

/// The HTTP client the poller uses.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        // A pure-Rust resolver: the static binary has no NSS modules.
        .hickory_dns(true)
        .user_agent(concat!("mdp/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| error_chain(&e))
}

/// The most of a store's exposition read; a larger one is refused.
const MAX_EXPOSITION: usize = 8 * 1024 * 1024;

async fn fetch(client: &reqwest::Client, config: &PullConfig) -> Result<String, PullError> {
    let mut response = client
        .get(&config.url)
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| PullError::Request(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(PullError::Status(response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| PullError::Request(error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_EXPOSITION {
            return Err(PullError::Parse(format!(
                "larger than {MAX_EXPOSITION} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| PullError::Parse("not UTF-8".into()))
}

/// An error with its causes, so a log line says *why* the request failed
/// (refused, timed out, name not found) rather than just that it did.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
}
