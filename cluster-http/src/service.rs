//! What `serve` accepts: a closure, a tower `Service` (an axum `Router`), or a
//! hyper `Service`, all turned into one hyper service.

use std::future::Future;

use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Incoming};

/// The error type services may return: anything that converts into it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request a service receives: `http::Request<hyper::body::Incoming>`.
///
/// Name it in a closure that uses its request, which Rust cannot infer
/// through the generic `serve`: `|req: cluster_http::Request| async move { … }`,
/// or wrap the closure in [`service_fn`].
pub type Request = http::Request<Incoming>;

/// Anything [`serve`](crate::serve) can run: implemented for
///
/// - closures `Fn(Request) -> impl Future<Output = Result<Response<B>, E>>`;
/// - tower services `tower::Service<Request, Response = Response<B>> + Clone`,
///   such as an axum `Router`; the service is cloned per request, polled
///   ready, then called (as `tower::ServiceExt::oneshot`);
/// - hyper services `hyper::service::Service<Request, Response = Response<B>>`,
///   such as `hyper::service::service_fn(...)`;
///
/// where the body `B` yields `Bytes` (`String`, `Full<Bytes>`, axum's `Body`, …)
/// and the error converts into [`BoxError`]. None of them needs to be `Send`:
/// connections run on the worker's `LocalSet`.
///
/// `M` only tells the three apart; it is always inferred. The trait is
/// sealed: it names what `serve` takes, for bounds (`S: IntoHttpService<M>`),
/// and how it turns each into a hyper service is not part of the API.
pub trait IntoHttpService<M>: sealed::IntoHyper<M> {}

impl<S, M> IntoHttpService<M> for S where S: sealed::IntoHyper<M> {}

/// The conversion behind [`IntoHttpService`], and its markers: public items
/// in a private module, so that no other crate can name or implement them.
pub(crate) mod sealed {
    use super::{BoxError, Request};
    use bytes::Bytes;
    use http::Response;
    use hyper::body::Body;

    /// What [`IntoHttpService`](super::IntoHttpService) does.
    pub trait IntoHyper<M> {
        /// The response body.
        type Body: Body<Data = Bytes, Error: Into<BoxError>> + 'static;
        /// The service, as hyper runs it.
        type Service: hyper::service::Service<
                Request,
                Response = Response<Self::Body>,
                Error: Into<BoxError>,
                Future: 'static,
            > + 'static;

        /// Converts into the hyper service.
        fn into_hyper(self) -> Self::Service;
    }

    /// Marks the impl for closures.
    #[derive(Debug)]
    pub enum ClosureMarker {}

    /// Marks the impl for tower services.
    #[derive(Debug)]
    pub enum TowerMarker {}

    /// Marks the impl for hyper services.
    #[derive(Debug)]
    pub enum HyperMarker {}
}

impl<F, Fut, B, E> sealed::IntoHyper<sealed::ClosureMarker> for F
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
    E: Into<BoxError>,
{
    type Body = B;
    type Service = FnService<F>;

    fn into_hyper(self) -> Self::Service {
        FnService(self)
    }
}

/// A closure as a hyper service (what [`IntoHttpService`] makes of one).
#[derive(Clone)]
pub struct FnService<F>(F);

/// A closure as a service, with its request type known, so that the closure
/// needs no annotation:
///
/// ```no_run
/// # async fn doc(listener: cluster_net::Listener) -> Result<(), cluster_http::Error> {
/// use cluster_http::{serve, service_fn};
///
/// serve(listener, service_fn(|req| async move {
///     let path = req.uri().path().to_owned();
///     Ok::<_, std::convert::Infallible>(http::Response::new(path))
/// }))
/// .await
/// # }
/// ```
pub fn service_fn<F, Fut, B, E>(f: F) -> FnService<F>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    FnService(f)
}

impl<F> std::fmt::Debug for FnService<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnService")
    }
}

impl<F, Fut, B, E> hyper::service::Service<Request> for FnService<F>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    type Response = Response<B>;
    type Error = E;
    type Future = Fut;

    fn call(&self, req: Request) -> Fut {
        (self.0)(req)
    }
}

impl<S, B> sealed::IntoHyper<sealed::TowerMarker> for S
where
    S: tower_service::Service<Request, Response = Response<B>, Error: Into<BoxError>>
        + Clone
        + 'static,
    S::Future: 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    type Body = B;
    type Service = oneshot::TowerService<S>;

    fn into_hyper(self) -> Self::Service {
        oneshot::TowerService(self)
    }
}

