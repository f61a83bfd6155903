//! The worker's side: its identity, its link to the primary, and the
//! thread-local that makes `cluster_core::worker()` work.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::StateMap;
use crate::notice::Notice;
use crate::restart::Lifetime;
use crate::worker_events::WorkerHub;
use crate::{Address, Error, ExitReason, Message, Phase};

thread_local! {
    static CURRENT: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// True on a thread that is not a worker of a cluster (Node's `cluster.isPrimary`).
pub fn is_primary() -> bool {
    !is_worker()
}

/// True on a worker thread (Node's `cluster.isWorker`).
pub fn is_worker() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// The worker running on this thread (Node's `cluster.worker`), `None` on the primary.
pub fn worker() -> Option<Worker> {
    CURRENT.with(|c| c.borrow().clone())
}

pub(crate) fn set_current(worker: Option<Worker>) {
    CURRENT.with(|c| *c.borrow_mut() = worker);
}

/// A worker's progress, as the primary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Life {
    Starting,
    Online,
    Dead,
}

/// Cluster-wide values that companion crates (such as `cluster-net`) keep,
/// one per type.
pub(crate) type Extensions = Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>;

/// What a worker holds of its cluster: no path back to the supervisor's state.
pub(crate) struct Link {
    pub(crate) notices: mpsc::UnboundedSender<Notice>,
    /// The cluster's shutdown timeout: how long a disconnected worker has.
    pub(crate) shutdown_timeout: Duration,
    pub(crate) state: Arc<StateMap>,
    pub(crate) extensions: Extensions,
    pub(crate) phase: watch::Receiver<Phase>,
    pub(crate) alive: AtomicUsize,
    pub(crate) restarts: AtomicU64,
    /// The cluster's size in slots.
    pub(crate) slots: AtomicUsize,
}

/// A snapshot of the cluster as a whole, readable from any worker (for
/// health checks and metrics) and from the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterInfo {
    /// The cluster's phase.
    pub phase: Phase,
    /// Workers alive now.
    pub workers: usize,
    /// Restarts made by the restart policy since the start.
    pub restarts: u64,
    /// The cluster's size: its slots, live or not (slots `0..slots`).
    pub slots: usize,
}

impl Link {
    pub(crate) fn info(&self) -> ClusterInfo {
        ClusterInfo {
            phase: *self.phase.borrow(),
            workers: self.alive.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            slots: self.slots.load(Ordering::Relaxed),
        }
    }

    /// Drops every extension: a stopped cluster releases what they hold
    /// (sockets). Outside the map's lock, so that their `Drop` may use it.
    pub(crate) fn clear_extensions(&self) {
        let all = std::mem::take(
            &mut *self
                .extensions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(all);
    }

    pub(crate) fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut map = self
            .extensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(entry).downcast::<T>() {
            Ok(t) => t,
            // The map is keyed by TypeId, so the value is always a T.
            Err(_) => unreachable!("extension map holds a value of another type"),
        }
    }

    pub(crate) fn state<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        Arc::clone(self.state.get(&TypeId::of::<T>())?)
            .downcast::<T>()
            .ok()
    }
}

