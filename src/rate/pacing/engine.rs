//! The pacing engine on injected time: every rule of a provider checked at
//! once, all or nothing, waiters in arrival order, leases, pushback.

use super::pushback::{Backoff, Pushback};
use super::rule::{Limit, ProviderPacing, Rule, RuleError};
use super::window::SlidingWindow;
use crate::rate::TokenBucket;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// One acquire: what it is for and how many tokens it takes.
///
/// `class` selects the class rules (none: provider-wide rules only), `key`
/// the per-key rules (IBKR: contract/exchange/tick type), `fingerprint` the
/// per-fingerprint rules (the whole request), and `kind` the weight (IBKR:
/// `BID_ASK` counts twice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub provider: String,
    pub class: Option<String>,
    pub key: Option<String>,
    pub fingerprint: Option<String>,
    pub kind: Option<String>,
    pub tokens: u32,
}

impl Request {
    /// A one-token request of `class` (None: provider-wide rules only).
    pub fn new(provider: &str, class: Option<&str>) -> Request {
        Request {
            provider: provider.to_owned(),
            class: class.map(str::to_owned),
            tokens: 1,
            ..Request::default()
        }
    }

    pub fn key(mut self, key: &str) -> Request {
        self.key = Some(key.to_owned());
        self
    }

    pub fn fingerprint(mut self, fingerprint: &str) -> Request {
        self.fingerprint = Some(fingerprint.to_owned());
        self
    }

    pub fn kind(mut self, kind: &str) -> Request {
        self.kind = Some(kind.to_owned());
        self
    }

    pub fn tokens(mut self, tokens: u32) -> Request {
        self.tokens = tokens;
        self
    }
}

/// A lease on the concurrency rules a grant went through.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: String,
    /// When the lease frees its slot if it is never released.
    pub expires_at: Duration,
}

/// Why a request is held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// A rule is full; `retry_at` is when it has room.
    Limit,
    /// A concurrency cap is full: it has room at the next release, which no
    /// clock can tell; `retry_at` is only its earliest lease expiry.
    Cap,
    /// Backpressure paused the provider (HARD).
    Paused,
    /// The provider pushed back; nothing before the retry-after.
    Pushback,
    /// An earlier waiter is held by the same rule and goes first.
    Queue,
    /// A keyed rule tracks as many keys as it may.
    TooManyKeys,
}

/// A refusal that may turn into a grant later.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub provider: String,
    /// The rule that holds the request (`pushback`, `paused` for those).
    pub rule: String,
    /// The rule's limit as text: `60 in 10m`.
    pub limit: String,
    pub reason: HoldReason,
    /// The earliest time the request could be granted, as far as is known
    /// now; None when no time is known (paused, not at this scale).
    pub retry_at: Option<Duration>,
    /// When the decision was taken.
    pub at: Duration,
}

impl Held {
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_at.map(|t| t.saturating_sub(self.at))
    }
}

impl fmt::Display for Held {
    /// `held by ibkr/historical: 60 in 10m, next slot in 14.2 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "held by {}/{}: {}", self.provider, self.rule, self.limit)?;
        match self.retry_after() {
            Some(wait) => write!(f, ", next slot in {:.1} s", wait.as_secs_f64()),
            None => f.write_str(", no slot at the current scale"),
        }
    }
}

/// A request no rule of the provider could ever admit.
#[derive(Debug, Clone, PartialEq)]
pub struct Impossible {
    pub provider: String,
    pub rule: String,
    pub limit: String,
    /// What the request costs under that rule, and the most it admits at once.
    pub cost: u64,
    pub most: u64,
}

impl fmt::Display for Impossible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({}) can never admit a request costing {} (at most {} at once)",
            self.provider, self.rule, self.limit, self.cost, self.most
        )
    }
}

/// The answer to one acquire.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Granted; a lease when a concurrency rule counted the request.
    Granted {
        lease: Option<Lease>,
    },
    Held(Held),
    Impossible(Impossible),
    UnknownProvider,
}

/// One rule a request goes through, as a shared store applies it (see
/// [`Pacer::shared_plan`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub rule: String,
    /// The key or fingerprint of a keyed rule.
    pub key: Option<String>,
    /// At the scale in force (a window's count, an interval's length).
    pub limit: Limit,
    /// What the request costs under the rule (its weight applied).
    pub cost: u64,
}

