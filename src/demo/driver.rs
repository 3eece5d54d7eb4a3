//! The demo's scenario driver: synthetic provider workers taking rate tokens,
//! a store model serving its metrics and pushing its transitions.

use super::DemoArgs;
use super::store::{Announcement, StoreModel};
use crate::config::ConnectionLimits;
use crate::feedback::client::HttpClient;
use crate::http::Ctx;
use crate::level::Level;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warp::Filter;

/// Coordinator id the store model reports under.
pub(super) const COORDINATOR: &str = "demo_store";
/// Wall time between two steps of the model.
const TICK: Duration = Duration::from_millis(50);
/// Model time a provider request takes to come back with its batch.
const REQUEST_LATENCY: Duration = Duration::from_millis(800);
/// How fast (per model second) the store's throughput closes the gap to the
/// phase's target depth.
const CONVERGENCE: f64 = 0.6;

/// One phase of the demo's cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    pub name: &'static str,
    pub story: &'static str,
    pub target_depth: u64,
    pub expected: Level,
    /// Items per model second other writers (not paced by mdp) add to the queue.
    pub other_writers: f64,
}

/// The four seed scenarios, in order.
pub const PHASES: [Phase; 4] = [
    Phase {
        name: "normal",
        story: "the store keeps up",
        target_depth: 500,
        expected: Level::Ok,
        other_writers: 0.0,
    },
    Phase {
        name: "moderate load",
        story: "writes slow down, the queue fills past its low watermark",
        target_depth: 6000,
        expected: Level::Soft,
        other_writers: 0.0,
    },
    Phase {
        name: "overload",
        story: "the store stalls while other writers keep adding",
        target_depth: 9500,
        expected: Level::Hard,
        other_writers: 300.0,
    },
    Phase {
        name: "recovery",
        story: "the store catches up and drains the queue",
        target_depth: 800,
        expected: Level::Ok,
        other_writers: 0.0,
    },
];

pub use crate::store_queue::Accounting;

/// The store model's own `/metrics` endpoint (as the real store exports it).
pub(super) struct StoreServer {
    addr: SocketAddr,
    model: Arc<Mutex<StoreModel>>,
}

impl StoreServer {
    pub(super) async fn start() -> std::io::Result<StoreServer> {
        let model = Arc::new(Mutex::new(StoreModel::new(10_000, 5000, 9000)));
        let shared = model.clone();
        let route = warp::path!("metrics").and(warp::get()).map(move || {
            let depth = lock(&shared).depth();
            format!(
                "# HELP mds_coord_queue_depth Current queue depth of the write coordinator.\n\
                 # TYPE mds_coord_queue_depth gauge\n\
                 mds_coord_queue_depth{{coord_id=\"{COORDINATOR}\"}} {depth}\n"
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let limits = ConnectionLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        };
        // Serves for as long as the demo runs: the sender lives in the task.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _stop = stop;
            crate::http::server::serve(listener, warp::service(route), limits, stopped).await;
        });
        Ok(StoreServer { addr, model })
    }

    pub(super) fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
}

fn lock(model: &Mutex<StoreModel>) -> std::sync::MutexGuard<'_, StoreModel> {
    model.lock().unwrap_or_else(|p| p.into_inner())
}

/// The URL a person on this machine opens.
fn local_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    format!("http://{host}:{}", addr.port())
}

pub(super) fn print_banner(addr: SocketAddr, args: &DemoArgs) {
    let url = local_url(addr);
    let phase = args.phase_duration.div_f64(args.speed);
    println!("mdp demo: a store model and synthetic provider load drive the feedback loop");
    println!("  dashboard  {url}/");
    println!("  metrics    {url}/metrics");
    println!("  state      {url}/api/v1/state");
    println!(
        "  cycle      normal 500 -> moderate 6000 -> overload 9500 -> recovery 800, {} per phase{}",
        humantime::format_duration(Duration::from_millis(phase.as_millis() as u64)),
        if args.cycles == 0 {
            ", until Ctrl-C".to_owned()
        } else {
            format!(", {} cycle(s)", args.cycles)
        }
    );
}

/// Runs the scenario cycle against the service.
pub(super) struct Driver {
    ctx: Ctx,
    store: StoreServer,
    feedback_url: String,
    http: HttpClient,
    provider: String,
    speed: f64,
    phase_wall: Duration,
    cycles: u32,
    batch: u64,
    throughput: f64,
}

impl Driver {
    pub(super) fn new(args: &DemoArgs, ctx: Ctx, store: StoreServer, addr: SocketAddr) -> Driver {
        let provider = ctx
            .rates
            .views()
            .into_iter()
            .find(|p| p.feedback)
            .map_or_else(|| "ibkr".to_owned(), |p| p.name);
        Driver {
            feedback_url: format!("{}/feedback", local_url(addr)),
            ctx,
            store,
            http: HttpClient::new(),
            provider,
            speed: args.speed,
            phase_wall: args.phase_duration.div_f64(args.speed),
            cycles: args.cycles,
            batch: args.batch,
            throughput: args.worker_throughput as f64,
        }
    }

