//! The hand-off between an acceptor and the workers: each worker's pending
//! `accept()` is a waiter; the acceptor gives each connection to one waiter
//! chosen by the balance mode. A connection is never dropped on the way: a
//! waiter that went away gives it back, and it goes to the next.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::io;

use tokio::sync::{oneshot, watch, Notify};

use crate::listener::{Accepted, AcceptorListener, Counters};
use crate::Balance;

struct Waiter {
    slot: usize,
    counters: Arc<Counters>,
    tx: oneshot::Sender<Accepted>,
}

#[derive(Default)]
struct State {
    waiters: Vec<Waiter>,
    /// Connections no waiter could take yet; the next waiter gets them.
    returned: VecDeque<Accepted>,
    /// Sticky: connections bound to a slot whose worker was busy.
    pending: HashMap<usize, VecDeque<Accepted>>,
    /// Listeners attached per slot (sticky hashes over these slots).
    attached: BTreeMap<usize, usize>,
    last_slot: Option<usize>,
}

pub(crate) struct Dispatch {
    balance: Balance,
    state: Mutex<State>,
    waiter_added: Notify,
    /// Listeners attached, all slots together: at 0 nobody accepts for this
    /// socket, so its acceptors leave connections in the kernel's queue.
    attached: watch::Sender<usize>,
    /// Held by an acceptor from `accept` until the connection is delivered,
    /// so the last `close` sees every connection already taken.
    busy: tokio::sync::Mutex<()>,
}

pub(crate) enum Registered {
    Ready(Accepted),
    Wait(oneshot::Receiver<Accepted>),
}

impl Dispatch {
    pub(crate) fn new(balance: Balance) -> Dispatch {
        Dispatch {
            balance,
            state: Mutex::default(),
            waiter_added: Notify::new(),
            attached: watch::Sender::new(0),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn attach(&self, slot: usize) {
        *self.lock().attached.entry(slot).or_default() += 1;
        self.attached.send_modify(|n| *n += 1);
    }

    /// Accepts one connection from `listener` and delivers it, unless every
    /// listener of the socket is closed first (then nothing is accepted).
    pub(crate) async fn accept_from(&self, listener: &AcceptorListener) -> io::Result<()> {
        let _busy = self.busy.lock().await;
        let mut attached = self.attached.subscribe();
        tokio::select! {
            biased;
            _ = attached.wait_for(|n| *n == 0) => Ok(()),
            conn = listener.accept_std() => {
                self.deliver(conn?);
                Ok(())
            }
        }
    }

    /// Detaches a listener of `slot` for good. The last one to go gets every
    /// connection already accepted and not yet taken, to serve before it ends.
    pub(crate) async fn close(&self, slot: usize) -> Vec<Accepted> {
        self.detach(slot);
        if *self.attached.borrow() > 0 {
            return Vec::new();
        }
        // Wait out an acceptor between its accept and its delivery.
        let _idle = self.busy.lock().await;
        let mut st = self.lock();
        let mut left: Vec<Accepted> = st.returned.drain(..).collect();
        for (_, pending) in st.pending.drain() {
            left.extend(pending);
        }
        left
    }

    /// The last listener of `slot` went away: its sticky connections are
    /// re-hashed over the slots left.
    pub(crate) fn detach(&self, slot: usize) {
        let orphans = {
            let mut st = self.lock();
            self.attached.send_modify(|n| *n = n.saturating_sub(1));
            let count = st.attached.entry(slot).or_default();
            *count = count.saturating_sub(1);
            if *count > 0 {
                return;
            }
            st.attached.remove(&slot);
            st.pending.remove(&slot).unwrap_or_default()
        };
        for conn in orphans {
            self.deliver(conn);
        }
    }

    /// A worker's `accept()` asks for a connection.
    pub(crate) fn register(&self, slot: usize, counters: &Arc<Counters>) -> Registered {
        let mut st = self.lock();
        if let Some(conn) = st.pending.get_mut(&slot).and_then(VecDeque::pop_front) {
            return Registered::Ready(conn);
        }
        if let Some(conn) = st.returned.pop_front() {
            return Registered::Ready(conn);
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.retain(|w| !w.tx.is_closed());
        st.waiters.push(Waiter {
            slot,
            counters: Arc::clone(counters),
            tx,
        });
        drop(st);
        self.waiter_added.notify_one();
        Registered::Wait(rx)
    }

    /// Waits until some worker waits for a connection (backpressure: the
    /// acceptor does not accept while every worker is full or gone).
    pub(crate) async fn wanted(&self) {
        loop {
            let notified = self.waiter_added.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().waiters.iter().any(|w| !w.tx.is_closed()) {
                return;
            }
            notified.await;
        }
    }

    /// Gives a connection to a waiter by the balance mode, or keeps it for the
    /// next one.
    pub(crate) fn deliver(&self, mut conn: Accepted) {
        let mut st = self.lock();
        st.waiters.retain(|w| !w.tx.is_closed());
        let target = match self.balance {
            Balance::Sticky => match sticky_slot(&st.attached, conn.peer) {
                Some(slot) => Some(slot),
                None => {
                    st.returned.push_back(conn);
                    return;
                }
            },
            _ => None,
        };
        loop {
            let pick = match target {
                Some(slot) => st.waiters.iter().position(|w| w.slot == slot),
                None => self.pick(&st),
            };
            let Some(i) = pick else {
                match target {
                    Some(slot) => st.pending.entry(slot).or_default().push_back(conn),
                    None => st.returned.push_back(conn),
                }
                return;
            };
            let waiter = st.waiters.swap_remove(i);
            match waiter.tx.send(conn) {
                Ok(()) => {
                    st.last_slot = Some(waiter.slot);
                    return;
                }
                Err(back) => conn = back,
            }
        }
    }

    fn pick(&self, st: &State) -> Option<usize> {
        // Round-robin order: the slots after the last one served, then wrap.
        let rr = |slot: usize| match st.last_slot {
            Some(last) if slot > last => (0, slot),
            Some(_) => (1, slot),
            None => (0, slot),
        };
        let waiters = st.waiters.iter().enumerate();
        match self.balance {
            Balance::LeastConnections => waiters
                .min_by_key(|(_, w)| (w.counters.active.load(Ordering::Relaxed), rr(w.slot)))
                .map(|(i, _)| i),
            _ => waiters.min_by_key(|(_, w)| rr(w.slot)).map(|(i, _)| i),
        }
    }
}

/// The live slot a client address maps to: the same while the set of live
/// slots is the same.
fn sticky_slot(attached: &BTreeMap<usize, usize>, peer: Option<SocketAddr>) -> Option<usize> {
    if attached.is_empty() {
        return None;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    peer.map(|p| p.ip()).hash(&mut hasher);
    let n = (hasher.finish() % attached.len() as u64) as usize;
    attached.keys().nth(n).copied()
}

/// Holds a waiter's receiver; if the `accept()` that owns it is dropped after
/// a connection was sent, the connection goes to another waiter.
pub(crate) struct ReturnOnDrop<'a> {
    pub(crate) rx: Option<oneshot::Receiver<Accepted>>,
    pub(crate) dispatch: &'a Dispatch,
}

impl ReturnOnDrop<'_> {
    /// The connection, or `None` if the acceptor dropped this waiter.
    pub(crate) async fn recv(&mut self) -> Option<Accepted> {
        let rx = self.rx.as_mut()?;
        let got = rx.await.ok();
        self.rx = None;
        got
    }
}

impl Drop for ReturnOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(conn) = rx.try_recv() {
                self.dispatch.deliver(conn);
            }
        }
    }
}