/// One rule as it stands (see [`Pacer::status`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleStatus {
    pub name: String,
    /// `provider`, `class historical`, `each key of historical`, ...
    pub scope: String,
    /// The rule as configured: `60 in 10m`.
    pub limit: String,
    /// The rule at the scale in force now: `30 in 10m` at SOFT.
    pub in_force: String,
    /// Backpressure x replica share x pushback for a rate rule, the share for a cap.
    pub scale: f64,
    pub tracked_keys: usize,
    pub keys_refused: u64,
    pub leases_held: usize,
    /// Requests granted through this rule.
    pub granted: u64,
}

/// A paced provider as it stands (see [`Pacer::status`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderStatus {
    pub control_scale: f64,
    pub share: f64,
    /// The provider-wide pushback factor (1: no pushback in force).
    pub pushback_factor: f64,
    /// The factor of each class with a pushback of its own.
    pub class_factors: BTreeMap<String, f64>,
    /// The end of the latest pushback hold still on, if any.
    #[serde(skip)]
    pub pushback_until: Option<Duration>,
    /// Pushback reports received since start.
    pub pushbacks: u64,
    pub leases_held: usize,
    pub waiting: usize,
    pub rules: Vec<RuleStatus>,
}

/// A waiter's place in its provider's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// Why a pushback report was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushbackError {
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("{provider} already tracks {limit} classes with a pushback")]
    TooManyClasses { provider: String, limit: usize },
}

/// The state of one rule instance (the rule itself, or one of its keys).
#[derive(Debug, Clone)]
enum Instance {
    Window(SlidingWindow),
    Bucket(TokenBucket),
    Interval(Option<Duration>),
    /// Lease expiries (time -> how many), and how many are held.
    Leases(BTreeMap<Duration, u32>, u32),
}

impl Instance {
    fn new(limit: &Limit, now: Duration) -> Instance {
        match limit {
            Limit::Window { .. } => Instance::Window(SlidingWindow::default()),
            Limit::Bucket { rate, burst } => Instance::Bucket(
                TokenBucket::try_new(*rate, *burst, now).expect("validated with the rule"),
            ),
            Limit::Interval { .. } => Instance::Interval(None),
            Limit::Concurrency { .. } => Instance::Leases(BTreeMap::new(), 0),
        }
    }

    /// Whether forgetting this instance changes no answer.
    fn is_idle(&mut self, limit: &Limit, scale: f64, now: Duration) -> bool {
        match (self, limit) {
            (Instance::Window(w), Limit::Window { window, .. }) => {
                w.prune(now, *window);
                w.is_empty()
            }
            (Instance::Bucket(b), _) => b.available(now) >= b.capacity(),
            (Instance::Interval(last), Limit::Interval { min }) => {
                last.is_none_or(|at| scale > 0.0 && at + min.div_f64(scale) <= now)
            }
            (Instance::Leases(_, held), _) => *held == 0,
            _ => true,
        }
    }
}

#[derive(Debug)]
struct RuleState {
    single: Option<Instance>,
    keyed: HashMap<String, Instance>,
    /// New keys refused because the rule tracked as many as it may.
    keys_refused: u64,
    /// Requests granted through this rule.
    granted: u64,
}

#[derive(Debug)]
struct Waiter {
    ticket: Ticket,
    /// The rule instance that held it last, and until when.
    held_on: Option<(usize, Option<String>)>,
    retry_at: Option<Duration>,
}

#[derive(Debug)]
struct ProviderState {
    config: ProviderPacing,
    control_scale: f64,
    share: f64,
    rules: Vec<RuleState>,
    backoff: Backoff,
    class_backoff: HashMap<String, Backoff>,
    waiters: VecDeque<Waiter>,
}

