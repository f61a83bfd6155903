//! HTTP servers on `cluster_thread` workers: conveniences over hyper 1 and
//! hyper-util, in the role hyper-util plays for hyper. Not a framework:
//! bring a closure, any tower `Service`, or an axum `Router` unchanged.
//!
//! - [`serve`] (or [`Server`] for options) serves HTTP/1.1 with keep-alive
//!   and HTTP/2 (h2c, detected from the client's preface) on a worker's
//!   listener. Connections run on the worker's `LocalSet`, so services need
//!   not be `Send`; `TCP_NODELAY` is set on every TCP connection. The
//!   listener is any [`Listener`]: `worker.listen(...)`'s, tokio's
//!   `TcpListener`, or your own.
//! - HTTPS (feature `tls`): [`Server::tls`] with a [`TlsConfig`] (PEM files,
//!   read as each worker's server starts, so a rolling reload serves a
//!   renewed certificate; or a rustls `ServerConfig`), ALPN `h2` and
//!   `http/1.1`, handshakes in their own tasks under a timeout; or
//!   [`TlsListener`] around any listener.
//! - HTTP/3 (feature `http3`): `Server::http3(true)` serves the same
//!   service over QUIC (quinn, h3) on the UDP port of the TCP listener's
//!   number, every worker on it, each connection's datagrams steered to
//!   its worker by connection ID (and forwarded there when they reach
//!   another); TCP responses carry `Alt-Svc`. See `docs/http3.md`.
//! - Every request on a TCP connection carries the connection's addresses
//!   in its extensions: [`ConnectionInfo`] `{ peer, local }`, and with the
//!   `axum` feature axum's `ConnectInfo<SocketAddr>` (so its extractor works).
//! - Graceful drain when the worker is disconnected (`handle.disconnect()`,
//!   a reload, a scale-down, the cluster's stop on SIGTERM): the listener is
//!   dropped so the primary hands new connections to the other workers, idle
//!   HTTP/1.1 keep-alive connections **move to a live worker** of the same
//!   listener with the bytes already read (the client never sees them
//!   close; [`HttpConfig::migrate`]) or, where none is left, are closed,
//!   HTTP/2 connections get GOAWAY, the
//!   requests in flight finish, and `serve` returns `Ok` as soon as the last
//!   connection has ended; the drain deadline only forces the rest closed.
//! - Limits with sane defaults ([`HttpConfig`]): header read timeout (slow
//!   clients are disconnected), max header size (431), keep-alive idle
//!   timeout. Malformed requests get 400 and the worker serves on. The
//!   connection limits are `cluster-net`'s: `NetConfig::max_connections` and
//!   `max_connections_per_worker` (or the same on a `ListenSpec`).
//! - A panic inside a connection (the service panicked) is caught: only that
//!   request's connection (HTTP/1) or stream (HTTP/2) is lost. With
//!   [`OnPanic::Restart`] (the default) the worker then drains and `serve`
//!   returns [`Error::ConnectionPanicked`], so the worker exits with an error
//!   and the cluster's restart policy replaces it; with [`OnPanic::Ignore`] it
//!   serves on.
//! - Opt-in endpoints, answered before the service: `healthz` (`200 ok`
//!   while serving, `503 draining` once this worker drains or the cluster is
//!   draining or stopping) and `metrics`, in the Prometheus text format
//!   (0.0.4). One scrape shows **every live slot** of the cluster, whichever
//!   worker answers it: the counts are kept per slot in a cluster extension
//!   (relaxed atomics on the hot path), so a slot's series go on across its
//!   workers' restarts and `rate()` holds:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `cluster_thread_slot_worker` | gauge, always 1: the slot's current worker | `slot`, `worker` |
//! | `cluster_thread_connections_accepted_total` | counter | `slot` |
//! | `cluster_thread_connections_active` | gauge | `slot` |
//! | `cluster_thread_connections_migrated_total` | counter: open connections moved to a live worker by a drain | `slot` |
//! | `cluster_thread_tls_handshakes_total` | counter (TLS listeners only): handshakes completed, a session of any worker resumed or not | `slot`, `resumed` |
//! | `cluster_thread_tls_handshake_failures_total` | counter (TLS listeners only) | `slot` |
//! | `cluster_thread_requests_total` | counter | `slot` |
//! | `cluster_thread_request_duration_seconds` | histogram (0.5 ms … 10 s), head to end of body | `slot` |
//! | `cluster_thread_slot_restarts_total` | counter | `slot` |
//! | `cluster_thread_slot_draining` | gauge | `slot` |
//! | `cluster_thread_slot_uptime_seconds` | gauge | `slot` |
//! | `cluster_thread_cluster_requests_total`, `…_connections_accepted_total`, `…_connections_migrated_total`, `…_connections_active` | totals over every slot | |
//! | `cluster_thread_workers` | gauge | |
//! | `cluster_thread_restarts_total` | counter | |
//! | `cluster_thread_phase` | gauge, 1 for the current phase | `phase` |
//!
//!   With the `metrics` feature, what the program records through the
//!   [`metrics`](https://docs.rs/metrics) facade (`metrics::counter!(…)`,
//!   from any thread) follows, rendered by `metrics-exporter-prometheus`
//!   (see [`metrics_handle`]). The facade rather than `prometheus-client`:
//!   its recorder is process-wide, which for threads is exactly the
//!   cluster, so no registry is passed around; and its exporter writes the
//!   Prometheus text format that `promtool` and every scraper read, where
//!   `prometheus-client` writes only OpenMetrics.
//!
//! - Opt-in status page ([`HttpConfig::status`]): one row per slot (worker
//!   id, state, uptime, restarts, active and accepted connections, requests,
//!   p50/p99 latency) and the cluster's phase, in HTML refreshing itself or
//!   JSON (`?format=json`).
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use cluster_core::Cluster;
//! use cluster_http::{HttpConfig, Request, Server};
//! use cluster_net::WorkerExt;
//! use http::Response;
//!
//! fn main() -> Result<(), cluster_core::Error> {
//!     Cluster::builder()
//!         .workers(4)
//!         // Defaults for every worker's server.
//!         .state(HttpConfig::default().healthz("/healthz").metrics("/metrics"))
//!         // Shared by every worker.
//!         .state(Arc::new(AtomicU64::new(0)))
//!         .run(|worker| async move {
//!             let hits = worker.state::<Arc<AtomicU64>>().map(|h| (*h).clone()).unwrap_or_default();
//!             let id = worker.id();
//!             let listener = worker.listen("127.0.0.1:8000").await?;
//!             Server::new(listener)
//!                 .drain_timeout(Duration::from_secs(20))
//!                 .serve(move |req: Request| {
//!                     let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
//!                     async move {
//!                         let body = format!("{} {}: hit {n} on worker {id}\n", req.method(), req.uri());
//!                         Ok::<_, Infallible>(Response::new(body))
//!                     }
//!                 })
//!                 .await
//!         })
//! }
//! ```
//!
//! An axum `Router` is served as it is: `cluster_http::serve(listener, router)`.
//! A closure that uses its request names its type, `|req: Request|` (Rust
//! cannot infer it through the generic `serve`), or is wrapped in
//! [`service_fn`].
//!
//! Upgraded connections (WebSocket) leave the server's care once hyper hands
//! them over: the drain does not wait for them.
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod body;
mod config;
mod connection;
mod drain;
mod endpoints;
mod error;
mod exec;
mod handler;
mod histogram;
mod history;
#[cfg(feature = "http3")]
mod http3;
mod idle;
mod listener;
mod metrics;
mod rewind;
mod serve;
mod server;
mod service;
mod slots;
mod status;
mod tasks;
#[cfg(feature = "tls")]
mod tls;

pub use config::{HttpConfig, OnPanic, MIN_HEADER_SIZE};
pub use error::Error;
pub use listener::{ClientCertificate, ConnectionInfo, Listener};
#[cfg(feature = "metrics")]
pub use metrics::{metrics_handle, set_metrics_handle};
pub use server::{serve, Server};
pub use service::{service_fn, BoxError, FnService, IntoHttpService, Request};
pub use slots::{slot_stats, SlotStats};
#[cfg(feature = "tls")]
pub use tls::config::{TlsConfig, DEFAULT_HANDSHAKE_TIMEOUT};
#[cfg(feature = "tls")]
pub use tls::listener::TlsListener;
#[cfg(feature = "tls")]
pub use tls::stream::TlsStream;
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
