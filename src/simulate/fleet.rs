//! The pods' side of the simulation: every pod of the Deployment runs the service's
//! own [`ReplicaTracker`] against the headless Service's answer and its own
//! [`TokenBucket`] per provider, scaled by the control scale times its share, while
//! workers ask for more than the provider's budget. The grants of all pods, summed per
//! provider and second, are what the provider sees while the autoscaler adds and
//! removes pods.
//!
//! The peer answer lists the pods that are ready (a headless Service publishes ready
//! addresses only). A removed pod leaves the answer at once but keeps granting for
//! `drain` (connections already open while it shuts down), which is what the shrink
//! hold protects against. Every pod hears the same feedback (pull mode), so all apply
//! the same control scale; a new pod has polled the store before it is ready.

use super::noise::noise;
use crate::rate::{BucketError, ProviderSpec, TokenBucket};
use crate::replicas::{ReplicaTracker, Resolution};
use clap::ValueEnum;
use std::time::Duration;

/// How each pod turns the peer answer into its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShareRule {
    /// mdp's rule (`ReplicaTracker`): growth at once, shrinking waits
    /// --replicas-shrink-hold, a newcomer counts --max-replicas until it has seen
    /// itself listed for one --replicas-refresh.
    Conservative,
    /// 1/observed pods, no hold, no newcomer assumption (the same tracker with
    /// max_replicas 1, shrink hold 0, settle 0): unsafe, for comparison.
    Naive,
}

/// Where the pods take tokens from (`--budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BudgetMode {
    /// Each pod its own bucket holding its share (1/N, at least one token).
    Split,
    /// One bucket for all pods (the shared budget in Redis, `--budget-redis`).
    Shared,
}

/// What the pods run, besides the autoscaler's pod count.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    pub providers: Vec<ProviderSpec>,
    /// Feedback scales only this provider (None: all of them).
    pub feedback_provider: Option<String>,
    /// Each pod resolves the peer name this often.
    pub refresh: Duration,
    pub shrink_hold: Duration,
    /// How long a removed pod keeps granting after it left the answer.
    pub drain: Duration,
    /// What the workers ask for, as a multiple of each provider's base rate.
    pub demand: f64,
    pub rule: ShareRule,
    /// `--replicas N`: every pod grants 1/N whatever the answer (no tracking).
    pub fixed: Option<u32>,
    pub budget: BudgetMode,
    /// For this long from the start all the workers' demand goes to one pod;
    /// then it spreads evenly.
    pub skew: Duration,
}

/// One provider's grants summed over all pods, one entry per simulated second.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantTrack {
    pub provider: String,
    pub rate: f64,
    pub burst: f64,
    /// Whether the control scale applies to this provider.
    pub feedback: bool,
    /// Tokens granted by all pods during each second.
    pub granted: Vec<f64>,
    /// The provider's budget accrued during each second: rate x the integral of the
    /// control scale (1 for a provider without feedback).
    pub accrued: Vec<f64>,
    /// The largest control scale in force during each second.
    pub scale_max: Vec<f64>,
    /// The most capacity the one-token floor added, summed over the pods, during
    /// each second: the pods' buckets together hold at most this beyond
    /// `burst x scale`, which bounds the overshoot of the split budget.
    pub floor_tokens: Vec<f64>,
}

/// The pods' grants over a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodGrants {
    pub providers: Vec<GrantTrack>,
    /// Pods that first appeared in the peer answer during each second.
    pub newcomers: Vec<u32>,
}

#[derive(Debug, Clone)]
struct SimPod {
    tracker: ReplicaTracker,
    buckets: Vec<TokenBucket>,
    /// Demand not yet served, per provider: workers take whole tokens.
    pending: Vec<f64>,
    next_refresh: Duration,
    /// In the peer answer now.
    listed: bool,
    /// Ever in the answer (counted once as a newcomer).
    was_listed: bool,
    drain_until: Duration,
}