impl ProviderState {
    /// The scales and back-offs without the rule state and waiters (what
    /// the scale and impossibility arithmetic reads).
    fn shallow(&self) -> ProviderState {
        ProviderState {
            config: self.config.clone(),
            control_scale: self.control_scale,
            share: self.share,
            rules: Vec::new(),
            backoff: self.backoff.clone(),
            class_backoff: self.class_backoff.clone(),
            waiters: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct LeaseRecord {
    provider: usize,
    /// (rule, key) of every concurrency instance the lease holds a slot of.
    slots: Vec<(usize, Option<String>)>,
    expires_at: Duration,
}

/// One rule instance a request goes through: (rule index, key or none).
type Slot = (usize, Option<String>);

/// Every paced provider, on the time its caller passes in.
#[derive(Debug)]
pub struct Pacer {
    providers: Vec<ProviderState>,
    leases: HashMap<String, LeaseRecord>,
    next_lease: u64,
    /// Put in every lease id after the provider's name (see [`Pacer::tag_leases`]).
    lease_tag: String,
    next_ticket: u64,
    last_sweep: Duration,
}

/// How often idle keys are swept (besides when a rule is at its key cap).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Pacer {
    /// Validates each provider's rules; names must be unique.
    pub fn new(providers: Vec<ProviderPacing>) -> Result<Pacer, RuleError> {
        let mut states: Vec<ProviderState> = Vec::new();
        for config in providers {
            config.validate()?;
            if states.iter().any(|p| p.config.name == config.name) {
                return Err(RuleError::Duplicate(config.name));
            }
            let rules = config
                .rules
                .iter()
                .map(|rule| RuleState {
                    single: (!rule.scope.is_keyed())
                        .then(|| Instance::new(&rule.limit, Duration::ZERO)),
                    keyed: HashMap::new(),
                    keys_refused: 0,
                    granted: 0,
                })
                .collect();
            states.push(ProviderState {
                config,
                control_scale: 1.0,
                share: 1.0,
                rules,
                backoff: Backoff::new(),
                class_backoff: HashMap::new(),
                waiters: VecDeque::new(),
            });
        }
        Ok(Pacer {
            providers: states,
            leases: HashMap::new(),
            next_lease: 0,
            lease_tag: String::new(),
            next_ticket: 0,
            last_sweep: Duration::ZERO,
        })
    }

    /// Lease ids `provider-TAGn` instead of `provider-n`: a server tags them
    /// with a random part, so a lease kept across a restart cannot return
    /// one granted since.
    pub fn tag_leases(&mut self, tag: &str) {
        self.lease_tag = tag.to_owned();
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.iter().map(|p| p.config.name.as_str())
    }

    pub fn contains(&self, provider: &str) -> bool {
        self.find(provider).is_some()
    }

    /// The configuration `provider` runs with.
    pub fn config(&self, provider: &str) -> Option<&ProviderPacing> {
        self.find(provider).map(|i| &self.providers[i].config)
    }

    fn find(&self, provider: &str) -> Option<usize> {
        self.providers
            .iter()
            .position(|p| p.config.name == provider)
    }

    /// The backpressure scale of `provider` (0 pauses it).
    pub fn set_control_scale(&mut self, provider: &str, scale: f64) {
        if let Some(i) = self.find(provider) {
            self.providers[i].control_scale = clamp_scale(scale);
        }
    }

    /// This replica's share of every provider's budget.
    pub fn set_share(&mut self, share: f64) {
        for provider in &mut self.providers {
            provider.share = clamp_scale(share);
        }
    }

    /// A request that does not wait: granted now, or held (also behind an
    /// earlier waiter held by a rule this request goes through).
    pub fn acquire(&mut self, request: &Request, now: Duration) -> Decision {
        self.decide(request, None, now)
    }

    /// A place in the queue of `request`'s provider, for a request that will
    /// wait; None when the provider is unknown.
    pub fn enqueue(&mut self, request: &Request) -> Option<Ticket> {
        let i = self.find(&request.provider)?;
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.providers[i].waiters.push_back(Waiter {
            ticket,
            held_on: None,
            retry_at: None,
        });
        Some(ticket)
    }

    /// Tries a waiter again: granted, it leaves the queue; held, it keeps
    /// its place (and blocks later requests through the rule that holds it).
    pub fn acquire_waiting(
        &mut self,
        ticket: Ticket,
        request: &Request,
        now: Duration,
    ) -> Decision {
        let decision = self.decide(request, Some(ticket), now);
        if let Some(i) = self.find(&request.provider) {
            let waiters = &mut self.providers[i].waiters;
            match &decision {
                Decision::Held(_) => {}
                _ => waiters.retain(|w| w.ticket != ticket),
            }
        }
        decision
    }

    /// Gives up a place in the queue (the waiter was refused or went away).
    pub fn leave(&mut self, provider: &str, ticket: Ticket) {
        if let Some(i) = self.find(provider) {
            self.providers[i].waiters.retain(|w| w.ticket != ticket);
        }
    }

    /// How many requests wait for `provider`.
    pub fn waiting(&self, provider: &str) -> usize {
        self.find(provider)
            .map_or(0, |i| self.providers[i].waiters.len())
    }

    /// Returns a lease; false when it is unknown (released, expired, or never granted).
    pub fn release(&mut self, lease: &str, now: Duration) -> bool {
        self.expire_leases(now);
        match self.leases.remove(lease) {
            Some(record) => {
                self.free_slots(&record);
                true
            }
            None => false,
        }
    }

    /// How many leases are held for `provider`.
    pub fn leases_held(&self, provider: &str) -> usize {
        let Some(i) = self.find(provider) else {
            return 0;
        };
        self.leases.values().filter(|l| l.provider == i).count()
    }

    /// The provider's pushback: the factor cut at once, a hold until the retry-after.
    pub fn pushback(&mut self, report: &Pushback, now: Duration) -> Result<f64, PushbackError> {
        let i = self
            .find(&report.provider)
            .ok_or_else(|| PushbackError::UnknownProvider(report.provider.clone()))?;
        let provider = &mut self.providers[i];
        let policy = provider.config.pushback.clone();
        let hold = report.retry_after.unwrap_or(policy.hold);
        let backoff = match &report.class {
            None => &mut provider.backoff,
            Some(class) => {
                if !provider.class_backoff.contains_key(class) {
                    provider
                        .class_backoff
                        .retain(|_, b| !b.recovered(now, &policy));
                    if provider.class_backoff.len() >= provider.config.max_tracked {
                        return Err(PushbackError::TooManyClasses {
                            provider: report.provider.clone(),
                            limit: provider.config.max_tracked,
                        });
                    }
                }
                provider
                    .class_backoff
                    .entry(class.clone())
                    .or_insert_with(Backoff::new)
            }
        };
        backoff.report(now, hold, &policy);
        Ok(backoff.factor(now, &policy))
    }

    /// The pushback factor of `provider` (and of `class` when given) at `now`.
    pub fn pushback_factor(
        &self,
        provider: &str,
        class: Option<&str>,
        now: Duration,
    ) -> Option<f64> {
        let p = &self.providers[self.find(provider)?];
        let policy = &p.config.pushback;
        let class_factor = class
            .and_then(|c| p.class_backoff.get(c))
            .map_or(1.0, |b| b.factor(now, policy));
        Some(p.backoff.factor(now, policy) * class_factor)
    }

    /// Keys and fingerprints tracked by every keyed rule of every provider.
    pub fn tracked_keys(&self) -> usize {
        self.providers
            .iter()
            .flat_map(|p| &p.rules)
            .map(|r| r.keyed.len())
            .sum()
    }

    /// The rules `request` goes through as a store shared by every pod
    /// applies them: each with its key, its cost, and its limit at the
    /// backpressure scale and pushback factor (the whole budget: no replica
    /// share). A HARD pause or a pushback hold is decided here, not there.
    pub fn shared_plan(&self, request: &Request, now: Duration) -> Result<Vec<Planned>, Decision> {
        let Some(index) = self.find(&request.provider) else {
            return Err(Decision::UnknownProvider);
        };
        let provider = &self.providers[index];
        let slots = applicable(&provider.config.rules, request);
        let whole = ProviderState {
            share: 1.0,
            ..provider.shallow()
        };
        if let Some(impossible) = impossible(&whole, &slots, request) {
            return Err(Decision::Impossible(impossible));
        }
        if let Some(held) = provider_hold(provider, request, now) {
            return Err(Decision::Held(held));
        }
        Ok(slots
            .into_iter()
            .map(|(i, key)| {
                let rule = &provider.config.rules[i];
                let scale = rule_scale(&whole, rule, now);
                let limit = match &rule.limit {
                    Limit::Window { count, window } => Limit::Window {
                        count: u32::try_from(scaled_count(*count, scale)).unwrap_or(u32::MAX),
                        window: *window,
                    },
                    Limit::Bucket { rate, burst } => Limit::Bucket {
                        rate: rate * scale,
                        burst: if scale > 0.0 {
                            (burst * scale).max(crate::rate::MIN_CAPACITY)
                        } else {
                            0.0
                        },
                    },
                    Limit::Interval { min } => Limit::Interval {
                        min: min.div_f64(scale),
                    },
                    cap @ Limit::Concurrency { .. } => cap.clone(),
                };
                Planned {
                    rule: rule.name.clone(),
                    key,
                    cost: rule.cost(
                        request.tokens,
                        request.class.as_deref(),
                        request.kind.as_deref(),
                    ),
                    limit,
                }
            })
            .collect())
    }

    /// How `provider` stands at `now`: each rule's limit in force, the
    /// pushback factors, the leases held and the keys tracked.
    pub fn status(&self, provider: &str, now: Duration) -> Option<ProviderStatus> {
        let p = &self.providers[self.find(provider)?];
        let index = self.find(provider)?;
        let policy = &p.config.pushback;
        let rules = p
            .config
            .rules
            .iter()
            .zip(&p.rules)
            .enumerate()
            .map(|(i, (rule, state))| {
                let scale = rule_scale(p, rule, now);
                RuleStatus {
                    name: rule.name.clone(),
                    scope: rule.scope.to_string(),
                    limit: rule.limit.to_string(),
                    in_force: scaled_limit(&rule.limit, scale),
                    scale,
                    tracked_keys: state.keyed.len(),
                    keys_refused: state.keys_refused,
                    leases_held: self
                        .leases
                        .values()
                        .filter(|l| l.provider == index && l.slots.iter().any(|s| s.0 == i))
                        .count(),
                    granted: state.granted,
                }
            })
            .collect();
        let class_factors = p
            .class_backoff
            .iter()
            .map(|(class, b)| (class.clone(), b.factor(now, policy)))
            .collect();
        let pushbacks =
            p.backoff.reports + p.class_backoff.values().map(|b| b.reports).sum::<u64>();
        Some(ProviderStatus {
            control_scale: p.control_scale,
            share: p.share,
            pushback_factor: p.backoff.factor(now, policy),
            class_factors,
            pushback_until: [Some(&p.backoff)]
                .into_iter()
                .flatten()
                .chain(p.class_backoff.values())
                .filter_map(|b| b.held_until(now))
                .max(),
            pushbacks,
            leases_held: self.leases.values().filter(|l| l.provider == index).count(),
            waiting: p.waiters.len(),
            rules,
        })
    }

    /// Forgets expired leases, idle keys and recovered pushbacks.
    pub fn sweep(&mut self, now: Duration) {
        self.last_sweep = now;
        self.expire_leases(now);
        for provider in &mut self.providers {
            let policy = provider.config.pushback.clone();
            provider
                .class_backoff
                .retain(|_, b| !b.recovered(now, &policy));
            for (index, rule) in provider.config.rules.iter().enumerate() {
                if !rule.scope.is_keyed() {
                    continue;
                }
                let scale = rule_scale(provider, rule, now);
                provider.rules[index]
                    .keyed
                    .retain(|_, instance| !instance.is_idle(&rule.limit, scale, now));
            }
        }
    }

    fn expire_leases(&mut self, now: Duration) {
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(record) = self.leases.remove(&id) {
                self.free_slots(&record);
            }
        }
    }

    fn free_slots(&mut self, record: &LeaseRecord) {
        let provider = &mut self.providers[record.provider];
        for (rule, key) in &record.slots {
            let state = &mut provider.rules[*rule];
            let instance = match key {
                None => state.single.as_mut(),
                Some(key) => state.keyed.get_mut(key),
            };
            if let Some(Instance::Leases(expiries, held)) = instance {
                if let Some(n) = expiries.get_mut(&record.expires_at) {
                    *n -= 1;
                    if *n == 0 {
                        expiries.remove(&record.expires_at);
                    }
                }
                *held = held.saturating_sub(1);
            }
        }
    }

    fn decide(&mut self, request: &Request, ticket: Option<Ticket>, now: Duration) -> Decision {
        let Some(index) = self.find(&request.provider) else {
            return Decision::UnknownProvider;
        };
        if !self.leases.is_empty() {
            self.expire_leases(now);
        }
        if now >= self.last_sweep + SWEEP_EVERY {
            self.sweep(now);
        }
        let slots = applicable(&self.providers[index].config.rules, request);
        if let Some(impossible) = impossible(&self.providers[index], &slots, request) {
            return Decision::Impossible(impossible);
        }
        let held = self.hold(index, &slots, request, ticket, now);
        if let Some((held, slot)) = held {
            if let Some(ticket) = ticket {
                let waiters = &mut self.providers[index].waiters;
                if let Some(w) = waiters.iter_mut().find(|w| w.ticket == ticket) {
                    w.held_on = slot;
                    w.retry_at = held.retry_at;
                }
            }
            return Decision::Held(held);
        }
        Decision::Granted {
            lease: self.commit(index, &slots, request, now),
        }
    }

    /// What holds the request, and the rule instance, if anything does.
    fn hold(
        &mut self,
        index: usize,
        slots: &[Slot],
        request: &Request,
        ticket: Option<Ticket>,
        now: Duration,
    ) -> Option<(Held, Option<Slot>)> {
        let provider = &mut self.providers[index];
        let name = provider.config.name.clone();
        let held = |rule: &str, limit: String, reason, retry_at| Held {
            provider: name.clone(),
            rule: rule.to_owned(),
            limit,
            reason,
            retry_at,
            at: now,
        };
        if let Some(h) = provider_hold(provider, request, now) {
            return Some((h, None));
        }
        // Earlier waiters held by a rule this request goes through go first.
        let blocker = provider
            .waiters
            .iter()
            .take_while(|w| ticket.is_none_or(|t| w.ticket < t))
            .find(|w| w.held_on.as_ref().is_some_and(|slot| slots.contains(slot)));
        if let Some(waiter) = blocker {
            let (rule, _) = waiter.held_on.clone().expect("found by its slot");
            let config = &provider.config.rules[rule];
            let h = held(
                &config.name,
                config.limit.to_string(),
                HoldReason::Queue,
                waiter.retry_at,
            );
            return Some((h, waiter.held_on.clone()));
        }
        let mut worst: Option<(Held, Option<Slot>)> = None;
        for slot in slots {
            let Some((reason, retry_at)) = check(provider, slot, request, now) else {
                continue;
            };
            let rule = &provider.config.rules[slot.0];
            let later = match (&worst, retry_at) {
                (None, _) => true,
                (Some((w, _)), Some(t)) => w.retry_at.is_some_and(|wt| t > wt),
                (Some((w, _)), None) => w.retry_at.is_some(),
            };
            if later {
                let h = held(&rule.name, rule.limit.to_string(), reason, retry_at);
                worst = Some((h, Some(slot.clone())));
            }
        }
        worst
    }

    fn commit(
        &mut self,
        index: usize,
        slots: &[Slot],
        request: &Request,
        now: Duration,
    ) -> Option<Lease> {
        let provider = &mut self.providers[index];
        let mut lease_slots = Vec::new();
        let mut lease_time = Duration::ZERO;
        for slot in slots {
            provider.rules[slot.0].granted += 1;
            let rule = provider.config.rules[slot.0].clone();
            let scale = rule_scale(provider, &rule, now);
            let cost = rule.cost(
                request.tokens,
                request.class.as_deref(),
                request.kind.as_deref(),
            );
            let instance = instance_mut(provider, slot, now);
            match (instance, &rule.limit) {
                (Instance::Window(w), _) => w.record(cost, now),
                (Instance::Bucket(b), _) => {
                    b.set_scale(scale, now);
                    let _ = b.try_acquire(cost as f64, now);
                }
                (Instance::Interval(last), _) => *last = Some(now),
                (Instance::Leases(_, held), Limit::Concurrency { lease, .. }) => {
                    *held += 1;
                    lease_time = lease_time.max(*lease);
                    lease_slots.push(slot.clone());
                }
                (Instance::Leases(..), _) => {}
            }
        }
        if lease_slots.is_empty() {
            return None;
        }
        let expires_at = now + lease_time;
        for slot in &lease_slots {
            if let Instance::Leases(expiries, _) = instance_mut(provider, slot, now) {
                *expiries.entry(expires_at).or_insert(0) += 1;
            }
        }
        self.next_lease += 1;
        let id = format!(
            "{}-{}{:x}",
            provider.config.name, self.lease_tag, self.next_lease
        );
        self.leases.insert(
            id.clone(),
            LeaseRecord {
                provider: index,
                slots: lease_slots,
                expires_at,
            },
        );
        Some(Lease { id, expires_at })
    }
}

fn clamp_scale(scale: f64) -> f64 {
    if scale.is_nan() {
        0.0
    } else {
        scale.clamp(0.0, 1.0)
    }
}

/// The rule instances `request` goes through.
fn applicable(rules: &[Rule], request: &Request) -> Vec<Slot> {
    let mut slots = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if !rule.scope.covers_class(request.class.as_deref()) {
            continue;
        }
        match &rule.scope {
            super::Scope::Provider | super::Scope::Class(_) => slots.push((i, None)),
            super::Scope::Key { .. } => {
                if let Some(key) = &request.key {
                    slots.push((i, Some(key.clone())));
                }
            }
            super::Scope::Fingerprint { .. } => {
                if let Some(fp) = &request.fingerprint {
                    slots.push((i, Some(fp.clone())));
                }
            }
        }
    }
    slots
}

