//! The hand-off between an acceptor and the workers. Each listener of a
//! worker has an inbox here; the acceptor puts each connection it accepts in
//! the inbox the balance mode picks, among those that can take one (under
//! the worker's connection limit, and holding fewer than `PREFETCH` not yet
//! taken). A worker's `accept` takes from its inbox and sleeps only when it
//! is empty; the acceptor sleeps only when no inbox can take a connection
//! (then connections wait in the kernel's backlog). A connection is never
//! dropped on the way: an inbox whose listener goes away is emptied into the
//! others.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::{watch, Notify};

use crate::accept::AcceptSocket;
use crate::conn::{Accepted, Counters, Totals};
use crate::Balance;

/// How many connections an inbox may hold before its worker takes them:
/// enough to spare a wake-up per connection under load, few enough to keep
/// the spread even.
const PREFETCH: usize = 4;

/// How many connections may wait for a sticky slot's worker before new ones
/// of its clients go to another worker rather than pile up in memory.
const STICKY_BACKLOG: usize = 64;

struct Inbox {
    key: u64,
    slot: usize,
    counters: Arc<Counters>,
    limit: Option<usize>,
    queue: VecDeque<Accepted>,
    /// The worker's `accept`, while it waits on an empty inbox.
    waker: Option<Waker>,
}

impl Inbox {
    /// Whether the acceptor may put one more connection here.
    fn can_take(&self) -> bool {
        let held = self.counters.active.load(Ordering::Relaxed) + self.queue.len();
        self.queue.len() < PREFETCH && self.limit.is_none_or(|limit| held < limit)
    }

    fn load(&self) -> usize {
        self.counters.active.load(Ordering::Relaxed) + self.queue.len()
    }
}

#[derive(Default)]
struct State {
    inboxes: Vec<Inbox>,
    /// Connections no inbox could take; the next `accept` of any worker gets them.
    returned: VecDeque<Accepted>,
    last_slot: Option<usize>,
    next_key: u64,
    /// The acceptor sleeps until some inbox can take a connection.
    acceptor_waits: bool,
}

pub(crate) struct Dispatch {
    balance: Balance,
    state: Mutex<State>,
    /// Wakes the acceptor: an inbox can take a connection again.
    capacity: Arc<Notify>,
    /// Listeners attached: at 0 nobody accepts for this socket, so its
    /// acceptors leave connections in the kernel's queue.
    attached: watch::Sender<usize>,
    /// Held by an acceptor from `accept` until the connection is delivered,
    /// so the last `close` sees every connection already taken.
    busy: tokio::sync::Mutex<()>,
}

