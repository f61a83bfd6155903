//! The worker's side: a `Listener` that yields `Connection`s registered on
//! the worker's own runtime, whatever the balance mode.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::sync::Weak;

use cluster_core::hooks;
use cluster_core::{Address, Worker};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::accept::{AcceptSocket, Backoff};
use crate::conn::{Accepted, Connection, Counters, Totals};
use crate::dispatch::Dispatch;
use crate::migrate::Migrator;
use crate::registry::{Key, Registry, ReuseSocket};
use crate::Balance;

/// A listener's place in its socket's dispatcher (and, for reuseport, in
/// the group): given up once, by whichever comes first: the listener
/// closing or dropping, or the primary declaring its worker gone (a stuck
/// worker's thread may never drop it). Its queued connections then go to
/// the live workers.
pub(crate) struct Seat {
    pub(crate) worker: Worker,
    /// The socket's label, by which a hot upgrade's new process finds it.
    pub(crate) label: String,
    pub(crate) dispatch: Arc<Dispatch>,
    pub(crate) inbox: u64,
    /// Reuseport: the slot's socket, taken over by a stand-in once left.
    pub(crate) reuse: Option<Arc<ReuseSocket>>,
    left: AtomicBool,
    /// Ends the watcher of the worker's exit.
    leaving: Notify,
}

impl Seat {
    pub(crate) fn new(
        worker: &Worker,
        label: &str,
        dispatch: Arc<Dispatch>,
        inbox: u64,
        reuse: Option<Arc<ReuseSocket>>,
    ) -> Arc<Seat> {
        Arc::new(Seat {
            worker: worker.clone(),
            label: label.to_owned(),
            dispatch,
            inbox,
            reuse,
            left: AtomicBool::new(false),
            leaving: Notify::new(),
        })
    }

    /// Gives the seat up when its worker is gone, unless the listener gave
    /// it up first. Runs on the acceptor's runtime.
    pub(crate) fn watch(self: &Arc<Self>, acceptor: &Handle) {
        let (seat, gone) = (Arc::clone(self), hooks::gone(&self.worker));
        acceptor.spawn(async move {
            tokio::select! {
                () = gone => if seat.leave() {
                    tracing::debug!("worker gone: its waiting connections go to live workers");
                },
                () = seat.leaving.notified() => {}
            }
        });
    }

    /// Its listener's first `accept`: with kernel steering, the program may
    /// choose its slot from now on (until then connections wait elsewhere,
    /// not behind a server still being built).
    fn accepting(&self) {
        if let (Some(reuse), false) = (&self.reuse, self.left.load(Ordering::Acquire)) {
            reuse.set_live(true);
        }
    }

    /// The next connection of its inbox (or one nobody took). Cancel-safe:
    /// the inbox keeps it.
    async fn take(&self) -> Accepted {
        std::future::poll_fn(|cx| self.dispatch.poll_take(self.inbox, cx)).await
    }

    /// Leaves; false if it had already left.
    fn leave(&self) -> bool {
        if self.left.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.leaving.notify_one();
        self.dispatch.detach(self.inbox);
        if let Some(reuse) = &self.reuse {
            reuse.detach(slot_removed(&self.worker));
        }
        true
    }

    /// Leaves for good; the last listener of the socket gets what was
    /// accepted and not yet taken (nothing if it had already left).
    async fn close(&self) -> Vec<Accepted> {
        if self.left.swap(true, Ordering::AcqRel) {
            return Vec::new();
        }
        self.leaving.notify_one();
        let left = self.dispatch.close(self.inbox).await;
        if let Some(reuse) = &self.reuse {
            reuse.detach(slot_removed(&self.worker));
        }
        left
    }
}

/// Whether `worker`'s slot was removed (scale-down): its sockets close then.
fn slot_removed(worker: &Worker) -> bool {
    worker.slot() >= worker.cluster_info().slots
}

/// A per-worker port's socket, which the registry closes when its slot is
/// removed.
pub(crate) struct SlotSocket {
    pub(crate) worker: Worker,
    pub(crate) registry: Weak<Registry>,
    pub(crate) key: Key,
}

impl SlotSocket {
    /// When the slot was removed: takes what waits in the socket's queue
    /// (to be served), then closes the registry's copy; the listener's own
    /// go right after, so connects are refused from then on.
    fn retire(&self, socket: &AcceptSocket, totals: &Arc<Totals>) -> Vec<Accepted> {
        if !slot_removed(&self.worker) {
            return Vec::new();
        }
        let queued = socket.drain(totals);
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(&self.key);
        }
        queued
    }
}

/// How a listener gets its connections.
pub(crate) enum Mode {
    /// Accepts on its own registration of the socket (os, per-worker, fd,
    /// handle; reuseport: its slot's socket), and takes through its seat
    /// (none for a handle) what is handed to it: connections migrated from
    /// a draining worker, and for reuseport those a stand-in accepts from
    /// an empty slot's socket.
    Own {
        own: AcceptSocket,
        seat: Option<Arc<Seat>>,
    },
    /// Gets every connection through its seat: from the acceptor
    /// (round-robin, least-connections, sticky), or migrated.
    Dispatched(Arc<Seat>),
    /// The acceptor modes in a cluster of one slot: its worker accepts on
    /// the socket itself (no hop through the acceptor thread), until
    /// `solo` turns false (another slot listens; the acceptor takes over),
    /// and takes through its seat what is handed to it.
    Solo {
        own: AcceptSocket,
        seat: Arc<Seat>,
        solo: tokio::sync::watch::Receiver<bool>,
    },
}

