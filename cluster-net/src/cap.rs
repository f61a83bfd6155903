//! The cluster's cap on open connections, all listeners together, as nginx's
//! `worker_connections`: by default a little under `RLIMIT_NOFILE`, so that
//! the process never runs out of fds. At the cap (or when `accept` runs out
//! of fds anyway), connections are closed to admit new clients: first those
//! that have not sent a whole request yet (silent, or still in their TLS
//! handshake or request head), oldest first, then idle keep-alive ones,
//! oldest first; with none of either, new connections wait in the kernel's
//! backlog. Above three quarters of the cap the protocol layers shorten
//! the time a new connection has for its first request.
//!
//! Accept loops that wait at the cap are served in the order they came
//! (a FIFO of turns): each freed place goes to the first of them, and no
//! accept loop takes a place past them. With kernel steering every worker
//! accepts from its own queue, so without turns one whose queue is full of
//! silent connections could win every freed place, and another's client
//! (whose loop asked for room once) would wait for good.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::Poll;
use std::time::Instant;

use atomic_waker::AtomicWaker;
use tokio::sync::Notify;

/// Fds kept for the process's own files when the cap is derived from
/// `RLIMIT_NOFILE` (at most half of the limit).
const RESERVE: usize = 128;

/// How many idle connections are closed when `accept` runs out of fds
/// below the cap (other files took them): room for a few at once.
pub(crate) const BATCH: usize = 8;

/// The default cap: the soft `RLIMIT_NOFILE` minus a reserve.
pub(crate) fn default_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
        .unwrap_or(1024);
    soft - RESERVE.min(soft / 2)
}

/// The cap and the open connections it counts.
#[derive(Debug)]
pub(crate) struct Cap {
    /// Changed live by `set_connection_cap`.
    limit: AtomicUsize,
    open: AtomicUsize,
    freed: Notify,
    /// The accept loops waiting at the cap, first come first served.
    turns: Mutex<Turns>,
    /// How many wait there (`turns`' length, read without its lock by
    /// every `try_open`).
    waiting: AtomicUsize,
    /// Connections marked fresh or idle once (registered then; dead entries
    /// are swept as the list grows).
    idle: Mutex<Idle>,
    evicted: AtomicU64,
    /// Connections asked to close that have not closed yet: the places on
    /// their way to the waiters.
    asking: AtomicUsize,
}

#[derive(Debug, Default)]
struct Turns {
    queue: VecDeque<u64>,
    next: u64,
}

/// A place under the cap won in turn by [`Cap::make_room`]: counted open,
/// given back (to the next in turn) if dropped before a connection holds it.
#[derive(Debug)]
#[must_use]
pub(crate) struct Turn<'a> {
    cap: Option<&'a Cap>,
}

impl Turn<'_> {
    /// The place is a connection's now (it gives it back as it closes).
    pub(crate) fn keep(mut self) {
        self.cap = None;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(cap) = self.cap {
            cap.closed();
        }
    }
}

/// Leaves the queue of turns if still in it (a waiter cancelled): the next
/// one may have room now.
struct Leave<'a> {
    cap: &'a Cap,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut turns = self
            .cap
            .turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = turns.queue.iter().position(|&id| id == self.id) {
            turns.queue.remove(at);
            self.cap.waiting.fetch_sub(1, Ordering::AcqRel);
            drop(turns);
            self.cap.freed.notify_waiters();
        }
    }
}

#[derive(Debug, Default)]
struct Idle {
    list: Vec<Weak<IdleState>>,
    /// Sweep when the list reaches this.
    sweep_at: usize,
}

