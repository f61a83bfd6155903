//! One connection: HTTP/1.1 or HTTP/2 (auto-detected), shut down gracefully
//! when the server drains or the connection stays idle.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use hyper::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

use crate::exec::LocalExec;
use crate::handler::Handler;
use crate::idle::Activity;
use crate::{drain, BoxError, HttpConfig, Request};

/// hyper-util's auto-detecting builder, on the worker's `LocalSet`.
pub(crate) type HttpBuilder = auto::Builder<LocalExec>;

/// The connection settings from `config` (validated).
pub(crate) fn builder(config: &HttpConfig, exec: LocalExec) -> HttpBuilder {
    let mut builder = auto::Builder::new(exec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.header_read_timeout)
        // The read buffer bounds the request head: past it, 431.
        .max_buf_size(config.max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX));
    builder
}

/// How long a connection accepted just before a drain may take to send its
/// first request (at most the header read timeout).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How long a connection may stay without a request in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    /// Before its first request.
    pub(crate) first: Duration,
    /// After a request.
    pub(crate) after: Duration,
}

/// Serves one connection until it ends: the client closes it, it stays idle
/// past its limit, or the drain closes it (after its requests in flight).
pub(crate) async fn serve<I, S, B>(
    io: I,
    peer: Option<SocketAddr>,
    builder: Rc<HttpBuilder>,
    handler: Handler<S>,
    activity: Rc<Activity>,
    mut drain: watch::Receiver<bool>,
    idle: IdleLimits,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: 'static,
        > + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    // In the connection's span, which names the peer.
    tracing::debug!("connection open");
    let http = builder.serve_connection_with_upgrades(TokioIo::new(io), handler);
    tokio::pin!(http);
    // Biased: on a wake-up, the connection reads what the client already sent
    // before it is told to shut down, so no request already sent is lost.
    let result = tokio::select! {
        biased;
        result = http.as_mut() => result,
        () = drain::started(&mut drain) => {
            if activity.requests() == 0 {
                // Accepted just before the drain: its first request may be on
                // its way; give it a moment rather than refuse it.
                tokio::select! {
                    biased;
                    result = http.as_mut() => return log(peer, result),
                    () = activity.first_request() => {}
                    () = tokio::time::sleep(idle.first.min(FIRST_REQUEST_GRACE)) => {}
                }
            }
            http.as_mut().graceful_shutdown();
            http.await
        }
        () = activity.idle_for(idle.first, idle.after) => {
            tracing::trace!(?peer, "connection idle; closing it");
            http.as_mut().graceful_shutdown();
            http.await
        }
        () = activity.evicted() => {
            tracing::debug!(?peer, "idle connection closed to admit a new one (connection cap)");
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    log(peer, result);
}

fn log<E: std::fmt::Display>(peer: Option<SocketAddr>, result: Result<(), E>) {
    if let Err(e) = result {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
    }
}
