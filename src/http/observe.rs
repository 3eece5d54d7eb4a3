//! Around the routes: the method rules every route shares (HEAD wherever GET
//! works, OPTIONS answered with `Allow`, 405 with `Allow`) and the request
//! metrics, counted under a fixed set of route names so that no client can grow
//! the series by inventing paths.

use super::ApiError;
use crate::telemetry::{HttpRoute, Metrics};
use http::{HeaderValue, Method, Request, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use warp::reply::Response;

/// The methods of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// GET, HEAD (and OPTIONS).
    Read,
    /// POST (and OPTIONS).
    Write,
}

impl Methods {
    pub fn allow(self) -> &'static str {
        match self {
            Methods::Read => "GET, HEAD, OPTIONS",
            Methods::Write => "POST, OPTIONS",
        }
    }

    fn permits(self, method: &Method) -> bool {
        match self {
            Methods::Read => method == Method::GET || method == Method::HEAD,
            Methods::Write => method == Method::POST,
        }
    }
}

/// Every route name the metrics use; `asset` is the dashboard's files and
/// `unmatched` any path that is none of them.
pub const ROUTES: [&str; 13] = [
    "health",
    "ready",
    "metrics",
    "feedback",
    "state",
    "history",
    "stream",
    "acquire",
    "export",
    "release",
    "pushback",
    "asset",
    "unmatched",
];

/// The route of `path`: its index in [`ROUTES`] and its methods. Paths that are
/// no API route are the dashboard's (`asset`, or `unmatched` once they 404).
pub fn classify(path: &str) -> (usize, Methods) {
    match path {
        "/health" => (0, Methods::Read),
        "/ready" => (1, Methods::Read),
        "/metrics" => (2, Methods::Read),
        "/feedback" => (3, Methods::Write),
        "/api/v1/state" => (4, Methods::Read),
        "/api/v1/history" => (5, Methods::Read),
        "/api/v1/stream" => (6, Methods::Read),
        "/api/v1/acquire" => (7, Methods::Write),
        p if p.starts_with("/api/v1/export/") => (8, Methods::Read),
        "/api/v1/release" => (9, Methods::Write),
        "/api/v1/pushback" => (10, Methods::Write),
        _ => (ASSET, Methods::Read),
    }
}

const ASSET: usize = 11;
const UNMATCHED: usize = 12;

/// The per-route series, made on first use so a scrape carries only the
/// routes that were asked for.
struct Observer {
    metrics: Metrics,
    routes: [OnceLock<HttpRoute>; ROUTES.len()],
}

impl Observer {
    fn record(&self, route: usize, status: StatusCode, started: Instant) {
        let route = if route == ASSET && status == StatusCode::NOT_FOUND {
            UNMATCHED
        } else {
            route
        };
        let name = ROUTES[route];
        self.routes[route]
            .get_or_init(|| self.metrics.http_route(name))
            .record(status.as_u16(), started.elapsed().as_secs_f64());
    }
}

/// `inner` (the warp routes) with the shared method rules and the request metrics.
#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S> Observed<S> {
    pub fn new(inner: S, metrics: Metrics) -> Self {
        Observed {
            inner,
            observer: Arc::new(Observer {
                metrics,
                routes: Default::default(),
            }),
        }
    }
}

fn with_allow(mut response: Response, methods: Methods) -> Response {
    response.headers_mut().insert(
        http::header::ALLOW,
        HeaderValue::from_static(methods.allow()),
    );
    response
}

impl<S, B> tower_service::Service<Request<B>> for Observed<S>
where
    S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let (route, methods) = classify(request.uri().path());
        let observer = self.observer.clone();
        let method = request.method().clone();
        if method == Method::OPTIONS {
            let mut response = with_allow(Response::default(), methods);
            *response.status_mut() = StatusCode::NO_CONTENT;
            observer.record(route, StatusCode::NO_CONTENT, started);
            return Box::pin(std::future::ready(Ok(response)));
        }
        if route != ASSET && !methods.permits(&method) {
            let response = with_allow(ApiError::MethodNotAllowed.into_response(), methods);
            observer.record(route, response.status(), started);
            return Box::pin(std::future::ready(Ok(response)));
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Ok(mut response) = answer.await;
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                response = with_allow(response, methods);
            }
            observer.record(route, response.status(), started);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set_whatever_the_path() {
        assert_eq!(classify("/health"), (0, Methods::Read));
        assert_eq!(classify("/feedback"), (3, Methods::Write));
        assert_eq!(ROUTES[classify("/api/v1/export/deploy/x.yaml").0], "export");
        for hostile in ["/", "/app.js", "/../../etc/passwd", "/health/", "/x?y"] {
            assert_eq!(ROUTES[classify(hostile).0], "asset", "{hostile}");
        }
        assert_eq!(Methods::Write.allow(), "POST, OPTIONS");
    }
}
