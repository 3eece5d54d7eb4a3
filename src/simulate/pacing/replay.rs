//! Replays a workload through a pacer on virtual time, and the schedules to
//! compare it with: plain token buckets, and the best a checker-perfect
//! scheduler reaches.
//!
//! Every request is a worker of its own: it asks when it is ready; refused, it
//! waits what the refusal says and asks again; granted, it is sent, stays open
//! for its time and is released (its lease returned, if it holds one).

use super::checker::{self, Sent};
use super::workload::{Class, Request};
use crate::rate::TokenBucket;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// What a pacer answers an acquire.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Send it now; hand `lease` back when it is no longer open.
    Granted { lease: Option<String> },
    /// Ask again after this long.
    Retry(Duration),
    /// No wait will do (the request is over every limit).
    Never(String),
}

/// Something that paces requests on virtual time.
pub trait Pacer {
    fn acquire(&mut self, now: Duration, request: &Request) -> Answer;
    fn release(&mut self, now: Duration, request: &Request, lease: Option<String>);
}

/// A finished replay.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub trace: Vec<Sent>,
    /// Acquires asked (first asks and retries).
    pub asks: u64,
    /// Acquires refused with a wait.
    pub refusals: u64,
    /// Requests refused for good, or never granted before the time limit.
    pub unsent: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Release(usize, Option<String>),
    Ask(usize),
}

impl Event {
    /// Releases before asks at the same instant: what ends frees room first.
    fn order(&self) -> u8 {
        match self {
            Event::Release(..) => 0,
            Event::Ask(_) => 1,
        }
    }
}

/// Retries come no sooner than this (a pacer answering 0 would spin).
const MIN_RETRY: Duration = Duration::from_millis(1);

/// Replays `requests` through `pacer` until every request has been sent and
/// released, or `limit` of virtual time has passed.
pub fn replay(requests: &[Request], pacer: &mut dyn Pacer, limit: Duration) -> Replay {
    let mut events = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<_>, at: Duration, event: Event| {
        seq += 1;
        events.push(Reverse((at, event.order(), seq, event)));
    };
    for request in requests {
        push(&mut events, request.ready, Event::Ask(request.id));
    }
    let mut out = Replay::default();
    let mut sent = vec![false; requests.len()];
    while let Some(Reverse((now, _, _, event))) = events.pop() {
        if now > limit {
            break;
        }
        match event {
            Event::Release(id, lease) => pacer.release(now, &requests[id], lease),
            Event::Ask(id) => {
                out.asks += 1;
                match pacer.acquire(now, &requests[id]) {
                    Answer::Granted { lease } => {
                        sent[id] = true;
                        out.trace.push(Sent {
                            at: now,
                            request: id,
                            open: requests[id].open,
                        });
                        push(
                            &mut events,
                            now + requests[id].open,
                            Event::Release(id, lease),
                        );
                    }
                    Answer::Retry(wait) => {
                        out.refusals += 1;
                        push(&mut events, now + wait.max(MIN_RETRY), Event::Ask(id));
                    }
                    Answer::Never(_) => {}
                }
            }
        }
    }
    out.unsent = (0..requests.len()).filter(|&id| !sent[id]).collect();
    out
}

/// Plain token buckets at the profile's average rates: every message from
/// one bucket of 50/s (burst 50), historical requests also from one of 60
/// per 10 minutes (burst 60, `BID_ASK` two tokens). Both must have the tokens
/// (all or nothing). No windows, keys, fingerprints or leases: a bucket
/// cannot express them.
#[derive(Debug, Clone)]
pub struct Buckets {
    messages: TokenBucket,
    historical: TokenBucket,
}

impl Buckets {
    pub fn new() -> Buckets {
        let window = checker::HISTORICAL_WINDOW.as_secs_f64();
        let per = f64::from(checker::HISTORICAL_PER_WINDOW);
        let messages = f64::from(checker::MESSAGES_PER_SECOND);
        Buckets {
            messages: TokenBucket::try_new(messages, messages, Duration::ZERO)
                .unwrap_or_else(|_| unreachable!("50/s burst 50 is a valid bucket")),
            historical: TokenBucket::try_new(per / window, per, Duration::ZERO)
                .unwrap_or_else(|_| unreachable!("60/10m burst 60 is a valid bucket")),
        }
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::new()
    }
}