/// Every pod of the Deployment, alive or draining.
#[derive(Debug, Clone)]
pub struct Fleet {
    settings: FleetSettings,
    max_replicas: u32,
    seed: u64,
    /// Full buckets at scale 1, one per provider, cloned into each new pod.
    templates: Vec<TokenBucket>,
    /// Whether feedback scales each provider.
    feedback: Vec<bool>,
    /// In the Deployment's order: removal takes the last ones.
    live: Vec<SimPod>,
    draining: Vec<SimPod>,
    /// The one bucket per provider of the shared budget.
    shared: Vec<TokenBucket>,
    created: u64,
    /// The trackers' clock runs this far ahead, so the pods there at time zero have
    /// settled on their count (the run starts in steady state).
    warm: Duration,
    grants: PodGrants,
}

impl Fleet {
    /// `initial` ready pods that have known each other for a while.
    pub fn new(
        settings: &FleetSettings,
        max_replicas: u32,
        initial: u32,
        seed: u64,
    ) -> Result<Fleet, BucketError> {
        let templates = settings
            .providers
            .iter()
            .map(|p| TokenBucket::try_new(p.rate, p.burst, Duration::ZERO))
            .collect::<Result<Vec<_>, _>>()?;
        let feedback: Vec<bool> = settings
            .providers
            .iter()
            .map(|p| {
                settings
                    .feedback_provider
                    .as_ref()
                    .is_none_or(|f| *f == p.name)
            })
            .collect();
        let tracks = settings
            .providers
            .iter()
            .zip(&feedback)
            .map(|(p, &feedback)| GrantTrack {
                provider: p.name.clone(),
                rate: p.rate,
                burst: p.burst,
                feedback,
                granted: Vec::new(),
                accrued: Vec::new(),
                scale_max: Vec::new(),
                floor_tokens: Vec::new(),
            })
            .collect();
        let refresh = settings.refresh.max(Duration::from_millis(1));
        let mut fleet = Fleet {
            warm: refresh * 3 + settings.shrink_hold,
            settings: FleetSettings {
                refresh,
                ..settings.clone()
            },
            max_replicas: max_replicas.max(1),
            seed,
            shared: templates.clone(),
            templates,
            feedback,
            live: Vec::new(),
            draining: Vec::new(),
            created: 0,
            grants: PodGrants {
                providers: tracks,
                newcomers: Vec::new(),
            },
        };
        let answer = Resolution {
            addresses: initial,
            includes_self: Some(true),
        };
        for _ in 0..initial {
            let mut pod = fleet.new_pod(Duration::ZERO);
            (pod.listed, pod.was_listed) = (true, true);
            if fleet.settings.fixed.is_none() {
                let mut at = Duration::ZERO;
                while at < fleet.warm {
                    pod.tracker.observe(Some(answer), at);
                    at += refresh;
                }
            }
            fleet.live.push(pod);
        }
        Ok(fleet)
    }

    fn new_pod(&mut self, now: Duration) -> SimPod {
        let s = &self.settings;
        let tracker = match (s.fixed, s.rule) {
            (Some(count), _) => ReplicaTracker::new(count, Duration::ZERO, Duration::ZERO),
            // As `mdp serve` builds it: settled after one refresh.
            (None, ShareRule::Conservative) => {
                ReplicaTracker::new(self.max_replicas, s.shrink_hold, s.refresh)
            }
            (None, ShareRule::Naive) => ReplicaTracker::new(1, Duration::ZERO, Duration::ZERO),
        };
        // Each pod resolves on its own phase, from its start.
        let fraction = (noise(self.seed ^ 0x5EED_F1EE_7000_0000, self.created) + 1.0) / 2.0;
        self.created += 1;
        SimPod {
            tracker,
            buckets: self.templates.clone(),
            pending: vec![0.0; self.templates.len()],
            next_refresh: now + s.refresh.mul_f64(fraction.clamp(0.0, 0.999_999)),
            listed: false,
            was_listed: false,
            drain_until: now,
        }
    }

    /// Pods removed and still granting.
    pub fn draining(&self) -> u32 {
        u32::try_from(self.draining.len()).unwrap_or(u32::MAX)
    }