/// The scale of a rate rule: backpressure x replica share x pushback (the
/// provider's, and the class's for a rule limited to a class). Concurrency
/// caps take only the share.
fn rule_scale(provider: &ProviderState, rule: &Rule, now: Duration) -> f64 {
    if !rule.limit.is_rate() {
        return provider.share;
    }
    let policy = &provider.config.pushback;
    let class = rule
        .scope
        .class()
        .and_then(|c| provider.class_backoff.get(c))
        .map_or(1.0, |b| b.factor(now, policy));
    provider.control_scale * provider.share * provider.backoff.factor(now, policy) * class
}

/// What a window or cap admits at `scale`: at least 1 while above 0.
fn scaled_count(count: u32, scale: f64) -> u64 {
    if scale <= 0.0 {
        0
    } else {
        ((f64::from(count) * scale + 1e-9).floor() as u64).max(1)
    }
}

/// What holds every request of `provider` (of `request`'s class) whatever the
/// rules: a HARD pause, or a pushback hold until its retry-after.
fn provider_hold(provider: &ProviderState, request: &Request, now: Duration) -> Option<Held> {
    let held = |rule: &str, limit: String, reason, retry_at| Held {
        provider: provider.config.name.clone(),
        rule: rule.to_owned(),
        limit,
        reason,
        retry_at,
        at: now,
    };
    if provider.control_scale <= 0.0 {
        return Some(held(
            "paused",
            "backpressure HARD".into(),
            HoldReason::Paused,
            None,
        ));
    }
    let class_backoff = request
        .class
        .as_ref()
        .and_then(|c| provider.class_backoff.get(c));
    let until = [Some(&provider.backoff), class_backoff]
        .into_iter()
        .flatten()
        .filter_map(|b| b.held_until(now))
        .max()?;
    let what = match &request.class {
        Some(class) => format!("{class} pushed back"),
        None => "pushed back".to_owned(),
    };
    Some(held("pushback", what, HoldReason::Pushback, Some(until)))
}

