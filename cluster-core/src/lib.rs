//! The core of `cluster_thread`: a primary that supervises worker threads, as
//! Node.js's `cluster` module supervises worker processes. No sockets here
//! (see `cluster-net`).
//!
//! Each worker is a named OS thread running its own tokio current-thread
//! runtime and `LocalSet`; its future is built inside its thread, so it need
//! not be `Send`. The primary runs on the thread that calls
//! [`ClusterBuilder::run`] (or on any tokio runtime with [`Cluster::start`]):
//! it forks the workers, restarts them by policy with back-off, sends and
//! receives typed messages, reloads them one by one, scales the pool, and acts
//! on signals (SIGTERM / SIGINT stop, SIGHUP reloads; each configurable).
//!
//! ```no_run
//! use cluster_core::{Cluster, ClusterEvent};
//!
//! fn main() -> Result<(), cluster_core::Error> {
//!     Cluster::builder().workers(4).run_with_primary(
//!         |worker| async move {
//!             // One per worker thread. Stop when the primary says so.
//!             worker.send(format!("worker {} up in slot {}", worker.id(), worker.slot()))?;
//!             worker.disconnected().await;
//!             Ok::<_, cluster_core::Error>(())
//!         },
//!         |cluster| async move {
//!             let mut events = cluster.events();
//!             while let Some(event) = events.recv().await {
//!                 if let ClusterEvent::Message { message, .. } = event {
//!                     println!("{}", message.downcast_ref::<String>().unwrap());
//!                 }
//!             }
//!         },
//!     )
//! }
//! ```
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod affinity;
mod builder;
mod cluster;
mod config;
mod env;
mod error;
mod event;
mod exits;
mod handle;
#[doc(hidden)]
pub mod hooks;
mod hub;
mod lifecycle;
mod memory;
mod message;
mod notice;
mod privilege;
mod restart;
mod signals;
mod supervisor;
mod thread;
mod worker;
mod worker_events;

pub use builder::ClusterBuilder;
pub use cluster::{Cluster, Phases};
pub use config::{Settings, TaskResult, Workers, DEFAULT_SHUTDOWN_TIMEOUT};
pub use env::{
    DRAIN_DELAY_ENV, GROUP_ENV, KILL_TIMEOUT_ENV, LISTEN_TIMEOUT_ENV, MAX_RESTARTS_ENV,
    MIN_UPTIME_ENV, PIN_WORKERS_ENV, RESTART_DELAY_ENV, RESTART_ENV, SHUTDOWN_TIMEOUT_ENV,
    SIGNALS_ENV, STACK_SIZE_ENV, USER_ENV, WAIT_READY_ENV, WORKERS_ENV,
};
pub use error::Error;
pub use event::ClusterEvent;
pub use handle::WorkerHandle;
pub use hub::Events;
pub use lifecycle::{Address, ExitReason, Phase};
pub use message::Message;
pub use restart::RestartPolicy;
pub use signals::{Signal, SignalAction};
pub use worker::{is_primary, is_worker, worker, ClusterInfo, Worker};
pub use worker_events::{WorkerEvent, WorkerEvents};