impl<S, B> sealed::IntoHyper<sealed::HyperMarker> for S
where
    S: hyper::service::Service<Request, Response = Response<B>, Error: Into<BoxError>> + 'static,
    S::Future: 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    type Body = B;
    type Service = S;

    fn into_hyper(self) -> Self::Service {
        self
    }
}

/// A tower service run by hyper: our own, so that no foreign type is part
/// of the API.
pub(crate) mod oneshot {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    use pin_project_lite::pin_project;

    /// A tower service as a hyper service: for each request a clone is
    /// polled ready, then called, as `tower::ServiceExt::oneshot` does
    /// (hyper's `call` takes `&self` and has no readiness of its own).
    #[derive(Debug, Clone)]
    pub struct TowerService<S>(pub(super) S);

    impl<S, R> hyper::service::Service<R> for TowerService<S>
    where
        S: tower_service::Service<R> + Clone,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = Oneshot<S, R>;

        fn call(&self, request: R) -> Oneshot<S, R> {
            Oneshot {
                state: State::Waiting {
                    service: self.0.clone(),
                    request,
                },
            }
        }
    }

    pin_project! {
        /// The future of one request to a [`TowerService`].
        pub struct Oneshot<S, R>
        where
            S: tower_service::Service<R>,
        {
            #[pin]
            state: State<S, R>,
        }
    }

    pin_project! {
        #[project = StateProj]
        #[project_replace = StateOwned]
        enum State<S, R>
        where
            S: tower_service::Service<R>,
        {
            Waiting { service: S, request: R },
            Called { #[pin] future: S::Future },
            Done,
        }
    }

    impl<S, R> Future for Oneshot<S, R>
    where
        S: tower_service::Service<R>,
    {
        type Output = Result<S::Response, S::Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut state = self.project().state;
            loop {
                match state.as_mut().project() {
                    StateProj::Waiting { service, .. } => {
                        if let Err(e) = ready!(service.poll_ready(cx)) {
                            state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                        // Ready: the request leaves the state, into the call.
                        if let StateOwned::Waiting {
                            mut service,
                            request,
                        } = state.as_mut().project_replace(State::Done)
                        {
                            let future = service.call(request);
                            state.set(State::Called { future });
                        }
                    }
                    StateProj::Called { future } => {
                        let output = ready!(future.poll(cx));
                        state.set(State::Done);
                        return Poll::Ready(output);
                    }
                    StateProj::Done => panic!("a request's future was polled after it completed"),
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use std::cell::Cell;
        use std::rc::Rc;

        use hyper::service::Service as _;

        use super::*;

        /// Ready only at its second `poll_ready` (then `Ok`, or `Err` if
        /// `refuse`); answers the request doubled; counts its calls.
        #[derive(Clone)]
        struct Late {
            polls: Rc<Cell<u32>>,
            calls: Rc<Cell<u32>>,
            refuse: bool,
        }

        impl tower_service::Service<u32> for Late {
            type Response = u32;
            type Error = &'static str;
            type Future = std::future::Ready<Result<u32, &'static str>>;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                self.polls.set(self.polls.get() + 1);
                match (self.polls.get(), self.refuse) {
                    (1, _) => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    (_, true) => Poll::Ready(Err("refused")),
                    (_, false) => Poll::Ready(Ok(())),
                }
            }

            fn call(&mut self, request: u32) -> Self::Future {
                self.calls.set(self.calls.get() + 1);
                std::future::ready(Ok(request * 2))
            }
        }

        /// The answer to `request`, bounded: a future that never wakes fails.
        async fn ask(service: &TowerService<Late>, request: u32) -> Result<u32, &'static str> {
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(10), service.call(request));
            answer.await.expect("the request's future completes")
        }

        fn late(refuse: bool) -> (TowerService<Late>, Rc<Cell<u32>>, Rc<Cell<u32>>) {
            let (polls, calls) = (Rc::default(), Rc::default());
            let service = Late {
                polls: Rc::clone(&polls),
                calls: Rc::clone(&calls),
                refuse,
            };
            (TowerService(service), polls, calls)
        }

        #[tokio::test]
        async fn a_request_waits_for_readiness_then_is_called_once() {
            let (service, polls, calls) = late(false);
            assert_eq!(ask(&service, 21).await, Ok(42));
            assert_eq!((polls.get(), calls.get()), (2, 1));
        }

        #[tokio::test]
        async fn a_readiness_error_is_the_answer_and_nothing_is_called() {
            let (service, polls, calls) = late(true);
            assert_eq!(ask(&service, 21).await, Err("refused"));
            assert_eq!((polls.get(), calls.get()), (2, 0));
        }
    }
}
