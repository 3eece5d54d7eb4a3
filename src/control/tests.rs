use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn event(id: &str, queue_size: u64, level: Option<Level>, ts: f64) -> Observation {
    Observation {
        coordinator_id: id.to_owned(),
        queue_size,
        capacity: 10_000,
        level,
        ts,
        source: Source::Push,
        reason: None,
    }
}

fn controller(relax_after: Duration) -> Controller {
    Controller::new(ControlConfig {
        relax_after,
        ..ControlConfig::default()
    })
}

#[test]
fn seed_scenarios_map_to_levels_and_scales() {
    let mut ctl = controller(Duration::ZERO);
    let seeds = [
        (500, Level::Ok, 1.0),
        (6000, Level::Soft, 0.5),
        (9500, Level::Hard, 0.0),
        (800, Level::Ok, 1.0),
    ];
    for (i, (depth, level, scale)) in seeds.into_iter().enumerate() {
        let now = ms(i as u64 * 1000);
        let outcome = ctl.observe(event("store_01", depth, Some(level), i as f64), now);
        assert_eq!(outcome, Outcome::Applied { level });
        assert_eq!(ctl.level(), level);
        assert_eq!(ctl.scale(now), scale);
        assert_eq!(
            ctl.depth(),
            Depth::Known {
                depth,
                capacity: Some(10_000)
            }
        );
    }
}

#[test]
fn an_older_event_never_overrides_a_newer_one() {
    let mut ctl = controller(Duration::ZERO);
    ctl.observe(event("s", 9500, Some(Level::Hard), 100.0), ms(0));
    let outcome = ctl.observe(event("s", 100, Some(Level::Ok), 99.5), ms(1));
    assert_eq!(outcome, Outcome::OutOfOrder { last_ts: 100.0 });
    assert_eq!(ctl.level(), Level::Hard);
    assert_eq!(ctl.depth().value(), Some(9500));
    // The same timestamp is not older: it applies.
    let outcome = ctl.observe(event("s", 100, Some(Level::Ok), 100.0), ms(2));
    assert_eq!(outcome, Outcome::Applied { level: Level::Ok });
}

#[test]
fn the_most_severe_live_coordinator_wins() {
    let mut ctl = controller(Duration::ZERO);
    ctl.observe(event("a", 500, None, 1.0), ms(0));
    ctl.observe(event("b", 9500, None, 1.0), ms(0));
    ctl.observe(event("c", 6000, None, 1.0), ms(0));
    assert_eq!(ctl.level(), Level::Hard);
    assert_eq!(ctl.depth().value(), Some(9500));
}

#[test]
fn flapping_at_one_kilohertz_tightens_once_and_relaxes_once() {
    let relax = Duration::from_secs(3);
    let mut ctl = controller(relax);
    let mut changes = Vec::new();
    // 2 s of SOFT/OK alternating every millisecond, as the real store does at
    // its low watermark, then OK holding.
    for i in 0..2000u64 {
        let level = if i % 2 == 0 { Level::Soft } else { Level::Ok };
        ctl.observe(
            event("store_01", 500, Some(level), i as f64 / 1000.0),
            ms(i),
        );
        changes.extend(ctl.drain_events());
    }
    let mut now = ms(2000);
    while let Some(deadline) = ctl.next_deadline(now) {
        now = deadline;
        ctl.tick(now);
        changes.extend(ctl.drain_events());
    }
    let scale_changes: Vec<_> = changes
        .iter()
        .filter_map(|e| match e {
            ControlEvent::LevelChanged { to, scale, .. } => Some((*to, *scale)),
            _ => None,
        })
        .collect();
    assert_eq!(scale_changes, vec![(Level::Soft, 0.5), (Level::Ok, 1.0)]);
    assert!(ctl.flaps_suppressed() >= 1998, "{}", ctl.flaps_suppressed());
    // The relax came only after OK had held for the full hold.
    assert!(now >= ms(1999) + relax);
}

#[test]
fn relax_waits_for_the_hold_and_tighten_does_not() {
    let mut ctl = controller(Duration::from_secs(3));
    ctl.observe(event("s", 9500, Some(Level::Hard), 1.0), ms(0));
    assert_eq!(ctl.scale(ms(0)), 0.0);
    ctl.observe(event("s", 800, Some(Level::Ok), 2.0), ms(1000));
    assert_eq!(ctl.level(), Level::Hard);
    assert_eq!(ctl.next_deadline(ms(1000)), Some(ms(4000)));
    ctl.tick(ms(3999));
    assert_eq!(ctl.level(), Level::Hard);
    ctl.tick(ms(4000));
    assert_eq!(ctl.level(), Level::Ok);
    assert_eq!(ctl.scale(ms(4000)), 1.0);
}

