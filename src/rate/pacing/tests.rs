//! The ibkr profile against IBKR's published table, on virtual time.

use super::profile::ibkr;
use super::*;
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pacer() -> Pacer {
    Pacer::new(vec![ibkr()]).expect("the profile is valid")
}

fn historical(key: &str, fingerprint: &str) -> Request {
    Request::new("ibkr", Some("historical"))
        .key(key)
        .fingerprint(fingerprint)
}

fn granted(decision: &Decision) -> bool {
    matches!(decision, Decision::Granted { .. })
}

fn held_by(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Held(held) => Some(held.rule.as_str()),
        _ => None,
    }
}

/// Releases the lease of a grant at once (the request answered).
fn done(pacer: &mut Pacer, decision: &Decision, now: Duration) {
    if let Decision::Granted { lease: Some(lease) } = decision {
        assert!(pacer.release(&lease.id, now));
    }
}

#[test]
fn the_61st_historical_request_inside_ten_minutes_is_held() {
    let mut pacer = pacer();
    // Distinct contracts, 5 s apart: no other rule comes near.
    for i in 0..60 {
        let now = ms(i * 5_000);
        let d = pacer.acquire(&historical(&format!("C{i}"), &format!("F{i}")), now);
        assert!(granted(&d), "request {i}: {d:?}");
        done(&mut pacer, &d, now);
    }
    let now = ms(300_000);
    let d = pacer.acquire(&historical("C60", "F60"), now);
    assert_eq!(held_by(&d), Some("historical"));
    let Decision::Held(held) = d else {
        unreachable!()
    };
    // The first grant (t = 0) stops counting at 10 min.
    assert_eq!(held.retry_at, Some(ms(600_000)));
    assert_eq!(
        held.to_string(),
        "held by ibkr/historical: 60 in 10m, next slot in 300.0 s"
    );
    assert!(granted(
        &pacer.acquire(&historical("C60", "F60"), ms(600_000))
    ));
}

#[test]
fn the_sixth_same_contract_request_inside_two_seconds_is_held() {
    let mut pacer = pacer();
    for i in 0..5 {
        let now = ms(i * 100);
        let d = pacer.acquire(&historical("AAPL/SMART/TRADES", &format!("F{i}")), now);
        assert!(granted(&d), "{d:?}");
        done(&mut pacer, &d, now);
    }
    let d = pacer.acquire(&historical("AAPL/SMART/TRADES", "F5"), ms(1_999));
    assert_eq!(held_by(&d), Some("same_contract"));
    // Another contract is not held.
    assert!(granted(
        &pacer.acquire(&historical("MSFT/SMART/TRADES", "G"), ms(1_999))
    ));
    assert!(granted(
        &pacer.acquire(&historical("AAPL/SMART/TRADES", "F5"), ms(2_000))
    ));
}

#[test]
fn an_identical_request_inside_fifteen_seconds_is_held() {
    let mut pacer = pacer();
    let request = historical("AAPL/SMART/TRADES", "AAPL/SMART/TRADES/1 D/1 min");
    assert!(granted(&pacer.acquire(&request, ms(0))));
    let d = pacer.acquire(&request, ms(14_999));
    assert_eq!(held_by(&d), Some("identical"));
    let Decision::Held(held) = d else {
        unreachable!()
    };
    assert_eq!(held.retry_at, Some(ms(15_000)));
    assert!(granted(&pacer.acquire(&request, ms(15_000))));
}

#[test]
fn a_bid_ask_request_counts_twice() {
    let mut pacer = pacer();
    for i in 0..30 {
        let now = ms(i * 5_000);
        let request = historical(&format!("C{i}"), &format!("F{i}")).kind("BID_ASK");
        let d = pacer.acquire(&request, now);
        assert!(granted(&d), "{i}: {d:?}");
        done(&mut pacer, &d, now);
    }
    // 30 BID_ASK requests filled the 60 of the window.
    let d = pacer.acquire(&historical("C30", "F30"), ms(150_000));
    assert_eq!(held_by(&d), Some("historical"));
    // Three BID_ASK on one contract: 6 > 5 within 2 s.
    let mut pacer = super::Pacer::new(vec![ibkr()]).expect("valid");
    let bid_ask = |f: &str| historical("AAPL", f).kind("BID_ASK");
    assert!(granted(&pacer.acquire(&bid_ask("a"), ms(0))));
    assert!(granted(&pacer.acquire(&bid_ask("b"), ms(10))));
    assert_eq!(
        held_by(&pacer.acquire(&bid_ask("c"), ms(20))),
        Some("same_contract")
    );
}

#[test]
fn the_51st_open_request_is_held_until_one_is_released() {
    let mut pacer = pacer();
    let mut leases = Vec::new();
    for i in 0..50 {
        // 50 messages per second and 5 per contract: spread over time.
        let now = ms(i * 25);
        match pacer.acquire(&historical(&format!("C{i}"), &format!("F{i}")), now) {
            Decision::Granted { lease: Some(lease) } => leases.push(lease),
            other => panic!("{i}: {other:?}"),
        }
    }
    assert_eq!(pacer.leases_held("ibkr"), 50);
    let now = ms(2_000);
    let d = pacer.acquire(&historical("C50", "F50"), now);
    assert_eq!(held_by(&d), Some("open_historical"));
    assert!(pacer.release(&leases[7].id, now));
    assert!(
        !pacer.release(&leases[7].id, now),
        "a lease is returned once"
    );
    assert!(granted(&pacer.acquire(&historical("C50", "F50"), now)));
}

