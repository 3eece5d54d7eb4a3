//! Rate coordinator: one scaled token bucket per provider, shared by every acquirer.
//!
//! Each provider's tokens come from one of two places:
//! - *local*: this pod's bucket, holding its share of the budget (1/N of the
//!   rate and burst, at least one token of capacity, see [`MIN_CAPACITY`]);
//! - *shared*: one bucket in Redis for all pods ([`shared`]), used while Redis
//!   answers; the local bucket takes over at once when it does not.
//!
//! Acquires are served in arrival order: a request that cannot be granted at
//! once and is willing to wait joins the provider's queue, and nothing behind
//! it is granted before it (as Go's `x/time/rate` `ReserveN` reserves in
//! order). Grants and refusals are counted here, once per request, and the
//! API and `/metrics` read the same counters.

mod bucket;
mod paced;
pub mod pacing;
pub mod shared;
mod spec;

pub use bucket::{BucketError, MIN_CAPACITY, Throttle, TokenBucket};
pub use paced::{PacedGrant, PacedProviders, PacedRefusal, pacing_labels};
pub use shared::{SharedBudget, SharedConfig, SharedConfigError};
pub use spec::{ProviderSpec, ProviderSpecError, is_label_safe};

use crate::clock::Clock;
use crate::telemetry::{Counter, Metrics};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Advice to a worker refused during a pause: look again after this long.
pub const PAUSED_RETRY: Duration = Duration::from_secs(1);

/// One provider: its bucket, its queue of waiters and counters.
#[derive(Debug)]
pub struct Provider {
    spec: ProviderSpec,
    /// Whether backpressure feedback scales this provider.
    feedback: bool,
    bucket: Mutex<Scaled>,
    queue: Mutex<Waiters>,
    /// The ticket at the front of the queue (or the next one when it is empty).
    head: watch::Sender<u64>,
    granted: Counter,
    throttled: Counter,
}

#[derive(Debug, Default)]
struct Waiters {
    next: u64,
    /// (ticket, tokens) in arrival order.
    queue: VecDeque<(u64, u32)>,
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

    /// Rate and capacity of the whole budget at the control scale (shared mode).
    fn shared_limits(&self) -> (f64, f64) {
        let scale = self.control_scale.clamp(0.0, 1.0);
        let rate = self.bucket.base_rate() * scale;
        let capacity = if scale > 0.0 {
            (self.bucket.base_burst() * scale).max(MIN_CAPACITY)
        } else {
            0.0
        };
        (rate, capacity)
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
    /// This replica's share of the provider's budget (used while not shared).
    pub share: f64,
    pub effective_rate: f64,
    pub effective_burst: f64,
    pub feedback: bool,
    /// Where tokens come from now: `local` (this pod's share) or `shared` (Redis).
    pub budget: &'static str,
    /// The most tokens one request may ask for.
    pub max_tokens: u32,
    pub tokens_granted: u64,
    /// Acquire requests refused (each counted once, however long it waited).
    pub requests_throttled: u64,
    /// Requests waiting for tokens right now.
    pub waiting: usize,
    /// The rules, pushback and leases of a paced provider (whose rate and
    /// burst above are those of its tightest provider-wide rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<pacing::ProviderStatus>,
}

/// The outcome of one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Grant {
    Granted,
    Throttled(Throttle),
}

/// Why an acquire was not granted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// No such provider.
    Unknown,
    /// More tokens than the provider can ever grant at once.
    TooMany { limit: u32 },
    /// Not now: look again after this long.
    Throttled { retry_after: Duration },
}