#[test]
fn recovery_ramp_climbs_linearly() {
    let mut ctl = Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        recovery_ramp: Duration::from_secs(10),
        ..ControlConfig::default()
    });
    ctl.observe(event("s", 9500, Some(Level::Hard), 1.0), ms(0));
    ctl.observe(event("s", 800, Some(Level::Ok), 2.0), ms(1000));
    assert_eq!(ctl.scale(ms(1000)), 0.0);
    assert!((ctl.scale(ms(6000)) - 0.5).abs() < 1e-9);
    assert_eq!(ctl.scale(ms(11_000)), 1.0);
    assert_eq!(ctl.target_scale(), 1.0);
}

#[test]
fn a_push_ttl_makes_silent_coordinators_stale_at_the_fail_safe_level() {
    let mut ctl = Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        push_ttl: Some(Duration::from_secs(30)),
        ..ControlConfig::default()
    });
    ctl.observe(event("s", 500, Some(Level::Ok), 1.0), ms(0));
    assert_eq!(ctl.next_deadline(ms(0)), Some(ms(30_000)));
    ctl.tick(ms(30_000));
    assert_eq!(ctl.level(), Level::Soft);
    assert!(ctl.coordinators()[0].stale);
    // The last depth stands (marked stale), never a 0 that reads as empty.
    assert_eq!(ctl.depth().value(), Some(500));
    let events = ctl.drain_events();
    assert!(events.contains(&ControlEvent::Staleness {
        coordinator_id: "s".into(),
        stale: true
    }));
    ctl.observe(event("s", 500, Some(Level::Ok), 40.0), ms(40_000));
    assert_eq!(ctl.level(), Level::Ok);
    assert!(!ctl.coordinators()[0].stale);
}

#[test]
fn silence_is_not_failure_without_a_ttl() {
    let mut ctl = controller(Duration::ZERO);
    ctl.observe(event("s", 500, Some(Level::Ok), 1.0), ms(0));
    assert_eq!(ctl.next_deadline(ms(0)), None);
    ctl.tick(Duration::from_secs(86_400));
    assert_eq!(ctl.level(), Level::Ok);
}

#[test]
fn repeated_pull_failures_make_pulled_coordinators_stale() {
    let mut ctl = Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        pull_max_failures: 3,
        ..ControlConfig::default()
    });
    let mut obs = event("coord", 500, None, 1.0);
    obs.source = Source::Pull;
    ctl.observe(obs.clone(), ms(0));
    ctl.pull_failed(ms(5000));
    ctl.pull_failed(ms(10_000));
    assert_eq!(ctl.level(), Level::Ok);
    ctl.pull_failed(ms(15_000));
    assert_eq!(ctl.level(), Level::Soft);
    obs.ts = 20.0;
    ctl.observe(obs, ms(20_000));
    assert_eq!(ctl.level(), Level::Ok);
    assert_eq!(ctl.pull_failures(), 0);
}

#[test]
fn coordinators_beyond_the_cap_are_refused() {
    let mut ctl = Controller::new(ControlConfig {
        max_coordinators: 2,
        ..ControlConfig::default()
    });
    assert!(matches!(
        ctl.observe(event("a", 1, None, 1.0), ms(0)),
        Outcome::Applied { .. }
    ));
    assert!(matches!(
        ctl.observe(event("b", 1, None, 1.0), ms(0)),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        ctl.observe(event("c", 9999, None, 1.0), ms(0)),
        Outcome::TooManyCoordinators
    );
    assert_eq!(ctl.level(), Level::Ok);
    assert!(matches!(
        ctl.observe(event("a", 2, None, 2.0), ms(0)),
        Outcome::Applied { .. }
    ));
}

#[test]
fn a_store_never_reached_fails_safe() {
    let mut ctl = controller(Duration::ZERO);
    for i in 0..3 {
        ctl.pull_failed(ms(i * 1000));
    }
    assert_eq!(ctl.level(), Level::Soft);
}

#[test]
fn a_full_table_makes_room_by_forgetting_the_oldest_stale_coordinator() {
    let mut ctl = Controller::new(ControlConfig {
        max_coordinators: 2,
        push_ttl: Some(Duration::from_secs(10)),
        relax_after: Duration::ZERO,
        ..ControlConfig::default()
    });
    ctl.observe(event("old", 1, None, 1.0), ms(0));
    ctl.observe(event("live", 1, None, 1.0), ms(9_000));
    ctl.tick(ms(12_000));
    assert!(matches!(
        ctl.observe(event("new", 1, None, 2.0), ms(12_000)),
        Outcome::Applied { .. }
    ));
    let ids: Vec<String> = ctl
        .coordinators()
        .into_iter()
        .map(|c| c.coordinator_id)
        .collect();
    assert_eq!(ids, vec!["live".to_owned(), "new".to_owned()]);
    assert!(ctl.drain_events().contains(&ControlEvent::Evicted {
        coordinator_id: "old".into()
    }));
    // No stale coordinator left to forget: the next newcomer is refused.
    assert_eq!(
        ctl.observe(event("newer", 1, None, 2.0), ms(12_001)),
        Outcome::TooManyCoordinators
    );
}

fn pulled() -> Controller {
    Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        pulled: true,
        ..ControlConfig::default()
    })
}

