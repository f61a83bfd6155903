use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Message, WorkerHandle};

/// A lifecycle event of the cluster, read from [`Cluster::events`](crate::Cluster::events).
///
/// The events of one worker always come in the order
/// `Fork → Online → (Listening | Message)* → Disconnect → Exit`, as in Node's `cluster`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A worker thread was started.
    Fork {
        /// The new worker.
        worker: WorkerHandle,
    },
    /// The worker's runtime is up and its function is about to run.
    Online {
        /// The worker.
        worker: WorkerHandle,
    },
    /// The worker called [`Worker::ready`](crate::Worker::ready).
    Ready {
        /// The worker.
        worker: WorkerHandle,
    },
    /// The worker listens on an address (reported by `cluster-net`).
    Listening {
        /// The worker.
        worker: WorkerHandle,
        /// The address really bound (port 0 resolved).
        address: Address,
    },
    /// The worker sent a message to the primary.
    Message {
        /// The sender.
        worker: WorkerHandle,
        /// The message.
        message: Message,
    },
    /// The worker was asked to stop, or is about to exit.
    Disconnect {
        /// The worker.
        worker: WorkerHandle,
    },
    /// The worker has exited; `reason` says how.
    Exit {
        /// The worker.
        worker: WorkerHandle,
        /// How it ended.
        reason: ExitReason,
    },
    /// A replacement for an exited worker will be forked after `delay`.
    Restarting {
        /// The slot to refill.
        slot: usize,
        /// The back-off delay before the fork.
        delay: Duration,
    },
    /// A slot's workers kept crashing within `min_uptime`; it is no longer restarted.
    Errored {
        /// The slot.
        slot: usize,
        /// How many restarts were made before giving up.
        restarts: u32,
        /// How the last worker ended.
        last: ExitReason,
    },
    /// The cluster entered a new phase.
    Phase(Phase),
    /// A rolling reload ([`Cluster::reload`](crate::Cluster::reload), SIGHUP)
    /// began.
    Reloading,
    /// A worker's memory went over the cluster's `max_memory` (reported by
    /// the facade's `jemalloc` feature, which knows each worker's memory):
    /// it is replaced gracefully, as by
    /// [`Cluster::restart_slot`](crate::Cluster::restart_slot).
    MemoryLimit {
        /// The worker over the limit.
        worker: WorkerHandle,
        /// Its memory, in bytes, when it was found over.
        bytes: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The rolling reload ended: every slot has its new worker, or `error`
    /// says why the reload stopped early (the slots not reached keep their
    /// workers).
    Reloaded {
        /// Why the reload stopped early, if it did.
        error: Option<String>,
    },
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// Its function returned `()` or `Ok(())`.
    Returned,
    /// Its function returned an error; the text is the error's `Display` (`{:#}`).
    Error(String),
    /// Its function panicked; the text is the panic payload.
    Panicked(String),
    /// It was killed: its runtime was dropped at its next await.
    Killed,
    /// It did not stop within the kill timeout; its thread was abandoned.
    Unresponsive,
}

impl ExitReason {
    /// True for `Returned` only.
    pub fn is_success(&self) -> bool {
        matches!(self, ExitReason::Returned)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Returned => f.write_str("returned"),
            ExitReason::Error(e) => write!(f, "returned an error: {e}"),
            ExitReason::Panicked(p) => write!(f, "panicked: {p}"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Unresponsive => f.write_str("unresponsive after kill; thread abandoned"),
        }
    }
}

/// The phases a cluster moves through, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Workers are being forked.
    Starting,
    /// Every worker is online and listening (or ready); the cluster serves.
    Listening,
    /// Workers were asked to stop and are finishing their work.
    Draining,
    /// The shutdown deadline passed (or an immediate stop was asked): workers are killed.
    Stopping,
    /// Every worker has exited.
    Stopped,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Listening => "listening",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        })
    }
}

/// An address a worker listens on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP socket.
    Tcp(SocketAddr),
    /// A UDP socket.
    Udp(SocketAddr),
    /// A Unix-domain socket.
    Unix(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Udp(a) => write!(f, "udp://{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}
