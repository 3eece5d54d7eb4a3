//! Every pacing rule kept in a real redis-server by one atomic script: two
//! limiters sharing one Redis never exceed a window's N together, rules are
//! taken all or nothing, leases cap what is in flight and expire, and a Redis
//! that goes away turns the shared mode off.

mod common;

use common::eventually;
use common::redis::Redis;
use mdp::rate::shared::pacing::{SharedLimit, SharedPace, SharedRule};
use mdp::rate::{SharedBudget, SharedConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A limiter on `redis`, once its shared mode is on.
async fn limiter(redis: &Redis) -> Arc<SharedBudget> {
    let budget = SharedBudget::start(SharedConfig {
        url: redis.url(),
        key_prefix: "mdp:test".into(),
        // Generous for a loaded test machine.
        timeout: Duration::from_secs(2),
        probe_every: Duration::from_millis(50),
    })
    .expect("valid config");
    assert!(
        eventually(Duration::from_secs(20), || {
            let budget = budget.clone();
            async move { budget.is_up() }
        })
        .await,
        "the shared mode never came up"
    );
    budget
}

async fn pace(budget: &Arc<SharedBudget>, member: &str, rules: &[SharedRule]) -> SharedPace {
    budget
        .pace(member, rules)
        .await
        .expect("valid rules")
        .expect("Redis answers")
}

fn window(budget: &SharedBudget, name: &str, count: u64, ms: u64, cost: u64) -> SharedRule {
    SharedRule {
        key: budget.pacing_key("ibkr", name, None),
        limit: SharedLimit::Window {
            count,
            window: Duration::from_millis(ms),
        },
        cost,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_never_exceed_a_window_together() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (limiter(&redis).await, limiter(&redis).await);
    const N: usize = 20;
    const W_US: u64 = 500_000;
    let run = |budget: Arc<SharedBudget>, name: &'static str| {
        tokio::spawn(async move {
            let rule = [window(&budget, "hist", N as u64, W_US / 1000, 1)];
            let mut granted = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut i = 0u64;
            // Until this limiter has seen three windows' worth of grants.
            while granted.len() < 2 * N && Instant::now() < deadline {
                i += 1;
                match pace(&budget, &format!("{name}-{i}"), &rule).await {
                    SharedPace::Granted { at_us } => granted.push(at_us),
                    SharedPace::Held { retry_after, .. } => {
                        let wait = retry_after.expect("a window of 20 admits one");
                        assert!(wait <= Duration::from_millis(W_US / 1000), "{wait:?}");
                        // Ask again a little early: the window must hold anyway.
                        tokio::time::sleep(wait / 2).await;
                    }
                }
            }
            granted
        })
    };
    let (one, two) = (run(a, "a"), run(b, "b"));
    let (one, two) = (one.await.expect("a"), two.await.expect("b"));
    assert!(
        one.len() >= N && two.len() >= N,
        "{} {}",
        one.len(),
        two.len()
    );
    let mut all: Vec<u64> = one.into_iter().chain(two).collect();
    all.sort_unstable();
    // Brute force: in every window (t - W, t] ending at a grant, at most N.
    for (j, &t) in all.iter().enumerate() {
        let inside = all[..=j].iter().filter(|&&s| s + W_US > t).count();
        assert!(inside <= N, "{inside} grants in the window ending at {t}");
    }
    // And both limiters were held by the full window at some point.
    let full = (0..all.len())
        .filter(|&j| all[..=j].iter().filter(|&&s| s + W_US > all[j]).count() == N)
        .count();
    assert!(full > 0, "the window was never full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_taken_all_or_nothing_with_weights_intervals_and_leases() {
    let Some(redis) = Redis::start() else { return };
    let budget = limiter(&redis).await;
    let hist = |cost| window(&budget, "window", 4, 600_000, cost);
    let identical = SharedRule {
        key: budget.pacing_key("ibkr", "identical", Some("AAPL/SMART/TRADES/1 D")),
        limit: SharedLimit::Interval {
            min: Duration::from_secs(15),
        },
        cost: 1,
    };
    let leases = SharedRule {
        key: budget.pacing_key("ibkr", "open", None),
        limit: SharedLimit::Lease {
            max: 2,
            lease: Duration::from_secs(600),
        },
        cost: 1,
    };
    // A BID_ASK request counts twice.
    let first = pace(&budget, "r1", &[hist(2), identical.clone(), leases.clone()]).await;
    assert!(matches!(first, SharedPace::Granted { .. }), "{first:?}");
    // The identical request is held by the interval, and nothing else is taken.
    match pace(&budget, "r2", &[hist(1), identical.clone(), leases.clone()]).await {
        SharedPace::Held { rule, retry_after } => {
            assert_eq!(rule, 1);
            let wait = retry_after.expect("a wait");
            assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(15));
        }
        other => panic!("{other:?}"),
    }
    // Had the refusal taken from the window or the leases, the next two could not pass.
    assert!(matches!(
        pace(&budget, "r3", &[hist(1), leases.clone()]).await,
        SharedPace::Granted { .. }
    ));
    match pace(&budget, "r4", &[hist(1), leases.clone()]).await {
        SharedPace::Held {
            rule: 1,
            retry_after,
        } => {
            assert!(retry_after.expect("expiry") > Duration::from_secs(590));
        }
        other => panic!("two leases are out: {other:?}"),
    }
    assert!(
        budget
            .release_lease(std::slice::from_ref(&leases.key), "r1")
            .await
    );
    assert!(matches!(
        pace(&budget, "r5", &[hist(1), leases.clone()]).await,
        SharedPace::Granted { .. }
    ));
    // 2 + 1 + 1 = 4 in the window: full, for ten minutes.
    match pace(&budget, "r6", &[hist(1)]).await {
        SharedPace::Held {
            rule: 0,
            retry_after,
        } => {
            assert!(retry_after.expect("slot") > Duration::from_secs(590));
        }
        other => panic!("{other:?}"),
    }
    // More than the window could ever hold.
    assert_eq!(
        pace(&budget, "r7", &[hist(5)]).await,
        SharedPace::Held {
            rule: 0,
            retry_after: None
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_stops_counting_and_a_lost_redis_turns_shared_off() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let budget = limiter(&redis).await;
    let lease = SharedRule {
        key: budget.pacing_key("ibkr", "lines", None),
        limit: SharedLimit::Lease {
            max: 1,
            lease: Duration::from_millis(200),
        },
        cost: 1,
    };
    let bucket = SharedRule {
        key: budget.pacing_key("ibkr", "messages", None),
        limit: SharedLimit::Bucket {
            rate: 50.0,
            burst: 50.0,
        },
        cost: 1,
    };
    let rules = [lease, bucket];
    assert!(matches!(
        pace(&budget, "l1", &rules).await,
        SharedPace::Granted { .. }
    ));
    assert!(matches!(
        pace(&budget, "l2", &rules).await,
        SharedPace::Held { rule: 0, .. }
    ));
    // Never released: it expires, and the next lease is granted.
    let mut i = 2;
    assert!(
        eventually(Duration::from_secs(20), || {
            i += 1;
            let (budget, rules, member) = (budget.clone(), rules.clone(), format!("l{i}"));
            async move {
                matches!(
                    pace(&budget, &member, &rules).await,
                    SharedPace::Granted { .. }
                )
            }
        })
        .await
    );
    redis.kill();
    assert_eq!(budget.pace("gone", &rules).await, Ok(None));
    assert!(!budget.is_up());
}
