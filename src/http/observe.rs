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
pub struct Observer {
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

/// The routes with the shared method rules and the request metrics.
///
/// A request goes straight to its own route's service (`table`, indexed like
/// [`ROUTES`]), found from its path by [`classify`], which the metrics need
/// anyway; only what is no API route (the dashboard's files, `DELETE
/// /api/v1/coordinators/{id}`, unknown paths) walks the whole chain (`rest`).
/// Every service in the table is one route's filter with the JSON error
/// handling, so its answer is what the whole chain would give.
#[derive(Clone)]
pub struct Observed<S> {
    table: [Option<S>; ROUTES.len()],
    rest: S,
    observer: Arc<Observer>,
}

impl<S> Observed<S> {
    /// `table`: (route index in [`ROUTES`], that route's service).
    pub fn new(table: Vec<(usize, S)>, rest: S, metrics: Metrics) -> Self {
        let mut by_route: [Option<S>; ROUTES.len()] = Default::default();
        for (route, service) in table {
            by_route[route] = Some(service);
        }
        Observed {
            table: by_route,
            rest,
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

/// A request's answer: at once (OPTIONS, 405), or its route's, recorded in
/// the metrics when it is ready.
pub enum ObservedFuture<F> {
    Ready(Option<Response>),
    Route {
        answer: F,
        observer: Arc<Observer>,
        route: usize,
        methods: Methods,
        started: Instant,
    },
}

impl<F> Future for ObservedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ObservedFuture::Ready(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            ObservedFuture::Route {
                answer,
                observer,
                route,
                methods,
                started,
            } => {
                let Poll::Ready(Ok(mut response)) = Pin::new(answer).poll(cx) else {
                    return Poll::Pending;
                };
                if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                    response = with_allow(response, *methods);
                }
                observer.record(*route, response.status(), *started);
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<S, B> tower_service::Service<Request<B>> for Observed<S>
where
    S: tower_service::Service<Request<B>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Unpin + Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObservedFuture<S::Future>;

    /// Ready: the route services are warp's, always ready.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let (route, methods) = classify(request.uri().path());
        let method = request.method();
        if method == Method::OPTIONS {
            let mut response = with_allow(Response::default(), methods);
            *response.status_mut() = StatusCode::NO_CONTENT;
            self.observer.record(route, StatusCode::NO_CONTENT, started);
            return ObservedFuture::Ready(Some(response));
        }
        if route != ASSET && !methods.permits(method) {
            let response = with_allow(ApiError::MethodNotAllowed.into_response(), methods);
            self.observer.record(route, response.status(), started);
            return ObservedFuture::Ready(Some(response));
        }
        let service = self.table[route].as_mut().unwrap_or(&mut self.rest);
        ObservedFuture::Route {
            answer: service.call(request),
            observer: self.observer.clone(),
            route,
            methods,
            started,
        }
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

    /// A service that answers with its own name in a header.
    #[derive(Clone)]
    struct Named(&'static str);

    impl tower_service::Service<Request<()>> for Named {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let mut response = Response::default();
            response
                .headers_mut()
                .insert("x-served-by", HeaderValue::from_static(self.0));
            std::future::ready(Ok(response))
        }
    }

    async fn served_by(service: &mut Observed<Named>, method: Method, path: &str) -> String {
        use tower_service::Service;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("request");
        let Ok(response) = service.call(request).await;
        response.headers().get("x-served-by").map_or_else(
            || response.status().to_string(),
            |v| v.to_str().unwrap().to_owned(),
        )
    }

    #[tokio::test]
    async fn a_request_goes_to_its_own_route_and_the_rest_to_the_chain() {
        let metrics = Metrics::new(&["p"]);
        let table = vec![(0, Named("health")), (7, Named("acquire"))];
        let mut service = Observed::new(table, Named("chain"), metrics.clone());
        assert_eq!(
            served_by(&mut service, Method::GET, "/health").await,
            "health"
        );
        assert_eq!(
            served_by(&mut service, Method::HEAD, "/health").await,
            "health"
        );
        assert_eq!(
            served_by(&mut service, Method::POST, "/api/v1/acquire").await,
            "acquire"
        );
        // A route without its own entry, a file and an unknown path: the chain.
        assert_eq!(
            served_by(&mut service, Method::GET, "/ready").await,
            "chain"
        );
        assert_eq!(
            served_by(&mut service, Method::GET, "/app.js").await,
            "chain"
        );
        assert_eq!(
            served_by(&mut service, Method::DELETE, "/api/v1/coordinators/a").await,
            "chain"
        );
        // The method rules answer before any route is called.
        assert_eq!(
            served_by(&mut service, Method::POST, "/health").await,
            "405 Method Not Allowed"
        );
        assert_eq!(
            served_by(&mut service, Method::OPTIONS, "/api/v1/acquire").await,
            "204 No Content"
        );
        let text = String::from_utf8(metrics.render()).expect("UTF-8");
        assert!(
            text.contains("mdp_http_requests_total{route=\"health\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("mdp_http_requests_total{route=\"acquire\",status=\"204\"} 1"),
            "{text}"
        );
    }
}
