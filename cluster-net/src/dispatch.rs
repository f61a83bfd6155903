//! The hand-off between an acceptor and the workers. Each listener of a
//! worker has an inbox here; the acceptor puts each connection it accepts in
//! the inbox the balance mode picks, among those that can take one (under
//! the worker's connection limit, the connections waiting in its inbox
//! counting, and holding fewer than `PREFETCH` not yet taken). A worker's `accept` takes from its inbox and sleeps only when it
//! is empty; the acceptor sleeps only when no inbox can take a connection
//! (then connections wait in the kernel's backlog). A connection is never
//! dropped on the way: an inbox whose listener goes away is emptied into the
//! others.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// How many queued connections one turn of an accept loop takes at most
/// before it wakes the workers it gave them to.
const BATCH: usize = 16;

/// How many connections may wait for a sticky slot's worker. Past it,
/// when the worker has no connection limit, new ones of its clients go to
/// another worker rather than pile up behind a stuck one; when it has one,
/// the slot is full (see [`Dispatch::place_in`]).
const STICKY_BACKLOG: usize = 64;

/// How many PROXY headers the acceptor of a sticky socket reads at once
/// (each connection counts under the limits meanwhile): past it, new
/// connections wait in the kernel's backlog.
const PROXY_READS: usize = 256;

struct Inbox {
    key: u64,
    slot: usize,
    /// The worker's counts, which the connections in `queue` are part of.
    counters: Arc<Counters>,
    queue: VecDeque<Accepted>,
    /// The worker's `accept`, while it waits on an empty inbox.
    waker: Option<Waker>,
    /// Its worker has called `accept`: until then (its server being
    /// built, perhaps failing, as a hot upgrade's new process may) nothing
    /// is put here, and connections wait in the kernel's queue.
    accepting: bool,
}

impl Inbox {
    /// Whether the acceptor may put one more connection here.
    fn can_take(&self) -> bool {
        self.accepting && self.queue.len() < PREFETCH && self.counters.has_room()
    }

