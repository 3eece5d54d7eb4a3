//! A plain HTTP/1.1 client: hyper's pooled client, names resolved by hickory
//! (the static binary has no NSS modules, so the C library cannot resolve).
//! Pull mode reads the store's metrics with it and the demo pushes its store
//! model's transitions with it; neither needs TLS, redirects or HTTP/2.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A cheap-to-clone HTTP/1.1 client with a connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector<Resolver>, Full<Bytes>>,
    user_agent: http::HeaderValue,
}

/// A response: its status, and its body read whole when the status is a
/// success (empty otherwise).
#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// Why a request failed, in one readable line with its causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Request(String),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
}

impl HttpClient {
    /// A client that says `mdp/<version>` in its User-Agent.
    pub fn new() -> HttpClient {
        let mut connector = HttpConnector::new_with_resolver(Resolver::default());
        connector.set_nodelay(true);
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            user_agent: http::HeaderValue::from_static(concat!("mdp/", env!("CARGO_PKG_VERSION"))),
        }
    }

    /// GET `url`, reading at most `limit` bytes of body.
    pub async fn get(&self, url: &str, limit: usize) -> Result<Response, FetchError> {
        let request = self.request(http::Method::GET, url, None, Bytes::new())?;
        self.send(request, limit).await
    }

    /// POST `body` as JSON to `url`, reading at most `limit` bytes of answer.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        limit: usize,
    ) -> Result<Response, FetchError> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| request_error(&e))?);
        let request = self.request(http::Method::POST, url, Some("application/json"), bytes)?;
        self.send(request, limit).await
    }

    fn request(
        &self,
        method: http::Method,
        url: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, FetchError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| FetchError::Request(format!("invalid URL {url:?}: {e}")))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::USER_AGENT, self.user_agent.clone());
        if let Some(kind) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, kind);
        }
        builder.body(Full::new(body)).map_err(|e| request_error(&e))
    }

    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<Response, FetchError> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| request_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            // The status says it all; the body is not read.
            return Ok(Response {
                status,
                body: Bytes::new(),
            });
        }
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(limit)
                } else {
                    request_error(error.as_ref())
                }
            })?
            .to_bytes();
        Ok(Response { status, body })
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new()
    }
}

fn request_error(error: &(dyn std::error::Error + 'static)) -> FetchError {
    FetchError::Request(error_chain(error))
}

/// An error with its causes, so a log line says *why* the request failed
/// (refused, timed out, name not found) rather than just that it did; a cause
/// whose text its parent already shows is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Host names through hickory, built on the first lookup (so a URL with an IP
/// address works where there is no /etc/resolv.conf). The connector itself
/// handles IP literals without asking.
#[derive(Clone, Default)]
struct Resolver(Arc<OnceLock<Result<hickory_resolver::TokioResolver, String>>>);

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let cell = self.0.clone();
        Box::pin(async move {
            let resolver = cell
                .get_or_init(|| {
                    crate::replicas::system_resolver().map_err(|e| format!("no DNS resolver: {e}"))
                })
                .as_ref()
                .map_err(|e| BoxError::from(e.clone()))?;
            let found = crate::replicas::resolve(name.as_str(), None, resolver).await?;
            let addrs: Vec<SocketAddr> =
                found.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "connect failed: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("refused"));
        assert_eq!(error_chain(&error), "connect failed: refused");
    }

    /// Serves `answer` to every connection on a loopback port; returns its URL.
    async fn answering(answer: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(&answer).await;
                });
            }
        });
        format!("http://{addr}/metrics")
    }

    fn answer(status: &str, body: &[u8]) -> Vec<u8> {
        let mut text = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        text.extend_from_slice(body);
        text
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole_and_a_larger_one_refused() {
        let client = HttpClient::new();
        let url = answering(answer("200 OK", &[b'x'; 1000])).await;
        let response = client.get(&url, 1000).await.expect("within the limit");
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), 1000);
        assert_eq!(
            client.get(&url, 999).await.expect_err("over the limit"),
            FetchError::TooLarge(999)
        );
    }

    #[tokio::test]
    async fn a_failure_status_is_returned_without_its_body() {
        let client = HttpClient::new();
        let url = answering(answer("503 Service Unavailable", &[b'x'; 5000])).await;
        let response = client.get(&url, 10).await.expect("an answer");
        assert_eq!(response.status, 503);
        assert!(response.body.is_empty());
    }

    #[tokio::test]
    async fn a_refused_connection_says_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let error = HttpClient::new()
            .get(&format!("http://{addr}/metrics"), 10)
            .await
            .expect_err("nothing listens");
        assert!(error.to_string().contains("refused"), "{error}");
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_before_any_request() {
        let client = HttpClient::new();
        let error = client.get("http://[::1", 10).await.expect_err("refused");
        assert!(error.to_string().contains("invalid URL"), "{error}");
    }
}