fn pulled_event(depth: u64, ts: f64) -> Observation {
    Observation {
        source: Source::Pull,
        ..event("store_01", depth, None, ts)
    }
}

#[test]
fn a_polled_store_never_reached_has_no_depth_and_fails_safe_at_the_first_failure() {
    let mut ctl = pulled();
    assert_eq!(ctl.depth(), Depth::Unknown);
    assert_eq!(ctl.store_reachable(), Some(false));
    ctl.pull_failed(ms(0));
    assert_eq!(ctl.level(), Level::Soft);
    assert_eq!(ctl.depth(), Depth::Unknown);
}

#[test]
fn a_polled_store_at_hard_that_disappears_stays_hard_with_no_depth() {
    let mut ctl = pulled();
    ctl.observe(pulled_event(9500, 1.0), ms(0));
    assert_eq!(ctl.level(), Level::Hard);
    assert_eq!(ctl.store_reachable(), Some(true));
    for i in 1..=20 {
        ctl.pull_failed(ms(i * 5000));
        ctl.tick(ms(i * 5000 + 1));
        assert_eq!(ctl.level(), Level::Hard, "poll {i}");
        assert_eq!(ctl.depth(), Depth::Unknown);
    }
    assert!(ctl.coordinators()[0].stale);
    // The store answers again: its depth is the news.
    ctl.observe(pulled_event(800, 200.0), ms(200_000));
    assert_eq!(ctl.store_reachable(), Some(true));
    assert_eq!(ctl.depth().value(), Some(800));
    assert_eq!(ctl.level(), Level::Ok);
}

#[test]
fn a_stale_coordinator_counts_as_its_last_level_when_that_is_worse() {
    let mut ctl = Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        push_ttl: Some(Duration::from_secs(10)),
        ..ControlConfig::default()
    });
    ctl.observe(event("s", 9500, Some(Level::Hard), 1.0), ms(0));
    ctl.tick(ms(60_000));
    assert!(ctl.coordinators()[0].stale);
    assert_eq!(ctl.level(), Level::Hard);
    assert_eq!(ctl.depth().value(), Some(9500));
}

#[test]
fn an_operator_forgets_a_coordinator_and_its_level_goes_with_it() {
    let mut ctl = controller(Duration::ZERO);
    ctl.observe(event("gone", 9500, Some(Level::Hard), 1.0), ms(0));
    ctl.observe(event("here", 500, Some(Level::Ok), 1.0), ms(0));
    assert_eq!(ctl.level(), Level::Hard);
    assert!(!ctl.forget("unknown", ms(1)));
    assert!(ctl.forget("gone", ms(1)));
    assert_eq!(ctl.level(), Level::Ok);
    assert_eq!(ctl.coordinators().len(), 1);
    assert!(ctl.drain_events().contains(&ControlEvent::Forgotten {
        coordinator_id: "gone".into(),
        why: ForgetReason::Operator
    }));
    assert!(!ctl.forget("gone", ms(2)), "forgotten once only");
}

#[test]
fn forget_after_releases_a_silent_coordinator_at_its_deadline() {
    let mut ctl = Controller::new(ControlConfig {
        relax_after: Duration::ZERO,
        forget_after: Some(Duration::from_secs(600)),
        ..ControlConfig::default()
    });
    ctl.observe(event("gone", 9500, Some(Level::Hard), 1.0), ms(0));
    assert_eq!(ctl.next_deadline(ms(0)), Some(ms(600_000)));
    ctl.tick(ms(599_999));
    assert_eq!(ctl.level(), Level::Hard);
    ctl.tick(ms(600_000));
    assert_eq!(ctl.level(), Level::Ok);
    assert!(ctl.coordinators().is_empty());
    assert!(ctl.drain_events().contains(&ControlEvent::Forgotten {
        coordinator_id: "gone".into(),
        why: ForgetReason::Silence
    }));
}
