//! The hyper service each connection runs: counts the request, marks it in
//! flight, answers the built-in endpoints, and passes the rest to the user's
//! service.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::endpoints::{self, Endpoint};
use crate::idle::{Activity, InFlight};
use crate::serve::Shared;
use crate::{metrics, ConnectionInfo, Request};

/// The user's service, wrapped for one connection.
pub(crate) struct Handler<S> {
    service: Rc<S>,
    shared: Rc<Shared>,
    activity: Rc<Activity>,
    /// Put in every request's extensions.
    info: Option<ConnectionInfo>,
}

impl<S> Handler<S> {
    pub(crate) fn new(
        service: Rc<S>,
        shared: Rc<Shared>,
        activity: Rc<Activity>,
        info: Option<ConnectionInfo>,
    ) -> Self {
        Handler {
            service,
            shared,
            activity,
            info,
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
        let shared = &self.shared;
        let in_flight = Some(self.activity.begin());
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
