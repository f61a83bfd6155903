//! The rolling changes of the pool, one slot (or a few) at a time: reload
//! and the restart of one slot (each new worker online, and ready if its
//! predecessor was, before the old one is disconnected) and scale (new
//! slots forked, the highest ones retired).

use std::sync::Arc;

use super::Supervisor;
use crate::worker::WorkerCore;
use crate::{ClusterEvent, Error, WorkerHandle};

impl Supervisor {
    /// A rolling reload, `parallel` slots at a time (at least one).
    pub(crate) async fn reload(self: &Arc<Self>, parallel: usize) -> Result<(), Error> {
        let inner = self;
        let _one_at_a_time = inner.reload_lock.lock().await;
        if inner.lock().stopping {
            return Err(Error::Stopping { action: "reload" });
        }
        inner.events.emit(ClusterEvent::Reloading);
        tracing::info!(
            parallel,
            "rolling reload: replacing the workers slot by slot"
        );
        let result = self.reload_slots(parallel.max(1)).await;
        match &result {
            Ok(()) => tracing::info!("rolling reload done"),
            Err(e) => tracing::warn!(error = %e, "rolling reload stopped"),
        }
        inner.events.emit(ClusterEvent::Reloaded {
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }

    async fn reload_slots(self: &Arc<Self>, parallel: usize) -> Result<(), Error> {
        let mut old_workers = Vec::new();
        let size = self.lock().slots.len();
        let slots: Vec<usize> = (0..size).collect();
        for batch in slots.chunks(parallel) {
            let mut forked = Vec::new();
            for &slot in batch {
                if let Some(pair) = self.fork_replacement(slot, "reload")? {
                    forked.push((slot, pair));
                }
            }
            for (slot, (old, new)) in forked {
                self.hand_over(slot, &old, &new).await?;
                old_workers.push(old);
            }
        }
        for old in old_workers {
            old.dead().await;
        }
        Ok(())
    }

    /// Replaces the worker of one slot as a reload does (its new worker
    /// online, and ready if the old one was, before the old one is
    /// disconnected); returns once the old one has exited. Waits for a
    /// reload under way.
    pub(crate) async fn restart_slot(self: &Arc<Self>, slot: usize) -> Result<(), Error> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let Some((old, new)) = self.fork_replacement(slot, "restart a slot")? else {
            let size = self.lock().slots.len();
            return Err(Error::NoWorker { slot, size });
        };
        self.hand_over(slot, &old, &new).await?;
        old.dead().await;
        Ok(())
    }

    /// Forks the replacement of `slot`'s worker; `None` if the slot has none.
    fn fork_replacement(
        self: &Arc<Self>,
        slot: usize,
        action: &'static str,
    ) -> Result<Option<(Arc<WorkerCore>, WorkerHandle)>, Error> {
        let mut st = self.lock();
        if st.stopping {
            return Err(Error::Stopping { action });
        }
        let Some(old) = st
            .slots
            .get(slot)
            .and_then(|s| s.current)
            .and_then(|id| st.workers.get(&id).cloned())
        else {
            return Ok(None);
        };
        let new = self.fork_slot(&mut st, slot, Some(old.id))?;
        Ok(Some((old, new)))
    }

    /// Waits for `new` to be online (and ready, if `old` was), then
    /// disconnects `old`. A new worker that fails is killed and the old one
    /// serves on.
    async fn hand_over(
        self: &Arc<Self>,
        slot: usize,
        old: &Arc<WorkerCore>,
        new: &WorkerHandle,
    ) -> Result<(), Error> {
        let listen_timeout = self.config.listen_timeout;
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
        self.disconnect_worker(old);
        Ok(())
    }

    /// Grows or shrinks the cluster to `workers` slots. New workers are forked
    /// into new slots; the highest slots' workers are disconnected. Returns
    /// when the new ones are online and the removed ones have exited.
    pub(crate) async fn scale(self: &Arc<Self>, workers: usize) -> Result<(), Error> {
        if workers == 0 {
            return Err(Error::ZeroWorkers);
        }
        let inner = self;
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
                inner.publish_slots(st);
                let index = st.slots.len() - 1;
                added.push(inner.fork_slot(st, index, None)?);
            }
            for slot in st.slots.drain(workers..) {
                if let Some(core) = slot.current.and_then(|id| st.workers.get(&id)) {
                    removed.push(Arc::clone(core));
                }
            }
            // Published before the disconnects: a removed slot's listeners
            // see it and close their per-slot sockets.
            inner.publish_slots(st);
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
