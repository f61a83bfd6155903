//! The settings of a cluster once built ([`Config`]), and the small types
//! every layer shares: the worker count, the shared state map, what a
//! worker or primary function may return. A leaf: it names no module that
//! runs the cluster.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::privilege::Switch;
use crate::restart::Backoff;
use crate::{Error, RestartPolicy, Signal, SignalAction};

/// State shared by every worker and the primary, one value per type
/// ([`ClusterBuilder::state`](crate::ClusterBuilder::state)).
pub(crate) type StateMap = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// How long a disconnected worker may take to finish before it is killed,
/// unless [`ClusterBuilder::shutdown_timeout`](crate::ClusterBuilder::shutdown_timeout) says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings a cluster runs with, from [`Cluster::settings`](crate::Cluster::settings)
/// (Node's `cluster.settings`): the builder's, the macro's and the
/// environment's, resolved. `docs/settings.md` lists each with its
/// builder method, macro argument, variable and default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// The workers started (`Workers::Auto` resolved); the cluster's size
    /// now is [`Cluster::size`](crate::Cluster::size).
    pub workers: usize,
    /// The worker threads' name prefix.
    pub thread_name: String,
    /// Each worker thread's stack size in bytes; `None`: Rust's default.
    pub stack_size: Option<usize>,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Delay before the second restart of a slot in a row.
    pub restart_delay: Duration,
    /// Cap of the restart delay.
    pub restart_delay_max: Duration,
    /// An uptime that resets a slot's back-off.
    pub restart_reset_after: Duration,
    /// A worker that exits before this uptime is unstable.
    pub min_uptime: Duration,
    /// Crashes on start in a row before a slot is errored.
    pub max_restarts: u32,
    /// How long a disconnected worker may take to finish.
    pub shutdown_timeout: Duration,
    /// How long a killed worker may take to reach an await.
    pub kill_timeout: Duration,
    /// How long start-up and reload wait for a worker to listen or be ready.
    pub listen_timeout: Duration,
    /// Whether a worker is ready only once it calls `Worker::ready` (PM2's `wait_ready`).
    pub wait_ready: bool,
    /// The drain delay in force ([`Cluster::set_drain_delay`](crate::Cluster::set_drain_delay) changes it).
    pub drain_delay: Duration,
    /// Whether worker threads are pinned to CPUs (false where the
    /// process's affinity could not be read).
    pub pin_workers: bool,
    /// Each signal's action.
    pub signals: Vec<(Signal, SignalAction)>,
}

impl Config {
    /// The settings in force, with the drain delay as it is now.
    pub(crate) fn settings(&self, drain_delay: Duration) -> Settings {
        Settings {
            workers: self.workers,
            thread_name: self.thread_name.clone(),
            stack_size: self.stack_size,
            restart: self.restart,
            restart_delay: self.backoff.delay,
            restart_delay_max: self.backoff.max_delay,
            restart_reset_after: self.backoff.reset_after,
            min_uptime: self.backoff.min_uptime,
            max_restarts: self.backoff.max_restarts,
            shutdown_timeout: self.shutdown_timeout,
            kill_timeout: self.kill_timeout,
            listen_timeout: self.listen_timeout,
            wait_ready: self.wait_ready,
            drain_delay,
            pin_workers: self.pin_cpus.is_some(),
            signals: self.signals.clone(),
        }
    }
}

/// How many workers a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Workers {
    /// One per available CPU (`std::thread::available_parallelism`).
    #[default]
    Auto,
    /// Exactly this many (0 is refused when the cluster is built).
    Count(usize),
}

impl From<usize> for Workers {
    fn from(n: usize) -> Self {
        Workers::Count(n)
    }
}

impl Workers {
    /// Parses `auto` or an integer, as accepted by `CLUSTER_THREAD_WORKERS`.
    pub fn parse(s: &str) -> Option<Workers> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            Some(Workers::Auto)
        } else {
            s.parse().ok().map(Workers::Count)
        }
    }

    pub(crate) fn resolve(self) -> Result<usize, Error> {
        match self {
            Workers::Auto => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Workers::Count(0) => Err(Error::ZeroWorkers),
            Workers::Count(n) => Ok(n),
        }
    }
}

/// The settings of a cluster, resolved.
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) restart: RestartPolicy,
    pub(crate) backoff: Backoff,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) kill_timeout: Duration,
    pub(crate) listen_timeout: Duration,
    /// Only `Worker::ready` makes a worker ready, not its listening.
    pub(crate) wait_ready: bool,
    pub(crate) drain_delay: Duration,
    /// Each signal's action (`Off` included).
    pub(crate) signals: Vec<(Signal, SignalAction)>,
    /// With `pin_workers`: the CPUs this process may run on, slot `i`'s
    /// worker pinned to the `i % len`-th.
    pub(crate) pin_cpus: Option<Vec<usize>>,
    /// With `user` / `group`, and not that user already: the switch made
    /// at the first `Listening`.
    pub(crate) privilege: Option<Switch>,
}

/// What a worker or primary function may return: `()` or `Result<(), E>` with
/// `E: Display` (an error ends the worker with its text).
pub trait TaskResult {
    /// `Ok` or the error's text.
    fn into_result(self) -> Result<(), String>;
}

impl TaskResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> TaskResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| format!("{e:#}"))
    }
}
