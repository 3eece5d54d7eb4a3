//! Providers paced by the rules they publish ([`pacing`]): the pacing engine
//! behind a lock, on the coordinator's clock, with waiting in arrival order,
//! leases, pushback and the counters `/metrics` and the state API read.
//!
//! A request that cannot be granted at once and may wait takes a place in
//! its provider's queue and is tried again when the rule that holds it has
//! room (the engine says when), when a lease is returned, when the scale,
//! the share or a pushback changes, or when a waiter ahead of it leaves.
//! A hold by a concurrency cap has no known end (a release can come at any
//! time): such a waiter waits for a release until its deadline.

use super::SharedBudget;
use super::pacing::{
    self, Decision, Held, HoldReason, Impossible, Lease, Limit, Pacer, Planned, ProviderPacing,
    ProviderStatus, Pushback, PushbackError, Request, Ticket,
};
use super::shared::pacing::{SharedLimit, SharedPace, SharedRule};
use crate::clock::Clock;
use crate::telemetry::{Counter, Metrics, PacingLabels, PacingSeries};
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Advice to a worker held with no known time (paused): look again after this long.
pub(super) const PACED_RETRY: Duration = super::PAUSED_RETRY;

/// A grant of a paced provider.
#[derive(Debug, Clone, PartialEq)]
pub struct PacedGrant {
    pub waited: Duration,
    /// The lease to return with `POST /api/v1/release`, when a concurrency
    /// cap counted the request; `expires_in` is how long it holds if never returned.
    pub lease: Option<(String, Duration)>,
}

/// Why a paced acquire was not granted.
#[derive(Debug, Clone, PartialEq)]
pub enum PacedRefusal {
    Unknown,
    /// No rule could ever admit it (more than a window or burst holds).
    Never(Impossible),
    /// Not now: the rule that holds it and when to look again.
    Held {
        held: Held,
        retry_after: Duration,
    },
}

struct Counters {
    granted: Counter,
    throttled: Counter,
    series: Option<PacingSeries>,
}

/// Every paced provider of this pod.
pub struct PacedProviders {
    pacer: Mutex<Pacer>,
    clock: Clock,
    /// Bumped by everything that can let a waiter through.
    changes: watch::Sender<u64>,
    feedback: HashSet<String>,
    counters: Vec<(String, Counters)>,
    /// Leases granted from the shared budget: their Redis keys and expiry.
    shared_leases: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    /// Names this pod's shared grants apart from every other pod's.
    pod_nonce: u64,
    next_member: std::sync::atomic::AtomicU64,
}

/// How often a request held by a full shared cap looks again (a release on
/// another pod wakes nobody here).
const SHARED_CAP_POLL: Duration = Duration::from_millis(250);

