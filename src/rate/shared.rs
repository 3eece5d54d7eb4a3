//! The shared budget: each provider's bucket kept in Redis (or Valkey), taken
//! by one atomic server-side script on the server's clock, so every pod draws
//! from one bucket and the sum over pods stays within `burst + rate x W`.
//!
//! Redis is never on the critical path for long: a call that fails or takes
//! longer than the timeout turns the shared mode off at once (the coordinator
//! then grants the pod's local share), logs once, and a background probe turns
//! it back on when Redis answers again.

pub mod pacing;

use super::Throttle;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The bucket script. KEYS[1]: the provider's bucket; ARGV: the rate in force
/// from now on (tokens/s, scaled), the capacity (tokens, scaled), the tokens
/// wanted, the key's lifetime in ms (0: keep it, as during a pause).
///
/// What accrued since the last call accrues at the rate stored by that call,
/// so a pause (rate 0) earns nothing however long it lasts, and a scale that
/// falls drops what the new capacity cannot hold. Time is the server's
/// (`TIME`), kept as its two integer parts so no precision is lost.
/// Returns `{granted (0/1), wait_ms (-1: never at this scale)}`.
pub const BUCKET_SCRIPT: &str = include_str!("bucket.lua");

/// How the shared budget is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedConfig {
    /// `redis://` or `rediss://` URL, with credentials if any (never logged).
    pub url: String,
    /// Prefix of the bucket keys (`PREFIX:PROVIDER`).
    pub key_prefix: String,
    /// Longest wait for one script call before falling back to the local share.
    pub timeout: Duration,
    /// How often a pod on the local share checks whether Redis answers again.
    pub probe_every: Duration,
}

/// Why the shared budget cannot be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SharedConfigError {
    #[error("not a redis:// or rediss:// URL ({0})")]
    Url(String),
}

impl SharedConfig {
    /// Checks the URL without connecting.
    pub fn validate(&self) -> Result<(), SharedConfigError> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(SharedConfigError::Url(
                "the scheme must be redis or rediss".into(),
            ));
        }
        redis::Client::open(self.url.as_str())
            .map(|_| ())
            .map_err(|e| SharedConfigError::Url(e.to_string()))
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***{}", &self.url[..scheme], &self.url[at..])
            }
            _ => self.url.clone(),
        }
    }
}

/// The shared bucket store and whether it answers.
pub struct SharedBudget {
    config: SharedConfig,
    connection: ConnectionManager,
    script: redis::Script,
    up: AtomicBool,
    probing: AtomicBool,
    /// Turns true/false as the shared mode comes and goes.
    mode: watch::Sender<bool>,
    /// When the last outage was logged: a Redis that is slow rather than down
    /// flaps at most once per probe, and is logged once per [`LOG_EVERY`].
    logged: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// A flapping Redis is logged at most this often (each change is in the metric).
const LOG_EVERY: Duration = Duration::from_secs(300);

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("url", &self.config.redacted_url())
            .field("up", &self.is_up())
            .finish()
    }
}

/// One answer of the script, or None when Redis did not answer in time.
pub type SharedTake = Option<Result<(), Throttle>>;

