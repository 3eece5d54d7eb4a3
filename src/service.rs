//! Wiring: builds the control loop, rate coordinator, poller and HTTP server
//! from a [`ServeConfig`], and runs them until a shutdown signal.

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::control::Controller;
use crate::engine::{self, Command, EngineHandle};
use crate::feedback::pull::{self, PullConfig};
use crate::http::{self, Ctx};
use crate::rate::RateCoordinator;
use crate::repeats::{Report, seconds};
use crate::replicas::{self, ReplicaSource, ReplicaTracker, ReplicaView, Resolution};
use crate::telemetry::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// How often a peer lookup that keeps failing is said again.
const PEER_WARNING_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cause is said in the message, so it is not also a `source`.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot build the HTTP client for pull mode: {0}")]
    Client(String),
    #[error("cannot set up DNS resolution for --replicas-dns: {0}")]
    Resolver(String),
}

/// A service whose listener is bound and whose control loop runs.
pub struct Service {
    ctx: Ctx,
    listener: TcpListener,
    stop: watch::Sender<bool>,
    engine_task: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Binds the listener and starts the control loop (and the poller in pull mode).
    pub async fn start(config: ServeConfig) -> Result<Service, StartError> {
        let listener = http::server::bind(config.listen).map_err(|error| StartError::Bind {
            addr: config.listen,
            error,
        })?;
        let clock = Clock::new();
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let metrics = Metrics::new(&names);
        let rates = Arc::new(RateCoordinator::new(
            &config.providers,
            config.feedback_provider.as_deref(),
            clock,
        ));
        let feedback_providers: Vec<String> = rates
            .views()
            .into_iter()
            .filter(|p| p.feedback)
            .map(|p| p.name)
            .collect();
        let (engine, engine_task) = engine::spawn(
            Controller::new(config.control.clone()),
            rates.clone(),
            metrics.clone(),
            feedback_providers,
            config.pull.as_ref(),
            clock,
        );
        let (stop, shutdown) = watch::channel(false);
        let replicas =
            start_replica_watch(&config, rates.clone(), metrics.clone(), shutdown.clone())?;
        if let Some(pull) = &config.pull {
            let client = reqwest::Client::builder()
                // A pure-Rust resolver: the static binary has no NSS modules.
                .hickory_dns(true)
                .user_agent(concat!("mdp/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StartError::Client(e.to_string()))?;
            tokio::spawn(poll_store(
                client,
                pull.clone(),
                engine.commands.clone(),
                shutdown.clone(),
            ));
        }
        let ctx = Ctx {
            config: Arc::new(config),
            engine,
            rates,
            metrics,
            clock,
            ready: Arc::new(AtomicBool::new(false)),
            replicas,
            shutdown,
        };
        Ok(Service {
            ctx,
            listener,
            stop,
            engine_task,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The handles the demo and tests use to drive the service in-process.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.ctx.engine
    }

    /// Serves until `signal` completes, then: `/ready` turns 503, streams end,
    /// in-flight requests get up to the shutdown timeout to finish.
    pub async fn run(self, signal: impl Future<Output = ()> + Send + 'static) {
        let Service {
            ctx,
            listener,
            stop,
            engine_task,
        } = self;
        let grace = ctx.config.shutdown_timeout;
        let ready = ctx.ready.clone();
        let stopping = ctx.shutdown.clone();
        let addr = listener
            .local_addr()
            .map_or_else(|_| ctx.config.listen.to_string(), |a| a.to_string());
        let service = http::service(ctx.clone());
        let server =
            http::server::serve(listener, service, ctx.config.connections, stopping.clone());
        ready.store(true, Ordering::Release);
        tracing::info!(
            addr = %addr,
            providers = ctx.config.providers.len(),
            pull = ctx.config.pull.as_ref().map(|p| p.url.as_str()),
            "mdp ready"
        );
        let server = tokio::spawn(server);
        signal.await;
        ready.store(false, Ordering::Release);
        let drain = ctx.config.drain_delay;
        if !drain.is_zero() {
            tracing::info!(
                ?drain,
                "shutting down: /ready answers 503; still serving while load balancers catch up"
            );
            tokio::time::sleep(drain).await;
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        stop.send_replace(true);
        match tokio::time::timeout(grace, server).await {
            Ok(_) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(?grace, "connections still open after the shutdown timeout"),
        }
        drop(ctx);
        engine_task.abort();
    }
}

/// Applies the replica share now and, with a peer name, keeps it current.
fn start_replica_watch(
    config: &ServeConfig,
    rates: Arc<RateCoordinator>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<watch::Receiver<ReplicaView>, StartError> {
    let apply = move |view: &ReplicaView| {
        rates.set_share(view.share);
        metrics.replicas.set(i64::from(view.count));
    };
    match &config.replicas {
        ReplicaSource::Static(count) => {
            let view = ReplicaView::fixed(*count);
            apply(&view);
            Ok(watch::channel(view).1)
        }
        ReplicaSource::Dns {
            name,
            refresh,
            pod_ip,
            hosts_file,
        } => {
            let resolver = hickory_resolver::TokioResolver::builder_tokio()
                .and_then(|builder| builder.build())
                .map_err(|e| StartError::Resolver(e.to_string()))?;
            let mut tracker = ReplicaTracker::new(
                config.autoscale.max_replicas,
                config.replicas_shrink_hold,
                *refresh,
            );
            let peer_name = name.clone();
            let view = move |tracker: &ReplicaTracker, failures: u64| ReplicaView {
                count: tracker.effective(),
                observed: tracker.observed(),
                share: tracker.share(),
                source: "dns",
                name: Some(peer_name.clone()),
                lookup_failures: failures,
            };
            let (publish, receiver) = watch::channel(view(&tracker, 0));
            apply(&view(&tracker, 0));
            let (name, refresh, pod_ip, hosts_file) =
                (name.clone(), *refresh, *pod_ip, hosts_file.clone());
            let clock = Clock::new();
            let mut shutdown = shutdown;
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(refresh);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut failures = 0u64;
                let mut repeats = crate::repeats::Repeats::new(PEER_WARNING_PERIOD);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    let before = tracker.effective();
                    let resolution = match replicas::resolve(
                        &name,
                        hosts_file.as_deref(),
                        &resolver,
                    )
                    .await
                    {
                        Ok(addresses) => {
                            if let Report::Recovered { count, over } = repeats.success(clock.now())
                            {
                                tracing::info!(%name, "peer lookup works again after {count} failures in {} s", seconds(over));
                            }
                            Some(Resolution {
                                addresses: u32::try_from(addresses.len()).unwrap_or(u32::MAX),
                                includes_self: pod_ip.map(|ip| addresses.contains(&ip)),
                            })
                        }
                        Err(error) => {
                            failures += 1;
                            match repeats.failure(clock.now()) {
                                Report::First => {
                                    tracing::warn!(%name, "peer lookup failed, keeping {before} replicas: {error}")
                                }
                                Report::Still { count, over } => {
                                    tracing::warn!(%name, "peer lookup still failing: {count} lookups in {} s, keeping {before} replicas, last: {error}", seconds(over))
                                }
                                _ => tracing::debug!(%name, "peer lookup failed: {error}"),
                            }
                            None
                        }
                    };
                    let after = tracker.observe(resolution, clock.now());
                    if after != before {
                        tracing::info!(%name, from = before, to = after, "replica count changed; each pod now grants 1/{after}");
                    }
                    let current = view(&tracker, failures);
                    apply(&current);
                    publish.send_replace(current);
                }
            });
            Ok(receiver)
        }
    }
}

/// Polls the store every interval and hands each result to the control loop.
async fn poll_store(
    client: reqwest::Client,
    config: PullConfig,
    commands: mpsc::Sender<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(url = %config.url, interval = ?config.interval, "polling the store's metrics");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let outcome = pull::poll_once(&client, &config).await;
        if commands.send(Command::Poll(outcome)).await.is_err() {
            return;
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn termination() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!("cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