    fn load(&self) -> usize {
        self.counters.active.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct State {
    inboxes: Vec<Inbox>,
    /// Connections no inbox could take; the next `accept` of any worker
    /// under its limit gets them.
    returned: VecDeque<Accepted>,
    /// Sticky: connections whose slot is full, held for it (see
    /// [`Dispatch::place_in`]); nothing more is accepted meanwhile.
    held: VecDeque<Accepted>,
    last_slot: Option<usize>,
    next_key: u64,
    /// The acceptor sleeps until some inbox can take a connection.
    acceptor_waits: bool,
}

impl State {
    /// Whether connections already accepted wait for a place: then the
    /// acceptor takes no more.
    fn backed_up(&self) -> bool {
        !self.returned.is_empty() || !self.held.is_empty()
    }
}

/// Where [`Dispatch::place_in`] put a connection, or why it could not.
enum Placed {
    Inbox,
    /// Sticky: its slot is full; it waits for that slot.
    Held(Accepted),
    /// No inbox can take it now.
    Nowhere(Accepted),
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
    /// so the last `close` sees every connection already taken (not while it
    /// waits for a client: the stand-ins of several empty slots share it).
    /// It holds the workers a batch will wake (empty in between, its room
    /// kept).
    busy: tokio::sync::Mutex<Vec<Waker>>,
    /// PROXY headers being read by the acceptor (sticky).
    proxy_reads: AtomicUsize,
}

impl Dispatch {
    pub(crate) fn new(balance: Balance) -> Dispatch {
        Dispatch {
            balance,
            state: Mutex::default(),
            capacity: Arc::new(Notify::new()),
            attached: watch::Sender::new(0),
            busy: tokio::sync::Mutex::new(Vec::new()),
            proxy_reads: AtomicUsize::new(0),
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
    pub(crate) fn attach(&self, slot: usize, counters: Arc<Counters>) -> u64 {
        let key = {
            let mut st = self.lock();
            st.next_key += 1;
            let key = st.next_key;
            st.inboxes.push(Inbox {
                key,
                slot,
                counters,
                queue: VecDeque::new(),
                waker: None,
                accepting: false,
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
        for mut conn in left {
            conn.place.unassign();
            self.deliver(conn);
        }
        // Connections held for its slot now map to another one.
        self.capacity.notify_one();
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
        let mut st = self.lock();
        let st = &mut *st;
        st.returned.drain(..).chain(st.held.drain(..)).collect()
    }

    /// A worker's `accept`: the next connection of its inbox (or one nobody
    /// took, if the worker is under its limit), or `Pending` until the
    /// acceptor delivers one. Nothing is lost when the caller stops
    /// polling: the inbox keeps it.
    pub(crate) fn poll_take(&self, key: u64, cx: &mut Context<'_>) -> Poll<Accepted> {
        let mut st = self.lock();
        let wake_acceptor = st.acceptor_waits;
        let st = &mut *st;
        let Some(inbox) = st.inboxes.iter_mut().find(|b| b.key == key) else {
            return Poll::Pending;
        };
        // Its first `accept`: the acceptor may fill it from now on.
        let first = !std::mem::replace(&mut inbox.accepting, true);
        let wake_acceptor = wake_acceptor || first;
        let taken = inbox.queue.pop_front().or_else(|| {
            let first = st.returned.front_mut()?;
            first
                .place
                .assign(&inbox.counters)
                .then(|| st.returned.pop_front())
                .flatten()
        });
        match taken {
            Some(conn) => {
                if wake_acceptor {
                    st.acceptor_waits = false;
                    self.capacity.notify_one();
                }
                Poll::Ready(conn)
            }
            None => {
                if first {
                    st.acceptor_waits = false;
                    self.capacity.notify_one();
                }
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

    /// Waits until some inbox can take a connection and none already
    /// accepted waits for a place (backpressure: the acceptor does not
    /// accept while every worker is full or gone). Places the waiting ones
    /// as room appears.
    pub(crate) async fn wanted(&self) {
        loop {
            let notified = self.capacity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut wake = Vec::new();
            let ready = {
                let mut st = self.lock();
                self.place_waiting(&mut st, &mut wake);
                let ready = !st.backed_up()
                    && self.proxy_reads.load(Ordering::Acquire) < PROXY_READS
                    && st.inboxes.iter().any(Inbox::can_take);
                st.acceptor_waits = !ready;
                ready
            };
            wake.into_iter().for_each(Waker::wake);
            if ready {
                return;
            }
            notified.await;
        }
    }

    /// Accepts one connection from `listener` and delivers it, unless every
    /// listener of the socket is closed first (then nothing is accepted).
    pub(crate) async fn accept_from(
        self: &Arc<Self>,
        listener: &AcceptSocket,
        totals: &Arc<Totals>,
    ) {
        let mut attached = self.attached.subscribe();
        let accepted = tokio::select! {
            biased;
            _ = attached.wait_for(|n| *n == 0) => None,
            // Locked from the accept on (see `close`), not while waiting.
            accepted = listener.accept_holding(totals, None, || self.busy.lock()) => Some(accepted),
        };
        let Some((conn, mut wake)) = accepted else {
            return;
        };
        self.place_accepted(conn, totals, &mut wake);
        // More clients are likely queued behind this one: take those a
        // worker can have now, then wake each worker once.
        for _ in 1..BATCH {
            if !self.can_accept_more() {
                break;
            }
            let Some(conn) = listener.accept_now(totals) else {
                break;
            };
            self.place_accepted(conn, totals, &mut wake);
        }
        wake.drain(..).for_each(Waker::wake);
    }

    fn place_accepted(
        self: &Arc<Self>,
        conn: Accepted,
        totals: &Arc<Totals>,
        wake: &mut Vec<Waker>,
    ) {
        if conn.proxy_pending && self.balance == Balance::Sticky {
            // Sticky's key is the client's address: read the header here,
            // one task per connection (counted under the limits by its
            // place, and at most `PROXY_READS` at once), before the pick.
            self.proxy_reads.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(Arc::clone(self).deliver_after_proxy(conn, Arc::clone(totals)));
        } else {
            self.place(conn, None, wake);
        }
    }

    /// Whether the accept loop may take one more connection right away:
    /// what its `wanted` would let through (the limits are the places').
    fn can_accept_more(&self) -> bool {
        let st = self.lock();
        !st.backed_up()
            && self.proxy_reads.load(Ordering::Acquire) < PROXY_READS
            && st.inboxes.iter().any(Inbox::can_take)
    }

    async fn deliver_after_proxy(self: Arc<Self>, conn: Accepted, totals: Arc<Totals>) {
        // A silent connection, for the cap: the first to go when it is full.
        let cap = crate::cap::IdleHandle::new(&totals.cap);
        cap.fresh();
        let result = tokio::select! {
            result = conn.take_proxy_header() => Some(result),
            () = cap.evicted() => None,
        };
        self.proxy_reads.fetch_sub(1, Ordering::AcqRel);
        self.capacity.notify_one();
        match result {
            Some(Ok(conn)) => self.deliver(conn),
            None => tracing::debug!("a connection without its PROXY header closed at the cap"),
            Some(Err((peer, e))) => {
                totals.proxy_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, error = %e, "PROXY header refused; connection closed");
            }
        }
    }

    /// Puts a connection in the inbox the balance mode picks, or keeps it
    /// for the next `accept` of any worker.
    pub(crate) fn deliver(&self, conn: Accepted) {
        self.deliver_to(conn, None);
    }

    /// A draining worker's connection, for another worker than the one of
    /// inbox `except`.
    pub(crate) fn deliver_except(&self, conn: Accepted, except: u64) {
        self.deliver_to(conn, Some(except));
    }

    /// Whether an inbox other than `key` is attached: a worker to migrate
    /// to. It need not accept yet (a new worker between its `listen` and
    /// its first `accept`, loading its TLS certificate): what no accepting
    /// inbox can take waits with the connections nobody took, for the first
    /// `accept` (or the last listener's `close`). During a rolling reload
    /// the other old worker is often closing at the same moment, and the
    /// new one not accepting yet: counting only accepting inboxes closed
    /// those connections.
    pub(crate) fn has_other(&self, key: u64) -> bool {
        self.lock().inboxes.iter().any(|b| b.key != key)
    }

    fn deliver_to(&self, conn: Accepted, except: Option<u64>) {
        let mut wake = Vec::new();
        self.place(conn, except, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }

    /// Puts `conn` where [`place_in`](Self::place_in) picks, else keeps it
    /// waiting, adding to `wake` the workers to wake (not woken here: a
    /// batch wakes each once).
    fn place(&self, conn: Accepted, except: Option<u64>, wake: &mut Vec<Waker>) {
        let mut st = self.lock();
        match self.place_in(&mut st, conn, except, wake) {
            Placed::Inbox => {}
            Placed::Held(conn) => st.held.push_back(conn),
            Placed::Nowhere(conn) => {
                st.returned.push_back(conn);
                // Any waiting worker under its limit may take it.
                wake.extend(st.inboxes.iter_mut().filter_map(|b| b.waker.take()));
            }
        }
    }

    /// Places what waits (held for a sticky slot, or returned) where room
    /// has appeared, in order.
    fn place_waiting(&self, st: &mut State, wake: &mut Vec<Waker>) {
        if !st.backed_up() {
            return;
        }
        let waiting: Vec<Accepted> = st.held.drain(..).chain(st.returned.drain(..)).collect();
        for conn in waiting {
            match self.place_in(st, conn, None, wake) {
                Placed::Inbox => {}
                Placed::Held(conn) => st.held.push_back(conn),
                Placed::Nowhere(conn) => st.returned.push_back(conn),
            }
        }
    }

    /// Puts `conn` in the inbox the balance mode picks, among those whose
    /// worker takes its place (under its limit).
    ///
    /// Sticky: a client goes to its slot's inbox, up to `STICKY_BACKLOG`
    /// waiting there. A slot is full when its worker is at its connection
    /// limit (the connections waiting in its inbox count) or that many wait:
    /// then, if the worker has a limit, the connection is held for its slot
    /// and the acceptor takes nothing more until the slot takes it (when a
    /// place frees there, or when the slot leaves and the client maps to
    /// another one), so both the limit and stickiness hold and the rest wait
    /// in the kernel's backlog; without a limit, it goes to another worker
    /// (a stuck worker never holds the socket up).
    fn place_in(
        &self,
        st: &mut State,
        mut conn: Accepted,
        except: Option<u64>,
        wake: &mut Vec<Waker>,
    ) -> Placed {
        let mut pick = None;
        if self.balance == Balance::Sticky {
            let open = |b: &&Inbox| b.accepting && Some(b.key) != except;
            let slot = sticky_slot(conn.peer, st.inboxes.iter().filter(open).map(|b| b.slot));
            let own =
                slot.and_then(|slot| st.inboxes.iter().position(|b| b.slot == slot && open(&b)));
            if let Some(i) = own {
                let inbox = &st.inboxes[i];
                if inbox.queue.len() < STICKY_BACKLOG && conn.place.assign(&inbox.counters) {
                    pick = Some(i);
                } else if inbox.counters.limit.is_some() {
                    return Placed::Held(conn);
                }
            }
        }
        let pick = match pick {
            Some(i) => i,
            None => match self.pick(st, except) {
                Some(i) if conn.place.assign(&st.inboxes[i].counters) => i,
                _ => return Placed::Nowhere(conn),
            },
        };
        let inbox = &mut st.inboxes[pick];
        inbox.queue.push_back(conn);
        let (slot, waker) = (inbox.slot, inbox.waker.take());
        st.last_slot = Some(slot);
        wake.extend(waker);
        Placed::Inbox
    }

    fn pick(&self, st: &State, except: Option<u64>) -> Option<usize> {
        let open = st
            .inboxes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.can_take() && Some(b.key) != except)
            .map(|(i, b)| (i, b.slot, b.load()));
        pick(self.balance, st.last_slot, open)
    }
}

/// The inbox (by its index) that gets the next connection, among the open
/// ones `(index, slot, load)`: round-robin from the slot after the last one
/// served; least-connections takes the least load first, round-robin
/// between equals.
fn pick(
    balance: Balance,
    last_slot: Option<usize>,
    open: impl Iterator<Item = (usize, usize, usize)>,
) -> Option<usize> {
    let rr = |slot: usize| match last_slot {
        Some(last) if slot > last => (0, slot),
        Some(_) => (1, slot),
        None => (0, slot),
    };
    match balance {
        Balance::LeastConnections => open.min_by_key(|&(_, slot, load)| (load, rr(slot))),
        _ => open.min_by_key(|&(_, slot, _)| rr(slot)),
    }
    .map(|(i, _, _)| i)
}

/// The live slot a client address maps to, by rendezvous hashing (the
/// function the kernel's sticky program computes, so a cluster moving
/// between the two paths keeps its clients where they were): the highest
/// score of (address, slot). A slot that leaves or joins moves only its own
/// clients; the others keep theirs. A client without an address (a Unix
/// socket's) counts as `0.0.0.0`.
fn sticky_slot(peer: Option<SocketAddr>, slots: impl Iterator<Item = usize>) -> Option<usize> {
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
    crate::steer::hash::sticky_slot(ip, slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(loads: &[usize]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        loads.iter().enumerate().map(|(i, &load)| (i, i, load))
    }

    #[test]
    fn round_robin_takes_the_slot_after_the_last_served_and_wraps() {
        let order: Vec<_> = [None, Some(0), Some(1), Some(2)]
            .into_iter()
            .map(|last| pick(Balance::RoundRobin, last, open(&[5, 0, 9])))
            .collect();
        assert_eq!(order, [Some(0), Some(1), Some(2), Some(0)]);
        assert_eq!(pick(Balance::RoundRobin, None, open(&[])), None);
    }

    #[test]
    fn least_connections_takes_the_least_load_then_round_robin() {
        assert_eq!(
            pick(Balance::LeastConnections, None, open(&[3, 1, 2])),
            Some(1)
        );
        // Equal loads: after slot 0, slot 2 (1 is busier).
        assert_eq!(
            pick(Balance::LeastConnections, Some(0), open(&[1, 2, 1])),
            Some(2)
        );
    }

    #[test]
    fn sticky_keeps_a_client_on_its_slot_and_moves_few_when_slots_change() {
        let clients: Vec<SocketAddr> = (0..400u32)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 40000)))
            .collect();
        let map = |slots: &[usize]| -> Vec<usize> {
            clients
                .iter()
                .map(|c| sticky_slot(Some(*c), slots.iter().copied()).unwrap())
                .collect()
        };
        let four = map(&[0, 1, 2, 3]);
        assert_eq!(four, map(&[0, 1, 2, 3]), "the same address, the same slot");
        // Every slot gets a share.
        for slot in 0..4 {
            let share = four.iter().filter(|&&s| s == slot).count();
            assert!((50..150).contains(&share), "slot {slot}: {share} of 400");
        }
        // Slot 3 leaves: only its clients move.
        let three = map(&[0, 1, 2]);
        for (before, after) in four.iter().zip(&three) {
            if *before != 3 {
                assert_eq!(before, after);
            }
        }
        // A slot joins: clients move only to it.
        let five = map(&[0, 1, 2, 3, 4]);
        for (before, after) in four.iter().zip(&five) {
            assert!(before == after || *after == 4);
        }
        // The port does not matter, the address does.
        let other_port = SocketAddr::from(([10, 0, 0, 7], 1));
        assert_eq!(
            sticky_slot(Some(other_port), [0, 1, 2, 3].into_iter()),
            Some(four[7])
        );
    }
}