/// A worker's listener, from `worker.listen(...)`. Dropping it stops this
/// worker's share of the socket; the socket itself stays open in the primary.
pub struct Listener {
    pub(crate) mode: Mode,
    pub(crate) address: Address,
    pub(crate) balance: Balance,
    pub(crate) slot: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) totals: Arc<Totals>,
    /// Per-worker ports: closed when the slot is removed.
    pub(crate) slot_socket: Option<SlotSocket>,
    /// Counts it as not serving until its first `accept` (see
    /// `upgrade::Serving`).
    pub(crate) first_accept: crate::upgrade::FirstAccept,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("balance", &self.balance)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// How the socket's connections are shared among the workers: the
    /// listener's own [`ListenSpec::balance`](crate::ListenSpec::balance),
    /// else `CLUSTER_THREAD_BALANCE`, else the cluster's [`NetConfig`](crate::NetConfig)
    /// (`Os` for a `Listen::Handle`, which no other worker shares).
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The address really bound (port 0 resolved).
    pub fn local_addr(&self) -> &Address {
        &self.address
    }

    /// The TCP address really bound, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.address {
            Address::Tcp(a) => Some(a),
            _ => None,
        }
    }

    /// Connections this worker accepted on this listener so far.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections of this worker on this listener that are still open.
    pub fn active(&self) -> usize {
        self.counters.active.load(Ordering::Relaxed)
    }

    /// The next connection. Waits while this worker, or the listener as a
    /// whole, is at its connection limit, or the cluster at its cap
    /// (connections wait in the backlog). A connection counts under them
    /// from before its `accept(2)`, so a burst of clients never overshoots
    /// a limit. Cancel-safe: a connection handed to a dropped `accept` goes
    /// to another worker.
    ///
    /// Never fails: as `axum::serve` does, an error of `accept(2)` is
    /// logged and waited out (from 5 ms up to 1 s while it lasts) and the
    /// loop goes on, so a shared port never goes silent while its socket is
    /// open. [`ListenerStats::accept_errors`](crate::ListenerStats) counts them.
    pub async fn accept(&self) -> Connection {
        if self.first_accept.accepting() {
            if let Some(seat) = self.seat() {
                seat.accepting();
            }
        }
        let (totals, counters) = (&self.totals, Some(&self.counters));
        let mut backoff = Backoff::new(totals);
        loop {
            let accepted = match &self.mode {
                Mode::Own { own, seat: None } => own.accept(totals, counters).await,
                Mode::Own {
                    own,
                    seat: Some(seat),
                } => tokio::select! {
                    accepted = own.accept(totals, counters) => accepted,
                    accepted = seat.take() => accepted,
                },
                Mode::Dispatched(seat) => seat.take().await,
                Mode::Solo { own, seat, solo } if *solo.borrow() => {
                    let mut solo = solo.clone();
                    tokio::select! {
                        accepted = own.accept(totals, counters) => accepted,
                        accepted = seat.take() => accepted,
                        // Another slot listens: the acceptor's from now on.
                        _ = solo.wait_for(|solo| !solo) => continue,
                    }
                }
                Mode::Solo { seat, .. } => seat.take().await,
            };
            match Connection::register(accepted, &self.counters) {
                Ok(conn) => return conn,
                // Out of memory for the reactor here means out everywhere:
                // back off; that connection is lost either way.
                Err(e) => backoff.on_error(&e).await,
            }
        }
    }

    fn seat(&self) -> Option<&Arc<Seat>> {
        match &self.mode {
            Mode::Own { seat, .. } => seat.as_ref(),
            Mode::Dispatched(seat) | Mode::Solo { seat, .. } => Some(seat),
        }
    }

    /// What hands this listener's connections to the other live workers of
    /// its socket (see [`Migrator`]); `None` for a `Listen::Handle`.
    /// It outlives `close`, for the drain.
    pub(crate) fn migrator(&self) -> Option<Migrator> {
        self.seat().map(|seat| {
            Migrator::new(
                &seat.worker,
                &seat.label,
                Arc::clone(&seat.dispatch),
                seat.inbox,
            )
        })
    }

    /// Stops this worker's share of the socket for good, as a draining
    /// worker should (rather than dropping it). When this is the socket's
    /// last listener in the process, the result holds the connections the
    /// primary had already accepted and nobody took: serve them before
    /// ending, and no accepted connection is lost. Connections still in the
    /// kernel's queue stay there (for a restarted worker, or the new process
    /// of a hot upgrade). When the worker's slot was removed (scale-down),
    /// its own sockets (a per-worker port, its reuseport socket) are
    /// drained, to this result or to the other workers, and closed.
    pub async fn close(mut self) -> Vec<Connection> {
        let slot_socket = self.slot_socket.take();
        let mut accepted = match self.seat() {
            Some(seat) => seat.close().await,
            None => Vec::new(),
        };
        if let (Mode::Own { own, .. }, Some(slot_socket)) = (&self.mode, slot_socket) {
            accepted.extend(slot_socket.retire(own, &self.totals));
        }
        accepted
            .into_iter()
            .filter_map(|a| match Connection::register(a, &self.counters) {
                Ok(conn) => Some(conn),
                Err(e) => {
                    tracing::warn!(error = %e, "a connection could not be registered while closing");
                    None
                }
            })
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(seat) = self.seat() {
            seat.leave();
        }
        // Dropped rather than closed: what waits in the queue is reset.
        if let (Mode::Own { own, .. }, Some(slot_socket)) = (&self.mode, &self.slot_socket) {
            drop(slot_socket.retire(own, &self.totals));
        }
    }
}