#[test]
fn an_unreturned_lease_expires_after_the_lease_time() {
    let mut pacer = pacer();
    let mut first = None;
    for i in 0..50 {
        let d = pacer.acquire(&historical(&format!("C{i}"), &format!("F{i}")), ms(i * 25));
        if i == 0 {
            first = Some(d);
        }
    }
    let d = pacer.acquire(&historical("X", "X"), ms(60_000));
    assert_eq!(held_by(&d), Some("open_historical"));
    let Decision::Held(held) = d else {
        unreachable!()
    };
    assert_eq!(held.retry_at, Some(profile::IBKR_LEASE));
    assert!(granted(
        &pacer.acquire(&historical("X", "X"), profile::IBKR_LEASE)
    ));
    let Some(Decision::Granted { lease: Some(lease) }) = first else {
        panic!("{first:?}")
    };
    assert!(!pacer.release(&lease.id, profile::IBKR_LEASE), "it expired");
}

#[test]
fn at_soft_each_window_admits_half_its_count() {
    let mut pacer = pacer();
    pacer.set_control_scale("ibkr", 0.5);
    let mut grants = 0;
    for i in 0..60 {
        let now = ms(i * 5_000);
        let d = pacer.acquire(&historical(&format!("C{i}"), &format!("F{i}")), now);
        if granted(&d) {
            grants += 1;
        }
        done(&mut pacer, &d, now);
    }
    assert_eq!(grants, 30);
    pacer.set_control_scale("ibkr", 0.0);
    let d = pacer.acquire(&Request::new("ibkr", Some("market_data")), ms(900_000));
    assert_eq!(held_by(&d), Some("paused"));
}

#[test]
fn fifty_messages_a_second_across_classes() {
    let mut pacer = pacer();
    for i in 0..50 {
        let d = pacer.acquire(&Request::new("ibkr", None), ms(i));
        assert!(granted(&d));
    }
    let d = pacer.acquire(&Request::new("ibkr", Some("market_data")), ms(500));
    assert_eq!(held_by(&d), Some("messages"));
}

#[test]
fn more_than_a_window_holds_is_impossible() {
    let mut pacer = pacer();
    match pacer.acquire(&Request::new("ibkr", None).tokens(51), ms(0)) {
        Decision::Impossible(i) => {
            assert_eq!((i.rule.as_str(), i.cost, i.most), ("messages", 51, 50));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pacer.acquire(&Request::new("nope", None), ms(0)),
        Decision::UnknownProvider
    );
}

#[test]
fn pushback_holds_the_class_then_recovers_gradually() {
    let mut pacer = pacer();
    let report = Pushback {
        provider: "ibkr".into(),
        class: Some("historical".into()),
        kind: PushbackKind::PacingViolation,
        retry_after: Some(ms(5_000)),
    };
    assert_eq!(pacer.pushback(&report, ms(0)), Ok(0.5));
    let d = pacer.acquire(&historical("A", "A"), ms(4_999));
    assert_eq!(held_by(&d), Some("pushback"));
    // Other classes are not held.
    assert!(granted(
        &pacer.acquire(&Request::new("ibkr", Some("market_data")), ms(1))
    ));
    assert!(granted(&pacer.acquire(&historical("A", "A"), ms(5_000))));
    let factor = |p: &Pacer, t| {
        p.pushback_factor("ibkr", Some("historical"), t)
            .expect("known")
    };
    assert_eq!(factor(&pacer, ms(5_000)), 0.5);
    let later = factor(&pacer, ms(65_000));
    assert!(later > 0.5 && later < 1.0, "{later}");
    assert_eq!(factor(&pacer, ms(1_000_000)), 1.0);
}

#[test]
fn a_queued_waiter_goes_before_later_requests_through_its_rule() {
    let mut pacer = pacer();
    let request = historical("AAPL", "F");
    assert!(granted(&pacer.acquire(&request, ms(0))));
    let ticket = pacer.enqueue(&request).expect("known");
    assert_eq!(
        held_by(&pacer.acquire_waiting(ticket, &request, ms(1))),
        Some("identical")
    );
    // A later identical request is held behind the waiter.
    match pacer.acquire(&request, ms(15_000)) {
        Decision::Held(h) => assert_eq!(h.reason, HoldReason::Queue),
        other => panic!("{other:?}"),
    }
    // Requests through other rule instances are not.
    assert!(granted(
        &pacer.acquire(&historical("MSFT", "G"), ms(15_000))
    ));
    assert!(granted(&pacer.acquire_waiting(
        ticket,
        &request,
        ms(15_000)
    )));
    assert_eq!(pacer.waiting("ibkr"), 0);
}

#[test]
fn idle_keys_are_forgotten_and_the_key_cap_refuses_beyond_it() {
    let mut config = ibkr();
    config.max_tracked = 3;
    let mut pacer = Pacer::new(vec![config]).expect("valid");
    for i in 0..3 {
        let d = pacer.acquire(
            &Request::new("ibkr", Some("historical")).key(&format!("K{i}")),
            ms(i),
        );
        assert!(granted(&d));
    }
    let d = pacer.acquire(&Request::new("ibkr", Some("historical")).key("K3"), ms(10));
    match d {
        Decision::Held(h) => {
            assert_eq!(
                (h.reason, h.rule.as_str()),
                (HoldReason::TooManyKeys, "same_contract")
            )
        }
        other => panic!("{other:?}"),
    }
    pacer.sweep(ms(2_100));
    assert_eq!(pacer.tracked_keys(), 0);
    assert!(granted(&pacer.acquire(
        &Request::new("ibkr", Some("historical")).key("K3"),
        ms(2_100)
    )));
}
