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
/// Listeners: shared and per-worker ports, balance modes, fds (the `cluster-net` crate).
#[cfg(feature = "net")]
pub use cluster_net as net;
#[cfg(feature = "net")]
pub use cluster_net::{Balance, Listener, NetConfig, Ports, WorkerExt};

/// `use cluster_thread::prelude::*;` brings the extension traits
/// (`worker.listen(...)`) into scope.
pub mod prelude {
    #[cfg(feature = "net")]
    pub use cluster_net::WorkerExt;
}
