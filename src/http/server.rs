//! The HTTP/1 connection layer: a connection cap, a header read timeout and an
//! inactivity timeout, so stalled or slow clients cannot pin the service, and
//! a graceful shutdown that lets in-flight requests finish.

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

pub use crate::config::ConnectionLimits;

/// Binds a listening socket. The unspecified IPv6 address (`[::]`, what
/// `--listen :PORT` means) serves IPv4 too, on a dual-stack socket with
/// `IPV6_V6ONLY` off; where the host has no IPv6, it falls back to `0.0.0.0`.
/// Needs a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        match listen_on(addr, true) {
            Ok(listener) => listener,
            Err(error) if ipv6_unavailable(&error) => listen_on(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()),
                false,
            )?,
            Err(error) => return Err(error),
        }
    } else {
        listen_on(addr, false)?
    };
    TcpListener::from_std(listener)
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    // As std and tokio do: a restarted service can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The errors of a host without IPv6 (module not loaded, or disabled).
fn ipv6_unavailable(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::AddrNotAvailable | ErrorKind::Unsupported | ErrorKind::InvalidInput
    ) || matches!(error.raw_os_error(), Some(97 | 93))
}

/// A TCP stream that fails with `TimedOut` once neither side has moved a byte
/// for `timeout`: catches idle keep-alive connections and stalled uploads,
/// while a stream that keeps writing (SSE) stays open.
///
/// A read or write only notes the time; the timer is moved when it fires
/// early (the stream was busy since), so a request costs no timer update.
struct IdleTimeout {
    inner: TcpStream,
    timeout: Duration,
    /// When a byte last moved.
    active: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            active: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Maps a pending operation to an error once the stream was idle for
    /// `timeout`.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        pending: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if !pending.is_pending() {
            self.active = Instant::now();
            return pending;
        }
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.active + self.timeout;
            if due <= Instant::now() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            self.deadline.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.check(cx, result)
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `service` on `listener` until `stop` turns true, then stops
/// accepting and waits for open connections to finish their requests.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let hyper_service = PerConnection(std::sync::Mutex::new(service.clone()));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = builder.serve_connection(io, hyper_service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("connection closed with an error: {error}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One connection's copy of the service. hyper asks for each response with
/// `&self`; a tower service needs `&mut self`, and hyper-util's adapter gets
/// it by cloning the service (here the whole route tree, a handle per route)
/// for every request. This clones it once per connection and calls it in
/// place: HTTP/1 asks for one response at a time, so the lock is never
/// contended. A service that is not ready at once is cloned and awaited.
struct PerConnection<S>(std::sync::Mutex<S>);

type Answer<S, R> = Pin<
    Box<
        dyn Future<
                Output = Result<
                    <S as tower_service::Service<R>>::Response,
                    <S as tower_service::Service<R>>::Error,
                >,
            > + Send,
    >,
>;

impl<S, R> hyper::service::Service<R> for PerConnection<S>
where
    S: tower_service::Service<R> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send,
    S::Error: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::Either<S::Future, Answer<S, R>>;

    fn call(&self, request: R) -> Self::Future {
        use futures_util::future::Either;
        let mut service = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match service.poll_ready(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Ok(())) => Either::Left(service.call(request)),
            Poll::Ready(Err(error)) => Either::Right(Box::pin(std::future::ready(Err(error)))),
            Poll::Pending => {
                let mut service = service.clone();
                Either::Right(Box::pin(async move {
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    service.call(request).await
                }))
            }
        }
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|s| *s).await;
}