impl Cap {
    pub(crate) fn new(limit: usize) -> Cap {
        Cap {
            limit: AtomicUsize::new(limit),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
            turns: Mutex::default(),
            waiting: AtomicUsize::new(0),
            idle: Mutex::default(),
            evicted: AtomicU64::new(0),
            asking: AtomicUsize::new(0),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new cap: connections waiting at the old one are admitted at once
    /// if it is higher; open ones are kept if it is lower.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        self.freed.notify_waiters();
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle connections closed to admit new ones so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// One more open connection, if the cap has room (atomically) and no
    /// accept loop waits for its turn at it.
    pub(crate) fn try_open(&self) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
            && crate::count::take_one(&self.open, Some(self.limit()))
    }

    /// One more open connection even at the cap (one open already, that
    /// must not be lost).
    pub(crate) fn force_open(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn closed(&self) {
        if crate::count::released(&self.open, Some(self.limit())) {
            self.freed.notify_waiters();
        }
    }

    /// Whether the cap is reached.
    pub(crate) fn full(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.limit.load(Ordering::Acquire)
    }

    /// A client waits while the cap is reached: asks the oldest idle
    /// keep-alive connection to close, and waits for its turn at a freed
    /// place (any connection closing; the accept loops waiting are served
    /// in the order they came). Called only with a connection waiting, so
    /// that no idle connection is closed for nobody. The place is counted
    /// open from then on: the caller's connection keeps it, or dropping the
    /// turn gives it to the next in turn.
    pub(crate) async fn make_room(&self) -> Turn<'_> {
        let id = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            let id = turns.next;
            turns.next += 1;
            turns.queue.push_back(id);
            self.waiting.fetch_add(1, Ordering::AcqRel);
            id
        };
        let leave = Leave { cap: self, id };
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.take_turn(id) {
                // Out of the queue already: `leave` finds nothing to do.
                drop(leave);
                // The next in turn may find room too (a higher cap).
                self.freed.notify_waiters();
                return Turn { cap: Some(self) };
            }
            self.ask_for_waiters();
            freed.await;
        }
    }

    /// At the cap, asks as many connections to close as there are waiters
    /// without one closing for them. (Asking once per waiter is not enough:
    /// a place goes to the first in turn, whichever waiter asked for it,
    /// and a waiter served whose queue then is empty asks no more.) Each
    /// asked connection, as it goes, wakes the waiters to look again.
    fn ask_for_waiters(&self) {
        if !self.full() {
            return;
        }
        let turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let missing = turns
            .queue
            .len()
            .saturating_sub(self.asking.load(Ordering::Acquire));
        if missing > 0 {
            // Under the queue's lock: two waiters do not both ask for the
            // same missing place.
            self.evict_oldest(missing);
        }
        drop(turns);
    }

    /// A place for the waiter `id`, if it is first in turn and the cap has
    /// room; then it leaves the queue.
    fn take_turn(&self, id: u64) -> bool {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if turns.queue.front() != Some(&id)
            || !crate::count::take_one(&self.open, Some(self.limit()))
        {
            return false;
        }
        turns.queue.pop_front();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        true
    }

    /// Whether the cap is under pressure (three quarters full or more): new
    /// connections then get less time for their first request.
    pub(crate) fn under_pressure(&self) -> bool {
        self.open.load(Ordering::Relaxed).saturating_mul(4) >= self.limit().saturating_mul(3)
    }

    /// Asks the `most` first connections in eviction order to close (those
    /// that have sent no whole request yet, oldest first, then idle ones,
    /// oldest first); returns how many.
    pub(crate) fn evict_oldest(&self, most: usize) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut oldest: Vec<(u64, Arc<IdleState>)> = idle
            .list
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|s| {
                // One asked already is closing: ask another.
                let rank = s.rank.load(Ordering::Relaxed);
                (rank != BUSY && !s.asked.load(Ordering::Acquire)).then_some((rank, s))
            })
            .collect();
        drop(idle);
        // The `most` first, in no order: a selection, not a sort (this runs
        // for every client admitted at the cap).
        let n = oldest.len().min(most);
        if n < oldest.len() && n > 0 {
            oldest.select_nth_unstable_by_key(n - 1, |(rank, _)| *rank);
        }
        self.asking.fetch_add(n, Ordering::AcqRel);
        for (_, state) in oldest.into_iter().take(n) {
            state.asked.store(true, Ordering::Release);
            state.evict.wake();
        }
        if n > 0 {
            self.evicted.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(
                n,
                "at the connection cap: closing the oldest silent, then idle, connections"
            );
        }
        n
    }

    fn register(&self, state: &Arc<IdleState>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.list.len() >= idle.sweep_at {
            idle.list.retain(|w| w.strong_count() > 0);
            idle.sweep_at = (idle.list.len() * 2).max(1024);
        }
        idle.list.push(Arc::downgrade(state));
    }
}