impl Dispatch {
    pub(crate) fn new(balance: Balance) -> Dispatch {
        Dispatch {
            balance,
            state: Mutex::default(),
            capacity: Arc::new(Notify::new()),
            attached: watch::Sender::new(0),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a closing connection notifies, so that the acceptor re-checks
    /// the connection limits.
    pub(crate) fn capacity(&self) -> Arc<Notify> {
        Arc::clone(&self.capacity)
    }

    /// A listener of `slot` joins; returns its inbox's key.
    pub(crate) fn attach(&self, slot: usize, counters: Arc<Counters>, limit: Option<usize>) -> u64 {
        let key = {
            let mut st = self.lock();
            st.next_key += 1;
            let key = st.next_key;
            st.inboxes.push(Inbox {
                key,
                slot,
                counters,
                limit,
                queue: VecDeque::new(),
                waker: None,
            });
            key
        };
        self.attached.send_modify(|n| *n += 1);
        self.capacity.notify_one();
        key
    }

    /// A listener leaves: what its inbox held goes to the others.
    pub(crate) fn detach(&self, key: u64) {
        let left = {
            let mut st = self.lock();
            let Some(i) = st.inboxes.iter().position(|b| b.key == key) else {
                return;
            };
            st.inboxes.swap_remove(i).queue
        };
        self.attached.send_modify(|n| *n = n.saturating_sub(1));
        for conn in left {
            self.deliver(conn);
        }
    }

    /// Detaches a listener for good. The last one to go gets every
    /// connection already accepted and not yet taken, to serve before it ends.
    pub(crate) async fn close(&self, key: u64) -> Vec<Accepted> {
        self.detach(key);
        if *self.attached.borrow() > 0 {
            return Vec::new();
        }
        // Wait out an acceptor between its accept and its delivery.
        let _idle = self.busy.lock().await;
        self.lock().returned.drain(..).collect()
    }

    /// A worker's `accept`: the next connection of its inbox (or one nobody
    /// took), or `Pending` until the acceptor delivers one. Nothing is lost
    /// when the caller stops polling: the inbox keeps it.
    pub(crate) fn poll_take(&self, key: u64, cx: &mut Context<'_>) -> Poll<Accepted> {
        let mut st = self.lock();
        let wake_acceptor = st.acceptor_waits;
        let st = &mut *st;
        let Some(inbox) = st.inboxes.iter_mut().find(|b| b.key == key) else {
            return Poll::Pending;
        };
        let taken = inbox.queue.pop_front().or_else(|| st.returned.pop_front());
        match taken {
            Some(conn) => {
                if wake_acceptor {
                    st.acceptor_waits = false;
                    self.capacity.notify_one();
                }
                Poll::Ready(conn)
            }
            None => {
                if !inbox
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    inbox.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Waits until some inbox can take a connection (backpressure: the
    /// acceptor does not accept while every worker is full or gone).
    pub(crate) async fn wanted(&self) {
        loop {
            let notified = self.capacity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.inboxes.iter().any(Inbox::can_take) {
                    st.acceptor_waits = false;
                    return;
                }
                st.acceptor_waits = true;
            }
            notified.await;
        }
    }

    /// Accepts one connection from `listener` and delivers it, unless every
    /// listener of the socket is closed first (then nothing is accepted).
    pub(crate) async fn accept_from(&self, listener: &AcceptSocket, totals: &Totals) {
        let _busy = self.busy.lock().await;
        let mut attached = self.attached.subscribe();
        tokio::select! {
            biased;
            _ = attached.wait_for(|n| *n == 0) => {}
            conn = listener.accept(totals) => self.deliver(conn),
        }
    }

    /// Puts a connection in the inbox the balance mode picks, or keeps it
    /// for the next `accept` of any worker.
    pub(crate) fn deliver(&self, conn: Accepted) {
        let waker = {
            let mut st = self.lock();
            let pick = match self.balance {
                // A client goes to its slot even past the prefetch, up to a
                // bound: past it (a stuck worker), to another one.
                Balance::Sticky => sticky_slot(&st, conn.peer)
                    .and_then(|slot| st.inboxes.iter().position(|b| b.slot == slot))
                    .filter(|&i| st.inboxes[i].queue.len() < STICKY_BACKLOG)
                    .or_else(|| self.pick(&st)),
                _ => self.pick(&st),
            };
            let Some(i) = pick else {
                st.returned.push_back(conn);
                // Any waiting worker may take it.
                let wakers: Vec<Waker> = st
                    .inboxes
                    .iter_mut()
                    .filter_map(|b| b.waker.take())
                    .collect();
                drop(st);
                wakers.into_iter().for_each(Waker::wake);
                return;
            };
            let inbox = &mut st.inboxes[i];
            inbox.queue.push_back(conn);
            let (slot, waker) = (inbox.slot, inbox.waker.take());
            st.last_slot = Some(slot);
            waker
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn pick(&self, st: &State) -> Option<usize> {
        // Round-robin order: the slots after the last one served, then wrap.
        let rr = |slot: usize| match st.last_slot {
            Some(last) if slot > last => (0, slot),
            Some(_) => (1, slot),
            None => (0, slot),
        };
        let open = st.inboxes.iter().enumerate().filter(|(_, b)| b.can_take());
        match self.balance {
            Balance::LeastConnections => open
                .min_by_key(|(_, b)| (b.load(), rr(b.slot)))
                .map(|(i, _)| i),
            _ => open.min_by_key(|(_, b)| rr(b.slot)).map(|(i, _)| i),
        }
    }
}

/// The live slot a client address maps to: the same while the set of live
/// slots is the same.
fn sticky_slot(st: &State, peer: Option<SocketAddr>) -> Option<usize> {
    let slots: BTreeSet<usize> = st.inboxes.iter().map(|b| b.slot).collect();
    if slots.is_empty() {
        return None;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    peer.map(|p| p.ip()).hash(&mut hasher);
    let n = (hasher.finish() % slots.len() as u64) as usize;
    slots.into_iter().nth(n)
}