/// Every configured provider's bucket, looked up by name.
#[derive(Debug)]
pub struct RateCoordinator {
    providers: Vec<Provider>,
    clock: Clock,
    shared: Option<Arc<SharedBudget>>,
    /// The providers paced by their published rules.
    paced: Option<PacedProviders>,
    /// Bumped whenever a scale, share or mode changes, to wake waiters.
    changes: watch::Sender<u64>,
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
                queue: Mutex::new(Waiters::default()),
                head: watch::channel(0).0,
                spec: spec.clone(),
                granted: Counter::standalone(),
                throttled: Counter::standalone(),
            })
            .collect();
        RateCoordinator {
            providers,
            clock,
            shared: None,
            paced: None,
            changes: watch::channel(0).0,
        }
    }

    /// Counts into the providers' series of `metrics`, the ones `/metrics` shows.
    pub fn with_counters(mut self, metrics: &Metrics) -> Self {
        for provider in &mut self.providers {
            if let Some(series) = metrics.provider(&provider.spec.name) {
                provider.granted = series.tokens_granted();
                provider.throttled = series.requests_throttled();
            }
        }
        self
    }

    /// Adds the providers paced by their published rules.
    pub fn with_paced(mut self, paced: PacedProviders) -> Self {
        self.paced = Some(paced);
        self
    }

    /// The paced providers, if any.
    pub fn paced(&self) -> Option<&PacedProviders> {
        self.paced.as_ref()
    }

    /// Takes tokens from the shared bucket while it answers.
    pub fn with_shared(mut self, shared: Arc<SharedBudget>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared budget, when one is configured.
    pub fn shared(&self) -> Option<&Arc<SharedBudget>> {
        self.shared.as_ref()
    }

    /// Wakes waiters after a change of mode (the shared budget came or went).
    pub fn notify_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers
            .iter()
            .map(|p| p.spec.name.as_str())
            .chain(self.paced.iter().flat_map(|p| p.names()))
    }

    fn find(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.spec.name == name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some() || self.paced.as_ref().is_some_and(|p| p.contains(name))
    }

    fn sharing(&self) -> Option<&Arc<SharedBudget>> {
        self.shared.as_ref().filter(|s| s.is_up())
    }

    /// Applies the control scale to every provider that takes feedback.
    pub fn set_control_scale(&self, scale: f64) {
        let now = self.clock.now();
        for provider in self.providers.iter().filter(|p| p.feedback) {
            let limits = {
                let mut scaled = lock(&provider.bucket);
                let changed = scaled.control_scale != scale;
                scaled.control_scale = scale;
                scaled.apply(now);
                changed.then(|| scaled.shared_limits())
            };
            // The shared bucket accrues at the rate of its last call: tell it
            // the new one now, so a pause earns nothing while it lasts.
            if let (Some((rate, capacity)), Some(shared)) = (limits, self.sharing()) {
                let (shared, name) = (shared.clone(), provider.spec.name.clone());
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { shared.take(&name, rate, capacity, 0.0).await });
                }
            }
        }
        if let Some(paced) = &self.paced {
            paced.set_control_scale(scale);
        }
        self.notify_change();
    }

    /// Sets this replica's share of every provider's budget (1/N for N replicas).
    pub fn set_share(&self, share: f64) {
        if let Some(paced) = &self.paced {
            paced.set_share(share);
        }
        let now = self.clock.now();
        for provider in &self.providers {
            let mut scaled = lock(&provider.bucket);
            scaled.share = share;
            scaled.apply(now);
        }
        self.notify_change();
    }

    /// The most tokens one request for `provider` may ask for: the whole burst
    /// with a shared budget (while Redis is away, more than the local share
    /// holds is refused with a retry, not as impossible), else what this pod's
    /// bucket holds at full scale.
    pub fn max_tokens(&self, provider: &str) -> Option<u32> {
        let provider = self.find(provider)?;
        Some(max_tokens(provider, self.shared.is_some()))
    }

    /// Takes `tokens` from `provider`'s local bucket at once, without waiting
    /// and without the shared budget (the demo's in-process workers); counts
    /// the outcome. None when the provider is unknown.
    pub fn try_acquire(&self, provider: &str, tokens: f64) -> Option<Grant> {
        let provider = self.find(provider)?;
        let result = if lock(&provider.queue).queue.is_empty() {
            let now = self.clock.now();
            lock(&provider.bucket).bucket.try_acquire(tokens, now)
        } else {
            Err(Throttle::RetryAfter(PAUSED_RETRY))
        };
        Some(match result {
            Ok(()) => {
                provider.granted.inc_by(tokens as u64);
                Grant::Granted
            }
            Err(throttle) => {
                provider.throttled.inc();
                Grant::Throttled(throttle)
            }
        })
    }

    /// Takes `tokens` from `provider`, waiting up to `max_wait` in arrival
    /// order; counts the outcome once. Ok carries the time waited.
    pub async fn acquire(
        &self,
        provider: &str,
        tokens: u32,
        max_wait: Duration,
    ) -> Result<Duration, Refusal> {
        let provider = self.find(provider).ok_or(Refusal::Unknown)?;
        let limit = max_tokens(provider, self.shared.is_some());
        if tokens == 0 || tokens > limit {
            return Err(Refusal::TooMany { limit });
        }
        let result = self.acquire_in_order(provider, tokens, max_wait).await;
        match result {
            Ok(_) => provider.granted.inc_by(u64::from(tokens)),
            Err(_) => provider.throttled.inc(),
        }
        result
    }

    async fn acquire_in_order(
        &self,
        provider: &Provider,
        tokens: u32,
        max_wait: Duration,
    ) -> Result<Duration, Refusal> {
        let started = Instant::now();
        let deadline = started + max_wait;
        // Nobody waiting: try at once, as most requests are served.
        let queued = lock(&provider.queue).queue.len();
        let first = if queued == 0 {
            match self.attempt(provider, tokens).await {
                Ok(()) => return Ok(started.elapsed()),
                Err(throttle) => Some(throttle),
            }
        } else {
            None
        };
        if let Some(throttle) = first
            && cannot_make_it(throttle, Instant::now(), deadline)
        {
            return Err(refusal(throttle));
        }
        let ahead = self.tokens_ahead(provider);
        if let Some(retry_after) = self.local_estimate(provider, ahead + u64::from(tokens))
            && Instant::now() + retry_after > deadline
        {
            // Like ReserveN past its deadline: no place is taken in the queue.
            return Err(Refusal::Throttled { retry_after });
        }
        let place = Place::join(provider, tokens);
        let mut head = provider.head.subscribe();
        let mut changes = self.changes.subscribe();
        loop {
            if *head.borrow_and_update() != place.ticket {
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return Err(refusal(Throttle::Paused)) },
                    () = tokio::time::sleep_until(deadline) => {
                        let estimate = self.local_estimate(provider, self.tokens_ahead(provider));
                        return Err(Refusal::Throttled { retry_after: estimate.unwrap_or(PAUSED_RETRY) });
                    }
                }
                continue;
            }
            changes.borrow_and_update();
            let throttle = match self.attempt(provider, tokens).await {
                Ok(()) => return Ok(started.elapsed()),
                Err(throttle) => throttle,
            };
            let now = Instant::now();
            if cannot_make_it(throttle, now, deadline) {
                return Err(refusal(throttle));
            }
            // Wait for the tokens to accrue, or (paused) for the scale to
            // change. A shutdown does not cut the wait short: in-flight
            // requests finish, bounded by the caller's longest wait.
            let wake = match throttle {
                Throttle::RetryAfter(wait) => now + wait,
                Throttle::Paused => deadline,
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// One try at the bucket in force: shared while Redis answers, else local.
    async fn attempt(&self, provider: &Provider, tokens: u32) -> Result<(), Throttle> {
        let wanted = f64::from(tokens);
        if let Some(shared) = self.sharing() {
            let (rate, capacity) = lock(&provider.bucket).shared_limits();
            if rate <= 0.0 {
                return Err(Throttle::Paused);
            }
            if let Some(answer) = shared
                .take(&provider.spec.name, rate, capacity, wanted)
                .await
            {
                return answer;
            }
            self.notify_change();
        }
        let now = self.clock.now();
        lock(&provider.bucket).bucket.try_acquire(wanted, now)
    }

    fn tokens_ahead(&self, provider: &Provider) -> u64 {
        lock(&provider.queue)
            .queue
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// When `tokens` more than the local bucket holds could be granted, at
    /// the current rate; None when shared (another pod's demand decides) or
    /// paused (the level decides).
    fn local_estimate(&self, provider: &Provider, tokens: u64) -> Option<Duration> {
        if self.sharing().is_some() {
            return None;
        }
        let now = self.clock.now();
        let mut scaled = lock(&provider.bucket);
        let rate = scaled.bucket.rate();
        if rate <= 0.0 {
            return None;
        }
        let missing = (tokens as f64 - scaled.bucket.available(now)).max(0.0);
        Some(Duration::from_secs_f64(missing / rate))
    }

    /// Takes what `request` asks: every rule of a paced provider, or the
    /// bucket of a plain one (which has no classes, keys or kinds, and so
    /// ignores them); waits up to `max_wait` in arrival order.
    pub async fn acquire_request(
        &self,
        request: &pacing::Request,
        max_wait: Duration,
    ) -> Result<PacedGrant, AcquireRefusal> {
        if let Some(paced) = self
            .paced
            .as_ref()
            .filter(|p| p.contains(&request.provider))
        {
            return paced
                .acquire_with(request, max_wait, self.sharing())
                .await
                .map_err(AcquireRefusal::Paced);
        }
        self.acquire(&request.provider, request.tokens, max_wait)
            .await
            .map(|waited| PacedGrant {
                waited,
                lease: None,
            })
            .map_err(AcquireRefusal::Bucket)
    }

    /// Returns the lease of a paced provider's grant; false when unknown.
    pub async fn release(&self, lease: &str) -> bool {
        match &self.paced {
            Some(paced) => paced.release(lease, self.shared.as_ref()).await,
            None => false,
        }
    }

    pub fn views(&self) -> Vec<ProviderView> {
        let budget = if self.sharing().is_some() {
            "shared"
        } else {
            "local"
        };
        let mut views: Vec<ProviderView> = self
            .providers
            .iter()
            .map(|p| view(p, budget, max_tokens(p, self.shared.is_some())))
            .collect();
        if let Some(paced) = &self.paced {
            views.extend(
                paced
                    .names()
                    .filter_map(|name| paced_view(paced, name, budget)),
            );
        }
        views
    }
}

/// This request's place in its provider's queue, given up when dropped
/// (granted, refused, or the client went away).
struct Place<'a> {
    provider: &'a Provider,
    ticket: u64,
}