/// `limit` as it admits at `scale` (`30 in 10m`, `paused`).
fn scaled_limit(limit: &Limit, scale: f64) -> String {
    if scale <= 0.0 {
        return "paused".to_owned();
    }
    match limit {
        Limit::Window { count, window } => Limit::Window {
            count: u32::try_from(scaled_count(*count, scale)).unwrap_or(u32::MAX),
            window: *window,
        }
        .to_string(),
        Limit::Bucket { rate, burst } => format!(
            "{}/s burst {}",
            round3(rate * scale),
            round3((burst * scale).max(crate::rate::MIN_CAPACITY))
        ),
        Limit::Interval { min } => format!("1 per {:.1} s", min.div_f64(scale).as_secs_f64()),
        Limit::Concurrency { max, lease } => Limit::Concurrency {
            max: u32::try_from(scaled_count(*max, scale)).unwrap_or(u32::MAX),
            lease: *lease,
        }
        .to_string(),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn impossible(provider: &ProviderState, slots: &[Slot], request: &Request) -> Option<Impossible> {
    let cost_of = |rule: &Rule| {
        rule.cost(
            request.tokens,
            request.class.as_deref(),
            request.kind.as_deref(),
        )
    };
    for (rule_index, _) in slots {
        let rule = &provider.config.rules[*rule_index];
        let cost = cost_of(rule);
        let most = match rule.limit {
            Limit::Window { count, .. } => scaled_count(count, provider.share),
            Limit::Bucket { burst, .. } => {
                ((burst * provider.share).max(crate::rate::MIN_CAPACITY) + 1e-9).floor() as u64
            }
            _ => continue,
        };
        if cost > most || request.tokens == 0 {
            return Some(Impossible {
                provider: provider.config.name.clone(),
                rule: rule.name.clone(),
                limit: rule.limit.to_string(),
                cost,
                most,
            });
        }
    }
    None
}

fn instance_mut<'a>(
    provider: &'a mut ProviderState,
    slot: &Slot,
    now: Duration,
) -> &'a mut Instance {
    let limit = &provider.config.rules[slot.0].limit;
    let state = &mut provider.rules[slot.0];
    match &slot.1 {
        None => state
            .single
            .get_or_insert_with(|| Instance::new(limit, now)),
        Some(key) => state
            .keyed
            .entry(key.clone())
            .or_insert_with(|| Instance::new(limit, now)),
    }
}