/// The rank of a connection with a request in flight: never evicted.
const BUSY: u64 = u64::MAX;

/// Added to the rank of an idle connection: every fresh one goes first.
const IDLE: u64 = 1 << 62;

/// `at` in µs since the process's first use of this (ordering is all that matters).
fn micros(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_micros())
        .unwrap_or(IDLE - 1)
        .min(IDLE - 1)
}

#[derive(Debug)]
struct IdleState {
    /// Its place in the eviction order: `micros` since fresh, `IDLE` plus
    /// `micros` since idle, or `BUSY`.
    rank: AtomicU64,
    /// In the cap's list.
    registered: AtomicBool,
    /// Set before `evict` is woken.
    asked: AtomicBool,
    /// The connection's task, waiting for `asked` (registered without a
    /// lock: every connection registers once).
    evict: AtomicWaker,
    cap: Weak<Cap>,
}

impl Drop for IdleState {
    /// An asked connection is gone (its place freed, or about to be: the
    /// waiters look again either way).
    fn drop(&mut self) {
        if self.asked.load(Ordering::Acquire) {
            if let Some(cap) = self.cap.upgrade() {
                cap.asking.fetch_sub(1, Ordering::AcqRel);
                cap.freed.notify_waiters();
            }
        }
    }
}

/// How a protocol layer (such as `cluster-http`) tells the connection cap
/// what its connection is doing, so that at the cap it may close it to
/// admit a new client; from `hooks::idle_handle` (every call gives the
/// same connection's handle).
///
/// At the cap, connections marked [`fresh`](Self::fresh) (no whole request
/// yet) are closed first, oldest first, then those marked
/// [`idle`](Self::idle), oldest first; one [`busy`](Self::busy), or never
/// marked, never is.
#[derive(Debug, Clone)]
pub struct IdleHandle {
    state: Arc<IdleState>,
}

impl IdleHandle {
    pub(crate) fn new(cap: &Arc<Cap>) -> IdleHandle {
        IdleHandle {
            state: Arc::new(IdleState {
                rank: AtomicU64::new(BUSY),
                registered: AtomicBool::new(false),
                asked: AtomicBool::new(false),
                evict: AtomicWaker::new(),
                cap: Arc::downgrade(cap),
            }),
        }
    }

    /// The connection has not sent a whole request yet (nothing, or part
    /// of a TLS handshake or of a request head): at the cap, such
    /// connections are closed before idle ones, the oldest first. Only the
    /// first mark counts (a connection is fresh since it was accepted):
    /// does nothing once the connection was marked.
    pub fn fresh(&self) {
        if !self.state.registered.load(Ordering::Relaxed) {
            self.mark(micros(Instant::now()));
        }
    }

    /// The connection has no request in flight now (a keep-alive wait).
    pub fn idle(&self) {
        self.idle_since(Instant::now());
    }

    /// [`idle`](Self::idle), since `at` (a time the caller has read anyway).
    pub fn idle_since(&self, at: Instant) {
        self.mark(IDLE + micros(at));
    }

    fn mark(&self, rank: u64) {
        self.state.rank.store(rank, Ordering::Relaxed);
        if !self.state.registered.swap(true, Ordering::Relaxed) {
            if let Some(cap) = self.state.cap.upgrade() {
                cap.register(&self.state);
            }
        }
    }

    /// A request is in flight: not to be evicted.
    pub fn busy(&self) {
        self.state.rank.store(BUSY, Ordering::Relaxed);
    }