    pub(super) async fn run(self) -> Accounting {
        let started = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.ctx.shutdown.clone();
        let mut in_flight: VecDeque<(Instant, u64)> = VecDeque::new();
        // Items landed since the last step; the store's queue holds what does
        // not fit (with its producers) and keeps the accounting.
        let mut landed = 0u64;
        let mut current_phase = usize::MAX;
        // Provider workers want more than the base rate, so the limiter binds.
        let demand = self
            .ctx
            .rates
            .views()
            .iter()
            .find(|p| p.name == self.provider)
            .map_or(60.0, |p| p.base_rate)
            * 1.5;
        let (mut wanted, mut others) = (0.0f64, 0.0f64);
        let mut last_level = Level::Ok;
        let model_tick = TICK.as_secs_f64() * self.speed;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            let elapsed = started.elapsed();
            let step = (elapsed.as_secs_f64() / self.phase_wall.as_secs_f64()) as u64;
            if self.cycles > 0 && step >= u64::from(self.cycles) * PHASES.len() as u64 {
                break;
            }
            let index = (step % PHASES.len() as u64) as usize;
            let phase = PHASES[index];
            if index != current_phase {
                current_phase = index;
                println!(
                    "[{:>6.1}s] phase {}/4 {:<13} {}; queue heads for {} ({} expected)",
                    elapsed.as_secs_f64(),
                    index + 1,
                    phase.name,
                    phase.story,
                    phase.target_depth,
                    phase.expected.as_str().to_uppercase()
                );
            }
            // Provider workers: every token granted is one request whose batch
            // lands after the request latency.
            let now = Instant::now();
            // At --speed N a wall second holds N model seconds, so each token
            // (granted in real time) carries N times the items.
            let items = (self.batch as f64 * self.speed).round().max(1.0) as u64;
            wanted = (wanted + demand * TICK.as_secs_f64()).min(demand);
            while wanted >= 1.0 && self.ctx.acquire(&self.provider, 1.0) == Some(true) {
                wanted -= 1.0;
                in_flight.push_back((now + REQUEST_LATENCY.div_f64(self.speed), items));
            }
            while in_flight.front().is_some_and(|(due, _)| *due <= now) {
                landed += in_flight.pop_front().map_or(0, |(_, items)| items);
            }
            others += phase.other_writers * model_tick;
            let other_items = others.floor() as u64;
            others -= other_items as f64;
            landed += other_items;
            let announcements = {
                let mut model = lock(&self.store.model);
                // The store's throughput follows what arrives, plus a share of
                // the gap to the phase's depth: the depth settles on the target.
                let gap = model.depth() as f64 - phase.target_depth as f64;
                let (fit, put_news) = model.put(std::mem::take(&mut landed));
                let want = gap * (1.0 - (-CONVERGENCE * model_tick).exp()) + fit as f64;
                let drain = want.clamp(0.0, self.throughput * model_tick).round() as u64;
                let drain_news = model.drain(drain);
                [put_news, drain_news]
            };
            for announcement in announcements.into_iter().flatten() {
                self.push(&announcement).await;
            }
            let snapshot = self.ctx.engine.current();
            if snapshot.level != last_level {
                let rate = self
                    .ctx
                    .rates
                    .views()
                    .into_iter()
                    .find(|p| p.name == self.provider);
                println!(
                    "[{:>6.1}s]   level {} -> {}: scale {:.2}, {} at {:.1} tokens/s",
                    elapsed.as_secs_f64(),
                    last_level.as_str().to_uppercase(),
                    snapshot.level.as_str().to_uppercase(),
                    snapshot.scale,
                    self.provider,
                    rate.map_or(0.0, |r| r.effective_rate)
                );
                last_level = snapshot.level;
            }
        }
        // Requests already sent still come back: land them, then count.
        landed += in_flight.iter().map(|(_, items)| items).sum::<u64>();
        let mut model = lock(&self.store.model);
        model.put(landed);
        model.accounting()
    }

    /// Pushes a transition as the store's broadcaster does: JSON, no auth.
    async fn push(&self, news: &Announcement) {
        let capacity = lock(&self.store.model).capacity();
        let body = serde_json::json!({
            "coordinator_id": COORDINATOR,
            "queue_size": news.queue_size,
            "capacity": capacity,
            "level": news.level,
            "reason": news.reason,
            "utilization": news.queue_size as f64 / capacity as f64,
        });
        match self
            .http
            .post_json(&self.feedback_url, &body, 64 * 1024)
            .await
        {
            Ok(answer) if answer.status.is_success() => {}
            Ok(answer) => tracing::warn!(
                "mdp refused the store model's feedback: HTTP {}",
                answer.status
            ),
            Err(error) => tracing::warn!("store model could not push its feedback: {error}"),
        }
    }
}
