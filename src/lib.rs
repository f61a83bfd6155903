//! Node.js's `cluster` module, for threads, in Rust.
//!
//! A primary spawns N worker threads, each with its own tokio runtime; every
//! worker listens on the **same port** (connections shared among them, in
//! five balance modes) or on **its own port**; the primary sees their
//! lifecycle, messages them, disconnects, kills, restarts (with back-off) and
//! reloads them one by one, and drains them gracefully on SIGTERM.
#![cfg_attr(
    all(feature = "macros", feature = "http"),
    doc = r#"
```no_run
use std::convert::Infallible;

#[cluster_thread::main(workers = "auto", port = "shared")]
async fn main(worker: cluster_thread::Worker) -> anyhow::Result<()> {
    let listener = worker.listen("0.0.0.0:8000").await?;
    cluster_thread::http::serve(listener, |_req| async {
        Ok::<_, Infallible>(http::Response::new("hello world\n".to_string()))
    })
    .await?;
    Ok(())
}
```
"#
)]
//!
//! The macro builds the cluster from its arguments and runs the function once
//! in each worker thread (so the future need not be `Send`). Without the
//! macro, [`Cluster::builder`] gives the same settings and more; see the
//! crate `cluster-core` for the primary/worker model, `cluster-net`
//! ([`net`]) for every way of listening, and `cluster-http` ([`http`]) for
//! HTTP, drain, limits, health and metrics.
//!
//! Features: `macros` (`#[cluster_thread::main]`), `net` (`worker.listen`),
//! `http` (`cluster_thread::http::serve`, turns on `net`), `tls` (HTTPS),
//! `metrics` (the `metrics` facade on the metrics endpoint), `control` (the
//! control socket behind the `cluster-thread` command, and the default
//! logs: [`control`]), all default;
//! `axum` (axum's `ConnectInfo`) and `jemalloc` (jemalloc as the global
//! allocator of macro programs, an arena per worker: each worker's memory
//! and `max_memory`, [`memory`]; builds jemalloc's C code) on demand. Any combination builds (`cargo
//! xtask ci` checks each, and each sub-crate alone), and so does every
//! example its features allow (their `required-features`).
//!
//! # Settings and environment variables
//!
//! Every setting has a builder method, most a macro argument, and the core's
//! and the balance mode a `CLUSTER_THREAD_*` variable, which wins when set
//! (`CLUSTER_THREAD_WORKERS=8`, `CLUSTER_THREAD_KILL_TIMEOUT=10s`,
//! `CLUSTER_THREAD_SIGNALS="usr2=upgrade, hup=off"`). Each variable is read
//! once, by the crate that owns its setting, the same for a macro program
//! and a builder program; an unusable value is an error that names the
//! variable. Durations are written as the macro's arguments are
//! (`humantime`'s grammar: `"2s"`, `"500ms"`, `"1m 30s"`, `"1.5s"`).
//! [`Cluster::settings`] returns the settings in force. The table of every
//! setting, its argument, variable and default is `docs/settings.md` in the
//! repository.
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
#[cfg(feature = "control")]
pub mod control;
pub mod memory;

pub use cluster_core::{
    is_primary, is_worker, worker, Address, Cluster, ClusterBuilder, ClusterEvent, ClusterInfo,
    Error, Events, ExitReason, Message, Phase, RestartPolicy, Settings, Signal, SignalAction,
    TaskResult, Worker, WorkerEvent, WorkerEvents, WorkerHandle, Workers, DEFAULT_SHUTDOWN_TIMEOUT,
    DRAIN_DELAY_ENV, KILL_TIMEOUT_ENV, LISTEN_TIMEOUT_ENV, MAX_RESTARTS_ENV, MIN_UPTIME_ENV,
    PIN_WORKERS_ENV, RESTART_DELAY_ENV, RESTART_ENV, SHUTDOWN_TIMEOUT_ENV, SIGNALS_ENV,
    STACK_SIZE_ENV, WAIT_READY_ENV, WORKERS_ENV,
};
#[cfg(feature = "http")]
pub use cluster_http as http;
#[cfg(feature = "macros")]
pub use cluster_macros::main;
#[cfg(feature = "net")]
pub use cluster_net as net;
#[cfg(feature = "net")]
pub use cluster_net::{Balance, ClusterBuilderExt, KernelSteering, NetConfig, Ports, WorkerExt};

/// `use cluster_thread::prelude::*;` brings the extension traits
/// (`worker.listen(...)`, `builder.from_env()`, `builder.control(...)`)
/// into scope.
pub mod prelude {
    pub use crate::memory::MemoryExt;
    #[cfg(feature = "control")]
    pub use cluster_ctl::ControlExt;
    #[cfg(feature = "net")]
    pub use cluster_net::{ClusterBuilderExt, WorkerExt};
}
