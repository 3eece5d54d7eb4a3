//! Wiring: builds the control loop, rate coordinator, poller, replica watch
//! and HTTP server from a [`ServeConfig`], runs them under supervision until a
//! shutdown signal, and joins them.

mod tasks;

pub use tasks::{TaskExit, Tasks, exit_on_panic};

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::control::Controller;
use crate::engine::{self, EngineHandle};
use crate::feedback::pull;
use crate::http::{self, Ctx};
use crate::rate::{PacedProviders, RateCoordinator, SharedBudget, pacing_labels};
use crate::replicas::{DnsWatch, ReplicaSource, ReplicaTracker, ReplicaView};
use crate::telemetry::{BudgetMode, Metrics};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The cause is said in the message, so it is not also a `source`.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot set up the shared budget (--budget-redis): {0}")]
    SharedBudget(String),
    #[error("cannot set up DNS resolution for --replicas-dns: {0}")]
    Resolver(String),
    #[error("cannot set up provider pacing: {0}")]
    Pacing(String),
}

/// Why a running service stopped other than by a shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A task that must run until shutdown ended or panicked.
    #[error("{0}; exiting so that the process is restarted")]
    TaskDied(TaskExit),
}

/// The names of the supervised tasks.
const CONTROL_LOOP: &str = "control loop";
const LISTENER: &str = "listener";
const POLLER: &str = "store poller";
const REPLICA_WATCH: &str = "replica watch";
const BUDGET_WATCH: &str = "budget watch";
const PACING_SWEEP: &str = "pacing sweep";
/// How often expired leases and idle keys are forgotten and the pacing gauges set.
const PACING_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A service whose listener is bound and whose tasks run.
pub struct Service {
    ctx: Ctx,
    listener: TcpListener,
    /// Closes the listener and ends the poller, the replica watch and the streams.
    stop: watch::Sender<bool>,
    /// Ends the control loop, once nothing can send it anything.
    halt: watch::Sender<bool>,
    tasks: Tasks,
}

