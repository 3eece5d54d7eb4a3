//! Properties of the engine on virtual time, checked by brute force.

use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Costs of the grants in `[t, t + window)` for every grant time `t`: the
/// largest is the most any window of that length ever saw.
fn most_in_any_window(grants: &[(Duration, u64)], window: Duration) -> u64 {
    grants
        .iter()
        .map(|&(t, _)| {
            grants
                .iter()
                .filter(|&&(u, _)| u >= t && u < t + window)
                .map(|&(_, c)| c)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

proptest! {
    #[test]
    fn grants_never_exceed_the_window_count(
        count in 1u32..8,
        window_ms in 1u64..2_000,
        steps in prop::collection::vec((0u64..400, prop::bool::ANY), 1..120),
    ) {
        let rule = Rule::new("w", Scope::Provider, Limit::Window { count, window: ms(window_ms) })
            .weight("BID_ASK", 2);
        let mut pacer = Pacer::new(vec![ProviderPacing::new("p", vec![rule])]).unwrap();
        let mut now = Duration::ZERO;
        let mut grants = Vec::new();
        for (gap, double) in steps {
            now += ms(gap);
            let mut request = Request::new("p", None);
            if double {
                request = request.kind("BID_ASK");
            }
            let cost = if double { 2 } else { 1 };
            match pacer.acquire(&request, now) {
                Decision::Granted { .. } => grants.push((now, cost)),
                Decision::Held(held) => {
                    // A hold names a time in the future, when there is room.
                    let at = held.retry_at.expect("a window always knows its next slot");
                    prop_assert!(at > now);
                }
                Decision::Impossible(_) => prop_assert!(cost > u64::from(count)),
                Decision::UnknownProvider => prop_assert!(false),
            }
        }
        prop_assert!(most_in_any_window(&grants, ms(window_ms)) <= u64::from(count));
    }

    #[test]
    fn a_held_request_is_granted_at_its_retry_time(
        count in 1u32..6,
        window_ms in 1u64..2_000,
        gaps in prop::collection::vec(0u64..300, 1..60),
    ) {
        let rule = Rule::new("w", Scope::Provider, Limit::Window { count, window: ms(window_ms) });
        let mut pacer = Pacer::new(vec![ProviderPacing::new("p", vec![rule])]).unwrap();
        let mut now = Duration::ZERO;
        let request = Request::new("p", None);
        for gap in gaps {
            now += ms(gap);
            if let Decision::Held(held) = pacer.acquire(&request, now) {
                let at = held.retry_at.unwrap();
                let again = pacer.acquire(&request, at);
                prop_assert!(matches!(again, Decision::Granted { .. }), "{:?}", again);
                now = at;
            }
        }
    }

    #[test]
    fn each_key_stays_within_its_limit(
        count in 1u32..5,
        window_ms in 1u64..1_000,
        steps in prop::collection::vec((0u64..200, 0usize..4), 1..150),
    ) {
        let rule = Rule::new(
            "k",
            Scope::Key { class: Some("c".into()) },
            Limit::Window { count, window: ms(window_ms) },
        );
        let mut pacer = Pacer::new(vec![ProviderPacing::new("p", vec![rule])]).unwrap();
        let mut now = Duration::ZERO;
        let mut grants: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); 4];
        for (gap, key) in steps {
            now += ms(gap);
            let request = Request::new("p", Some("c")).key(&format!("K{key}"));
            let used_before = grants[key].iter()
                .filter(|&&(t, _)| t + ms(window_ms) > now)
                .count() as u32;
            match pacer.acquire(&request, now) {
                Decision::Granted { .. } => grants[key].push((now, 1)),
                // Keys do not hold each other: a key with room is granted.
                Decision::Held(_) => prop_assert_eq!(used_before, count),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        for key in &grants {
            prop_assert!(most_in_any_window(key, ms(window_ms)) <= u64::from(count));
        }
    }

    #[test]
    fn leases_stay_under_the_cap_and_expire(
        max in 1u32..6,
        lease_ms in 1u64..1_000,
        steps in prop::collection::vec((0u64..200, prop::bool::ANY, 0usize..8), 1..150),
    ) {
        let rule = Rule::new("c", Scope::Provider, Limit::Concurrency { max, lease: ms(lease_ms) });
        let mut pacer = Pacer::new(vec![ProviderPacing::new("p", vec![rule])]).unwrap();
        let mut now = Duration::ZERO;
        // The model: leases granted and neither released nor expired.
        let mut held: Vec<Lease> = Vec::new();
        for (gap, release, pick) in steps {
            now += ms(gap);
            held.retain(|l| l.expires_at > now);
            if release && !held.is_empty() {
                let lease = held.remove(pick % held.len());
                prop_assert!(pacer.release(&lease.id, now));
                // Twice is refused.
                prop_assert!(!pacer.release(&lease.id, now));
                continue;
            }
            match pacer.acquire(&Request::new("p", None), now) {
                Decision::Granted { lease: Some(lease) } => {
                    prop_assert_eq!(lease.expires_at, now + ms(lease_ms));
                    held.push(lease);
                }
                // Held only when the cap is reached by live leases.
                Decision::Held(h) => {
                    prop_assert_eq!(held.len() as u32, max);
                    // Without a release, the earliest live lease's expiry frees a slot.
                    let first = held.iter().map(|l| l.expires_at).min().unwrap();
                    prop_assert_eq!(h.retry_at, Some(first));
                }
                other => prop_assert!(false, "{:?}", other),
            }
            prop_assert!(held.len() as u32 <= max);
        }
    }

    #[test]
    fn waiters_are_granted_in_arrival_order(
        count in 1u32..4,
        window_ms in 1u64..500,
        waiters in 2usize..10,
        order in prop::collection::vec(0usize..10, 1..200),
    ) {
        let rule = Rule::new("w", Scope::Provider, Limit::Window { count, window: ms(window_ms) });
        let mut pacer = Pacer::new(vec![ProviderPacing::new("p", vec![rule])]).unwrap();
        let request = Request::new("p", None);
        // Each waiter arrives, takes its place and tries once at once.
        let mut queue: Vec<(usize, Ticket)> = Vec::new();
        let mut granted = Vec::new();
        let mut now = Duration::ZERO;
        for i in 0..waiters {
            let ticket = pacer.enqueue(&request).unwrap();
            match pacer.acquire_waiting(ticket, &request, now) {
                Decision::Granted { .. } => granted.push(i),
                Decision::Held(_) => queue.push((i, ticket)),
                other => prop_assert!(false, "{:?}", other),
            }
        }
        for (step, pick) in order.into_iter().enumerate() {
            if queue.is_empty() {
                break;
            }
            if step % 3 == 0 {
                now += ms(window_ms / 2 + 1);
            }
            let at = pick % queue.len();
            let (i, ticket) = queue[at];
            match pacer.acquire_waiting(ticket, &request, now) {
                Decision::Granted { .. } => {
                    granted.push(i);
                    queue.remove(at);
                }
                Decision::Held(_) => {}
                other => prop_assert!(false, "{:?}", other),
            }
            // A newcomer never jumps a waiter held by the same rule.
            if !queue.is_empty() {
                if let Decision::Granted { .. } = pacer.acquire(&request, now) {
                    prop_assert!(false, "a newcomer went before {} waiters", queue.len());
                }
            }
        }
        let mut sorted = granted.clone();
        sorted.sort_unstable();
        prop_assert_eq!(granted, sorted);
    }
}
