//! The settings of a cluster once built ([`Config`]), and the small types
//! every layer shares: the worker count, the shared state map, what a
//! worker or primary function may return. A leaf: it names no module that
//! runs the cluster.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::restart::Backoff;
use crate::{Error, RestartPolicy, Signal, SignalAction};

/// State shared by every worker and the primary, one value per type
/// ([`ClusterBuilder::state`](crate::ClusterBuilder::state)).
pub(crate) type StateMap = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// How long a disconnected worker may take to finish before it is killed,
/// unless [`ClusterBuilder::shutdown_timeout`] says otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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
