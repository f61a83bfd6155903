//! Node.js's `cluster` module, for threads, in Rust.
//!
//! A primary spawns N worker threads, each with its own tokio runtime; every
//! worker listens on the **same port** (connections shared among them, in
//! five balance modes) or on **its own port**; the primary sees their
//! lifecycle, messages them, disconnects, kills, restarts (with back-off) and
//! reloads them one by one, and drains them gracefully on SIGTERM.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! #[cluster_thread::main(workers = "auto", port = "shared")]
//! async fn main(worker: cluster_thread::Worker) -> anyhow::Result<()> {
//!     let listener = worker.listen("0.0.0.0:8000").await?;
//!     cluster_thread::http::serve(listener, |_req| async {
//!         Ok::<_, Infallible>(http::Response::new("hello world\n".to_string()))
//!     })
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! The macro builds the cluster from its arguments and runs the function once
//! in each worker thread (so the future need not be `Send`). Without the
//! macro, [`Cluster::builder`] gives the same settings and more; see the
//! crate `cluster-core` for the primary/worker model, `cluster-net`
//! ([`net`]) for every way of listening, and `cluster-http` ([`http`]) for
//! HTTP, drain, limits, health and metrics.
//!
//! Features (all default): `macros` (`#[cluster_thread::main]`), `net`
//! (`worker.listen`), `http` (`cluster_thread::http::serve`), `control`
//! (the control socket behind the `cluster-thread` command, and the
//! default logs: [`control`]).
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
#[cfg(feature = "control")]
pub mod control;

pub use cluster_core::{
    is_primary, is_worker, worker, Address, Cluster, ClusterBuilder, ClusterEvent, ClusterInfo,
    Error, Events, ExitReason, Message, Phase, RestartPolicy, TaskResult, Worker, WorkerHandle,
    Workers, DEFAULT_SHUTDOWN_TIMEOUT, PIN_WORKERS_ENV, WORKERS_ENV,
};
#[cfg(feature = "http")]
pub use cluster_http as http;
#[cfg(feature = "macros")]
pub use cluster_macros::main;
#[cfg(feature = "net")]
pub use cluster_net as net;
#[cfg(feature = "net")]
pub use cluster_net::{Balance, ClusterBuilderExt, Listener, NetConfig, Ports, WorkerExt};

/// `use cluster_thread::prelude::*;` brings the extension traits
/// (`worker.listen(...)`, `builder.hot_upgrade()`, `builder.control(...)`)
/// into scope.
pub mod prelude {
    #[cfg(feature = "control")]
    pub use cluster_ctl::ControlExt;
    #[cfg(feature = "net")]
    pub use cluster_net::{ClusterBuilderExt, WorkerExt};
}