impl<'a> Place<'a> {
    fn join(provider: &'a Provider, tokens: u32) -> Self {
        let mut waiters = lock(&provider.queue);
        let ticket = waiters.next;
        waiters.next += 1;
        waiters.queue.push_back((ticket, tokens));
        if waiters.queue.len() == 1 {
            provider.head.send_replace(ticket);
        }
        Place { provider, ticket }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut waiters = lock(&self.provider.queue);
        let was_head = waiters.queue.front().map(|(t, _)| *t) == Some(self.ticket);
        waiters.queue.retain(|(t, _)| *t != self.ticket);
        if was_head {
            let next = waiters.queue.front().map_or(waiters.next, |(t, _)| *t);
            self.provider.head.send_replace(next);
        }
    }
}

fn max_tokens(provider: &Provider, shared: bool) -> u32 {
    let scaled = lock(&provider.bucket);
    let burst = scaled.bucket.base_burst();
    let most = if shared {
        burst
    } else {
        (burst * scaled.share).max(MIN_CAPACITY)
    };
    // Whole tokens only; the float guard keeps 0.1 + 0.2 style shares honest.
    (most + 1e-9).floor().min(f64::from(u32::MAX)) as u32
}

fn cannot_make_it(throttle: Throttle, now: Instant, deadline: Instant) -> bool {
    match throttle {
        Throttle::RetryAfter(wait) => now + wait > deadline,
        Throttle::Paused => now >= deadline,
    }
}