    /// One step of `step` at `now`: follow the Deployment (`total` pods, the first
    /// `ready` of them ready), let due pods resolve the peer name, then serve the
    /// workers' demand for the step.
    pub fn step(&mut self, now: Duration, step: Duration, total: u32, ready: u32, scale: f64) {
        let second = usize::try_from(now.as_secs()).unwrap_or(usize::MAX);
        self.open_second(second);
        self.follow(now, total as usize, ready as usize, second);
        if self.settings.fixed.is_none() {
            let answer = |listed| {
                Some(Resolution {
                    addresses: ready.min(total),
                    includes_self: Some(listed),
                })
            };
            let (refresh, clock) = (self.settings.refresh, now + self.warm);
            for pod in self.live.iter_mut().chain(self.draining.iter_mut()) {
                if now >= pod.next_refresh {
                    pod.tracker.observe(answer(pod.listed), clock);
                    while pod.next_refresh <= now {
                        pod.next_refresh += refresh;
                    }
                }
            }
        }
        let serving = self.live.iter().filter(|p| p.listed).count() + self.draining.len();
        let skewed = now < self.settings.skew;
        for (index, spec) in self.settings.providers.iter().enumerate() {
            let scale = if self.feedback[index] { scale } else { 1.0 };
            let track = &mut self.grants.providers[index];
            track.accrued[second] += spec.rate * scale * step.as_secs_f64();
            track.scale_max[second] = track.scale_max[second].max(scale);
            // Workers ask continuously: a bucket holding less than a step's refill
            // would drop tokens between two asks a whole step apart, so it is asked
            // often enough that one refill fills at most half of it.
            let asks = (step.as_secs_f64() * spec.rate / spec.burst * 2.0)
                .ceil()
                .clamp(1.0, 1000.0) as u32;
            let total = self.settings.demand * spec.rate * step.as_secs_f64() / f64::from(asks);
            let shared = &mut self.shared[index];
            let split = self.settings.budget == BudgetMode::Split;
            shared.set_scale(scale, now);
            let mut floor = 0.0;
            let mut first = true;
            for pod in self.live.iter_mut().chain(self.draining.iter_mut()) {
                let bucket = &mut pod.buckets[index];
                bucket.set_scale(scale * pod.tracker.share(), now);
                if !(pod.listed || pod.drain_until > now) {
                    continue;
                }
                if split {
                    floor += (bucket.capacity() - spec.burst * bucket.scale()).max(0.0);
                }
                let want = match (skewed, first) {
                    (true, true) => total,
                    (true, false) => 0.0,
                    (false, _) => total / serving.max(1) as f64,
                };
                first = false;
                let bucket = if split { bucket } else { &mut *shared };
                let pending = &mut pod.pending[index];
                for ask in 0..asks {
                    let at = now + step * ask / asks;
                    // Unserved demand waits a little (workers retry), not forever.
                    *pending = (*pending + want).min(want * f64::from(asks) + 1.0);
                    let grant = pending.min(bucket.available(at)).floor();
                    if grant >= 1.0 && bucket.try_acquire(grant, at).is_ok() {
                        track.granted[second] += grant;
                        *pending -= grant;
                    }
                }
            }
            track.floor_tokens[second] = track.floor_tokens[second].max(floor);
        }
    }

    fn open_second(&mut self, second: usize) {
        while self.grants.newcomers.len() <= second {
            self.grants.newcomers.push(0);
            for track in &mut self.grants.providers {
                track.granted.push(0.0);
                track.accrued.push(0.0);
                track.scale_max.push(0.0);
                track.floor_tokens.push(0.0);
            }
        }
    }

    /// Matches the pods to the Deployment's: removal takes the newest (the
    /// ReplicaSet's order, see `autoscale::pods`), growth appends starting pods,
    /// and the first `ready` are ready and listed.
    fn follow(&mut self, now: Duration, total: usize, ready: usize, second: usize) {
        self.draining.retain(|pod| pod.drain_until > now);
        if total < self.live.len() {
            let drain = self.settings.drain;
            let removed = self.live.split_off(total);
            self.draining
                .extend(removed.into_iter().filter_map(|mut pod| {
                    let serving = pod.listed && !drain.is_zero();
                    pod.listed = false;
                    pod.drain_until = now + drain;
                    serving.then_some(pod)
                }));
        }
        while self.live.len() < total {
            let pod = self.new_pod(now);
            self.live.push(pod);
        }
        for (index, pod) in self.live.iter_mut().enumerate() {
            pod.listed = index < ready;
            if pod.listed && !pod.was_listed {
                pod.was_listed = true;
                self.grants.newcomers[second] += 1;
            }
        }
    }

