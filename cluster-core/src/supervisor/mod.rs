//! The supervisor: the primary's state machine over the worker table. Its
//! inputs are the [`Notice`]s (`notice.rs`) that one task (`supervise`) reads
//! in order, from the workers and the timers, and the calls of the handles
//! (fork, disconnect, kill, stop), made under the state lock. Here: forks,
//! phases, stops and the handling of each notice; what follows an exit is
//! decided in exit.rs, reload and scale are in rolling.rs.

mod exit;
mod rolling;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, StateMap};
use crate::handle::Control;
use crate::hub::EventHub;
use crate::notice::Notice;
use crate::privilege::Failure;
use crate::restart::SlotHistory;
use crate::thread::WorkerFn;
use crate::worker::{Life, Link, WorkerCore};
use crate::worker_events::WorkerEvent;
use crate::{ClusterEvent, Error, ExitReason, Message, Phase, WorkerHandle};
use exit::{after_exit, failed_with, AfterExit, Exit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotStatus {
    /// Has a worker, or had one that exited without a restart.
    Active,
    /// Waits for its back-off delay before a fork.
    Restarting,
    /// Gave up after too many crashes on start.
    Errored,
}

pub(crate) struct Slot {
    pub(crate) current: Option<u64>,
    pub(crate) status: SlotStatus,
    pub(crate) history: SlotHistory,
    /// Changes whenever a pending restart must be forgotten.
    pub(crate) epoch: u64,
    pub(crate) fork_data: Option<Message>,
}

pub(crate) struct State {
    pub(crate) slots: Vec<Slot>,
    /// Workers not yet dead.
    pub(crate) workers: HashMap<u64, Arc<WorkerCore>>,
    /// No more forks or restarts: the cluster is stopping.
    pub(crate) stopping: bool,
    pub(crate) start_timed_out: bool,
    pub(crate) primary_error: Option<String>,
    pub(crate) start_error: Option<(u64, usize, String)>,
    /// Which start-stop cycle this is (a fork after a stop begins the next):
    /// the cycle's timers carry it.
    pub(crate) cycle: u64,
}

pub(crate) struct Supervisor {
    pub(crate) config: Config,
    pub(crate) body: WorkerFn,
    pub(crate) state: Mutex<State>,
    pub(crate) events: EventHub,
    pub(crate) phase: watch::Sender<Phase>,
    pub(crate) link: Arc<Link>,
    pub(crate) runtime: std::sync::OnceLock<Handle>,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// The drain delay in force (`Cluster::set_drain_delay` changes it).
    drain_delay: Mutex<Duration>,
    next_id: AtomicU64,
    next_epoch: AtomicU64,
    /// The privilege drop (`config.privilege`): whether it is done, or
    /// how it failed (the cluster then stops with it, and never listens).
    privilege: Mutex<Privilege>,
}

/// Where the privilege drop stands.
enum Privilege {
    /// None asked for, or done: nothing more to switch.
    Done,
    /// Due at the first `Listening`.
    Due,
    /// The switch failed.
    Failed(Failure),
}

impl Supervisor {
    pub(crate) fn new(
        config: Config,
        body: WorkerFn,
        notices: mpsc::UnboundedSender<Notice>,
        state: Arc<StateMap>,
    ) -> Supervisor {
        let phase = watch::Sender::new(Phase::Starting);
        let shutdown_timeout = config.shutdown_timeout;
        let drain_delay = Mutex::new(config.drain_delay);
        let privilege = Mutex::new(match config.privilege {
            Some(_) => Privilege::Due,
            None => Privilege::Done,
        });
        Supervisor {
            config,
            body,
            state: Mutex::new(State {
                slots: Vec::new(),
                workers: HashMap::new(),
                stopping: false,
                start_timed_out: false,
                primary_error: None,
                start_error: None,
                cycle: 0,
            }),
            events: EventHub::default(),
            link: Arc::new(Link {
                notices,
                shutdown_timeout,
                state,
                extensions: Default::default(),
                phase: phase.subscribe(),
                alive: Default::default(),
                restarts: Default::default(),
                slots: Default::default(),
            }),
            phase,
            runtime: std::sync::OnceLock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            drain_delay,
            next_id: AtomicU64::new(1),
            next_epoch: AtomicU64::new(1),
            privilege,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn handle(self: &Arc<Self>, core: &Arc<WorkerCore>) -> WorkerHandle {
        let cluster: Weak<dyn Control> = Arc::downgrade(self) as Weak<Supervisor>;
        WorkerHandle {
            core: Arc::clone(core),
            cluster,
        }
    }

    pub(crate) fn new_slot(&self) -> Slot {
        Slot {
            current: None,
            status: SlotStatus::Active,
            history: SlotHistory::default(),
            epoch: self.epoch(),
            fork_data: None,
        }
    }

    fn epoch(&self) -> u64 {
        self.next_epoch.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn spawn_timer(&self, delay: Duration, notice: Notice) {
        let Some(rt) = self.runtime.get() else { return };
        let notices = self.link.notices.clone();
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = notices.send(notice);
        });
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        if phase == Phase::Stopped && *self.phase.borrow() < phase {
            // Before anyone sees Stopped: what the extensions hold (sockets)
            // is released by then.
            self.link.clear_extensions();
        }
        let changed = self.phase.send_if_modified(|p| {
            if *p < phase {
                *p = phase;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::debug!(%phase, "cluster phase");
            self.events.emit(ClusterEvent::Phase(phase));
            if phase == Phase::Stopped {
                self.events.close();
            }
        }
    }

    /// Publishes the number of slots, after any change of `st.slots`.
    pub(crate) fn publish_slots(&self, st: &State) {
        self.link.slots.store(st.slots.len(), Ordering::Relaxed);
    }

    /// A fork after the cluster stopped starts a new cycle, as Node's
    /// `cluster.fork()` after `cluster.disconnect()`: starting again, with
    /// new subscriptions to its events.
    pub(crate) fn begin_cycle(&self, st: &mut State) {
        if !st.stopping || *self.phase.borrow() != Phase::Stopped {
            return;
        }
        st.stopping = false;
        st.start_timed_out = false;
        st.start_error = None;
        st.slots.clear();
        st.cycle += 1;
        self.events.reopen();
        self.phase.send_replace(Phase::Starting);
        self.events.emit(ClusterEvent::Phase(Phase::Starting));
        self.spawn_timer(self.config.listen_timeout, Notice::StartTimeout(st.cycle));
    }

    /// Forks the first workers, one per slot (`Cluster::start`), and arms
    /// the start timer: after `listen_timeout`, workers online count as
    /// started. A fork that fails stops the cluster at once.
    pub(crate) fn start_workers(self: &Arc<Self>) -> Result<(), Error> {
        let mut st = self.lock();
        for slot in 0..self.config.workers {
            let new_slot = self.new_slot();
            st.slots.push(new_slot);
            self.publish_slots(&st);
            if let Err(e) = self.fork_slot(&mut st, slot, None) {
                drop(st);
                self.begin_stop(false);
                return Err(e);
            }
        }
        let cycle = st.cycle;
        drop(st);
        self.spawn_timer(self.config.listen_timeout, Notice::StartTimeout(cycle));
        Ok(())
    }

    /// Forks a worker into `slot`, which must exist.
    pub(crate) fn fork_slot(
        self: &Arc<Self>,
        st: &mut State,
        slot: usize,
        replaces: Option<u64>,
    ) -> Result<WorkerHandle, Error> {
        if st.stopping {
            return Err(Error::Stopping {
                action: "fork a worker",
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (inbox, inbox_rx) = mpsc::unbounded_channel();
        let (kill_tx, kill_rx) = oneshot::channel();
        let core = Arc::new(WorkerCore {
            id,
            slot,
            name: format!("{}-{slot}", self.config.thread_name),
            started: std::time::Instant::now(),
            replaces,
            first: *self.phase.borrow() == Phase::Starting,
            fork_data: st.slots[slot].fork_data.clone(),
            restarts: st.slots[slot].history.total,
            thread_id: Default::default(),
            os_tid: Default::default(),
            life: watch::Sender::new(Life::Starting),
            ready: watch::Sender::new(false),
            ready_at: OnceLock::new(),
            disconnect: watch::Sender::new(false),
            disconnect_emitted: Default::default(),
            retiring: Default::default(),
            kill: Mutex::new(Some(kill_tx)),
            inbox,
            inbox_rx: tokio::sync::Mutex::new(inbox_rx),
            events: Default::default(),
            exit: Default::default(),
            start_error: Default::default(),
            link: Arc::clone(&self.link),
        });
        let handle = self.handle(&core);
        st.workers.insert(id, Arc::clone(&core));
        let previous = st.slots[slot].current.replace(id);
        st.slots[slot].status = SlotStatus::Active;
        self.emit_worker(&core, WorkerEvent::Fork);
        tracing::debug!(id, slot, "fork");
        let cpu = self
            .config
            .pin_cpus
            .as_ref()
            .map(|cpus| cpus[slot % cpus.len()]);
        if let Err(source) = crate::thread::spawn(
            Arc::clone(&core),
            Arc::clone(&self.body),
            kill_rx,
            (self.config.stack_size, cpu),
        ) {
            st.workers.remove(&id);
            st.slots[slot].current = previous;
            let _ = core.exit.set(ExitReason::Error(source.to_string()));
            core.life.send_replace(Life::Dead);
            core.events.close();
            return Err(Error::Spawn {
                name: core.name.clone(),
                source,
            });
        }
        self.link.alive.fetch_add(1, Ordering::Relaxed);
        Ok(handle)
    }

    /// Forks a worker into a new slot (`Cluster::fork`); after a stop,
    /// starts a new cycle.
    pub(crate) fn fork_new_slot(
        self: &Arc<Self>,
        data: Option<Message>,
    ) -> Result<WorkerHandle, Error> {
        let inner = self;
        if inner.runtime.get().is_none() {
            return Err(Error::Stopping {
                action: "fork a worker before the cluster is started",
            });
        }
        let mut st = inner.lock();
        inner.begin_cycle(&mut st);
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
        inner.publish_slots(&st);
        result
    }

    /// Emits one of `core`'s events: to the worker's own streams first,
    /// then (as Node's `worker.on` before `cluster.on`) to the cluster's.
    fn emit_worker(self: &Arc<Self>, core: &Arc<WorkerCore>, event: WorkerEvent) {
        core.events.emit(&event);
        self.events.emit(ClusterEvent::of(self.handle(core), event));
    }

    pub(crate) fn emit_disconnect(self: &Arc<Self>, core: &Arc<WorkerCore>) {
        if !core.disconnect_emitted.swap(true, Ordering::SeqCst) {
            self.emit_worker(core, WorkerEvent::Disconnect);
        }
    }

    pub(crate) fn disconnect_worker(self: &Arc<Self>, core: &Arc<WorkerCore>) {
        if core.life() == Life::Dead || core.disconnect_requested() {
            return;
        }
        core.set_retiring();
        core.disconnect.send_replace(true);
        self.emit_disconnect(core);
        let Some(rt) = self.runtime.get() else { return };
        let (inner, core, timeout) = (
            Arc::downgrade(self),
            Arc::clone(core),
            self.config.shutdown_timeout,
        );
        rt.spawn(async move {
            if tokio::time::timeout(timeout, core.dead()).await.is_err() {
                if let Some(inner) = inner.upgrade() {
                    tracing::warn!(
                        id = core.id,
                        ?timeout,
                        "worker did not finish within the shutdown timeout; killing it"
                    );
                    inner.kill_worker(&core);
                }
            }
        });
    }

    pub(crate) fn kill_worker(&self, core: &WorkerCore) {
        if core.life() == Life::Dead {
            return;
        }
        if let Some(kill) = core.take_kill() {
            let _ = kill.send(());
            self.spawn_timer(self.config.kill_timeout, Notice::KillTimeout(core.id));
        }
    }

    /// Starts a stop: graceful disconnects every worker (after the drain
    /// delay), immediate kills them.
    pub(crate) fn begin_stop(self: &Arc<Self>, graceful: bool) {
        self.begin_stop_after(graceful, self.drain_delay());
    }

    pub(crate) fn drain_delay(&self) -> Duration {
        *self
            .drain_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_drain_delay(&self, delay: Duration) {
        *self
            .drain_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// As `begin_stop`, with this drain delay (zero: none).
    pub(crate) fn begin_stop_after(self: &Arc<Self>, graceful: bool, delay: Duration) {
        let (workers, again, cycle) = {
            let mut st = self.lock();
            let again = std::mem::replace(&mut st.stopping, true);
            for slot in &mut st.slots {
                if slot.status == SlotStatus::Restarting {
                    slot.status = SlotStatus::Active;
                    slot.epoch = self.epoch();
                }
            }
            let workers = st.workers.values().cloned().collect::<Vec<_>>();
            (workers, again, st.cycle)
        };
        if graceful {
            self.set_phase(Phase::Draining);
            if delay.is_zero() {
                self.disconnect_all(cycle);
            } else if !again {
                // Draining already (health checks fail), serving on until then.
                tracing::info!(?delay, "drain delay: the workers drain after it");
                self.spawn_timer(delay, Notice::DrainDelayOver(cycle));
            }
        } else {
            self.set_phase(Phase::Stopping);
            for core in &workers {
                self.emit_disconnect(core);
                self.kill_worker(core);
            }
        }
        self.check_done(&self.lock());
    }

    fn disconnect_all(self: &Arc<Self>, cycle: u64) {
        let workers: Vec<_> = self.lock().workers.values().cloned().collect();
        for core in &workers {
            self.disconnect_worker(core);
        }
        self.spawn_timer(self.config.shutdown_timeout, Notice::StopDeadline(cycle));
    }

    fn check_done(&self, st: &State) {
        let restarting = st.slots.iter().any(|s| s.status == SlotStatus::Restarting);
        if st.workers.is_empty() && !restarting {
            self.set_phase(Phase::Stopping);
            self.set_phase(Phase::Stopped);
        }
    }

    fn check_started(&self, st: &State) {
        if *self.phase.borrow() != Phase::Starting {
            return;
        }
        let started = st
            .slots
            .iter()
            .filter_map(|s| st.workers.get(&s.current?))
            .all(|w| w.is_ready() || (st.start_timed_out && w.life() == Life::Online));
        let any = st.slots.iter().any(|s| s.current.is_some());
        if started && any && self.drop_privileges() {
            self.set_phase(Phase::Listening);
        }
    }

    /// Before the first `Listening`: switches the process to `user` /
    /// `group` (every socket of the first workers is bound by now). False
    /// if the switch failed: the cluster stops, with the failure as its
    /// error, and never listens.
    fn drop_privileges(&self) -> bool {
        let mut privilege = self
            .privilege
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (Privilege::Due, Some(switch)) = (&*privilege, &self.config.privilege) else {
            return !matches!(*privilege, Privilege::Failed(_));
        };
        match crate::privilege::apply(switch) {
            Ok(()) => {
                *privilege = Privilege::Done;
                true
            }
            Err(failure) => {
                tracing::error!(error = %failure.error(), "stopping the cluster");
                *privilege = Privilege::Failed(failure);
                let _ = self.link.notices.send(Notice::PrivilegeDropFailed);
                false
            }
        }
    }

    /// How the privilege drop failed, if it did.
    pub(crate) fn privilege_error(&self) -> Option<Error> {
        match &*self
            .privilege
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Privilege::Failed(failure) => Some(failure.error()),
            _ => None,
        }
    }

    /// Handles one notice.
    pub(crate) fn on_notice(self: &Arc<Self>, notice: Notice) {
        match notice {
            Notice::Online(id) => {
                let st = self.lock();
                if let Some(core) = st.workers.get(&id) {
                    core.life.send_replace(Life::Online);
                    self.emit_worker(core, WorkerEvent::Online);
                    self.check_started(&st);
                }
            }
            Notice::Ready(id) => {
                let st = self.lock();
                if let Some(core) = st.workers.get(&id) {
                    // The event first: a reload waiting for this readiness
                    // disconnects the old worker, and its Disconnect must
                    // come after.
                    self.emit_worker(core, WorkerEvent::Ready);
                    core.set_ready();
                    self.check_started(&st);
                }
            }
            Notice::Listening(id, address) => {
                let st = self.lock();
                if let Some(core) = st.workers.get(&id) {
                    self.emit_worker(core, WorkerEvent::Listening { address });
                    if !self.config.wait_ready {
                        core.set_ready();
                    }
                    self.check_started(&st);
                }
            }
            Notice::Message(id, message) => {
                let st = self.lock();
                if let Some(core) = st.workers.get(&id) {
                    self.emit_worker(core, WorkerEvent::Message { message });
                }
            }
            Notice::Exited(id, reason) => self.on_exit(id, reason),
            Notice::KillTimeout(id) => {
                if self.lock().workers.contains_key(&id) {
                    tracing::error!(id, timeout = ?self.config.kill_timeout, "worker did not reach an await after kill; abandoning its thread");
                    self.on_exit(id, ExitReason::Unresponsive);
                }
            }
            Notice::RestartDue { slot, epoch } => {
                let mut st = self.lock();
                let due = st
                    .slots
                    .get(slot)
                    .is_some_and(|s| s.epoch == epoch && s.status == SlotStatus::Restarting);
                if due && !st.stopping {
                    if let Err(e) = self.fork_slot(&mut st, slot, None) {
                        tracing::error!(slot, error = %e, "restart failed");
                        st.slots[slot].status = SlotStatus::Errored;
                        self.check_done(&st);
                    }
                }
            }
            Notice::StartTimeout(cycle) => {
                let mut st = self.lock();
                if st.cycle == cycle {
                    st.start_timed_out = true;
                    self.check_started(&st);
                }
            }
            Notice::Disconnect(id) => {
                let core = self.lock().workers.get(&id).cloned();
                if let Some(core) = core {
                    self.disconnect_worker(&core);
                }
            }
            Notice::DrainDelayOver(cycle) => {
                let current = self.lock().cycle == cycle;
                if current && *self.phase.borrow() == Phase::Draining {
                    self.disconnect_all(cycle);
                }
            }
            Notice::PrivilegeDropFailed => self.begin_stop(false),
            Notice::StopDeadline(cycle) => {
                let st = self.lock();
                let current = st.cycle == cycle;
                if current && *self.phase.borrow() == Phase::Draining && !st.workers.is_empty() {
                    tracing::warn!(
                        left = st.workers.len(),
                        "shutdown timeout reached; killing the workers left"
                    );
                    self.set_phase(Phase::Stopping);
                    for core in st.workers.values() {
                        self.kill_worker(core);
                    }
                }
            }
        }
    }

    fn on_exit(self: &Arc<Self>, id: u64, reason: ExitReason) {
        let mut st = self.lock();
        let Some(core) = st.workers.remove(&id) else {
            return; // already declared unresponsive
        };
        self.link.alive.fetch_sub(1, Ordering::Relaxed);
        // What follows is logged as the worker's own lines are: an operator
        // reading one slot's log sees its exits and restarts there.
        let span = tracing::info_span!("worker", id, slot = core.slot);
        let _in_worker = span.enter();
        let _ = core.exit.set(reason.clone());
        self.link
            .extension::<crate::exits::LastFailures>()
            .record(core.slot, &reason);
        self.emit_disconnect(&core);
        core.life.send_replace(Life::Dead);
        match &reason {
            ExitReason::Returned | ExitReason::Killed => {
                tracing::debug!(%reason, "worker exit")
            }
            _ => tracing::warn!(%reason, "worker exit"),
        }
        self.emit_worker(
            &core,
            WorkerEvent::Exit {
                reason: reason.clone(),
            },
        );
        core.events.close();
        let slot_no = core.slot;
        let starting = core.first || *self.phase.borrow() == Phase::Starting;
        let start_error = core
            .start_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|error| starting && failed_with(&reason, error, core.is_ready()));
        if let Some(error) = start_error {
            // What every worker would hit: stop rather than crash-loop.
            tracing::error!(id, slot = slot_no, %error, "start-up failed; stopping the cluster");
            st.start_error.get_or_insert((id, slot_no, error));
            if let Some(slot) = st.slots.get_mut(slot_no).filter(|s| s.current == Some(id)) {
                slot.current = None;
            }
            drop(st);
            self.begin_stop(false);
            return;
        }
        let stopping = st.stopping;
        if st.slots.get(slot_no).and_then(|s| s.current) != Some(id) {
            // Not its slot's worker any more (a reload's old one, a removed slot).
            self.check_started(&st);
            self.check_done(&st);
            return;
        }
        let predecessor = core
            .replaces
            .filter(|old| st.workers.get(old).is_some_and(|w| !w.is_retiring()));
        let exit = Exit {
            reason: &reason,
            retiring: core.is_retiring(),
            stopping,
            lifetime: core.lifetime(),
            predecessor,
        };
        let slot = &mut st.slots[slot_no];
        slot.current = None;
        let after = after_exit(
            exit,
            self.config.restart,
            &self.config.backoff,
            &mut slot.history,
        );
        if matches!(after, AfterExit::Restart(_)) {
            self.link.restarts.fetch_add(1, Ordering::Relaxed);
        }
        match after {
            AfterExit::GiveBack(old) => slot.current = Some(old),
            AfterExit::Leave => {}
            AfterExit::Restart(delay) if delay.is_zero() => {
                tracing::info!(%reason, "restarting");
                if let Err(e) = self.fork_slot(&mut st, slot_no, None) {
                    tracing::error!(slot = slot_no, error = %e, "restart failed");
                    st.slots[slot_no].status = SlotStatus::Errored;
                }
            }
            AfterExit::Restart(delay) => {
                tracing::info!(?delay, %reason, "restarting after a back-off");
                slot.status = SlotStatus::Restarting;
                let epoch = slot.epoch;
                self.events.emit(ClusterEvent::Restarting {
                    slot: slot_no,
                    delay,
                });
                self.spawn_timer(
                    delay,
                    Notice::RestartDue {
                        slot: slot_no,
                        epoch,
                    },
                );
            }
            AfterExit::Errored => {
                slot.status = SlotStatus::Errored;
                let restarts = slot.history.total;
                tracing::error!(
                    slot = slot_no,
                    restarts,
                    last = %reason,
                    "slot errored: its workers keep crashing on start; no more restarts"
                );
                self.events.emit(ClusterEvent::Errored {
                    slot: slot_no,
                    restarts,
                    last: reason,
                });
            }
        }
        self.check_started(&st);
        self.check_done(&st);
    }
}

/// What a [`WorkerHandle`] asks of its cluster.
impl Control for Supervisor {
    fn disconnect(self: Arc<Self>, core: &Arc<WorkerCore>) {
        self.disconnect_worker(core);
    }

    fn kill(self: Arc<Self>, core: &WorkerCore) {
        self.kill_worker(core);
    }
}

/// Reads the notices until the cluster is gone: a stopped cluster may fork
/// again. Holds no strong reference while it waits, so that dropping every
/// handle frees the cluster.
pub(crate) async fn supervise(
    inner: Weak<Supervisor>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
) {
    while let Some(notice) = notices.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        inner.on_notice(notice);
    }
}
