//! The cluster-wide event stream's item: [`ClusterEvent`].

use std::time::Duration;

use crate::{Address, ExitReason, Message, Phase, WorkerEvent, WorkerHandle};

/// A lifecycle event of the cluster, read from [`Cluster::events`](crate::Cluster::events).
///
/// The events of one worker always come in the order
/// `Fork → Online → (Listening | Message)* → Disconnect → Exit`, as in Node's `cluster`;
/// each reaches that worker's own stream
/// ([`WorkerHandle::events`](crate::WorkerHandle::events)) first.
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
    /// The rolling reload ended: every slot has its new worker, or `error`
    /// says why the reload stopped early (the slots not reached keep their
    /// workers).
    Reloaded {
        /// Why the reload stopped early, if it did.
        error: Option<String>,
    },
}

impl ClusterEvent {
    /// The cluster-wide form of one of `worker`'s own events.
    pub(crate) fn of(worker: WorkerHandle, event: WorkerEvent) -> ClusterEvent {
        match event {
            WorkerEvent::Fork => ClusterEvent::Fork { worker },
            WorkerEvent::Online => ClusterEvent::Online { worker },
            WorkerEvent::Ready => ClusterEvent::Ready { worker },
            WorkerEvent::Listening { address } => ClusterEvent::Listening { worker, address },
            WorkerEvent::Message { message } => ClusterEvent::Message { worker, message },
            WorkerEvent::Disconnect => ClusterEvent::Disconnect { worker },
            WorkerEvent::Exit { reason } => ClusterEvent::Exit { worker, reason },
        }
    }
}
