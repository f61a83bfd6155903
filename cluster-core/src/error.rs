use std::time::Duration;

/// Everything that can go wrong in `cluster-core`.
///
/// Each message names the setting, worker or slot at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `workers(0)` was asked for.
    #[error("invalid setting `workers = 0`: a cluster needs at least one worker")]
    ZeroWorkers,
    /// An environment variable the cluster reads holds a value it cannot use.
    #[error("invalid environment variable {name}={value:?}: expected {expected}")]
    BadEnv {
        /// The variable, e.g. `CLUSTER_THREAD_WORKERS`.
        name: &'static str,
        /// The value found.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A duration setting is out of range.
    #[error("invalid setting `{setting} = {value:?}`: {reason}")]
    BadDuration {
        /// The setting, e.g. `shutdown_timeout`.
        setting: &'static str,
        /// The value given.
        value: Duration,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `user` or `group` setting cannot be used: no such name, or a
    /// switch to it asked for while the process is not root.
    #[error("invalid setting `{setting} = {value:?}`: {reason}")]
    BadIdentity {
        /// The setting, `user` or `group`, or the variable that set it
        /// (`CLUSTER_THREAD_USER`, `CLUSTER_THREAD_GROUP`).
        setting: &'static str,
        /// The name given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The switch to the `user` / `group` failed once the cluster was
    /// listening; the cluster was stopped.
    #[error("could not switch the process to {settings}: {call} failed: {source}")]
    PrivilegeDrop {
        /// The settings asked for, e.g. `user = "www-data"`.
        settings: String,
        /// The call that failed: `initgroups`, `setgroups`, `setgid` or `setuid`.
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The OS refused to start a worker thread.
    #[error("could not spawn worker thread `{name}`: {source}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The primary's tokio runtime could not be built.
    #[error("could not build the primary's tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// `Cluster::start` was called outside a tokio runtime.
    #[error("Cluster::start must be called from inside a tokio runtime (use ClusterBuilder::run otherwise)")]
    NoRuntime,
    /// `Cluster::start` was called twice.
    #[error("the cluster was already started")]
    AlreadyStarted,
    /// A signal handler could not be installed.
    #[error("could not install the {signal} handler: {source}")]
    Signal {
        /// The signal, e.g. `SIGTERM`.
        signal: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A message was sent to a worker that has exited.
    #[error("worker {id} is dead: message not delivered")]
    WorkerGone {
        /// The worker's id.
        id: u64,
    },
    /// A worker sent a message after its cluster stopped.
    #[error("the primary is gone: message from worker {id} not delivered")]
    PrimaryGone {
        /// The sending worker's id.
        id: u64,
    },
    /// The cluster is stopping and refuses new work.
    #[error("the cluster is stopping: cannot {action}")]
    Stopping {
        /// What was refused, e.g. `fork a worker`.
        action: &'static str,
    },
    /// A rolling reload stopped because a new worker never came online.
    #[error("reload stopped at slot {slot}: new worker {id} did not start ({reason}); the old worker keeps serving")]
    Reload {
        /// The slot being replaced.
        slot: usize,
        /// The new worker's id.
        id: u64,
        /// What happened to it.
        reason: String,
    },
    /// A slot to restart has no live worker (out of range, or waiting for
    /// its restart).
    #[error("slot {slot} has no live worker (the cluster has {size} slots)")]
    NoWorker {
        /// The slot asked for.
        slot: usize,
        /// The cluster's size.
        size: usize,
    },
    /// Slots crashed more than `max_restarts` times in a row, each within `min_uptime`.
    #[error("slot(s) {slots:?} errored: their workers crashed more than max_restarts = {max_restarts} times within min_uptime")]
    Errored {
        /// The errored slots.
        slots: Vec<usize>,
        /// The `max_restarts` setting.
        max_restarts: u32,
    },
    /// A worker hit an error during start-up that every worker would hit
    /// (such as an address in use); the cluster was stopped.
    #[error("start-up failed in worker {id} (slot {slot}): {reason}")]
    StartFailed {
        /// The worker's id.
        id: u64,
        /// Its slot.
        slot: usize,
        /// The error.
        reason: String,
    },
    /// The primary function given to `run_with_primary` failed.
    #[error("the primary function failed: {0}")]
    Primary(String),
}
