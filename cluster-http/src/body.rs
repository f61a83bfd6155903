//! The response body `serve` sends: the service's body or an endpoint's, and
//! a mark that the request is in flight until the body is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::idle::InFlight;
use crate::BoxError;

pin_project! {
    /// A response body: the service's own, or one of the built-in endpoints'.
    /// While it exists, its request counts as in flight on its connection
    /// (for the keep-alive idle timeout).
    pub(crate) struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
        in_flight: Option<InFlight>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Service { #[pin] body: B },
        Endpoint { #[pin] body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn service(body: B, in_flight: Option<InFlight>) -> Self {
        ResponseBody {
            kind: Kind::Service { body },
            in_flight,
        }
    }

    pub(crate) fn endpoint(body: Full<Bytes>, in_flight: Option<InFlight>) -> Self {
        ResponseBody {
            kind: Kind::Endpoint { body },
            in_flight,
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Service { .. } => "service",
            Kind::Endpoint { .. } => "endpoint",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = match this.kind.project() {
            KindProj::Service { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Endpoint { body } => body.poll_frame(cx).map_err(|never| match never {}),
        };
        if let Poll::Ready(None | Some(Err(_))) = polled {
            // Done: the request is no longer in flight, even if hyper keeps the body.
            this.in_flight.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Service { body } => body.is_end_stream(),
            Kind::Endpoint { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Service { body } => body.size_hint(),
            Kind::Endpoint { body } => body.size_hint(),
        }
    }
}
