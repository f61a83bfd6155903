//! `Server`: the builder of options, and `serve`, its short form.

#[cfg(feature = "tls")]
use cluster_core::hooks;
use std::time::Duration;

use crate::serve::run;
use crate::{Error, HttpConfig, IntoHttpService, Listener, OnPanic};

/// An HTTP server on a worker's listener, with its options:
///
/// ```no_run
/// # async fn doc(listener: cluster_net::Listener) -> Result<(), cluster_http::Error> {
/// use std::time::Duration;
/// use cluster_http::{OnPanic, Server};
///
/// Server::new(listener)
///     .header_read_timeout(Duration::from_secs(10))
///     .max_header_size(32 * 1024)
///     .keep_alive_timeout(Duration::from_secs(60))
///     .drain_timeout(Duration::from_secs(20))
///     .healthz("/healthz")
///     .metrics("/metrics")
///     .on_panic(OnPanic::Restart)
///     .serve(|_req| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new("hello\n".to_string()))
///     })
///     .await
/// # }
/// ```
///
/// Options not set here come from the [`HttpConfig`] given to the cluster
/// as state, if any, else from `HttpConfig::default()`.
///
/// The listener is any [`Listener`]: `worker.listen(...)`'s (the default
/// type parameter), a `tokio::net::TcpListener`, or your own.
#[derive(Debug)]
#[must_use = "a server does nothing until `serve`"]
pub struct Server<L = cluster_net::Listener> {
    listener: L,
    config: HttpConfig,
}

impl<L: Listener> Server<L> {
    /// A server on `listener`, with the cluster's [`HttpConfig`] (its state),
    /// or the defaults.
    pub fn new(listener: L) -> Server<L> {
        let config = cluster_core::worker()
            .and_then(|w| w.state::<HttpConfig>())
            .map(|c| (*c).clone())
            .unwrap_or_default();
        Server { listener, config }
    }

    /// Replaces every option with `config`.
    pub fn config(mut self, config: HttpConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`HttpConfig::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.header_read_timeout(timeout);
        self
    }

    /// See [`HttpConfig::max_header_size`].
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.config = self.config.max_header_size(bytes);
        self
    }

    /// See [`HttpConfig::keep_alive_timeout`].
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.keep_alive_timeout(timeout);
        self
    }

    /// See [`HttpConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.drain_timeout(timeout);
        self
    }

    /// See [`HttpConfig::healthz`].
    pub fn healthz(mut self, path: impl Into<String>) -> Self {
        self.config = self.config.healthz(path);
        self
    }

    /// See [`HttpConfig::metrics`].
    pub fn metrics(mut self, path: impl Into<String>) -> Self {
        self.config = self.config.metrics(path);
        self
    }

    /// See [`HttpConfig::tls`].
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.config = self.config.tls(tls);
        self
    }

    /// See [`HttpConfig::http3`].
    #[cfg(feature = "http3")]
    pub fn http3(mut self, on: bool) -> Self {
        self.config = self.config.http3(on);
        self
    }

    /// See [`HttpConfig::status`].
    pub fn status(mut self, path: impl Into<String>) -> Self {
        self.config = self.config.status(path);
        self
    }

    /// See [`HttpConfig::migrate`].
    pub fn migrate(mut self, on: bool) -> Self {
        self.config = self.config.migrate(on);
        self
    }

    /// See [`HttpConfig::on_panic`].
    pub fn on_panic(mut self, on_panic: OnPanic) -> Self {
        self.config = self.config.on_panic(on_panic);
        self
    }

    /// Serves HTTP/1.1 (keep-alive) and HTTP/2 (h2c, detected from the
    /// client's preface) with `service` until the worker is disconnected,
    /// then drains: stops accepting, closes idle connections, sends HTTP/2
    /// GOAWAY, lets the requests in flight finish, and returns `Ok` as soon
    /// as the last connection has ended (or at the drain deadline, closing
    /// those left).
    ///
    /// With [`tls`](Self::tls), every connection is TLS first (its PEM
    /// files read now), through a [`TlsListener`](crate::TlsListener).
    ///
    /// Errors: a bad setting or TLS certificate, not on a worker thread, or
    /// (with [`OnPanic::Restart`]) a connection that panicked, after the drain.
    pub async fn serve<S, M>(self, service: S) -> Result<(), Error>
    where
        S: IntoHttpService<M>,
    {
        let service = service.into_hyper();
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.config.tls {
            let listener = match crate::TlsListener::new(self.listener, tls) {
                Ok(listener) => listener,
                Err(e) => {
                    // Every worker would hit it: while starting, stop the cluster with it.
                    if let Some(worker) = cluster_core::worker() {
                        hooks::fail_start(&worker, e.to_string());
                    }
                    return Err(e);
                }
            };
            return run(listener, self.config, service).await;
        }
        run(self.listener, self.config, service).await
    }
}

/// Serves `listener` with `service` and the cluster's (or the default)
/// options: `Server::new(listener).serve(service)`. See [`Server::serve`].
pub async fn serve<L, S, M>(listener: L, service: S) -> Result<(), Error>
where
    L: Listener,
    S: IntoHttpService<M>,
{
    Server::new(listener).serve(service).await
}
