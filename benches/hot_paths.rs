//! Micro-benchmarks of the hot paths: the control step, the event -> new
//! scale path through the engine, the limiter, the exposition (and how
//! it grows with providers and coordinators), one acquire decision with a
//! token bucket against the ibkr pacing rules, and the busiest routes through
//! the whole warp filter in process (no socket). The load test over real
//! sockets, against the Python service, is `bench/run.sh` (BENCHMARKS.md).

use clap::Parser;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mdp::cli::{Cli, Command};
use mdp::clock::Clock;
use mdp::control::{ControlConfig, Controller, Observation, Source};
use mdp::level::Level;
use mdp::rate::pacing::{self, Decision, Pacer};
use mdp::rate::{PacedProviders, ProviderSpec, RateCoordinator, TokenBucket};
use mdp::telemetry::{CoordinatorSample, Metrics};
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
    // From the thread blocked in `block_on`: the event is applied on that
    // thread, with no task woken on the way.
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
                    .expect("loop runs");
                let expected = if level == Level::Hard { 0.0 } else { 1.0 };
                assert_eq!(rates.views()[0].scale, expected);
            }
        });
    });
    // From a task on the runtime, as an HTTP handler sends events.
    c.bench_function(
        "engine/event -> new scale in force (round trip from a runtime task)",
        |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (engine, rates, first) = (engine.clone(), rates.clone(), i + 1);
                i += iters;
                async move {
                    let task = tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        for n in first..first + iters {
                            let level = if n % 2 == 0 { Level::Hard } else { Level::Ok };
                            let obs = Observation {
                                level: Some(level),
                                ts: n as f64,
                                ..observation(n)
                            };
                            engine
                                .observe(obs, tokio::time::Instant::now())
                                .expect("loop runs");
                            let expected = if level == Level::Hard { 0.0 } else { 1.0 };
                            assert_eq!(rates.views()[0].scale, expected);
                        }
                        started.elapsed()
                    });
                    task.await.expect("the measuring task runs")
                }
            });
        },
    );
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

/// The ibkr profile's rules with their counts raised so none holds: the file
/// `bench/run.sh` serves the same comparison over HTTP with.
const IBKR_RAISED: &str = include_str!("../bench/ibkr-raised.yaml");

fn ibkr_raised() -> Vec<pacing::ProviderPacing> {
    pacing::file::parse(IBKR_RAISED, "bench/ibkr-raised.yaml").expect("the bench file is valid")
}

/// 1000 historical requests over 100 contracts, as `acquire_paced.lua` sends them.
fn historical_requests() -> Vec<pacing::Request> {
    (0..1000)
        .map(|i| {
            let key = format!("AAPL{:02}:SMART:TRADES", i % 100);
            pacing::Request::new("ibkr", Some("historical"))
                .key(&key)
                .fingerprint(&format!("{key}:1 D:5 mins:{i:03}"))
                .kind("TRADES")
        })
        .collect()
}

/// One acquire decision: a token bucket, then every rule of the ibkr profile
/// (counts raised so each is checked and none holds: the cost of checking
/// them), then the real profile refusing a request (the 429 path).
fn acquire_bucket_vs_rules(c: &mut Criterion) {
    let mut group = c.benchmark_group("acquire (bucket vs ibkr rules)");
    group.bench_function("bucket: TokenBucket::try_acquire", |b| {
        let mut bucket = TokenBucket::try_new(1e9, 1e9, Duration::ZERO).expect("valid");
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            black_box(bucket.try_acquire(1.0, Duration::from_nanos(t))).expect("granted")
        });
    });
    // Virtual time, 1 ms per request: the 10-minute window reaches its
    // steady state (600,000 grants kept, one aged out per request).
    group.bench_function(
        "ibkr rules, counts raised: Pacer::acquire + release (historical, granted)",
        |b| {
            let mut pacer = Pacer::new(ibkr_raised()).expect("valid");
            let requests = historical_requests();
            let (mut i, mut now) = (0usize, Duration::ZERO);
            b.iter(|| {
                i += 1;
                now += Duration::from_millis(1);
                let request = &requests[i % requests.len()];
                match pacer.acquire(black_box(request), now) {
                    Decision::Granted { lease: Some(lease) } => {
                        assert!(pacer.release(&lease.id, now))
                    }
                    other => panic!("a raised rule held the request: {other:?}"),
                }
            });
        },
    );
    group.bench_function(
        "ibkr profile: Pacer::acquire (historical, held: the 429 path)",
        |b| {
            let mut pacer = Pacer::new(vec![pacing::profile::ibkr()]).expect("valid");
            let requests = historical_requests();
            // Fill the 60-in-10-minutes window, 100 ms apart (under the
            // 50/s message limit), returning every lease.
            let mut now = Duration::ZERO;
            for request in &requests[..60] {
                now += Duration::from_millis(100);
                match pacer.acquire(request, now) {
                    Decision::Granted { lease: Some(lease) } => {
                        assert!(pacer.release(&lease.id, now))
                    }
                    other => panic!("the first 60 are granted: {other:?}"),
                }
            }
            let mut i = 60usize;
            b.iter(|| {
                i += 1;
                now += Duration::from_nanos(1);
                let request = &requests[i % requests.len()];
                match pacer.acquire(black_box(request), now) {
                    Decision::Held(held) => black_box(held),
                    other => panic!("the window is full: {other:?}"),
                }
            });
        },
    );
    // The same through the layers a request goes through: the lock, the
    // coordinator's clock, the counters, the async waiting path (not taken).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spec: ProviderSpec = "ibkr=1000000000/s,burst=1000000000".parse().expect("valid");
    let rates = RateCoordinator::new(&[spec], None, Clock::new());
    group.bench_function("bucket: RateCoordinator::acquire", |b| {
        b.to_async(&runtime).iter(|| async {
            rates
                .acquire("ibkr", 1, Duration::ZERO)
                .await
                .expect("granted")
        });
    });
    let paced = PacedProviders::new(ibkr_raised(), None, Clock::new()).expect("valid");
    let requests = historical_requests();
    let mut i = 0usize;
    group.bench_function(
        "ibkr rules, counts raised: PacedProviders::acquire + release (historical, granted)",
        |b| {
            b.to_async(&runtime).iter(|| {
                i += 1;
                let request = &requests[i % requests.len()];
                let paced = &paced;
                async move {
                    let grant = paced
                        .acquire(request, Duration::ZERO)
                        .await
                        .expect("granted");
                    let (lease, _) = grant.lease.expect("a lease");
                    assert!(paced.release(&lease, None).await);
                }
            });
        },
    );
    let profile =
        PacedProviders::new(vec![pacing::profile::ibkr()], None, Clock::new()).expect("valid");
    // Fill the 60-in-10-minutes window (waiting out the 50/s message limit
    // once, about a second), returning every lease: every later request is
    // held for the rest of the run.
    runtime.block_on(async {
        for request in &requests[..60] {
            let grant = profile
                .acquire(request, Duration::from_secs(5))
                .await
                .expect("the first 60 are granted");
            let (lease, _) = grant.lease.expect("a lease");
            assert!(profile.release(&lease, None).await);
        }
    });
    group.bench_function(
        "ibkr profile: PacedProviders::acquire (historical, held: the 429 path)",
        |b| {
            b.to_async(&runtime).iter(|| {
                i += 1;
                let request = &requests[i % requests.len()];
                let profile = &profile;
                async move {
                    let refusal = profile.acquire(request, Duration::ZERO).await;
                    black_box(refusal).expect_err("held");
                }
            });
        },
    );
    group.finish();
}

