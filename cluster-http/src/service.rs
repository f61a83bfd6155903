//! What `serve` accepts: a closure, a tower `Service` (an axum `Router`), or a
//! hyper `Service`, all turned into one hyper service.

use std::future::Future;

use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Incoming};
use hyper_util::service::TowerToHyperService;

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
/// - closures `Fn(Request) -> impl Future<Output = Result<Response<B>, E>>`
///   ([`ClosureMarker`]);
/// - tower services `tower::Service<Request, Response = Response<B>> + Clone`,
///   such as an axum `Router` ([`TowerMarker`]); the service is cloned per
///   request, as hyper-util's `TowerToHyperService` does;
/// - hyper services `hyper::service::Service<Request, Response = Response<B>>`,
///   such as `hyper::service::service_fn(...)` ([`HyperMarker`]);
///
/// where the body `B` yields `Bytes` (`String`, `Full<Bytes>`, axum's `Body`, …)
/// and the error converts into [`BoxError`]. None of them needs to be `Send`:
/// connections run on the worker's `LocalSet`.
///
/// `M` only tells the three apart; it is always inferred.
pub trait IntoHttpService<M> {
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
    fn into_http_service(self) -> Self::Service;
}

/// Marks the [`IntoHttpService`] impl for closures.
#[derive(Debug)]
pub enum ClosureMarker {}

/// Marks the [`IntoHttpService`] impl for tower services.
#[derive(Debug)]
pub enum TowerMarker {}

/// Marks the [`IntoHttpService`] impl for hyper services.
#[derive(Debug)]
pub enum HyperMarker {}

impl<F, Fut, B, E> IntoHttpService<ClosureMarker> for F
where
    F: Fn(Request) -> Fut + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
    E: Into<BoxError>,
{
    type Body = B;
    type Service = FnService<F>;

    fn into_http_service(self) -> Self::Service {
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

impl<S, B> IntoHttpService<TowerMarker> for S
where
    S: tower_service::Service<Request, Response = Response<B>, Error: Into<BoxError>>
        + Clone
        + 'static,
    S::Future: 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    type Body = B;
    type Service = TowerToHyperService<S>;

    fn into_http_service(self) -> Self::Service {
        TowerToHyperService::new(self)
    }
}

impl<S, B> IntoHttpService<HyperMarker> for S
where
    S: hyper::service::Service<Request, Response = Response<B>, Error: Into<BoxError>> + 'static,
    S::Future: 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + 'static,
{
    type Body = B;
    type Service = S;

    fn into_http_service(self) -> Self::Service {
        self
    }
}