    /// The grants recorded so far, while the run goes on.
    pub fn grants(&self) -> &PodGrants {
        &self.grants
    }

    /// The grants recorded so far.
    pub fn finish(self) -> PodGrants {
        self.grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::budget::windows;

    fn settings(demand: f64) -> FleetSettings {
        FleetSettings {
            providers: vec![ProviderSpec::default()],
            feedback_provider: None,
            refresh: Duration::from_secs(5),
            shrink_hold: Duration::from_secs(15),
            drain: Duration::from_secs(5),
            demand,
            rule: ShareRule::Conservative,
            fixed: None,
            budget: BudgetMode::Split,
            skew: Duration::ZERO,
        }
    }

    // The budget is what one pod holding it all could grant: whatever the scale
    // does, a lone saturated pod stays within it, and comes within one step's
    // accrual of it.
    #[test]
    fn one_pod_with_the_whole_budget_stays_within_it() {
        let step = Duration::from_millis(100);
        let mut fleet = Fleet::new(&settings(10.0), 1, 1, 7).expect("valid");
        for i in 0..6000u64 {
            let scale = match (i / 23) % 4 {
                0 => 1.0,
                1 => 0.0,
                2 => 0.5,
                _ => (noise(3, i / 23) + 1.0) / 2.0,
            };
            fleet.step(Duration::from_millis(100 * i), step, 1, 1, scale);
        }
        let grants = fleet.finish();
        let track = &grants.providers[0];
        for length in [1, 10, 60] {
            for (start, granted, budget) in windows(track, length) {
                assert!(
                    granted <= budget + 1e-9,
                    "{length} s at {start}: {granted} > {budget}"
                );
            }
        }
        let mut steady = Fleet::new(&settings(10.0), 1, 1, 7).expect("valid");
        for i in 0..600u64 {
            steady.step(Duration::from_millis(100 * i), step, 1, 1, 1.0);
        }
        let (_, granted, budget) = windows(&steady.finish().providers[0], 60)[0];
        assert!(
            (budget - granted - 60.0 * 0.1).abs() < 1e-6,
            "{granted} of {budget}"
        );
    }

    #[test]
    fn pods_follow_the_deployment_and_drain_after_removal() {
        let second = Duration::from_secs(1);
        let at = Duration::from_secs;
        let mut fleet = Fleet::new(&settings(1.5), 10, 2, 1).expect("valid");
        fleet.step(at(0), second, 2, 2, 1.0);
        fleet.step(at(1), second, 4, 2, 1.0);
        fleet.step(at(2), second, 4, 4, 1.0);
        // Three removed while listed: they keep granting for the drain delay.
        fleet.step(at(3), second, 1, 1, 1.0);
        assert_eq!(fleet.draining(), 3);
        fleet.step(at(7), second, 1, 1, 1.0);
        assert_eq!(fleet.draining(), 3);
        fleet.step(at(8), second, 1, 1, 1.0);
        assert_eq!(fleet.draining(), 0);
        // A pod removed before it was ready never served and does not drain.
        fleet.step(at(9), second, 2, 1, 1.0);
        fleet.step(at(10), second, 1, 1, 1.0);
        assert_eq!(fleet.draining(), 0);
        let grants = fleet.finish();
        assert_eq!(grants.newcomers[..4], [0, 0, 2, 0]);
        assert_eq!(grants.newcomers.iter().sum::<u32>(), 2);
        let granted = &grants.providers[0].granted;
        assert!(
            granted[7] > granted[10],
            "the drained pods granted too: {granted:?}"
        );
    }

    // A newcomer counts max_replicas until it has seen itself listed for a refresh
    // and the smaller count has held; the naive rule trusts the answer at once.
    #[test]
    fn a_newcomer_takes_the_smallest_share_until_it_settles() {
        let second = Duration::from_secs(1);
        let share = |fleet: &Fleet| fleet.live.last().map(|p| p.tracker.share());
        let mut careful = Fleet::new(&settings(1.5), 10, 1, 1).expect("valid");
        let mut naive = Fleet::new(
            &FleetSettings {
                rule: ShareRule::Naive,
                ..settings(1.5)
            },
            10,
            1,
            1,
        )
        .expect("valid");
        for fleet in [&mut careful, &mut naive] {
            fleet.step(Duration::ZERO, second, 2, 2, 1.0);
        }
        assert_eq!(share(&careful), Some(0.1));
        assert_eq!(share(&naive), Some(1.0), "no lookup yet: 1/1");
        for t in 1..40 {
            for fleet in [&mut careful, &mut naive] {
                fleet.step(Duration::from_secs(t), second, 2, 2, 1.0);
            }
        }
        assert_eq!(share(&careful), Some(0.5));
        assert_eq!(share(&naive), Some(0.5));
        // Three asked for at once: before they are ready each sees the two listed
        // pods plus itself, and none sees the other two.
        for t in 40..50 {
            naive.step(Duration::from_secs(t), second, 5, 2, 1.0);
        }
        let shares: Vec<f64> = naive.live.iter().map(|p| p.tracker.share()).collect();
        assert_eq!(shares, [0.5, 0.5, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
    }

    fn run(settings: &FleetSettings, pods: u32, seconds: u64) -> GrantTrack {
        let step = Duration::from_millis(100);
        let mut fleet = Fleet::new(settings, 10, pods, 3).expect("valid");
        for i in 0..seconds * 10 {
            fleet.step(
                step * u32::try_from(i).expect("small"),
                step,
                pods,
                pods,
                1.0,
            );
        }
        fleet.finish().providers.remove(0)
    }

    fn utilization(track: &GrantTrack) -> f64 {
        track.granted.iter().sum::<f64>() / track.accrued.iter().sum::<f64>()
    }

    // All demand on one of three pods, then spread: split strands two thirds of
    // the budget while skewed, shared hands it all to the busy pod; neither
    // ever exceeds the budget.
    #[test]
    fn skewed_demand_split_strands_budget_shared_does_not() {
        let skewed = |budget| FleetSettings {
            fixed: Some(3),
            budget,
            skew: Duration::from_secs(120),
            ..settings(1.5)
        };
        let split = run(&skewed(BudgetMode::Split), 3, 240);
        let shared = run(&skewed(BudgetMode::Shared), 3, 240);
        let during = |t: &GrantTrack| t.granted[..120].iter().sum::<f64>() / (60.0 * 120.0);
        let after = |t: &GrantTrack| t.granted[120..].iter().sum::<f64>() / (60.0 * 120.0);
        assert!((0.3..0.4).contains(&during(&split)), "{}", during(&split));
        assert!(during(&shared) > 0.95, "{}", during(&shared));
        assert!(after(&split) > 0.95 && after(&shared) > 0.95);
        assert!(utilization(&shared) > utilization(&split) + 0.2);
        for track in [&split, &shared] {
            for length in [1, 10, 60] {
                for (start, granted, budget) in windows(track, length) {
                    assert!(
                        granted <= budget + 1e-9,
                        "{length} s at {start}: {granted} > {budget}"
                    );
                }
            }
        }
    }

    // 1 token/s, burst 1, over 4 pods: each pod's share of the burst is 0.25 of a
    // token, the floor lets each hold one. Whole tokens are granted, and the
    // excess stays within the floor's allowance, max(0, N - burst) = 3 tokens.
    #[test]
    fn a_small_provider_grants_whole_tokens_within_the_floor_bound() {
        let small = FleetSettings {
            providers: vec!["slow=1/s,burst=1".parse().expect("valid")],
            fixed: Some(4),
            ..settings(2.0)
        };
        let track = run(&small, 4, 120);
        assert!(
            track.granted.iter().all(|g| g.fract() == 0.0),
            "whole tokens"
        );
        assert!(utilization(&track) > 0.9, "{}", utilization(&track));
        assert!(track.floor_tokens.iter().all(|&f| (f - 3.0).abs() < 1e-9));
        let mut worst: f64 = 0.0;
        for length in [1, 10, 60] {
            for (start, granted, budget) in windows(&track, length) {
                let allowance = crate::simulate::budget::floor_allowance(&track, start, length);
                assert!(
                    granted <= budget + allowance + 1e-9,
                    "{length} s at {start}"
                );
                worst = worst.max(granted - budget);
            }
        }
        assert!(
            worst > 0.0 && worst <= 3.0,
            "the floor's excess is real and bounded: {worst}"
        );
    }
}
