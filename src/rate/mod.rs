//! Rate coordinator: one scaled token bucket per provider, shared by every acquirer.

mod bucket;
mod spec;

pub use bucket::{BucketError, Throttle, TokenBucket};
pub use spec::{ProviderSpec, ProviderSpecError, is_label_safe};

use crate::clock::Clock;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One provider: its bucket and counters.
#[derive(Debug)]
pub struct Provider {
    spec: ProviderSpec,
    /// Whether backpressure feedback scales this provider.
    feedback: bool,
    bucket: Mutex<Scaled>,
    granted: AtomicU64,
    throttled: AtomicU64,
}

#[derive(Debug)]
struct Scaled {
    bucket: TokenBucket,
    control_scale: f64,
    share: f64,
}

impl Scaled {
    fn apply(&mut self, now: Duration) {
        self.bucket.set_scale(self.control_scale * self.share, now);
    }
}

/// A provider as shown in the state API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderView {
    pub name: String,
    pub base_rate: f64,
    pub burst: f64,
    /// The control scale (the level's scale factor) applied to this provider.
    pub scale: f64,
    /// This replica's share of the provider's budget.
    pub share: f64,
    pub effective_rate: f64,
    pub effective_burst: f64,
    pub feedback: bool,
    pub tokens_granted: u64,
    pub requests_throttled: u64,
}

/// The outcome of one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Grant {
    Granted,
    Throttled(Throttle),
}

/// Every configured provider's bucket, looked up by name.
#[derive(Debug)]
pub struct RateCoordinator {
    providers: Vec<Provider>,
    clock: Clock,
}

impl RateCoordinator {
    /// Buckets for `specs`; feedback scales the one named by `feedback_for`,
    /// or all of them when it is None.
    pub fn new(specs: &[ProviderSpec], feedback_for: Option<&str>, clock: Clock) -> Self {
        let now = clock.now();
        let providers = specs
            .iter()
            .map(|spec| Provider {
                feedback: feedback_for.is_none_or(|name| name == spec.name),
                bucket: Mutex::new(Scaled {
                    bucket: spec.bucket(now),
                    control_scale: 1.0,
                    share: 1.0,
                }),
                spec: spec.clone(),
                granted: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
            })
            .collect();
        RateCoordinator { providers, clock }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.spec.name.as_str())
    }

    fn find(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.spec.name == name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Applies the control scale to every provider that takes feedback.
    pub fn set_control_scale(&self, scale: f64) {
        let now = self.clock.now();
        for provider in self.providers.iter().filter(|p| p.feedback) {
            let mut scaled = lock(&provider.bucket);
            scaled.control_scale = scale;
            scaled.apply(now);
        }
    }

    /// Sets this replica's share of every provider's budget (1/N for N replicas).
    pub fn set_share(&self, share: f64) {
        let now = self.clock.now();
        for provider in &self.providers {
            let mut scaled = lock(&provider.bucket);
            scaled.share = share;
            scaled.apply(now);
        }
    }

    /// Tries to take `tokens` from `provider`; None when it is unknown.
    pub fn try_acquire(&self, provider: &str, tokens: f64) -> Option<Grant> {
        let provider = self.find(provider)?;
        let now = self.clock.now();
        let result = lock(&provider.bucket).bucket.try_acquire(tokens, now);
        Some(match result {
            Ok(()) => {
                provider.granted.fetch_add(tokens as u64, Ordering::Relaxed);
                Grant::Granted
            }
            Err(throttle) => {
                provider.throttled.fetch_add(1, Ordering::Relaxed);
                Grant::Throttled(throttle)
            }
        })
    }

    /// The configured burst of `provider`, the most one request may ask for.
    pub fn burst_of(&self, provider: &str) -> Option<f64> {
        self.find(provider).map(|p| p.spec.burst)
    }

    pub fn views(&self) -> Vec<ProviderView> {
        self.providers.iter().map(view).collect()
    }
}

fn view(provider: &Provider) -> ProviderView {
    let scaled = lock(&provider.bucket);
    ProviderView {
        name: provider.spec.name.clone(),
        base_rate: provider.spec.rate,
        burst: provider.spec.burst,
        scale: scaled.control_scale,
        share: scaled.share,
        effective_rate: scaled.bucket.rate(),
        effective_burst: scaled.bucket.capacity(),
        feedback: provider.feedback,
        tokens_granted: provider.granted.load(Ordering::Relaxed),
        requests_throttled: provider.throttled.load(Ordering::Relaxed),
    }
}

/// Bucket arithmetic cannot leave a bucket half-updated, so a poisoned lock
/// (a panic elsewhere while held) still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(feedback_for: Option<&str>) -> RateCoordinator {
        let specs = [
            "ibkr=60/s,burst=100"
                .parse::<ProviderSpec>()
                .expect("valid"),
            "polygon=10/s".parse::<ProviderSpec>().expect("valid"),
        ];
        RateCoordinator::new(&specs, feedback_for, Clock::new())
    }

    #[test]
    fn feedback_scales_every_provider_by_default() {
        let rates = coordinator(None);
        rates.set_control_scale(0.5);
        let views = rates.views();
        assert_eq!(views[0].effective_rate, 30.0);
        assert_eq!(views[1].effective_rate, 5.0);
    }

    #[test]
    fn feedback_can_be_limited_to_one_provider() {
        let rates = coordinator(Some("ibkr"));
        rates.set_control_scale(0.0);
        assert_eq!(
            rates.try_acquire("ibkr", 1.0),
            Some(Grant::Throttled(Throttle::Paused))
        );
        assert_eq!(rates.try_acquire("polygon", 1.0), Some(Grant::Granted));
        assert_eq!(rates.try_acquire("nope", 1.0), None);
    }

    #[test]
    fn share_and_scale_multiply() {
        let rates = coordinator(None);
        rates.set_share(0.25);
        rates.set_control_scale(0.5);
        let ibkr = &rates.views()[0];
        assert_eq!(ibkr.effective_rate, 7.5);
        assert_eq!(ibkr.effective_burst, 12.5);
    }

    #[test]
    fn counts_grants_and_throttles() {
        let rates = coordinator(None);
        for _ in 0..120 {
            rates.try_acquire("ibkr", 1.0);
        }
        let ibkr = &rates.views()[0];
        assert!(ibkr.tokens_granted >= 100 && ibkr.tokens_granted < 110);
        assert_eq!(ibkr.tokens_granted + ibkr.requests_throttled, 120);
    }
}
