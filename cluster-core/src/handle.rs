//! [`WorkerHandle`]: the primary's handle on one worker.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Weak};
use std::thread::ThreadId;

use crate::worker::{Life, WorkerCore};
use crate::{Error, ExitReason, Message, WorkerEvents};

/// What a handle asks of the cluster that forked its worker (the
/// supervisor implements it): the handle holds no path to the
/// supervisor's type, which holds handles itself.
pub(crate) trait Control: Send + Sync {
    /// Disconnects the worker, as [`WorkerHandle::disconnect`].
    fn disconnect(self: Arc<Self>, core: &Arc<WorkerCore>);
    /// Kills the worker, as [`WorkerHandle::kill`].
    fn kill(self: Arc<Self>, core: &WorkerCore);
}

/// The primary's handle on one worker: Node's `Worker` object in the primary.
///
/// Cheap to clone; stays valid after the worker exits (then it reports it dead).
#[derive(Clone)]
pub struct WorkerHandle {
    pub(crate) core: Arc<WorkerCore>,
    pub(crate) cluster: Weak<dyn Control>,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.core.id)
            .field("slot", &self.core.slot)
            .field("dead", &self.is_dead())
            .finish()
    }
}

impl PartialEq for WorkerHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }
}

impl Eq for WorkerHandle {}

impl WorkerHandle {
    /// The worker's id: 1, 2, 3 … never reused.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The worker's slot, 0 … N-1.
    pub fn slot(&self) -> usize {
        self.core.slot
    }

    /// The worker thread's id, once it runs.
    pub fn thread_id(&self) -> Option<ThreadId> {
        self.core.thread_id.get().copied()
    }

    /// The kernel's id of the worker thread (Linux only, once it runs):
    /// its CPU time is in `/proc/self/task/<tid>/stat`.
    pub fn os_tid(&self) -> Option<i32> {
        self.core.os_tid.get().copied()
    }

    /// How long ago the worker was forked.
    pub fn uptime(&self) -> std::time::Duration {
        self.core.started.elapsed()
    }

    /// How many times its slot was restarted before this worker.
    pub fn restarts(&self) -> u32 {
        self.core.restarts
    }

    /// True once the worker is online (its function runs).
    pub fn is_online(&self) -> bool {
        self.core.life() == Life::Online
    }

    /// True once the worker reported listening or
    /// [ready](crate::Worker::ready).
    pub fn is_ready(&self) -> bool {
        self.core.is_ready()
    }

    /// Waits until the worker reported listening or ready; `Err` with how
    /// it ended if it died first.
    pub async fn ready(&self) -> Result<(), String> {
        let mut ready = self.core.ready.subscribe();
        tokio::select! {
            _ = ready.wait_for(|r| *r) => Ok(()),
            () = self.core.dead() => Err(self
                .core
                .exit
                .get()
                .map_or_else(|| "exited".to_owned(), ToString::to_string)),
        }
    }

    /// Sends a message to the worker, read there with
    /// [`Worker::recv`](crate::Worker::recv). An error if the worker is dead.
    pub fn send<T: Any + Send + Sync>(&self, message: T) -> Result<(), Error> {
        self.send_message(Message::new(message))
    }

    /// Sends an already wrapped message (as [`Cluster::broadcast`](crate::Cluster::broadcast) does).
    pub fn send_message(&self, message: Message) -> Result<(), Error> {
        if self.is_dead() {
            return Err(Error::WorkerGone { id: self.core.id });
        }
        self.core
            .inbox
            .send(message)
            .map_err(|_| Error::WorkerGone { id: self.core.id })
    }

    /// Asks the worker to finish gracefully: its
    /// [`Worker::disconnected`](crate::Worker::disconnected) resolves; if it has not
    /// exited after the shutdown timeout it is killed. The slot is not refilled.
    pub fn disconnect(&self) {
        if let Some(cluster) = self.cluster.upgrade() {
            cluster.disconnect(&self.core);
        }
    }

    /// Kills the worker: its runtime is dropped at its next await. If it
    /// reaches none within the kill timeout it is reported unresponsive and its
    /// thread abandoned. The restart policy applies as to any failure.
    pub fn kill(&self) {
        if let Some(cluster) = self.cluster.upgrade() {
            cluster.kill(&self.core);
        }
    }

    /// True once the worker has exited (or was abandoned as unresponsive).
    pub fn is_dead(&self) -> bool {
        self.core.life() == Life::Dead
    }

    /// True until the worker was asked to disconnect, or died.
    pub fn is_connected(&self) -> bool {
        !self.is_dead() && !self.core.disconnect_requested()
    }

    /// True if the worker exited after [`disconnect`](Self::disconnect) (not after
    /// a kill, a crash or a return of its own), as Node's `exitedAfterDisconnect`.
    pub fn exited_after_disconnect(&self) -> bool {
        self.is_dead() && self.core.disconnect_requested()
    }

    /// How the worker ended, once it has.
    pub fn exit_reason(&self) -> Option<&ExitReason> {
        self.core.exit.get()
    }

    /// A subscription to this worker's own events, in order (Node's
    /// `worker.on(...)`): each reaches it before the cluster's
    /// [`Events`](crate::Events) sees it. Made after `fork()` (or at any
    /// time), it still starts with the worker's Fork, Online and every
    /// later event but the messages sent before it (of many Ready or
    /// Listening events, the first few); it ends after the worker's Exit.
    pub fn events(&self) -> WorkerEvents {
        self.core.events.subscribe()
    }

    /// Waits until the worker is online; `Err` with how it ended if it died first.
    pub async fn online(&self) -> Result<(), String> {
        self.core.online().await
    }

    /// Waits until the worker has exited.
    pub async fn exited(&self) {
        self.core.dead().await
    }
}
