//! The engine on paused time: a change is in force when the call returns, a
//! change that needs the loop sooner wakes it, and a stopped loop refuses
//! changes.

use super::*;
use crate::control::ControlConfig;
use crate::rate::ProviderSpec;

fn event(ts: f64, level: Level) -> Observation {
    Observation {
        coordinator_id: "store_01".into(),
        queue_size: 100,
        capacity: 10_000,
        level: Some(level),
        ts,
        source: Source::Push,
        reason: None,
    }
}

fn engine(relax_after: Duration) -> (EngineHandle, ControlLoop, Arc<RateCoordinator>) {
    let clock = Clock::new();
    let rates = Arc::new(RateCoordinator::new(
        &[ProviderSpec::default()],
        None,
        clock,
    ));
    let config = ControlConfig {
        relax_after,
        ..ControlConfig::default()
    };
    let (handle, control_loop) = build(
        Controller::new(config),
        rates.clone(),
        Metrics::new(&["ibkr"]),
        vec!["ibkr".into()],
        None,
        clock,
    );
    (handle, control_loop, rates)
}

#[tokio::test(start_paused = true)]
async fn the_scale_and_the_snapshot_are_in_force_when_observe_returns() {
    // The loop is never run: nothing but the caller applies the event.
    let (engine, _control_loop, rates) = engine(Duration::ZERO);
    let outcome = engine.observe(event(1.0, Level::Hard), Instant::now());
    assert_eq!(outcome, Some(Outcome::Applied { level: Level::Hard }));
    assert_eq!(rates.views()[0].scale, 0.0);
    assert_eq!(engine.current().level, Level::Hard);
    engine.observe(event(2.0, Level::Ok), Instant::now());
    assert_eq!(rates.views()[0].scale, 1.0);
    assert_eq!(engine.current().level, Level::Ok);
}

#[tokio::test(start_paused = true)]
async fn an_event_that_starts_a_relax_hold_wakes_the_loop_for_its_end() {
    let (engine, control_loop, rates) = engine(Duration::from_millis(500));
    let task = tokio::spawn(control_loop.run());
    // Let the loop arm itself first: no coordinator, so no deadline.
    tokio::task::yield_now().await;
    engine.observe(event(1.0, Level::Hard), Instant::now());
    engine.observe(event(2.0, Level::Ok), Instant::now());
    assert_eq!(engine.current().level, Level::Hard, "held");
    // Past the hold's end and before the loop's next one-second tick (at
    // 1 s, which would find the deadline too): only a loop woken for the
    // new deadline has relaxed by now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(engine.current().level, Level::Ok);
    assert_eq!(rates.views()[0].scale, 1.0);
    drop(engine);
    task.await.expect("the loop ends with the last handle");
}

#[tokio::test(start_paused = true)]
async fn a_halted_loop_refuses_changes() {
    let (engine, control_loop, rates) = engine(Duration::ZERO);
    let (halt, halted) = watch::channel(false);
    let task = tokio::spawn(control_loop.run_until(halted));
    assert!(
        engine
            .observe(event(1.0, Level::Hard), Instant::now())
            .is_some()
    );
    halt.send_replace(true);
    task.await.expect("the loop halts");
    assert_eq!(engine.observe(event(2.0, Level::Ok), Instant::now()), None);
    assert_eq!(engine.forget("store_01"), None);
    assert_eq!(
        rates.views()[0].scale,
        0.0,
        "nothing changed after the halt"
    );
}