/// Whether one rule instance admits `request` at `now`; Some((why, when)) if not.
fn check(
    provider: &mut ProviderState,
    slot: &Slot,
    request: &Request,
    now: Duration,
) -> Option<(HoldReason, Option<Duration>)> {
    let rule = provider.config.rules[slot.0].clone();
    let scale = rule_scale(provider, &rule, now);
    let cost = rule.cost(
        request.tokens,
        request.class.as_deref(),
        request.kind.as_deref(),
    );
    if let Some(key) = &slot.1 {
        let max = provider.config.max_tracked;
        let state = &mut provider.rules[slot.0];
        if !state.keyed.contains_key(key) && state.keyed.len() >= max {
            state
                .keyed
                .retain(|_, instance| !instance.is_idle(&rule.limit, scale, now));
            if state.keyed.len() >= max {
                state.keys_refused += 1;
                return Some((HoldReason::TooManyKeys, None));
            }
        }
        if !state.keyed.contains_key(key) {
            // A key seen for the first time: judged on a fresh instance, kept
            // only once granted.
            let mut fresh = Instance::new(&rule.limit, now);
            return evaluate(&mut fresh, &rule.limit, scale, cost, now);
        }
    }
    let instance = instance_mut(provider, slot, now);
    evaluate(instance, &rule.limit, scale, cost, now)
}