impl std::fmt::Debug for PacedProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedProviders")
            .field(
                "providers",
                &self.counters.iter().map(|c| &c.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The labels of the pacing series of `configs`.
pub fn pacing_labels(configs: &[ProviderPacing]) -> Vec<PacingLabels> {
    configs
        .iter()
        .map(|c| {
            let mut classes: Vec<String> = c
                .rules
                .iter()
                .filter_map(|r| r.scope.class().map(str::to_owned))
                .collect();
            classes.sort();
            classes.dedup();
            PacingLabels {
                provider: c.name.clone(),
                classes,
                rules: c.rules.iter().map(|r| r.name.clone()).collect(),
            }
        })
        .collect()
}

impl PacedProviders {
    /// The engine for `configs` (already validated at start); feedback
    /// scales the one named by `feedback_for`, or all of them when None.
    pub fn new(
        configs: Vec<ProviderPacing>,
        feedback_for: Option<&str>,
        clock: Clock,
    ) -> Result<Self, pacing::RuleError> {
        let feedback = configs
            .iter()
            .map(|c| c.name.clone())
            .filter(|name| feedback_for.is_none_or(|f| f == name))
            .collect();
        let counters = configs
            .iter()
            .map(|c| {
                let counters = Counters {
                    granted: Counter::standalone(),
                    throttled: Counter::standalone(),
                    series: None,
                };
                (c.name.clone(), counters)
            })
            .collect();
        let pod_nonce = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        let mut pacer = Pacer::new(configs)?;
        pacer.tag_leases(&format!("{:08x}-", pod_nonce as u32));
        Ok(PacedProviders {
            pacer: Mutex::new(pacer),
            clock,
            changes: watch::channel(0).0,
            feedback,
            counters,
            shared_leases: Mutex::new(HashMap::new()),
            pod_nonce,
            next_member: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Counts into the series of `metrics`, the ones `/metrics` shows.
    pub fn with_counters(mut self, metrics: &Metrics) -> Self {
        for (name, counters) in &mut self.counters {
            if let Some(series) = metrics.provider(name) {
                counters.granted = series.tokens_granted();
                counters.throttled = series.requests_throttled();
            }
            counters.series = metrics.pacing(name).cloned();
        }
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.counters.iter().map(|(name, _)| name.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.counters.iter().any(|(n, _)| n == name)
    }

    pub fn takes_feedback(&self, name: &str) -> bool {
        self.feedback.contains(name)
    }

    fn counters(&self, name: &str) -> Option<&Counters> {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Pacer> {
        super::lock(&self.pacer)
    }

    /// The backpressure scale, for every provider that takes feedback.
    pub fn set_control_scale(&self, scale: f64) {
        {
            let mut engine = self.engine();
            for name in &self.feedback {
                engine.set_control_scale(name, scale);
            }
        }
        self.notify();
    }

    /// This replica's share of every provider's budget.
    pub fn set_share(&self, share: f64) {
        self.engine().set_share(share);
        self.notify();
    }

    /// Takes what `request` asks of every rule that applies, waiting up to
    /// `max_wait` in arrival order; counts the outcome once.
    pub async fn acquire(
        &self,
        request: &Request,
        max_wait: Duration,
    ) -> Result<PacedGrant, PacedRefusal> {
        self.acquire_with(request, max_wait, None).await
    }

    /// As [`Self::acquire`], from `shared` while it answers (every pod
    /// draws from the same windows, intervals, caps and buckets in Redis),
    /// else from this pod's share.
    pub async fn acquire_with(
        &self,
        request: &Request,
        max_wait: Duration,
        shared: Option<&Arc<SharedBudget>>,
    ) -> Result<PacedGrant, PacedRefusal> {
        let counters = self
            .counters(&request.provider)
            .ok_or(PacedRefusal::Unknown)?;
        let result = match shared {
            Some(shared) => match self.acquire_shared(shared, request, max_wait).await {
                Some(result) => result,
                None => self.acquire_in_order(request, max_wait).await,
            },
            None => self.acquire_in_order(request, max_wait).await,
        };
        let class = request.class.as_deref();
        match &result {
            Ok(_) => {
                counters.granted.inc_by(u64::from(request.tokens));
                if let Some(series) = &counters.series {
                    series.grant(class);
                }
            }
            Err(PacedRefusal::Held { held, .. }) => {
                counters.throttled.inc();
                if let Some(series) = &counters.series {
                    series.refuse(class, &held.rule);
                }
            }
            Err(_) => {}
        }
        if let (Ok(PacedGrant { lease: Some(_), .. }), Some(series)) = (&result, &counters.series) {
            series.set_leases(self.engine().leases_held(&request.provider));
        }
        result
    }

    async fn acquire_in_order(
        &self,
        request: &Request,
        max_wait: Duration,
    ) -> Result<PacedGrant, PacedRefusal> {
        let started = Instant::now();
        let deadline = started + max_wait;
        let first = self.engine().acquire(request, self.clock.now());
        let held = match self.answer(first, started)? {
            Ok(grant) => return Ok(grant),
            Err(held) => held,
        };
        if self.cannot_make_it(&held, deadline) {
            return Err(self.refusal(held));
        }
        let mut changes = self.changes.subscribe();
        let place = Place::join(self, request).ok_or(PacedRefusal::Unknown)?;
        loop {
            changes.borrow_and_update();
            let decision = self
                .engine()
                .acquire_waiting(place.ticket, request, self.clock.now());
            let held = match self.answer(decision, started)? {
                Ok(grant) => {
                    place.done();
                    return Ok(grant);
                }
                Err(held) => held,
            };
            if self.cannot_make_it(&held, deadline) {
                return Err(self.refusal(held));
            }
            // Behind a waiter or a cap, or paused: only a change lets it
            // through. Otherwise the rule has room at `retry_at` (at least a
            // millisecond on, so a clock at the boundary cannot spin).
            let wake = match (held.reason, held.retry_at) {
                (HoldReason::Limit | HoldReason::Pushback, Some(at)) => self
                    .clock
                    .instant_at(at)
                    .max(Instant::now() + Duration::from_millis(1))
                    .min(deadline),
                _ => deadline,
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                changed = changes.changed() => if changed.is_err() { return Err(self.refusal(held)) },
            }
        }
    }

    /// Every rule in Redis, retried until the deadline; None as soon as
    /// Redis does not answer (the caller goes on with the local share).
    async fn acquire_shared(
        &self,
        shared: &Arc<SharedBudget>,
        request: &Request,
        max_wait: Duration,
    ) -> Option<Result<PacedGrant, PacedRefusal>> {
        let started = Instant::now();
        let deadline = started + max_wait;
        let mut changes = self.changes.subscribe();
        loop {
            if !shared.is_up() {
                return None;
            }
            changes.borrow_and_update();
            let plan = self.engine().shared_plan(request, self.clock.now());
            let (held, wake) = match plan {
                Err(decision) => match self.answer(decision, started) {
                    Err(refusal) => return Some(Err(refusal)),
                    Ok(Ok(_)) => unreachable!("a plan is never a grant"),
                    Ok(Err(held)) => {
                        let wake = held.retry_at.map(|at| self.clock.instant_at(at));
                        (held, wake)
                    }
                },
                Ok(plan) => {
                    let member = format!(
                        "{}-{:x}-{:x}",
                        request.provider,
                        self.pod_nonce,
                        self.next_member
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    );
                    let rules: Vec<SharedRule> = plan
                        .iter()
                        .map(|p| shared_rule(shared, &request.provider, p))
                        .collect();
                    let answer = match shared.pace(&member, &rules).await {
                        Ok(answer) => answer?,
                        Err(error) => {
                            tracing::warn!(%error, "a pacing rule cannot be kept in Redis; pacing locally");
                            return None;
                        }
                    };
                    match answer {
                        SharedPace::Granted { .. } => {
                            return Some(Ok(self.shared_grant(member, &plan, &rules, started)));
                        }
                        SharedPace::Held { rule, retry_after } => {
                            let planned = &plan[rule.min(plan.len().saturating_sub(1))];
                            let is_cap = matches!(planned.limit, Limit::Concurrency { .. });
                            let now = self.clock.now();
                            let held = Held {
                                provider: request.provider.clone(),
                                rule: planned.rule.clone(),
                                limit: planned.limit.to_string(),
                                reason: if is_cap {
                                    HoldReason::Cap
                                } else {
                                    HoldReason::Limit
                                },
                                retry_at: retry_after.filter(|_| !is_cap).map(|r| now + r),
                                at: now,
                            };
                            let wake = match retry_after {
                                Some(r) if is_cap => Some(Instant::now() + r.min(SHARED_CAP_POLL)),
                                Some(r) => Some(Instant::now() + r),
                                None => None,
                            };
                            (held, wake)
                        }
                    }
                }
            };
            let now = Instant::now();
            let too_late = held
                .retry_at
                .is_some_and(|at| self.clock.instant_at(at) > deadline);
            if now >= deadline || too_late {
                return Some(Err(self.refusal(held)));
            }
            let wake = wake
                .unwrap_or(deadline)
                .max(now + Duration::from_millis(1))
                .min(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                _ = changes.changed() => {}
            }
        }
    }

    fn shared_grant(
        &self,
        member: String,
        plan: &[Planned],
        rules: &[SharedRule],
        started: Instant,
    ) -> PacedGrant {
        let mut keys = Vec::new();
        let mut longest = Duration::ZERO;
        for (planned, rule) in plan.iter().zip(rules) {
            if let Limit::Concurrency { lease, .. } = planned.limit {
                keys.push(rule.key.clone());
                longest = longest.max(lease);
            }
        }
        let lease = (!keys.is_empty()).then(|| {
            let mut leases = super::lock(&self.shared_leases);
            let now = Instant::now();
            leases.retain(|_, (_, expires)| *expires > now);
            leases.insert(member.clone(), (keys, now + longest));
            (member, longest)
        });
        PacedGrant {
            waited: started.elapsed(),
            lease,
        }
    }

    /// A grant, a hold to look at, or a final refusal.
    #[allow(clippy::result_large_err)]
    fn answer(
        &self,
        decision: Decision,
        started: Instant,
    ) -> Result<Result<PacedGrant, Held>, PacedRefusal> {
        match decision {
            Decision::Granted { lease } => Ok(Ok(PacedGrant {
                waited: started.elapsed(),
                lease: lease.map(|Lease { id, expires_at }| {
                    (id, expires_at.saturating_sub(self.clock.now()))
                }),
            })),
            Decision::Held(held) => Ok(Err(held)),
            Decision::Impossible(impossible) => Err(PacedRefusal::Never(impossible)),
            Decision::UnknownProvider => Err(PacedRefusal::Unknown),
        }
    }

    /// Whether the hold outlasts the deadline (a cap can free at any release).
    fn cannot_make_it(&self, held: &Held, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        match held.retry_at {
            Some(at) if held.reason == HoldReason::Limit => self.clock.instant_at(at) > deadline,
            Some(at) if held.reason == HoldReason::Pushback => self.clock.instant_at(at) > deadline,
            _ => false,
        }
    }

    fn refusal(&self, held: Held) -> PacedRefusal {
        let retry_after = held
            .retry_after()
            .filter(|_| held.reason != HoldReason::Cap)
            .unwrap_or(PACED_RETRY)
            .max(Duration::from_millis(1));
        PacedRefusal::Held { held, retry_after }
    }

    /// Returns a lease; false when it is unknown (returned, expired, never
    /// granted). A lease of the shared budget is returned in Redis (and
    /// expires there on its own if Redis does not answer now).
    pub async fn release(&self, lease: &str, shared: Option<&Arc<SharedBudget>>) -> bool {
        let in_redis = super::lock(&self.shared_leases).remove(lease);
        let released = match in_redis {
            Some((keys, expires)) => {
                if let Some(shared) = shared {
                    shared.release_lease(&keys, lease).await;
                }
                expires > Instant::now()
            }
            None => self.engine().release(lease, self.clock.now()),
        };
        if released {
            self.refresh_gauges();
            self.notify();
        }
        released
    }

    /// The provider's own pushback: the factor in force after it.
    pub fn pushback(&self, report: &Pushback) -> Result<f64, PushbackError> {
        let factor = self.engine().pushback(report, self.clock.now())?;
        if let Some(series) = self
            .counters(&report.provider)
            .and_then(|c| c.series.as_ref())
        {
            series.pushback(report.class.as_deref(), report.kind.as_str());
        }
        self.refresh_gauges();
        self.notify();
        Ok(factor)
    }

    /// Forgets expired leases and idle keys; sets the factor and lease gauges.
    pub fn sweep(&self) {
        self.engine().sweep(self.clock.now());
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        let now = self.clock.now();
        let engine = self.engine();
        for (name, counters) in &self.counters {
            let (Some(series), Some(status)) = (&counters.series, engine.status(name, now)) else {
                continue;
            };
            series.set_factor(None, status.pushback_factor);
            series.reset_class_factors();
            for (class, factor) in &status.class_factors {
                series.set_factor(Some(class), *factor);
            }
            series.set_leases(status.leases_held);
        }
    }

    /// How `provider` stands now.
    pub fn status(&self, provider: &str) -> Option<ProviderStatus> {
        self.engine().status(provider, self.clock.now())
    }

    /// Requests granted and refused by `provider`, as counted.
    pub fn counts(&self, provider: &str) -> Option<(u64, u64)> {
        self.counters(provider)
            .map(|c| (c.granted.get(), c.throttled.get()))
    }

    /// The configuration `provider` runs with.
    pub fn config(&self, provider: &str) -> Option<ProviderPacing> {
        self.engine().config(provider).cloned()
    }
}

fn shared_rule(shared: &SharedBudget, provider: &str, planned: &Planned) -> SharedRule {
    let limit = match planned.limit {
        Limit::Window { count, window } => SharedLimit::Window {
            count: u64::from(count),
            window,
        },
        Limit::Bucket { rate, burst } => SharedLimit::Bucket { rate, burst },
        Limit::Interval { min } => SharedLimit::Interval { min },
        Limit::Concurrency { max, lease } => SharedLimit::Lease {
            max: u64::from(max),
            lease,
        },
    };
    SharedRule {
        key: shared.pacing_key(provider, &planned.rule, planned.key.as_deref()),
        limit,
        cost: planned.cost,
    }
}

/// A waiter's place in the queue, given up when dropped unless granted.
struct Place<'a> {
    paced: &'a PacedProviders,
    provider: String,
    ticket: Ticket,
    granted: bool,
}

impl<'a> Place<'a> {
    fn join(paced: &'a PacedProviders, request: &Request) -> Option<Self> {
        let ticket = paced.engine().enqueue(request)?;
        Some(Place {
            paced,
            provider: request.provider.clone(),
            ticket,
            granted: false,
        })
    }

    /// Granted: the engine took it off the queue already.
    fn done(mut self) {
        self.granted = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.granted {
            self.paced.engine().leave(&self.provider, self.ticket);
        }
        // Whoever waited behind it may go now.
        self.paced.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::pacing::{Limit, PushbackKind, Rule, Scope, profile};
    use std::sync::Arc;

    fn paced(rules: Vec<Rule>) -> Arc<PacedProviders> {
        let config = ProviderPacing::new("p", rules);
        Arc::new(PacedProviders::new(vec![config], None, Clock::new()).expect("valid"))
    }

    fn cap(max: u32) -> Rule {
        Rule::new(
            "open",
            Scope::Provider,
            Limit::Concurrency {
                max,
                lease: Duration::from_secs(60),
            },
        )
    }

    fn window(count: u32, secs: u64) -> Rule {
        Rule::new(
            "window",
            Scope::Provider,
            Limit::Window {
                count,
                window: Duration::from_secs(secs),
            },
        )
    }

    fn request() -> Request {
        Request::new("p", None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_on_a_full_cap_is_granted_at_the_release() {
        let paced = paced(vec![cap(1)]);
        let first = paced
            .acquire(&request(), Duration::ZERO)
            .await
            .expect("a free slot");
        let lease = first.lease.expect("a cap gives a lease").0;
        let waiter = {
            let paced = paced.clone();
            tokio::spawn(async move { paced.acquire(&request(), Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiter.is_finished(), "held while the slot is taken");
        assert!(paced.release(&lease, None).await);
        let granted = waiter.await.expect("task").expect("granted at the release");
        assert_eq!(granted.waited, Duration::from_secs(3));
        assert!(
            !paced.release(&lease, None).await,
            "a lease is returned once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cap_refuses_at_the_deadline_with_a_poll_hint_not_the_lease_expiry() {
        let paced = paced(vec![cap(1)]);
        paced
            .acquire(&request(), Duration::ZERO)
            .await
            .expect("slot");
        let started = Instant::now();
        let refused = paced.acquire(&request(), Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        match refused {
            Err(PacedRefusal::Held { held, retry_after }) => {
                assert_eq!(held.rule, "open");
                assert_eq!(retry_after, PACED_RETRY);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(paced.counts("p"), Some((1, 1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_frees_after_the_deadline_refuses_at_once() {
        let paced = paced(vec![window(2, 10)]);
        for _ in 0..2 {
            paced
                .acquire(&request(), Duration::ZERO)
                .await
                .expect("room");
        }
        let started = Instant::now();
        let refused = paced.acquire(&request(), Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "no point waiting");
        assert!(
            matches!(&refused, Err(PacedRefusal::Held { retry_after, .. }) if *retry_after == Duration::from_secs(10)),
            "{refused:?}"
        );
        // Willing to wait long enough: granted when the first grant leaves the window.
        let granted = paced
            .acquire(&request(), Duration::from_secs(15))
            .await
            .expect("granted when the window slides");
        assert_eq!(granted.waited, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let paced = paced(vec![window(1, 1)]);
        paced
            .acquire(&request(), Duration::ZERO)
            .await
            .expect("room");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (paced, order) = (paced.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                paced
                    .acquire(&request(), Duration::from_secs(30))
                    .await
                    .expect("granted in turn");
                super::super::lock(&order).push(i);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(*super::super::lock(&order), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn hard_pauses_and_a_resume_lets_the_waiter_through() {
        let paced = paced(vec![window(10, 1)]);
        paced.set_control_scale(0.0);
        let waiter = {
            let paced = paced.clone();
            tokio::spawn(async move { paced.acquire(&request(), Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!waiter.is_finished());
        paced.set_control_scale(1.0);
        let granted = waiter
            .await
            .expect("task")
            .expect("granted after the resume");
        assert_eq!(granted.waited, Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pushback_holds_its_class_until_the_retry_after_and_counts() {
        let config = profile::ibkr();
        let paced = Arc::new(PacedProviders::new(vec![config], None, Clock::new()).expect("valid"));
        let metrics = Metrics::with_pacing(&["ibkr"], &pacing_labels(&[profile::ibkr()]));
        let paced = Arc::new(
            Arc::try_unwrap(paced)
                .expect("one owner")
                .with_counters(&metrics),
        );
        let factor = paced
            .pushback(&Pushback {
                provider: "ibkr".into(),
                class: Some("historical".into()),
                kind: PushbackKind::PacingViolation,
                retry_after: Some(Duration::from_secs(5)),
            })
            .expect("known provider");
        assert_eq!(factor, 0.5);
        let historical = Request::new("ibkr", Some("historical"));
        match paced.acquire(&historical, Duration::ZERO).await {
            Err(PacedRefusal::Held { held, retry_after }) => {
                assert_eq!(held.rule, "pushback");
                assert_eq!(retry_after, Duration::from_secs(5));
            }
            other => panic!("{other:?}"),
        }
        // Other classes are not held (a market-data line is held until returned).
        let line = paced
            .acquire(&Request::new("ibkr", Some("market_data")), Duration::ZERO)
            .await
            .expect("market data is not pushed back");
        assert!(
            paced
                .release(&line.lease.expect("a line is leased").0, None)
                .await
        );
        let granted = paced
            .acquire(&historical, Duration::from_secs(6))
            .await
            .expect("granted after the retry-after");
        if let Some((lease, _)) = granted.lease {
            paced.release(&lease, None).await;
        }
        assert_eq!(granted.waited, Duration::from_secs(5));
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        for line in [
            r#"mdp_pacing_pushbacks_total{provider="ibkr",class="historical",kind="pacing_violation"} 1"#,
            r#"mdp_pacing_refusals_total{provider="ibkr",class="historical",rule="pushback"} 1"#,
            r#"mdp_pacing_grants_total{provider="ibkr",class="historical"} 1"#,
            r#"mdp_pacing_grants_total{provider="ibkr",class="market_data"} 1"#,
            r#"mdp_pacing_pushback_factor{provider="ibkr",class="historical"} 0.5"#,
            r#"mdp_pacing_leases_held{provider="ibkr"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_goes_away_gives_up_its_place() {
        let paced = paced(vec![window(1, 10)]);
        paced
            .acquire(&request(), Duration::ZERO)
            .await
            .expect("room");
        let waiter = {
            let paced = paced.clone();
            tokio::spawn(async move { paced.acquire(&request(), Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(paced.status("p").expect("known").waiting, 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(paced.status("p").expect("known").waiting, 0);
    }
}
