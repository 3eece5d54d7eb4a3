//! Micro-benchmarks of the hot paths: the control step, the event -> new
//! scale path through the control loop, the limiter, and the exposition.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use mdp::clock::Clock;
use mdp::control::{ControlConfig, Controller, Observation, Source};
use mdp::level::Level;
use mdp::rate::{ProviderSpec, RateCoordinator, TokenBucket};
use mdp::telemetry::Metrics;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn observation(i: u64) -> Observation {
    let level = if i % 2 == 0 { Level::Soft } else { Level::Ok };
    Observation {
        coordinator_id: "store_01".into(),
        queue_size: 5000 + i % 2,
        capacity: 10_000,
        level: Some(level),
        ts: i as f64,
        source: Source::Push,
        reason: None,
    }
}

fn control_step(c: &mut Criterion) {
    c.bench_function("control/observe (flapping soft/ok)", |b| {
        let mut controller = Controller::new(ControlConfig::default());
        let mut i = 0u64;
        b.iter_batched(
            || {
                i += 1;
                observation(i)
            },
            |obs| {
                let now = Duration::from_secs_f64(obs.ts / 1e6);
                controller.observe(obs, now)
            },
            BatchSize::SmallInput,
        );
    });
}

fn event_to_scale(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let clock = Clock::new();
    let specs = [ProviderSpec::default()];
    let metrics = Metrics::new(&["ibkr"]);
    let rates = Arc::new(RateCoordinator::new(&specs, None, clock));
    let config = ControlConfig {
        relax_after: Duration::ZERO,
        ..ControlConfig::default()
    };
    let (engine, _task) = runtime.block_on(async {
        mdp::engine::spawn(
            Controller::new(config),
            rates.clone(),
            metrics,
            vec!["ibkr".into()],
            None,
            clock,
        )
    });
    let mut i = 0u64;
    c.bench_function("engine/event -> new scale in force (round trip)", |b| {
        b.to_async(&runtime).iter(|| {
            i += 1;
            let level = if i % 2 == 0 { Level::Hard } else { Level::Ok };
            let obs = Observation {
                level: Some(level),
                ts: i as f64,
                ..observation(i)
            };
            let engine = engine.clone();
            let rates = rates.clone();
            async move {
                engine
                    .observe(obs, tokio::time::Instant::now())
                    .await
                    .expect("loop runs");
                let expected = if level == Level::Hard { 0.0 } else { 1.0 };
                assert_eq!(rates.views()[0].scale, expected);
            }
        });
    });
}

fn limiter(c: &mut Criterion) {
    c.bench_function("limiter/try_acquire", |b| {
        let mut bucket = TokenBucket::try_new(1e9, 1e9, Duration::ZERO).expect("valid");
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            black_box(bucket.try_acquire(1.0, Duration::from_nanos(t)))
        });
    });
    let rates = RateCoordinator::new(&[ProviderSpec::default()], None, Clock::new());
    c.bench_function("rate coordinator/try_acquire (lookup + lock)", |b| {
        b.iter(|| black_box(rates.try_acquire("ibkr", 1.0)));
    });
}

fn exposition(c: &mut Criterion) {
    let metrics = Metrics::new(&["ibkr"]);
    c.bench_function("telemetry/render (1 provider)", |b| {
        b.iter(|| black_box(metrics.render().len()));
    });
}

criterion_group!(benches, control_step, event_to_scale, limiter, exposition);
criterion_main!(benches);
