//! Node.js's `cluster` module, for threads, in Rust.
#![warn(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use cluster_core::{
    is_primary, is_worker, worker, Address, Cluster, ClusterBuilder, ClusterEvent, Error, Events,
    ExitReason, Message, Phase, RestartPolicy, TaskResult, Worker, WorkerHandle, Workers,
    WORKERS_ENV,
};
#[cfg(feature = "macros")]
pub use cluster_macros::main;