/// One worker, shared by its thread and the primary's handles.
pub(crate) struct WorkerCore {
    pub(crate) id: u64,
    pub(crate) slot: usize,
    pub(crate) name: String,
    pub(crate) started: Instant,
    /// The worker this one replaces in a reload, restored if this one fails to start.
    pub(crate) replaces: Option<u64>,
    /// Forked while the cluster was starting (not a restart or reload).
    pub(crate) first: bool,
    pub(crate) fork_data: Option<Message>,
    /// Restarts of this worker's slot before it.
    pub(crate) restarts: u32,
    pub(crate) thread_id: OnceLock<ThreadId>,
    /// The kernel's id of the worker thread (Linux), for its CPU time.
    pub(crate) os_tid: OnceLock<i32>,
    pub(crate) life: watch::Sender<Life>,
    /// Listening or ready was reported.
    pub(crate) ready: watch::Sender<bool>,
    /// When listening or ready was first reported.
    pub(crate) ready_at: OnceLock<Instant>,
    /// The primary asked it to finish (Node's `disconnect`).
    pub(crate) disconnect: watch::Sender<bool>,
    pub(crate) disconnect_emitted: AtomicBool,
    /// Its exit will not be restarted.
    pub(crate) retiring: AtomicBool,
    pub(crate) kill: Mutex<Option<oneshot::Sender<()>>>,
    pub(crate) inbox: mpsc::UnboundedSender<Message>,
    pub(crate) inbox_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
    /// Its own events' subscribers (`WorkerHandle::events`).
    pub(crate) events: WorkerHub,
    pub(crate) exit: OnceLock<ExitReason>,
    /// The last start-up error it reported (`hooks::fail_start`): the
    /// cluster stops with it if the worker then fails with it.
    pub(crate) start_error: Mutex<Option<String>>,
    pub(crate) link: Arc<Link>,
}

impl WorkerCore {
    pub(crate) fn life(&self) -> Life {
        *self.life.borrow()
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the worker as serving (listening or ready).
    pub(crate) fn set_ready(&self) {
        let _ = self.ready_at.set(Instant::now());
        self.ready.send_replace(true);
    }

    /// How long it ran, for the restart decision.
    pub(crate) fn lifetime(&self) -> Lifetime {
        Lifetime {
            uptime: self.started.elapsed(),
            serving: self.ready_at.get().map(Instant::elapsed),
        }
    }

    pub(crate) fn disconnect_requested(&self) -> bool {
        *self.disconnect.borrow()
    }

    pub(crate) fn take_kill(&self) -> Option<oneshot::Sender<()>> {
        self.kill
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn set_retiring(&self) {
        self.retiring.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::SeqCst)
    }

    /// Waits until the worker is online; `Err` with its exit if it died first.
    pub(crate) async fn online(&self) -> Result<(), String> {
        let mut rx = self.life.subscribe();
        match rx.wait_for(|l| *l != Life::Starting).await.map(|l| *l) {
            Ok(Life::Online) => Ok(()),
            _ => Err(self
                .exit
                .get()
                .map_or_else(|| "exited".to_owned(), |r| r.to_string())),
        }
    }

    pub(crate) async fn dead(&self) {
        let mut rx = self.life.subscribe();
        let _ = rx.wait_for(|l| *l == Life::Dead).await;
    }
}

/// The worker's own handle, inside its thread: Node's `cluster.worker`.
///
/// Cheap to clone; `Send` and `Sync`, so it can move into tasks.
#[derive(Clone)]
pub struct Worker {
    pub(crate) core: Arc<WorkerCore>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.core.id)
            .field("slot", &self.core.slot)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// The worker's id: 1, 2, 3 … in fork order, never reused.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The place this worker fills, 0 … N-1; a restarted worker keeps its
    /// predecessor's slot (PM2's `NODE_APP_INSTANCE`).
    pub fn slot(&self) -> usize {
        self.core.slot
    }

    /// How many times this worker's slot was restarted before this worker.
    pub fn restarts(&self) -> u32 {
        self.core.restarts
    }

    /// The cluster as a whole: phase, workers alive, restarts.
    pub fn cluster_info(&self) -> ClusterInfo {
        self.core.link.info()
    }

    /// The name of the worker's thread, `<prefix>-<slot>`.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The worker thread's id (Node's `worker.process.pid`).
    pub fn thread_id(&self) -> Option<ThreadId> {
        self.core.thread_id.get().copied()
    }

    /// Sends a message to the primary, where it arrives as
    /// [`ClusterEvent::Message`](crate::ClusterEvent::Message), in order.
    pub fn send<T: Any + Send + Sync>(&self, message: T) -> Result<(), Error> {
        self.core
            .link
            .notices
            .send(Notice::Message(self.core.id, Message::new(message)))
            .map_err(|_| Error::PrimaryGone { id: self.core.id })
    }