impl SharedBudget {
    /// Sets up the connection (lazily: nothing is sent yet) and starts the
    /// first probe; until it succeeds the pod grants its local share.
    /// Must run inside a tokio runtime.
    pub fn start(config: SharedConfig) -> Result<Arc<SharedBudget>, SharedConfigError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| SharedConfigError::Url(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.probe_every);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| SharedConfigError::Url(e.to_string()))?;
        let budget = Arc::new(SharedBudget {
            config,
            connection,
            script: redis::Script::new(BUCKET_SCRIPT),
            up: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            mode: watch::channel(false).0,
            logged: std::sync::Mutex::new(None),
        });
        budget.clone().spawn_probe(true, true);
        Ok(budget)
    }

    /// Whether the shared bucket is in use right now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Follows the mode (true: shared).
    pub fn watch_mode(&self) -> watch::Receiver<bool> {
        self.mode.subscribe()
    }

    fn key(&self, provider: &str) -> String {
        format!("{}:{provider}", self.config.key_prefix)
    }

    /// Runs the script once for `provider`: `wanted` tokens (0 only records the
    /// new rate) at `rate` tokens/s with `capacity`. None when Redis is down or
    /// did not answer within the timeout (the mode turns local at once).
    pub async fn take(
        self: &Arc<Self>,
        provider: &str,
        rate: f64,
        capacity: f64,
        wanted: f64,
    ) -> SharedTake {
        if !self.is_up() {
            return None;
        }
        let lifetime_ms = if rate > 0.0 {
            // Long enough that an idle bucket has refilled before it expires
            // (an absent bucket starts full, exactly what it would hold).
            ((capacity / rate) * 1000.0).ceil() as u64 + 60_000
        } else {
            0
        };
        let mut call = self.script.prepare_invoke();
        call.key(self.key(provider))
            .arg(rate)
            .arg(capacity)
            .arg(wanted)
            .arg(lifetime_ms);
        match self.invoke::<(i64, i64)>(&call).await? {
            (1, _) => Some(Ok(())),
            (_, wait_ms) if wait_ms >= 0 => Some(Err(Throttle::RetryAfter(Duration::from_millis(
                wait_ms.unsigned_abs(),
            )))),
            _ => Some(Err(Throttle::Paused)),
        }
    }

    /// Runs `call` within the timeout; None (and the local share from now
    /// on) when Redis fails or does not answer in time.
    async fn invoke<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        call: &redis::ScriptInvocation<'_>,
    ) -> Option<T> {
        let mut connection = self.connection.clone();
        let answer =
            tokio::time::timeout(self.config.timeout, call.invoke_async::<T>(&mut connection))
                .await;
        match answer {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.fall_back(&error.to_string());
                None
            }
            Err(_) => {
                self.fall_back(&format!("no answer within {:?}", self.config.timeout));
                None
            }
        }
    }

    /// Turns the shared mode off (logged once per outage) and starts probing.
    fn fall_back(self: &Arc<Self>, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.mode.send_replace(false);
            let now = tokio::time::Instant::now();
            let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
            let quiet = logged.is_some_and(|at| now.duration_since(at) < LOG_EVERY);
            self.clone().spawn_probe(false, !quiet);
            if quiet {
                return;
            }
            *logged = Some(now);
            tracing::warn!(
                redis = %self.config.redacted_url(),
                "shared budget unavailable ({why}): each pod grants its local share until Redis answers"
            );
        }
    }

    /// Probes until Redis answers, then turns the shared mode on (announced
    /// when `announce`: the outage was logged).
    fn spawn_probe(self: Arc<Self>, first: bool, announce: bool) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            let mut warned = !first;
            if !first {
                // Not at once: a Redis that answers a PING but not a script in
                // time would otherwise flap on every request.
                tokio::time::sleep(self.config.probe_every).await;
            }
            loop {
                let mut connection = self.connection.clone();
                let ping = tokio::time::timeout(
                    self.config.timeout.max(Duration::from_millis(500)),
                    redis::cmd("PING").query_async::<String>(&mut connection),
                )
                .await;
                match ping {
                    Ok(Ok(_)) => break,
                    Ok(Err(error)) if !warned => {
                        tracing::warn!(redis = %self.config.redacted_url(), "shared budget not reachable yet ({error}): granting the local share meanwhile");
                        warned = true;
                    }
                    Err(_) if !warned => {
                        tracing::warn!(redis = %self.config.redacted_url(), "shared budget not reachable yet (no answer): granting the local share meanwhile");
                        warned = true;
                    }
                    _ => {}
                }
                tokio::time::sleep(self.config.probe_every).await;
            }
            self.probing.store(false, Ordering::Release);
            self.up.store(true, Ordering::Release);
            self.mode.send_replace(true);
            if announce {
                tracing::info!(redis = %self.config.redacted_url(), "shared budget in use: every pod takes tokens from one bucket in Redis");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> SharedConfig {
        SharedConfig {
            url: url.into(),
            key_prefix: "mdp:budget".into(),
            timeout: Duration::from_millis(50),
            probe_every: Duration::from_secs(1),
        }
    }

    #[test]
    fn validates_the_url_and_never_logs_the_password() {
        assert!(config("redis://127.0.0.1:6379/0").validate().is_ok());
        assert!(
            config("rediss://user:secret@redis.example:6380")
                .validate()
                .is_ok()
        );
        assert!(config("http://127.0.0.1:6379").validate().is_err());
        let redacted = config("rediss://user:secret@redis.example:6380").redacted_url();
        assert_eq!(redacted, "rediss://***@redis.example:6380");
        assert!(!redacted.contains("secret"));
    }
}