fn evaluate(
    instance: &mut Instance,
    limit: &Limit,
    scale: f64,
    cost: u64,
    now: Duration,
) -> Option<(HoldReason, Option<Duration>)> {
    match (instance, limit) {
        (Instance::Window(w), Limit::Window { count, window }) => {
            w.prune(now, *window);
            let capacity = scaled_count(*count, scale);
            match w.fits_at(cost, capacity, *window, now) {
                Some(at) if at <= now => None,
                at => Some((HoldReason::Limit, at)),
            }
        }
        (Instance::Bucket(b), _) => {
            b.set_scale(scale, now);
            match b.check(cost as f64, now) {
                Ok(()) => None,
                Err(crate::rate::Throttle::RetryAfter(wait)) => {
                    Some((HoldReason::Limit, Some(now + wait)))
                }
                Err(crate::rate::Throttle::Paused) => Some((HoldReason::Limit, None)),
            }
        }
        (Instance::Interval(last), Limit::Interval { min }) => {
            let last = (*last)?;
            if scale <= 0.0 {
                return Some((HoldReason::Limit, None));
            }
            let next = last + min.div_f64(scale);
            (next > now).then_some((HoldReason::Limit, Some(next)))
        }
        (Instance::Leases(expiries, held), Limit::Concurrency { max, .. }) => {
            let cap = scaled_count(*max, scale);
            (u64::from(*held) >= cap).then(|| (HoldReason::Cap, expiries.keys().next().copied()))
        }
        _ => None,
    }
}
