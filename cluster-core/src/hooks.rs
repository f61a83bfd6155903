//! What the crates that extend the cluster (`cluster-net`, `cluster-http`)
//! need of the core and its users do not. Hidden from the docs; it changes
//! without notice.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use crate::{Address, Cluster, ClusterBuilder, ClusterEvent, Events, Worker, WorkerHandle};

pub use crate::exits::LastFailures;
pub use crate::memory::WorkerMemory;
pub use crate::thread::panic_message;

/// Tells the primary that `worker` listens on `address`: emits
/// `ClusterEvent::Listening`, and counts as ready.
pub fn report_listening(worker: &Worker, address: Address) {
    worker.report_listening(address);
}

/// Records an error that every worker would hit (an address in use, a bad
/// setting). It is the worker's to handle: only if the worker then fails
/// with it (returns an error saying it, or panics before it listened or
/// was ready) while it counts as starting is the cluster stopped, and
/// `Cluster::wait` returns `Error::StartFailed` with this text.
pub fn fail_start(worker: &Worker, reason: impl Into<String>) {
    worker.fail_start(reason);
}

/// The cluster-wide value of type `T`, created on first use, dropped when
/// the cluster stops (so what it holds is released).
pub fn extension<T: Any + Send + Sync + Default>(worker: &Worker) -> Arc<T> {
    worker.extension()
}

/// [`extension`], from the primary.
pub fn cluster_extension<T: Any + Send + Sync + Default>(cluster: &Cluster) -> Arc<T> {
    cluster.extension()
}

/// Resolves once the primary counts `worker` as gone (exited, or declared
/// unresponsive, its thread perhaps still running). `Send` and `'static`.
pub fn gone(worker: &Worker) -> impl Future<Output = ()> + Send + 'static {
    worker.gone()
}

/// A subscription to the cluster's events that leaves the backlog to the
/// user's first `Cluster::events`.
pub fn later_events(cluster: &Cluster) -> Events {
    cluster.later_events()
}

/// Emits [`ClusterEvent::MemoryLimit`]: `worker` uses `bytes`, over `limit`.
pub fn report_memory_limit(cluster: &Cluster, worker: WorkerHandle, bytes: u64, limit: u64) {
    cluster.inner.events.emit(ClusterEvent::MemoryLimit {
        worker,
        bytes,
        limit,
    });
}

/// The state of type `T` given to `builder` so far: for a facade that
/// reads what a user's `setup` put there.
pub fn builder_state<T: Any + Send + Sync>(builder: &ClusterBuilder) -> Option<Arc<T>> {
    builder.state_of()
}

/// The uid and gid the process will switch to once the cluster listens
/// (the privilege drop `builder` asks for), or `None` when it keeps its
/// own: for what must belong to the user the process serves as (the
/// control directory).
pub fn switch_target(builder: &ClusterBuilder) -> Option<(u32, u32)> {
    builder.switch_target()
}