    /// Whether the cluster's connection cap is three quarters full or more:
    /// then a new connection should get less time for its first request
    /// (`cluster-http` gives it a quarter of its header read and TLS
    /// handshake timeouts), as silent ones may be filling the cap.
    pub fn under_pressure(&self) -> bool {
        self.state
            .cap
            .upgrade()
            .is_some_and(|cap| cap.under_pressure())
    }

    /// Resolves when the cap asks for this connection to close (it was
    /// among the first to go at the cap): close it gracefully. One task
    /// waits on a connection's handle: the last to poll is the one woken.
    pub async fn evicted(&self) {
        std::future::poll_fn(|task| {
            self.state.evict.register(task.waker());
            if self.is_asked() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Whether the cap has asked (then [`evicted`](Self::evicted) is
    /// ready): a cheap check for a task that polls `evicted` only when it
    /// may have fired.
    pub fn is_asked(&self) -> bool {
        self.state.asked.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_keeps_a_reserve_below_the_fd_limit() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let cap = default_cap() as u64;
        assert!(cap < soft && cap >= soft / 2, "cap {cap} of {soft}");
    }

    /// Whether `h` was asked to close, without waiting.
    async fn told(h: &IdleHandle) -> bool {
        tokio::select! {
            biased;
            () = h.evicted() => true,
            () = std::future::ready(()) => false,
        }
    }

    #[tokio::test]
    async fn eviction_takes_the_oldest_idle_connections_only() {
        let cap = Arc::new(Cap::new(2));
        let handles: Vec<_> = (0..4).map(|_| IdleHandle::new(&cap)).collect();
        for h in &handles[..3] {
            h.idle();
        }
        // Idle since 30, 10 and 20; the fourth was never idle.
        for (h, since) in handles.iter().zip([30, 10, 20]) {
            h.state.rank.store(IDLE + since, Ordering::Relaxed);
        }
        assert_eq!(cap.evict_oldest(2), 2);
        let mut told_now = Vec::new();
        for h in &handles {
            told_now.push(told(h).await);
        }
        assert_eq!(told_now, [false, true, true, false]);
        // Busy again: no longer a candidate; those asked are not asked again.
        handles[0].busy();
        assert_eq!(cap.evict_oldest(BATCH), 0);
        assert_eq!(cap.evicted(), 2);
    }

    #[tokio::test]
    async fn eviction_selects_the_oldest_of_many() {
        let cap = Arc::new(Cap::new(2));
        let handles: Vec<_> = (0..100).map(|_| IdleHandle::new(&cap)).collect();
        // Idle since a shuffled order: 37 × i mod 100 is a permutation.
        for (i, h) in handles.iter().enumerate() {
            h.idle();
            h.state
                .rank
                .store(IDLE + (i as u64 * 37) % 100, Ordering::Relaxed);
        }
        assert_eq!(cap.evict_oldest(BATCH), BATCH);
        let mut asked: Vec<u64> = handles
            .iter()
            .filter(|h| h.is_asked())
            .map(|h| h.state.rank.load(Ordering::Relaxed) - IDLE)
            .collect();
        asked.sort_unstable();
        assert_eq!(asked, (0..BATCH as u64).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn connections_without_a_request_go_before_idle_ones_oldest_first() {
        let cap = Arc::new(Cap::new(2));
        let idle = IdleHandle::new(&cap);
        idle.idle();
        let (old, new) = (IdleHandle::new(&cap), IdleHandle::new(&cap));
        old.fresh();
        new.fresh();
        // Fresh since before the idle one was idle, or after: fresh first.
        old.state.rank.store(5, Ordering::Relaxed);
        new.state.rank.store(IDLE - 1, Ordering::Relaxed);
        // A later `fresh` keeps the first mark.
        old.fresh();
        assert_eq!(old.state.rank.load(Ordering::Relaxed), 5);
        assert_eq!(cap.evict_oldest(1), 1);
        assert!(old.is_asked() && !new.is_asked() && !idle.is_asked());
        assert_eq!(cap.evict_oldest(1), 1);
        assert!(new.is_asked() && !idle.is_asked());
        // Its first request began: no longer a candidate.
        let started = IdleHandle::new(&cap);
        started.fresh();
        started.busy();
        assert_eq!(cap.evict_oldest(8), 1);
        assert!(idle.is_asked() && !started.is_asked());
    }

    /// Whether `f` is ready now, without waiting.
    fn now<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match f.poll(&mut std::task::Context::from_waker(waker)) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    }

    #[test]
    fn freed_places_go_to_the_waiters_in_the_order_they_came() {
        let cap = Cap::new(2);
        assert!(cap.try_open() && cap.try_open());
        let mut first = std::pin::pin!(cap.make_room());
        let mut second = std::pin::pin!(cap.make_room());
        assert!(now(first.as_mut()).is_none());
        assert!(now(second.as_mut()).is_none());
        // A place freed: the first waiter's, even when the second looks first.
        cap.closed();
        assert!(now(second.as_mut()).is_none());
        let turn = now(first.as_mut()).expect("the first waiter's turn");
        assert_eq!(cap.open(), 2);
        // No accept loop takes a place past a waiter.
        cap.closed();
        assert!(!cap.try_open());
        // The second's turn; a turn given back unused frees its place.
        now(second.as_mut())
            .expect("the second waiter's turn")
            .keep();
        assert_eq!(cap.open(), 2);
        drop(turn);
        assert_eq!(cap.open(), 1);
        assert!(cap.try_open(), "nobody waits: a place for anyone");
    }

    #[test]
    fn a_cancelled_waiter_leaves_its_place_in_the_queue_to_the_next() {
        let cap = Cap::new(1);
        assert!(cap.try_open());
        let mut first = Box::pin(cap.make_room());
        let mut second = Box::pin(cap.make_room());
        assert!(now(first.as_mut()).is_none() && now(second.as_mut()).is_none());
        cap.closed();
        // The first leaves before it polls again: the place is the second's.
        drop(first);
        now(second.as_mut())
            .expect("the second waiter's turn")
            .keep();
        assert_eq!(cap.open(), 1);
        drop(second);
        assert_eq!(cap.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_waiter_asks_one_connection_to_close() {
        let cap = Arc::new(Cap::new(2));
        let handles: Vec<_> = (0..4).map(|_| IdleHandle::new(&cap)).collect();
        for h in &handles {
            h.fresh();
        }
        assert!(cap.try_open() && cap.try_open());
        let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(cap.make_room())).collect();
        for w in &mut waiters {
            assert!(now(w.as_mut()).is_none());
            assert!(now(w.as_mut()).is_none(), "asks once");
        }
        assert_eq!(cap.evicted(), 3);
    }

    #[test]
    fn a_waiter_asks_again_while_no_close_is_coming_for_it() {
        let cap = Arc::new(Cap::new(2));
        let mut handles: Vec<_> = (0..3).map(|_| IdleHandle::new(&cap)).collect();
        for h in &handles {
            h.fresh();
        }
        // Over the cap (connections that must not be lost were forced in).
        assert!(cap.try_open() && cap.try_open());
        cap.force_open();
        let mut waiter = Box::pin(cap.make_room());
        assert!(now(waiter.as_mut()).is_none());
        assert_eq!(cap.evicted(), 1);
        // The asked one closes: still at the cap, and no close coming.
        let asked = handles.iter().position(IdleHandle::is_asked).unwrap();
        drop(handles.remove(asked));
        cap.closed();
        assert!(now(waiter.as_mut()).is_none());
        assert_eq!(cap.evicted(), 2, "asked again");
        let asked = handles.iter().position(IdleHandle::is_asked).unwrap();
        drop(handles.remove(asked));
        cap.closed();
        now(waiter.as_mut()).expect("a place at last").keep();
        assert_eq!(cap.open(), 2);
    }
}