    /// The next message from the primary, in the order sent. Waits while
    /// there is none.
    pub async fn recv(&self) -> Message {
        let mut inbox = self.core.inbox_rx.lock().await;
        match inbox.recv().await {
            Some(m) => m,
            // The sender lives in `core`, which `self` keeps alive.
            None => std::future::pending().await,
        }
    }

    /// How long this worker has to finish after a disconnect before it is
    /// killed (the cluster's shutdown timeout): drains should end before it.
    pub fn shutdown_timeout(&self) -> Duration {
        self.core.link.shutdown_timeout
    }

    /// Resolves when the primary asks this worker to finish (a disconnect,
    /// a reload, a scale-down or the cluster's shutdown). The worker should
    /// then stop accepting work, finish what it has, and return.
    pub async fn disconnected(&self) {
        let mut rx = self.core.disconnect.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Resolves once the primary counts this worker as gone: it exited, or
    /// it was declared unresponsive after a kill (its thread abandoned,
    /// perhaps still running). For crates that act on a worker's behalf:
    /// `cluster-net` then gives the connections waiting for it to live
    /// workers. `Send` and `'static`, to be awaited on any runtime.
    pub(crate) fn gone(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut life = self.core.life.subscribe();
        async move {
            let _ = life.wait_for(|l| *l == Life::Dead).await;
        }
    }

    /// Disconnects this worker itself, as Node's `cluster.worker.disconnect()`:
    /// [`disconnected`](Self::disconnected) resolves as when the primary asks,
    /// the primary sees a `Disconnect` event, and the worker's exit counts as
    /// asked for ([`WorkerHandle::exited_after_disconnect`](crate::WorkerHandle::exited_after_disconnect)
    /// is true; it is not restarted).
    pub fn disconnect(&self) {
        let _ = self
            .core
            .link
            .notices
            .send(Notice::Disconnect(self.core.id));
    }

    /// False once the primary has asked this worker to finish.
    pub fn is_connected(&self) -> bool {
        !self.core.disconnect_requested()
    }

    /// Tells the primary this worker is ready to serve (PM2's
    /// `process.send('ready')`); start-up and reload wait for it.
    pub fn ready(&self) {
        let _ = self.core.link.notices.send(Notice::Ready(self.core.id));
    }

    /// Tells the primary this worker listens on `address`; emits
    /// [`ClusterEvent::Listening`](crate::ClusterEvent::Listening) and counts as ready.
    /// `cluster-net` calls it for its listeners.
    pub(crate) fn report_listening(&self, address: Address) {
        let _ = self
            .core
            .link
            .notices
            .send(Notice::Listening(self.core.id, address));
    }

    /// Records an error that every worker would hit (an address in use, a
    /// bad fd, a bad certificate). It is the worker's to handle: only if
    /// the worker then fails with it (returns an error that says it, or
    /// panics before it listened or was ready) while it counts as starting
    /// (the cluster was starting when it was forked), the cluster stops at
    /// once and [`Cluster::wait`](crate::Cluster::wait) returns
    /// [`Error::StartFailed`] with this text, rather than leaving some
    /// workers running and others crash-looping. Otherwise the worker's
    /// exit and the restart policy decide, as for any exit.
    pub(crate) fn fail_start(&self, reason: impl Into<String>) {
        *self
            .core
            .start_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
    }

    /// The state of type `T` given to [`ClusterBuilder::state`](crate::ClusterBuilder::state),
    /// shared by every worker.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.core.link.state()
    }

    /// The data given to [`Cluster::fork_with`](crate::Cluster::fork_with) for this
    /// worker's slot.
    pub fn fork_data<T: Any>(&self) -> Option<&T> {
        self.core.fork_data.as_ref()?.downcast_ref()
    }

    /// A cluster-wide value of type `T`, created on first use. For crates that
    /// extend the cluster (such as `cluster-net`, which keeps its sockets here).
    /// Dropped when the cluster stops, so that what it holds is released; a
    /// later cycle (a `fork` after the stop) starts with a fresh one.
    pub(crate) fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        self.core.link.extension()
    }
}