fn exposition(c: &mut Criterion) {
    let metrics = Metrics::new(&["ibkr"]);
    // What a scrape costs when the control loop changed something since the
    // last one (every scrape in production: the loop touches every second).
    c.bench_function("telemetry/render (1 provider, after a change)", |b| {
        b.iter(|| {
            metrics.touch();
            black_box(metrics.render().len())
        });
    });
    c.bench_function("telemetry/render (1 provider, nothing changed)", |b| {
        b.iter(|| black_box(metrics.render().len()));
    });
}

/// Metrics of `n` providers and `n` coordinators, every coordinator gauge set
/// the way the control loop sets them.
fn metrics_with(n: usize) -> Metrics {
    let names: Vec<String> = (0..n).map(|i| format!("p{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let metrics = Metrics::new(&refs);
    for i in 0..n {
        let sample = CoordinatorSample {
            queue_size: i as u64,
            capacity: 10_000,
            level: Level::Ok,
            stale: false,
            last_event_ts: 1.7e9,
        };
        metrics.set_coordinator(&format!("store_{i:04}"), sample);
    }
    metrics
}

fn exposition_growth(c: &mut Criterion) {
    let mut group =
        c.benchmark_group("telemetry/render after a change (N providers + N coordinators)");
    for n in [1usize, 10, 100, 1000] {
        let metrics = metrics_with(n);
        let series = String::from_utf8(metrics.render())
            .expect("utf-8")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        // Throughput in series, so criterion also prints the time per series.
        group.throughput(Throughput::Elements(series as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &metrics, |b, m| {
            b.iter(|| {
                m.touch();
                black_box(m.render().len())
            });
        });
    }
    group.finish();
}

/// The busiest routes through the complete filter chain (routing, limits,
/// handlers, JSON), without a socket: what a request costs above hyper.
fn routes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let argv = ["mdp", "serve", "--listen", "127.0.0.1:0", "--log", "warn"];
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("valid").command else {
        unreachable!("parsed as serve")
    };
    let config = mdp::config::ServeConfig::try_from(args).expect("valid configuration");
    let service = runtime
        .block_on(mdp::service::Service::start(config))
        .expect("service starts");
    let filter = mdp::http::routes(service.ctx().clone());
    let mut group = c.benchmark_group("http (in process)");
    group.bench_function("GET /health", |b| {
        b.to_async(&runtime)
            .iter(|| warp::test::request().path("/health").reply(&filter));
    });
    group.bench_function("GET /metrics", |b| {
        b.to_async(&runtime)
            .iter(|| warp::test::request().path("/metrics").reply(&filter));
    });
    let mut i = 0u64;
    group.bench_function("POST /feedback", |b| {
        b.to_async(&runtime).iter(|| {
            i += 1;
            let level = ["ok", "soft", "hard"][(i % 3) as usize];
            let body = format!(
                r#"{{"coordinator_id":"store_01","queue_size":{},"capacity":10000,"level":"{level}"}}"#,
                5000 + i % 2
            );
            let request = warp::test::request()
                .method("POST")
                .path("/feedback")
                .header("content-type", "application/json")
                .body(body);
            let filter = &filter;
            async move {
                let response = request.reply(filter).await;
                assert_eq!(response.status(), 200);
            }
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    control_step,
    event_to_scale,
    limiter,
    acquire_bucket_vs_rules,
    exposition,
    exposition_growth,
    routes
);
criterion_main!(benches);
