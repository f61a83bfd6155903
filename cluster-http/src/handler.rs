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

/// What every connection of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) worker: Worker,
    /// This worker's slot's counts, shared with the cluster.
    pub(crate) slot: Arc<Slot>,
    pub(crate) endpoints: Endpoints,
    pub(crate) drain: Drain,
}

/// The user's service, wrapped for one connection.
pub(crate) struct Handler<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
    activity: Rc<Activity>,
    /// Put in every request's extensions.
    info: Option<ConnectionInfo>,
    client: Option<ClientCertificate>,
}

impl<S> Handler<S> {
    pub(crate) fn new(
        service: Rc<S>,
        shared: Rc<Shared>,
        activity: Rc<Activity>,
        info: Option<ConnectionInfo>,
        client: Option<ClientCertificate>,
    ) -> Self {
        Handler {
            service,
            shared,
            activity,
            info,
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
        if let Some(info) = self.info {
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
                }
            }
            Some(Endpoint::Healthz) => endpoints::healthz(shared.drain.is_draining(&shared.worker)),
            Some(Endpoint::Metrics) => endpoints::metrics(metrics::render(&shared.worker)),
            Some(Endpoint::Status) => endpoints::status(req.uri().query(), &shared.worker),
        };
        HandlerFuture::Ready {
            response: Some(response),
            in_flight,
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
        Service { #[pin] future: F, in_flight: Option<InFlight> },
        Ready { response: Option<Response<Full<Bytes>>>, in_flight: Option<InFlight> },
    }
}

impl<F, B, E> Future for HandlerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandlerFutureProj::Service { future, in_flight } => future
                .poll(cx)
                .map_ok(|r| r.map(|body| ResponseBody::service(body, in_flight.take()))),
            HandlerFutureProj::Ready {
                response,
                in_flight,
            } => match response.take() {
                Some(r) => Poll::Ready(Ok(
                    r.map(|body| ResponseBody::endpoint(body, in_flight.take()))
                )),
                // Polled after completion: never again ready.
                None => Poll::Pending,
            },
        }
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