impl Pacer for Buckets {
    fn acquire(&mut self, now: Duration, request: &Request) -> Answer {
        let tokens = f64::from(request.tokens());
        let wait = |bucket: &mut TokenBucket, n: f64| {
            let have = bucket.available(now);
            (have < n).then(|| Duration::from_secs_f64((n - have) / bucket.rate()))
        };
        let mut longest = wait(&mut self.messages, 1.0);
        if request.class == Class::Historical {
            longest = longest.max(wait(&mut self.historical, tokens));
        }
        if let Some(wait) = longest {
            return Answer::Retry(wait);
        }
        let taken = self.messages.try_acquire(1.0, now).is_ok()
            && (request.class != Class::Historical
                || self.historical.try_acquire(tokens, now).is_ok());
        debug_assert!(taken, "both buckets had the tokens");
        Answer::Granted { lease: None }
    }

    fn release(&mut self, _now: Duration, _request: &Request, _lease: Option<String>) {}
}

/// The best schedule the checker allows, greedily: at every instant, in ready
/// order, each waiting request is sent if sending it breaks no rule; one that
/// would is retried exactly when what blocks it changes. Requests no wait
/// can admit are left out.
pub fn best(requests: &[Request]) -> Vec<Sent> {
    let mut sent: Vec<Sent> = Vec::new();
    // (request, not before), in ready order.
    let mut pending: Vec<(usize, Duration)> = Vec::new();
    let mut next = 0;
    loop {
        let next_ready = requests.get(next).map(|r| r.ready);
        let next_pending = pending.iter().map(|p| p.1).min();
        let now = match (next_ready, next_pending) {
            (None, None) => break,
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
        };
        while next < requests.len() && requests[next].ready <= now {
            pending.push((next, requests[next].ready));
            next += 1;
        }
        let mut waiting = Vec::with_capacity(pending.len());
        for (id, not_before) in pending.drain(..) {
            if not_before > now {
                waiting.push((id, not_before));
                continue;
            }
            sent.push(Sent {
                at: now,
                request: id,
                open: requests[id].open,
            });
            let j = sent.len() - 1;
            let rules = checker::broken(requests, &sent, j);
            if rules.is_empty() {
                continue;
            }
            let until = rules
                .iter()
                .map(|&rule| checker::next_change(requests, &sent, j, rule))
                .try_fold(now, |until, change| change.map(|t| until.max(t)));
            sent.pop();
            if let Some(until) = until {
                waiting.push((id, until));
            }
        }
        pending = waiting;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::super::workload::{WorkloadSettings, generate};
    use super::*;

    fn small() -> Vec<Request> {
        generate(&WorkloadSettings {
            contracts: 10,
            standing_lines: 60,
            churn_lines: 30,
            horizon: Duration::from_secs(900),
            second_wave_at: Duration::from_secs(400),
            order_bursts: 12,
            ..WorkloadSettings::default()
        })
    }

    #[test]
    fn the_best_schedule_breaks_no_rule_and_sends_everything() {
        let requests = small();
        let best = best(&requests);
        assert_eq!(checker::check(&requests, &best), Default::default());
        assert_eq!(best.len(), requests.len());
        assert!(best.iter().all(|s| s.at >= requests[s.request].ready));
    }

    #[test]
    fn plain_buckets_send_everything_and_break_the_rules() {
        let requests = small();
        let mut buckets = Buckets::new();
        let run = replay(&requests, &mut buckets, Duration::from_secs(7200));
        assert!(run.unsent.is_empty(), "{:?}", run.unsent);
        let violations = checker::check(&requests, &run.trace);
        assert!(violations.historical_window > 0, "{violations:?}");
        assert!(violations.same_contract > 0, "{violations:?}");
        // 50 saved plus 50 accrued within one second: up to 99 in a second.
        assert!(violations.messages > 0, "{violations:?}");
    }

    /// A pacer that admits one request per second, whatever it is.
    struct OnePerSecond(Option<Duration>);

    impl Pacer for OnePerSecond {
        fn acquire(&mut self, now: Duration, _request: &Request) -> Answer {
            match self.0 {
                Some(last) if now < last + Duration::from_secs(1) => {
                    Answer::Retry(last + Duration::from_secs(1) - now)
                }
                _ => {
                    self.0 = Some(now);
                    Answer::Granted { lease: None }
                }
            }
        }
        fn release(&mut self, _: Duration, _: &Request, _: Option<String>) {}
    }

    #[test]
    fn a_replay_retries_after_the_refusal_and_stops_at_the_limit() {
        let requests: Vec<_> = small().into_iter().take(10).collect();
        let run = replay(&requests, &mut OnePerSecond(None), Duration::from_secs(60));
        let mut times: Vec<_> = run.trace.iter().map(|s| s.at).collect();
        times.sort();
        assert_eq!(times.len(), 10);
        assert!(
            times
                .windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_secs(1))
        );
        assert!(run.refusals > 0);
        let cut = replay(&requests, &mut OnePerSecond(None), Duration::from_secs(3));
        assert!(cut.trace.len() < 10 && !cut.unsent.is_empty());
    }
}
