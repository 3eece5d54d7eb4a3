//! Wiring: builds the control loop, rate coordinator, poller and HTTP server
//! from a [`ServeConfig`], and runs them until a shutdown signal.

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::control::Controller;
use crate::engine::{self, Command, EngineHandle};
use crate::feedback::pull::{self, PullConfig};
use crate::http::{self, Ctx};
use crate::rate::RateCoordinator;
use crate::telemetry::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for pull mode: {0}")]
    Client(String),
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
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
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
        if let Some(pull) = &config.pull {
            let client = reqwest::Client::builder()
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
        let mut stopping = ctx.shutdown.clone();
        let routes = http::routes(ctx.clone());
        let addr = listener
            .local_addr()
            .map_or_else(|_| ctx.config.listen.to_string(), |a| a.to_string());
        let server = warp::serve(routes).incoming(listener).graceful(async move {
            // The server stops accepting once `stop` is set.
            let _ = stopping.wait_for(|s| *s).await;
        });
        ready.store(true, Ordering::Release);
        tracing::info!(
            addr = %addr,
            providers = ctx.config.providers.len(),
            pull = ctx.config.pull.as_ref().map(|p| p.url.as_str()),
            "mdp ready"
        );
        let server = tokio::spawn(server.run());
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
