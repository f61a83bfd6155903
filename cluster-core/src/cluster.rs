//! [`Cluster`]: the primary's handle, over the supervisor; it starts the
//! cluster (signals, the supervisor's task, the start hooks) and obeys
//! what the signals ask.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

use crate::config::{Config, StateMap};
use crate::notice::Notice;
use crate::signals::{Order, ShutdownFuture, Signals};
use crate::supervisor::{supervise, SlotStatus, Supervisor};
use crate::thread::WorkerFn;
use crate::{ClusterInfo, Error, Events, Message, Phase, Settings, TaskResult, WorkerHandle};

/// Run on the primary as the cluster starts ([`ClusterBuilder::on_start`](crate::ClusterBuilder::on_start)).
pub(crate) type StartHook = Box<dyn FnOnce(&Cluster) + Send>;
/// What [`SignalAction::Upgrade`](crate::SignalAction::Upgrade) runs
/// ([`ClusterBuilder::on_upgrade`](crate::ClusterBuilder::on_upgrade)).
pub(crate) type UpgradeHook =
    Arc<dyn Fn(Cluster) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The primary's handle on a cluster of worker threads: Node's `cluster` in the primary.
///
/// Cheap to clone. Create it with [`Cluster::builder`].
///
/// ```
/// use cluster_core::{Cluster, ClusterEvent};
///
/// # fn main() -> Result<(), cluster_core::Error> {
/// Cluster::builder()
///     .workers(2)
///     .signals(false)
///     .run_with_primary(
///         |worker| async move {
///             // Each worker answers the primary's question with its slot.
///             let question = worker.recv().await;
///             let n = question.downcast_ref::<u32>().copied().unwrap_or(0);
///             worker.send(n + worker.slot() as u32)
///         },
///         |cluster| async move {
///             let mut events = cluster.events();
///             cluster.broadcast(40u32);
///             let mut answers = 0;
///             while let Some(event) = events.recv().await {
///                 if let ClusterEvent::Message { message, .. } = event {
///                     assert!(message.downcast_ref::<u32>().is_some());
///                     answers += 1;
///                     if answers == 2 {
///                         cluster.disconnect().await;
///                     }
///                 }
///             }
///         },
///     )
/// # }
/// ```
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Supervisor>,
    pending: Arc<Mutex<Option<Pending>>>,
}

/// What the builder gives the start, beside the config.
pub(crate) struct Start {
    pub(crate) shutdown_signal: Option<ShutdownFuture>,
    pub(crate) on_start: Vec<StartHook>,
    pub(crate) on_upgrade: Option<UpgradeHook>,
}

