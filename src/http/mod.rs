//! HTTP interface: routes, request limits, JSON errors.

mod api;
mod assets;
pub mod auth;
mod error;
mod export;
pub mod observe;
pub mod server;
mod stream;

pub use error::ApiError;

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::engine::EngineHandle;
use crate::rate::RateCoordinator;
use crate::telemetry::Metrics;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use warp::Filter;
use warp::reply::Response;

/// Everything a request handler may touch.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<ServeConfig>,
    pub engine: EngineHandle,
    pub rates: Arc<RateCoordinator>,
    pub metrics: Metrics,
    pub clock: Clock,
    pub ready: Arc<AtomicBool>,
    /// How many replicas share each provider's budget.
    pub replicas: watch::Receiver<crate::replicas::ReplicaView>,
    /// Turns true when the listener stops accepting (after the drain delay).
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    /// Takes `tokens` from `provider` and counts the outcome; None for an
    /// unknown provider, Some(false) when throttled.
    pub fn acquire(&self, provider: &str, tokens: f64) -> Option<bool> {
        // The coordinator counts the outcome.
        match self.rates.try_acquire(provider, tokens)? {
            crate::rate::Grant::Granted => Some(true),
            crate::rate::Grant::Throttled(_) => Some(false),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !*self.shutdown.borrow()
    }
}

/// One route's filter on its own, JSON errors included, type-erased so that
/// every route's service is of one type.
type RouteFilter = warp::filters::BoxedFilter<(Response,)>;

/// The routes as a hyper service, with the shared method rules and request
/// metrics: each API route's own filter, found from the path at once, and the
/// whole chain for the rest.
pub fn service(
    ctx: Ctx,
) -> observe::Observed<
    impl tower_service::Service<
        http::Request<hyper::body::Incoming>,
        Response = Response,
        Error = Infallible,
        Future = impl Send + Unpin,
    > + Clone
    + Send
    + 'static,
> {
    let metrics = ctx.metrics.clone();
    let (chain, table) = build(ctx);
    let table = table
        .into_iter()
        .map(|(route, filter)| (route, warp::service(filter)))
        .collect();
    observe::Observed::new(table, warp::service(chain.boxed()), metrics)
}

/// Every route of the service, with JSON errors for what matches none.
pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    build(ctx).0
}

/// The whole chain, and each API route's filter by its index in
/// [`observe::ROUTES`].
fn build(
    ctx: Ctx,
) -> (
    impl Filter<Extract = (Response,), Error = Infallible> + Clone,
    Vec<(usize, RouteFilter)>,
) {
    let max_body = ctx.config.http.max_body;
    let token = ctx.config.auth_token.clone().map(std::sync::Arc::new);
    let read_token = token.clone().filter(|_| ctx.config.auth_reads);
    let writes = |route| auth::require(token.clone(), ctx.metrics.clone(), route);
    let reads = |route| auth::require(read_token.clone(), ctx.metrics.clone(), route);
    let (feedback_auth, acquire_auth) = (writes("feedback"), writes("acquire"));
    let forget_auth = writes("coordinators");
    let (release_auth, pushback_auth) = (writes("release"), writes("pushback"));
    let (metrics_auth, api_auth) = (reads("metrics"), reads("api"));
    // One handle for every route: a request clones an `Arc`, not each field.
    let ctx = Arc::new(ctx);
    let with_ctx = warp::any().map(move || ctx.clone());
    // HEAD wherever GET works (hyper sends the head without the body).
    let get = warp::get().or(warp::head()).unify();
    let post = warp::post();

    let health = warp::path!("health").and(get).map(api::health);
    let ready = warp::path!("ready")
        .and(get)
        .and(with_ctx.clone())
        .map(api::ready);
    let metrics = warp::path!("metrics")
        .and(get)
        .and(metrics_auth)
        .and(with_ctx.clone())
        .map(api::metrics);
    let feedback = warp::path!("feedback")
        .and(post)
        .and(feedback_auth)
        .and(with_ctx.clone())
        .and(api::json_body(max_body))
        .then(api::feedback);
    let state = warp::path!("api" / "v1" / "state")
        .and(get)
        .and(api_auth.clone())
        .and(with_ctx.clone())
        .map(api::state);
    let history = warp::path!("api" / "v1" / "history")
        .and(get)
        .and(api_auth.clone())
        .and(with_ctx.clone())
        .map(api::history);
    let events = warp::path!("api" / "v1" / "stream")
        .and(get)
        .and(api_auth.clone())
        .and(with_ctx.clone())
        .map(stream::sse);
    let acquire = warp::path!("api" / "v1" / "acquire")
        .and(post)
        .and(acquire_auth)
        .and(with_ctx.clone())
        .and(api::json_body(max_body))
        .then(api::acquire);
    let release = warp::path!("api" / "v1" / "release")
        .and(post)
        .and(release_auth)
        .and(with_ctx.clone())
        .and(api::json_body(max_body))
        .then(api::release);
    let pushback = warp::path!("api" / "v1" / "pushback")
        .and(post)
        .and(pushback_auth)
        .and(with_ctx.clone())
        .and(api::json_body(max_body))
        .then(api::pushback);
    let forget = warp::path!("api" / "v1" / "coordinators" / String)
        .and(warp::delete())
        .and(forget_auth)
        .and(with_ctx.clone())
        .then(api::forget_coordinator);
    let export = warp::path!("api" / "v1" / "export" / ..)
        .and(get)
        .and(api_auth.clone())
        .and(with_ctx.clone())
        .and(warp::path::tail())
        .map(export::serve);
    // A missing file is a rejection, not an answer, so that a refusal from a
    // route that did match (401 on /metrics, say) is what the client sees.
    let assets = warp::get()
        .or(warp::head())
        .unify()
        .and(warp::path::tail())
        .and(warp::header::optional::<String>("if-none-match"))
        .and_then(|tail, etag: Option<String>| async move {
            let response = assets::serve_conditional(tail, etag);
            if response.status() == warp::http::StatusCode::NOT_FOUND {
                Err(warp::reject::not_found())
            } else {
                Ok(response)
            }
        });

    let alone = |name: &str, filter: RouteFilter| {
        let route = observe::ROUTES
            .iter()
            .position(|r| *r == name)
            .expect("a route name");
        (route, filter.recover(error::recover).unify().boxed())
    };
    let table = vec![
        alone("health", health.boxed()),
        alone("ready", ready.clone().boxed()),
        alone("metrics", metrics.clone().boxed()),
        alone("feedback", feedback.clone().boxed()),
        alone("state", state.clone().boxed()),
        alone("history", history.clone().boxed()),
        alone("stream", events.clone().boxed()),
        alone("acquire", acquire.clone().boxed()),
        alone("export", export.clone().boxed()),
        alone("release", release.clone().boxed()),
        alone("pushback", pushback.clone().boxed()),
    ];
    // The busiest routes first: a request walks the chain until its path matches.
    let chain = health
        .or(acquire)
        .unify()
        .or(release)
        .unify()
        .or(feedback)
        .unify()
        .or(metrics)
        .unify()
        .or(ready)
        .unify()
        .or(pushback)
        .unify()
        .or(state)
        .unify()
        .or(history)
        .unify()
        .or(events)
        .unify()
        .or(forget)
        .unify()
        .or(export)
        .unify()
        .or(assets)
        .unify()
        .recover(error::recover)
        .unify();
    (chain, table)
}