impl Service {
    /// Binds the listener and starts the control loop, the poller (pull mode)
    /// and the replica watch (`--replicas-dns`).
    pub async fn start(config: ServeConfig) -> Result<Service, StartError> {
        let listener = http::server::bind(config.listen).map_err(|error| StartError::Bind {
            addr: config.listen,
            error,
        })?;
        let clock = Clock::new();
        let names: Vec<&str> = config
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .chain(config.paced.iter().map(|p| p.name.as_str()))
            .collect();
        let metrics = Metrics::with_pacing(&names, &pacing_labels(&config.paced));
        let mut rates = RateCoordinator::new(
            &config.providers,
            config.feedback_provider.as_deref(),
            clock,
        )
        .with_counters(&metrics);
        if !config.paced.is_empty() {
            let paced = PacedProviders::new(
                config.paced.clone(),
                config.feedback_provider.as_deref(),
                clock,
            )
            .map_err(|e| StartError::Pacing(e.to_string()))?;
            rates = rates.with_paced(paced.with_counters(&metrics));
        }
        if let Some(shared) = &config.budget_redis {
            let budget = SharedBudget::start(shared.clone())
                .map_err(|e| StartError::SharedBudget(e.to_string()))?;
            rates = rates.with_shared(budget);
        }
        let rates = Arc::new(rates);
        let feedback_providers: Vec<String> = rates
            .views()
            .into_iter()
            .filter(|p| p.feedback)
            .map(|p| p.name)
            .collect();
        let mut tasks = Tasks::default();
        let (halt, halted) = watch::channel(false);
        let (engine, control_loop) = engine::build(
            Controller::new(config.control.clone()),
            rates.clone(),
            metrics.clone(),
            feedback_providers,
            config.pull.as_ref(),
            clock,
        );
        tasks.spawn(CONTROL_LOOP, control_loop.run_until(halted));
        let (stop, shutdown) = watch::channel(false);
        let (replicas, replica_watch) =
            start_replica_watch(&config, rates.clone(), metrics.clone(), shutdown.clone())?;
        if let Some(watch) = replica_watch {
            tasks.spawn(REPLICA_WATCH, watch);
        }
        if let Some(watch) = budget_watch(&rates, &metrics, shutdown.clone()) {
            tasks.spawn(BUDGET_WATCH, watch);
        }
        if rates.paced().is_some() {
            tasks.spawn(PACING_SWEEP, pacing_sweep(&rates, shutdown.clone()));
        }
        if let Some(pull) = &config.pull {
            let client = crate::feedback::client::HttpClient::new();
            let engine = engine.clone();
            let deliver = move |outcome| std::future::ready(engine.poll(outcome));
            tasks.spawn(
                POLLER,
                pull::run(client, pull.clone(), deliver, shutdown.clone()),
            );
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
            halt,
            tasks,
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
    /// in-flight requests get up to the shutdown timeout to finish, and every
    /// task is joined. A task that ends or panics before the signal stops the
    /// service at once with [`RunError::TaskDied`].
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Service {
            ctx,
            listener,
            stop,
            halt,
            mut tasks,
        } = self;
        let grace = ctx.config.shutdown_timeout;
        let ready = ctx.ready.clone();
        let addr = listener
            .local_addr()
            .map_or_else(|_| ctx.config.listen.to_string(), |a| a.to_string());
        let service = http::service(ctx.clone());
        tasks.spawn(
            LISTENER,
            http::server::serve(
                listener,
                service,
                ctx.config.connections,
                ctx.shutdown.clone(),
            ),
        );
        ready.store(true, Ordering::Release);
        tracing::info!(
            addr = %addr,
            providers = ctx.config.providers.len(),
            pull = ctx.config.pull.as_ref().map(|p| p.url.as_str()),
            "mdp ready"
        );
        let drain = ctx.config.drain_delay;
        let died = tokio::select! {
            () = signal => {
                ready.store(false, Ordering::Release);
                if !drain.is_zero() {
                    tracing::info!(
                        ?drain,
                        "shutting down: /ready answers 503; still serving while load balancers catch up"
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(drain) => None,
                    exit = tasks.next_exit() => Some(exit),
                }
            }
            exit = tasks.next_exit() => Some(exit),
        };
        ready.store(false, Ordering::Release);
        if let Some(exit) = died {
            tracing::error!("{exit}; exiting so that the process is restarted");
            stop.send_replace(true);
            halt.send_replace(true);
            drop(ctx);
            let _ = tokio::time::timeout(grace, tasks.abort_all()).await;
            return Err(RunError::TaskDied(exit));
        }
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        stop.send_replace(true);
        // Everything but the control loop ends with the listener; in-flight
        // requests apply their events until the loop halts.
        let deadline = tokio::time::Instant::now() + grace;
        let mut failure = None;
        while tasks.len() > 1 {
            match tokio::time::timeout_at(deadline, tasks.next_exit()).await {
                Ok(exit) if exit.panic.is_some() || exit.name == CONTROL_LOOP => {
                    tracing::error!("{exit} while shutting down");
                    failure.get_or_insert(exit);
                }
                Ok(exit) => tracing::debug!(task = exit.name, "task ended"),
                Err(_) => {
                    tracing::warn!(?grace, "connections still open after the shutdown timeout");
                    break;
                }
            }
        }
        halt.send_replace(true);
        drop(ctx);
        match tokio::time::timeout(grace, tasks.next_exit()).await {
            Ok(exit) if exit.panic.is_some() => {
                tracing::error!("{exit} while shutting down");
                failure.get_or_insert(exit);
            }
            Ok(_) => {}
            Err(_) => tracing::warn!("the control loop did not stop in time"),
        }
        let aborted = tasks.abort_all().await;
        if !aborted.is_empty() {
            tracing::warn!(?aborted, "tasks aborted at the end of the shutdown");
        }
        if failure.is_none() {
            tracing::info!("all connections closed");
        }
        failure.map_or(Ok(()), |exit| Err(RunError::TaskDied(exit)))
    }
}

/// Shows the budget's mode in the metrics; in shared mode, also returns the
/// watch that follows it and wakes waiters when it changes.
fn budget_watch(
    rates: &Arc<RateCoordinator>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let Some(shared) = rates.shared() else {
        metrics.set_budget_mode(BudgetMode::Split);
        return None;
    };
    let mut mode = shared.watch_mode();
    let show = |metrics: &Metrics, shared: bool| {
        metrics.set_budget_mode(if shared {
            BudgetMode::Shared
        } else {
            BudgetMode::Fallback
        });
    };
    // Redis may have answered already: start from the mode as it is now,
    // not from the next change (which may never come).
    show(metrics, *mode.borrow_and_update());
    let (rates, metrics) = (Arc::downgrade(rates), metrics.clone());
    Some(async move {
        loop {
            tokio::select! {
                changed = mode.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            let Some(rates) = rates.upgrade() else { return };
            show(&metrics, *mode.borrow_and_update());
            rates.notify_change();
        }
    })
}

/// Forgets expired leases and idle keys of the paced providers and keeps
/// their factor and lease gauges current (the factor recovers with time).
fn pacing_sweep(
    rates: &Arc<RateCoordinator>,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let rates = Arc::downgrade(rates);
    async move {
        let mut every = tokio::time::interval(PACING_SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(rates) = rates.upgrade() else { return };
            if let Some(paced) = rates.paced() {
                paced.sweep();
            }
        }
    }
}

/// Applies the replica share now; with a peer name, also returns the watch
/// that keeps it current.
type ReplicaStart = (
    watch::Receiver<ReplicaView>,
    Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
);

fn start_replica_watch(
    config: &ServeConfig,
    rates: Arc<RateCoordinator>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) -> Result<ReplicaStart, StartError> {
    let apply = move |view: &ReplicaView| {
        rates.set_share(view.share);
        metrics.set_replicas(view.count);
    };
    match &config.replicas {
        ReplicaSource::Static(count) => {
            let view = ReplicaView::fixed(*count);
            apply(&view);
            Ok((watch::channel(view).1, None))
        }
        ReplicaSource::Dns {
            name,
            refresh,
            pod_ip,
            hosts_file,
        } => {
            let resolver = crate::replicas::system_resolver().map_err(StartError::Resolver)?;
            let dns = DnsWatch {
                name: name.clone(),
                refresh: *refresh,
                pod_ip: *pod_ip,
                hosts_file: hosts_file.clone(),
                resolver,
                tracker: ReplicaTracker::new(
                    config.autoscale.max_replicas,
                    config.replicas_shrink_hold,
                    *refresh,
                ),
            };
            let first = dns.view(0);
            apply(&first);
            let (publish, receiver) = watch::channel(first);
            Ok((receiver, Some(Box::pin(dns.run(apply, publish, shutdown)))))
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