/// What `start` consumes.
struct Pending {
    notices: mpsc::UnboundedReceiver<Notice>,
    start: Start,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("size", &self.size())
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn new(
        config: Config,
        body: WorkerFn,
        state: Arc<StateMap>,
        start: Start,
    ) -> Cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        Cluster {
            inner: Arc::new(Supervisor::new(config, body, tx, state)),
            pending: Arc::new(Mutex::new(Some(Pending { notices: rx, start }))),
        }
    }

    /// Starts the cluster on the current tokio runtime (the primary's) and
    /// forks its workers. Returns at once; see [`wait`](Self::wait).
    pub fn start(&self) -> Result<(), Error> {
        let rt = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let Pending { notices, start } = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(Error::AlreadyStarted)?;
        if cfg!(panic = "abort") {
            tracing::error!("built with panic = \"abort\": a panic in any worker will abort the whole process instead of restarting that worker");
        }
        let inner = &self.inner;
        let _ = inner.runtime.set(rt.clone());
        let signals = Signals::install(&inner.config.signals)?;
        if signals.any() || start.shutdown_signal.is_some() {
            let mut phases = self.phases();
            let stopped = async move {
                phases.wait_for(|p| *p == Phase::Stopped).await;
            };
            let (cluster, on_upgrade) = (self.clone(), start.on_upgrade);
            let obey = move |order| cluster.obey(order, on_upgrade.as_ref());
            rt.spawn(signals.watch(stopped, start.shutdown_signal, obey));
        }
        rt.spawn(supervise(Arc::downgrade(inner), notices));
        for hook in start.on_start {
            hook(self);
        }
        inner.start_workers()
    }

    /// Does what a signal asks, in a task of its own.
    fn obey(&self, order: Order, on_upgrade: Option<&UpgradeHook>) {
        let cluster = self.clone();
        match order {
            Order::Stop { graceful } => {
                tokio::spawn(async move { cluster.stop(graceful).await });
            }
            Order::Reload => {
                tokio::spawn(async move {
                    if let Err(e) = cluster.reload().await {
                        tracing::error!(error = %e, "reload failed");
                    }
                });
            }
            Order::Upgrade(sig) => match on_upgrade {
                Some(handler) => {
                    tracing::info!("{sig}: upgrading");
                    tokio::spawn(handler(cluster));
                }
                None => tracing::warn!("{sig} ignored: this program has no hot upgrade (see cluster_net::ClusterBuilderExt::hot_upgrade)"),
            },
        }
    }

    /// Runs the cluster on a new current-thread runtime on this thread until it
    /// stops, with `primary` beside it. [`ClusterBuilder::run`](crate::ClusterBuilder::run) is the usual way in.
    pub fn run<P, PFut>(self, primary: P) -> Result<(), Error>
    where
        P: FnOnce(Cluster) -> PFut,
        PFut: Future + 'static,
        PFut::Output: TaskResult,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let local = LocalSet::new();
        local.block_on(&rt, async move {
            let primary = primary(self.clone());
            self.start()?;
            let cluster = self.clone();
            let primary = tokio::task::spawn_local(async move {
                if let Err(e) = primary.await.into_result() {
                    tracing::error!(error = %e, "the primary function failed; stopping the cluster");
                    cluster.inner.lock().primary_error = Some(e);
                    cluster.inner.begin_stop(true);
                }
            });
            let result = self.wait().await;
            // Let the primary read the last events (its `events()` ends now);
            // one that loops on something else is cut off after the kill timeout.
            let grace = self.inner.config.kill_timeout;
            if tokio::time::timeout(grace, primary).await.is_err() {
                tracing::debug!(?grace, "the primary function did not return after the cluster stopped; dropping it");
            }
            result.and_then(|()| self.primary_result())
        })
    }

    /// Waits until the cluster has stopped. An error if it stopped because
    /// start-up failed, slots errored, or the primary function failed.
    pub async fn wait(&self) -> Result<(), Error> {
        let mut phases = self.phases();
        let _ = phases.wait_for(|p| *p == Phase::Stopped).await;
        self.primary_result()?;
        let st = self.inner.lock();
        let slots: Vec<_> = (0..st.slots.len())
            .filter(|&i| st.slots[i].status == SlotStatus::Errored)
            .collect();
        if slots.is_empty() || st.stopping {
            Ok(())
        } else {
            Err(Error::Errored {
                slots,
                max_restarts: self.inner.config.backoff.max_restarts,
            })
        }
    }

    fn primary_result(&self) -> Result<(), Error> {
        if let Some(e) = self.inner.privilege_error() {
            return Err(e);
        }
        let st = self.inner.lock();
        if let Some((id, slot, reason)) = &st.start_error {
            return Err(Error::StartFailed {
                id: *id,
                slot: *slot,
                reason: reason.clone(),
            });
        }
        match &st.primary_error {
            Some(e) => Err(Error::Primary(e.clone())),
            None => Ok(()),
        }
    }

    /// A subscription to the cluster's events. The first subscription also
    /// gets the events since the cluster was built, or since the cycle began
    /// for a fork after a stop (up to 1024), so a primary that subscribes
    /// late still sees every fork. A subscription made while the cluster is
    /// stopped ends at once: subscribe after the `fork` of a new cycle.
    pub fn events(&self) -> Events {
        self.inner.events.subscribe()
    }

    /// A subscription to the events from now on, leaving the backlog to the
    /// first [`events`](Self::events): for a library's watcher that must not
    /// take the user's history.
    pub(crate) fn later_events(&self) -> Events {
        self.inner.events.subscribe_later()
    }

    /// The live workers, by slot.
    pub fn workers(&self) -> Vec<WorkerHandle> {
        let st = self.inner.lock();
        let mut workers: Vec<_> = st.workers.values().map(|c| self.inner.handle(c)).collect();
        workers.sort_by_key(|w| (w.slot(), w.id()));
        workers
    }

    /// The live worker with this id.
    pub fn worker(&self, id: u64) -> Option<WorkerHandle> {
        let st = self.inner.lock();
        st.workers.get(&id).map(|c| self.inner.handle(c))
    }

    /// The number of slots: the size the cluster keeps itself at.
    pub fn size(&self) -> usize {
        self.inner.lock().slots.len()
    }

    /// Forks one more worker into a new slot (Node's `cluster.fork()`).
    pub fn fork(&self) -> Result<WorkerHandle, Error> {
        self.fork_slot_with(None)
    }

    /// Forks one more worker into a new slot; `data` is readable there with
    /// [`Worker::fork_data`](crate::Worker::fork_data), also by the slot's
    /// restarted workers (Node's `cluster.fork(env)`).
    pub fn fork_with<T: Any + Send + Sync>(&self, data: T) -> Result<WorkerHandle, Error> {
        self.fork_slot_with(Some(Message::new(data)))
    }

    fn fork_slot_with(&self, data: Option<Message>) -> Result<WorkerHandle, Error> {
        self.inner.fork_new_slot(data)
    }

    /// Sends a message to every live worker; returns how many got it. The
    /// value is shared, not copied.
    pub fn broadcast<T: Any + Send + Sync>(&self, message: T) -> usize {
        let message = Message::new(message);
        self.workers()
            .iter()
            .filter(|w| w.send_message(message.clone()).is_ok())
            .count()
    }

    /// The cluster as a whole: phase, workers alive, restarts.
    pub fn info(&self) -> ClusterInfo {
        self.inner.link.info()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.inner.phase.borrow()
    }

    /// A subscription to the phase: read it, or wait for a phase.
    pub fn phases(&self) -> Phases {
        Phases(self.inner.phase.subscribe())
    }

    /// The shared state of type `T` (see [`ClusterBuilder::state`](crate::ClusterBuilder::state)).
    pub fn state<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.link.state()
    }

    /// The cluster-wide extension value of type `T` (see
    /// [`Worker::extension`](crate::Worker::extension)).
    pub(crate) fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        self.inner.link.extension()
    }

    /// Stops the cluster gracefully and waits until it has (Node's
    /// `cluster.disconnect()`): the phase is draining at once; after the
    /// [drain delay](crate::ClusterBuilder::drain_delay), if any, every worker is
    /// disconnected, and killed if it has not finished within the shutdown
    /// timeout.
    pub async fn disconnect(&self) {
        self.stop(true).await;
    }

    /// As [`disconnect`](Self::disconnect), without the
    /// [drain delay](crate::ClusterBuilder::drain_delay): for when another process
    /// goes on serving the same sockets, as after a hot upgrade.
    pub async fn disconnect_without_delay(&self) {
        self.inner.begin_stop_after(true, std::time::Duration::ZERO);
        let mut phases = self.phases();
        let _ = phases.wait_for(|p| *p == Phase::Stopped).await;
    }

    /// Stops the cluster and waits until it has: gracefully as
    /// [`disconnect`](Self::disconnect), or at once (every worker killed).
    pub async fn stop(&self, graceful: bool) {
        self.inner.begin_stop(graceful);
        let mut phases = self.phases();
        let _ = phases.wait_for(|p| *p == Phase::Stopped).await;
    }

    /// Replaces every worker, one slot at a time: the new worker must be
    /// online (and listening or ready, if the one it replaces was; up to the
    /// listen timeout) before the old one is disconnected. Returns when every
    /// old worker has exited. SIGHUP does the same. Emits
    /// [`ClusterEvent::Reloading`](crate::ClusterEvent::Reloading) before and
    /// [`ClusterEvent::Reloaded`](crate::ClusterEvent::Reloaded) after.
    pub async fn reload(&self) -> Result<(), Error> {
        self.inner.reload(1).await
    }

    /// As [`reload`](Self::reload), `parallel` slots at a time: their new
    /// workers start together, and each old one is disconnected once its
    /// replacement is online (and ready, if it was). Faster for a large
    /// pool, with `parallel` fewer workers serving meanwhile.
    pub async fn reload_parallel(&self, parallel: usize) -> Result<(), Error> {
        self.inner.reload(parallel).await
    }

    /// Replaces the worker of one slot gracefully, as one slot of a
    /// [`reload`](Self::reload): the new worker starts (and listens, if the
    /// old one did) before the old one is disconnected and drains. Returns
    /// when the old worker has exited; waits for a reload under way first.
    /// An error if the slot has no live worker.
    pub async fn restart_slot(&self, slot: usize) -> Result<(), Error> {
        self.inner.restart_slot(slot).await
    }

    /// The settings in force (Node's `cluster.settings`): the builder's,
    /// the macro's and the environment's, resolved at `build`.
    pub fn settings(&self) -> Settings {
        self.inner.config.settings(self.inner.drain_delay())
    }

    /// The [drain delay](crate::ClusterBuilder::drain_delay) in force.
    pub fn drain_delay(&self) -> std::time::Duration {
        self.inner.drain_delay()
    }

    /// Changes the [drain delay](crate::ClusterBuilder::drain_delay) of the
    /// graceful stops to come (not of one already waiting).
    pub fn set_drain_delay(&self, delay: std::time::Duration) {
        self.inner.set_drain_delay(delay);
    }

    /// Grows or shrinks the cluster to `workers` slots. New workers are forked
    /// into new slots; the highest slots' workers are disconnected. Returns
    /// when the new ones are online and the removed ones have exited.
    pub async fn scale(&self, workers: usize) -> Result<(), Error> {
        self.inner.scale(workers).await
    }
}

/// A subscription to a cluster's phase, from [`Cluster::phases`].
#[derive(Debug, Clone)]
pub struct Phases(watch::Receiver<Phase>);

impl Phases {
    /// The phase now.
    pub fn current(&self) -> Phase {
        *self.0.borrow()
    }

    /// Waits until the phase satisfies `f` (at once if it does now) and
    /// returns it.
    pub async fn wait_for(&mut self, f: impl FnMut(&Phase) -> bool) -> Phase {
        let reached = self.0.wait_for(f).await.map(|p| *p);
        // The cluster is gone: its last phase stays.
        reached.unwrap_or_else(|_| self.current())
    }

    /// Waits for the next change; `None` once the cluster is gone.
    pub async fn changed(&mut self) -> Option<Phase> {
        self.0.changed().await.ok()?;
        Some(*self.0.borrow_and_update())
    }
}
