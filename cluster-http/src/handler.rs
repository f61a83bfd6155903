//! The hyper service each connection runs: counts the request, marks it in
//! flight, answers the built-in endpoints, and passes the rest to the user's
//! service.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use cluster_core::Worker;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::drain::Drain;
use crate::endpoints::{self, Endpoint, Endpoints};
use crate::idle::{Activity, InFlight};
use crate::slots::Slot;
use crate::{metrics, ClientCertificate, ConnectionInfo, Request};

/// What every connection of one server shares (TCP and HTTP/3).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) worker: Worker,
    /// This worker's slot's counts, shared with the cluster.
    pub(crate) slot: Arc<Slot>,
    pub(crate) endpoints: Endpoints,
    pub(crate) drain: Drain,
    /// `Alt-Svc` for TCP responses, while HTTP/3 is served.
    pub(crate) alt_svc: Option<http::HeaderValue>,
}

/// The user's service, wrapped for one connection.
pub(crate) struct Handler<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
    activity: Rc<Activity>,
    /// Put in every request's extensions.
    info: Info,
    client: Option<ClientCertificate>,
    /// `Alt-Svc` for every response (HTTP/3 on, on a TCP connection).
    alt_svc: Option<http::HeaderValue>,
}

/// Where a request's [`ConnectionInfo`] comes from.
pub(crate) enum Info {
    /// A TCP connection's, fixed.
    Fixed(Option<ConnectionInfo>),
    /// A QUIC connection's: the client's address as it is now (it moves).
    #[cfg(feature = "http3")]
    Quic(quinn::Connection, std::net::SocketAddr),
}

impl Info {
    fn get(&self) -> Option<ConnectionInfo> {
        match self {
            Info::Fixed(info) => *info,
            #[cfg(feature = "http3")]
            Info::Quic(conn, local) => {
                let local = conn
                    .local_ip()
                    .map_or(*local, |ip| std::net::SocketAddr::new(ip, local.port()));
                Some(ConnectionInfo::new(conn.remote_address(), local))
            }
        }
    }
}

impl<S> Handler<S> {
    pub(crate) fn new(
        service: Rc<S>,
        shared: Rc<Shared>,
        activity: Rc<Activity>,
        info: Info,
        client: Option<ClientCertificate>,
    ) -> Self {
        let alt_svc = match info {
            Info::Fixed(_) => shared.alt_svc.clone(),
            #[cfg(feature = "http3")]
            Info::Quic(..) => None,
        };
        Handler {
            service,
            shared,
            activity,
            info,
            alt_svc,
            client,
        }
    }
}

impl<S, B> hyper::service::Service<Request> for Handler<S>
where
    S: hyper::service::Service<Request, Response = Response<B>>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = HandlerFuture<S::Future>;

    fn call(&self, mut req: Request) -> Self::Future {
        if let Some(info) = self.info.get() {
            let extensions = req.extensions_mut();
            extensions.insert(info);
            #[cfg(feature = "axum")]
            extensions.insert(axum::extract::ConnectInfo(info.peer));
        }
        if let Some(client) = &self.client {
            req.extensions_mut().insert(client.clone());
        }
        let shared = &self.shared;
        // Checked on the first request only: that is when a connection
        // that will never idle (one request, then closed) would be told to
        // the connection cap.
        let closing = self.activity.requests() == 0 && asks_to_close(req.headers());
        let in_flight = Some(self.activity.begin(closing));
        let endpoint = shared.endpoints.route(req.method(), req.uri().path());
        let response = match endpoint {
            None => {
                return HandlerFuture::Service {
                    future: self.service.call(req),
                    in_flight,
                    alt_svc: self.alt_svc.clone(),
                }
            }
            Some(Endpoint::Healthz) => endpoints::healthz(shared.drain.is_draining(&shared.worker)),
            Some(Endpoint::Metrics) => endpoints::metrics(metrics::render(&shared.worker)),
            Some(Endpoint::Status) => endpoints::status(req.uri().query(), &shared.worker),
        };
        HandlerFuture::Ready {
            response: Some(response),
            in_flight,
            alt_svc: self.alt_svc.clone(),
        }
    }
}

/// Whether a request's `Connection` header has the `close` option.
fn asks_to_close(headers: &http::HeaderMap) -> bool {
    headers.get(http::header::CONNECTION).is_some_and(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

pin_project! {
    /// The response future of [`Handler`].
    #[project = HandlerFutureProj]
    pub(crate) enum HandlerFuture<F> {
        Service { #[pin] future: F, in_flight: Option<InFlight>, alt_svc: Option<http::HeaderValue> },
        Ready { response: Option<Response<Full<Bytes>>>, in_flight: Option<InFlight>, alt_svc: Option<http::HeaderValue> },
    }
}

impl<F, B, E> Future for HandlerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandlerFutureProj::Service {
                future,
                in_flight,
                alt_svc,
            } => future.poll(cx).map_ok(|r| {
                let mut r = r.map(|body| ResponseBody::service(body, in_flight.take()));
                advertise(&mut r, alt_svc.take());
                r
            }),
            HandlerFutureProj::Ready {
                response,
                in_flight,
                alt_svc,
            } => match response.take() {
                Some(r) => {
                    let mut r = r.map(|body| ResponseBody::endpoint(body, in_flight.take()));
                    advertise(&mut r, alt_svc.take());
                    Poll::Ready(Ok(r))
                }
                // Polled after completion: never again ready.
                None => Poll::Pending,
            },
        }
    }
}

/// Adds `Alt-Svc`, unless the service set its own.
fn advertise<B>(response: &mut Response<B>, alt_svc: Option<http::HeaderValue>) {
    if let Some(value) = alt_svc {
        response
            .headers_mut()
            .entry(http::header::ALT_SVC)
            .or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::asks_to_close;

    fn with_connection(value: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static(value),
        );
        headers
    }

    #[test]
    fn the_close_option_is_found_among_others_in_any_case() {
        assert!(asks_to_close(&with_connection("close")));
        assert!(asks_to_close(&with_connection("Upgrade, Close")));
        assert!(!asks_to_close(&with_connection("keep-alive")));
        assert!(!asks_to_close(&with_connection("closed")));
    }
}