fn refusal(throttle: Throttle) -> Refusal {
    Refusal::Throttled {
        retry_after: match throttle {
            Throttle::RetryAfter(wait) => wait,
            Throttle::Paused => PAUSED_RETRY,
        },
    }
}

fn view(provider: &Provider, budget: &'static str, max_tokens: u32) -> ProviderView {
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
        budget,
        max_tokens,
        tokens_granted: provider.granted.get(),
        requests_throttled: provider.throttled.get(),
        waiting: lock(&provider.queue).queue.len(),
        pacing: None,
    }
}

/// The rate and burst a paced provider is shown with: its tightest
/// provider-wide rate rule (a window of N in W as N/W per second with a burst
/// of N), or its tightest rate rule of any scope when none is provider-wide.
fn headline(config: &pacing::ProviderPacing) -> (f64, f64) {
    let rate_of = |limit: &pacing::Limit| match limit {
        pacing::Limit::Window { count, window } => {
            Some((f64::from(*count) / window.as_secs_f64(), f64::from(*count)))
        }
        pacing::Limit::Bucket { rate, burst } => Some((*rate, *burst)),
        pacing::Limit::Interval { min } => Some((1.0 / min.as_secs_f64(), 1.0)),
        pacing::Limit::Concurrency { .. } => None,
    };
    let tightest = |provider_wide: bool| {
        config
            .rules
            .iter()
            .filter(|r| !provider_wide || r.scope == pacing::Scope::Provider)
            .filter_map(|r| rate_of(&r.limit))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    tightest(true)
        .or_else(|| tightest(false))
        .unwrap_or((0.0, 0.0))
}

fn paced_view(paced: &PacedProviders, name: &str, budget: &'static str) -> Option<ProviderView> {
    let config = paced.config(name)?;
    let status = paced.status(name)?;
    let (granted, throttled) = paced.counts(name)?;
    let (rate, burst) = headline(&config);
    let scale = status.control_scale * status.share * status.pushback_factor;
    Some(ProviderView {
        name: name.to_owned(),
        base_rate: rate,
        burst,
        scale: status.control_scale,
        share: status.share,
        effective_rate: rate * scale,
        effective_burst: if scale > 0.0 {
            (burst * scale).max(MIN_CAPACITY)
        } else {
            0.0
        },
        feedback: paced.takes_feedback(name),
        budget,
        max_tokens: (burst * status.share + 1e-9).floor().max(1.0) as u32,
        tokens_granted: granted,
        requests_throttled: throttled,
        waiting: status.waiting,
        pacing: Some(status),
    })
}

/// Why an acquire through [`RateCoordinator::acquire_request`] was not granted.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireRefusal {
    Bucket(Refusal),
    Paced(PacedRefusal),
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

    fn one_provider(spec: &str) -> Arc<RateCoordinator> {
        let spec = spec.parse::<ProviderSpec>().expect("valid");
        Arc::new(RateCoordinator::new(&[spec], None, Clock::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_too_small_to_split_still_grants_whole_tokens() {
        // 1 token/s over 4 replicas: the share is 0.25 token/s and would hold
        // 0.25 tokens; the floor of one token lets each pod grant.
        let rates = one_provider("slow=1/s");
        rates.set_share(0.25);
        let view = &rates.views()[0];
        assert_eq!((view.effective_rate, view.effective_burst), (0.25, 1.0));
        let waited = rates
            .acquire("slow", 1, Duration::from_secs(1))
            .await
            .expect("granted within the rate interval");
        assert!(waited <= Duration::from_secs(1));
        // The next one comes at the per-pod rate: 4 s later, not sooner.
        let started = Instant::now();
        assert!(matches!(
            rates.acquire("slow", 1, Duration::ZERO).await,
            Err(Refusal::Throttled { .. })
        ));
        rates
            .acquire("slow", 1, Duration::from_secs(5))
            .await
            .expect("granted at the share's rate");
        let waited = started.elapsed().as_secs_f64();
        assert!((3.9..=4.1).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_can_ever_be_granted_is_refused_with_the_limit() {
        let rates = one_provider("ibkr=60/s,burst=100");
        assert_eq!(
            rates.acquire("ibkr", 1000, Duration::from_secs(5)).await,
            Err(Refusal::TooMany { limit: 100 })
        );
        rates.set_share(0.25);
        assert_eq!(
            rates.acquire("ibkr", 26, Duration::ZERO).await,
            Err(Refusal::TooMany { limit: 25 })
        );
        assert_eq!(
            rates.acquire("nope", 1, Duration::ZERO).await,
            Err(Refusal::Unknown)
        );
        assert_eq!(rates.views()[0].requests_throttled, 0, "not throttles");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_served_before_requests_that_arrived_after_it() {
        let rates = one_provider("ibkr=10/s,burst=10");
        rates
            .acquire("ibkr", 10, Duration::ZERO)
            .await
            .expect("the burst");
        let order = Arc::new(Mutex::new(Vec::new()));
        let big = {
            let (rates, order) = (rates.clone(), order.clone());
            tokio::spawn(async move {
                let result = rates.acquire("ibkr", 5, Duration::from_secs(5)).await;
                lock(&order).push(5);
                result
            })
        };
        // Let the 5-token request join the queue, then loop 1-token requests.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(rates.views()[0].waiting, 1);
        let mut small = Vec::new();
        for _ in 0..5 {
            let (rates, order) = (rates.clone(), order.clone());
            small.push(tokio::spawn(async move {
                let result = rates.acquire("ibkr", 1, Duration::from_secs(5)).await;
                lock(&order).push(1);
                result
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A 1-token request that will not wait is refused while others wait.
        assert!(matches!(
            rates.acquire("ibkr", 1, Duration::ZERO).await,
            Err(Refusal::Throttled { .. })
        ));
        let waited = big.await.expect("task").expect("granted");
        assert!(waited >= Duration::from_millis(490), "{waited:?}");
        for task in small {
            task.await
                .expect("task")
                .expect("granted after the big one");
        }
        assert_eq!(*lock(&order), vec![5, 1, 1, 1, 1, 1]);
        let view = &rates.views()[0];
        assert_eq!((view.tokens_granted, view.requests_throttled), (20, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_is_counted_once_however_long_it_waited() {
        let rates = one_provider("ibkr=1/s,burst=1");
        rates.set_control_scale(0.0);
        let refused = rates.acquire("ibkr", 1, Duration::from_secs(3)).await;
        assert_eq!(
            refused,
            Err(Refusal::Throttled {
                retry_after: PAUSED_RETRY
            })
        );
        assert_eq!(rates.views()[0].requests_throttled, 1);
        assert_eq!(rates.views()[0].tokens_granted, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_cannot_make_its_deadline_takes_no_place() {
        let rates = one_provider("ibkr=1/s,burst=5");
        rates
            .acquire("ibkr", 5, Duration::ZERO)
            .await
            .expect("burst");
        // 5 tokens take 5 s: a 1 s wait cannot do, so it is refused at once.
        let started = Instant::now();
        let refused = rates.acquire("ibkr", 5, Duration::from_secs(1)).await;
        assert!(
            matches!(refused, Err(Refusal::Throttled { retry_after }) if retry_after >= Duration::from_secs(4))
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(rates.views()[0].waiting, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resume_wakes_a_paused_waiter() {
        let rates = one_provider("ibkr=10/s,burst=10");
        rates.set_control_scale(0.0);
        let waiter = {
            let rates = rates.clone();
            tokio::spawn(async move { rates.acquire("ibkr", 1, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        rates.set_control_scale(1.0);
        let waited = waiter
            .await
            .expect("task")
            .expect("granted after the resume");
        // The pause kept no burst: the token accrued after the resume.
        assert!(waited >= Duration::from_millis(2100), "{waited:?}");
        assert!(waited <= Duration::from_millis(2200), "{waited:?}");
    }
}
