use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

use crate::config::{Config, ShutdownFuture, StartHook, StateMap, WorkerFn};
use crate::supervisor::{supervise, Inner, SlotStatus};
use crate::worker::Notice;
use crate::{
    ClusterBuilder, ClusterEvent, ClusterInfo, Error, Events, Message, Phase, TaskResult,
    WorkerHandle,
};

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
    pub(crate) inner: Arc<Inner>,
    start: Arc<Mutex<Option<Start>>>,
}

/// What `start` consumes.
struct Start {
    notices: mpsc::UnboundedReceiver<Notice>,
    shutdown_signal: Option<ShutdownFuture>,
    on_start: Vec<StartHook>,
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
    /// Settings for a new cluster.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    pub(crate) fn new(
        config: Config,
        body: WorkerFn,
        shutdown_signal: Option<ShutdownFuture>,
        on_start: Vec<StartHook>,
        state: Arc<StateMap>,
    ) -> Cluster {
        let (tx, rx) = mpsc::unbounded_channel();
        Cluster {
            inner: Arc::new(Inner::new(config, body, tx, state)),
            start: Arc::new(Mutex::new(Some(Start {
                notices: rx,
                shutdown_signal,
                on_start,
            }))),
        }
    }

    /// Starts the cluster on the current tokio runtime (the primary's) and
    /// forks its workers. Returns at once; see [`wait`](Self::wait).
    pub fn start(&self) -> Result<(), Error> {
        let rt = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let start = self
            .start
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or(Error::AlreadyStarted)?;
        if cfg!(panic = "abort") {
            tracing::error!("built with panic = \"abort\": a panic in any worker will abort the whole process instead of restarting that worker");
        }
        let inner = &self.inner;
        let _ = inner.runtime.set(rt.clone());
        if inner.config.signals || start.shutdown_signal.is_some() {
            let signals = crate::signals::Signals::install(inner.config.signals)?;
            rt.spawn(signals.watch(self.clone(), start.shutdown_signal));
        }
        rt.spawn(supervise(Arc::clone(inner), start.notices));
        for hook in start.on_start {
            hook(self);
        }
        {
            let mut st = inner.lock();
            for slot in 0..inner.config.workers {
                let new_slot = inner.new_slot();
                st.slots.push(new_slot);
                if let Err(e) = inner.fork_slot(&mut st, slot, None) {
                    drop(st);
                    inner.begin_stop(false);
                    return Err(e);
                }
            }
        }
        let notices = inner.link.notices.clone();
        let timeout = inner.config.listen_timeout;
        rt.spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = notices.send(Notice::StartTimeout);
        });
        Ok(())
    }

    /// Runs the cluster on a new current-thread runtime on this thread until it
    /// stops, with `primary` beside it. [`ClusterBuilder::run`] is the usual way in.
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
    /// gets the events since the cluster was built (up to 1024), so a primary
    /// that subscribes late still sees every fork.
    pub fn events(&self) -> Events {
        self.inner.events.subscribe()
    }

    /// A subscription to the events from now on, leaving the backlog to the
    /// first [`events`](Self::events): for a library's watcher that must not
    /// take the user's history.
    pub fn later_events(&self) -> Events {
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
        let inner = &self.inner;
        if inner.runtime.get().is_none() {
            return Err(Error::Stopping {
                action: "fork a worker before the cluster is started",
            });
        }
        let mut st = inner.lock();
        if st.stopping {
            return Err(Error::Stopping {
                action: "fork a worker",
            });
        }
        let mut slot = inner.new_slot();
        slot.fork_data = data;
        st.slots.push(slot);
        let index = st.slots.len() - 1;
        let result = inner.fork_slot(&mut st, index, None);
        if result.is_err() {
            st.slots.pop();
        }
        result
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

    /// A receiver that sees every later phase change.
    pub fn phases(&self) -> watch::Receiver<Phase> {
        self.inner.phase.subscribe()
    }

    /// The shared state of type `T` (see [`ClusterBuilder::state`]).
    pub fn state<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.link.state()
    }

    /// The cluster-wide extension value of type `T` (see
    /// [`Worker::extension`](crate::Worker::extension)).
    pub fn extension<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        self.inner.link.extension()
    }

    /// Stops the cluster gracefully and waits until it has (Node's
    /// `cluster.disconnect()`): the phase is draining at once; after the
    /// [drain delay](ClusterBuilder::drain_delay), if any, every worker is
    /// disconnected, and killed if it has not finished within the shutdown
    /// timeout.
    pub async fn disconnect(&self) {
        self.stop(true).await;
    }

    /// As [`disconnect`](Self::disconnect), without the
    /// [drain delay](ClusterBuilder::drain_delay): for when another process
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
        let inner = &self.inner;
        let _one_at_a_time = inner.reload_lock.lock().await;
        if inner.lock().stopping {
            return Err(Error::Stopping { action: "reload" });
        }
        inner.events.emit(ClusterEvent::Reloading);
        tracing::info!("rolling reload: replacing the workers one slot at a time");
        let result = self.reload_slots().await;
        match &result {
            Ok(()) => tracing::info!("rolling reload done"),
            Err(e) => tracing::warn!(error = %e, "rolling reload stopped"),
        }
        inner.events.emit(ClusterEvent::Reloaded {
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    async fn reload_slots(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let mut old_workers = Vec::new();
        let size = self.size();
        for slot in 0..size {
            let (old, new) = {
                let mut st = inner.lock();
                if st.stopping {
                    return Err(Error::Stopping { action: "reload" });
                }
                let Some(old) = st
                    .slots
                    .get(slot)
                    .and_then(|s| s.current)
                    .and_then(|id| st.workers.get(&id).cloned())
                else {
                    continue;
                };
                let new = inner.fork_slot(&mut st, slot, Some(old.id))?;
                (old, new)
            };
            let listen_timeout = inner.config.listen_timeout;
            let online = tokio::time::timeout(listen_timeout, new.online()).await;
            let failure = match online {
                Ok(Ok(())) => None,
                Ok(Err(reason)) => Some(reason),
                Err(_) => Some(format!(
                    "not online within listen_timeout = {listen_timeout:?}"
                )),
            };
            if let Some(reason) = failure {
                new.kill();
                return Err(Error::Reload {
                    slot,
                    id: new.id(),
                    reason,
                });
            }
            if old.is_ready() {
                let mut ready = new.core.ready.subscribe();
                tokio::select! {
                    _ = ready.wait_for(|r| *r) => {}
                    () = new.core.dead() => {
                        return Err(Error::Reload {
                            slot,
                            id: new.id(),
                            reason: new.core.exit.get().map_or_else(|| "exited".to_owned(), ToString::to_string),
                        });
                    }
                    () = tokio::time::sleep(listen_timeout) => {
                        tracing::warn!(id = new.id(), slot, ?listen_timeout, "new worker neither listening nor ready after the listen timeout; going on");
                    }
                }
            }
            inner.disconnect_worker(&old);
            old_workers.push(old);
        }
        for old in old_workers {
            old.dead().await;
        }
        Ok(())
    }

    /// Grows or shrinks the cluster to `workers` slots. New workers are forked
    /// into new slots; the highest slots' workers are disconnected. Returns
    /// when the new ones are online and the removed ones have exited.
    pub async fn scale(&self, workers: usize) -> Result<(), Error> {
        if workers == 0 {
            return Err(Error::ZeroWorkers);
        }
        let inner = &self.inner;
        let (added, removed) = {
            let mut guard = inner.lock();
            let st = &mut *guard;
            if st.stopping {
                return Err(Error::Stopping { action: "scale" });
            }
            let mut added = Vec::new();
            let mut removed = Vec::new();
            while st.slots.len() < workers {
                let slot = inner.new_slot();
                st.slots.push(slot);
                let index = st.slots.len() - 1;
                added.push(inner.fork_slot(st, index, None)?);
            }
            for slot in st.slots.drain(workers..) {
                if let Some(core) = slot.current.and_then(|id| st.workers.get(&id)) {
                    removed.push(Arc::clone(core));
                }
            }
            (added, removed)
        };
        for core in &removed {
            inner.disconnect_worker(core);
        }
        for new in added {
            let _ = new.online().await;
        }
        for core in removed {
            core.dead().await;
        }
        Ok(())
    }
}
