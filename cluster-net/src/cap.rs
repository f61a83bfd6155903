//! The cluster's cap on open connections, all listeners together, as nginx's
//! `worker_connections`: by default a little under `RLIMIT_NOFILE`, so that
//! the process never runs out of fds. At the cap (or when `accept` runs out
//! of fds anyway), idle keep-alive connections are closed, oldest first,
//! to admit new clients; with none idle, new connections wait in the
//! kernel's backlog.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Keep-alive connections that have been idle once (registered at their
    /// first idle moment; dead entries are swept as the list grows).
    idle: Mutex<Idle>,
    evicted: AtomicU64,
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
            idle: Mutex::default(),
            evicted: AtomicU64::new(0),
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

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }

    /// Whether the cap is reached.
    pub(crate) fn full(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.limit.load(Ordering::Acquire)
    }

    /// A client waits while the cap is reached: asks the oldest idle
    /// keep-alive connection to close, and waits until a place is free (any
    /// connection closing). Called only with a connection waiting, so that
    /// no idle connection is closed for nobody.
    pub(crate) async fn make_room(&self) {
        let mut asked = false;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !self.full() {
                return;
            }
            if !asked {
                self.evict_oldest(1);
                asked = true;
            }
            freed.await;
        }
    }

    /// Asks the `most` oldest idle keep-alive connections to close; returns
    /// how many.
    pub(crate) fn evict_oldest(&self, most: usize) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut oldest: Vec<(u64, Arc<IdleState>)> = idle
            .list
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|s| {
                let since = s.idle_since.load(Ordering::Relaxed);
                (since != BUSY).then_some((since, s))
            })
            .collect();
        drop(idle);
        oldest.sort_unstable_by_key(|(since, _)| *since);
        let n = oldest.len().min(most);
        for (_, state) in oldest.into_iter().take(n) {
            state.asked.store(true, Ordering::Release);
            state.evict.wake();
        }
        if n > 0 {
            self.evicted.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(
                n,
                "at the connection cap: closing the oldest idle keep-alive connections"
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

/// `idle_since` of a connection with a request in flight.
const BUSY: u64 = u64::MAX;

/// `at` in µs since the process's first use of this (ordering is all that matters).
fn micros(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(BUSY - 1)
}

#[derive(Debug)]
struct IdleState {
    idle_since: AtomicU64,
    /// Set before `evict` is woken.
    asked: std::sync::atomic::AtomicBool,
    /// The connection's task, waiting for `asked` (registered without a
    /// lock: every connection registers once).
    evict: AtomicWaker,
}

/// How a protocol layer (such as `cluster-http`) tells the connection cap
/// that its connection is idle between requests, so that the cap may close
/// it (oldest first) to admit a new client; from
/// [`Connection::idle_handle`](crate::Connection::idle_handle).
///
/// A connection is never evicted before it has been marked idle.
#[derive(Debug, Clone)]
pub struct IdleHandle {
    state: Arc<IdleState>,
    cap: Weak<Cap>,
    registered: std::cell::Cell<bool>,
}

impl IdleHandle {
    pub(crate) fn new(cap: &Arc<Cap>) -> IdleHandle {
        IdleHandle {
            state: Arc::new(IdleState {
                idle_since: AtomicU64::new(BUSY),
                asked: std::sync::atomic::AtomicBool::new(false),
                evict: AtomicWaker::new(),
            }),
            cap: Arc::downgrade(cap),
            registered: std::cell::Cell::new(false),
        }
    }

    /// The connection has no request in flight now (a keep-alive wait).
    pub fn idle(&self) {
        self.idle_since(Instant::now());
    }

    /// [`idle`](Self::idle), since `at` (a time the caller has read anyway).
    pub fn idle_since(&self, at: Instant) {
        self.state.idle_since.store(micros(at), Ordering::Relaxed);
        if !self.registered.replace(true) {
            if let Some(cap) = self.cap.upgrade() {
                cap.register(&self.state);
            }
        }
    }

    /// A request is in flight: not to be evicted.
    pub fn busy(&self) {
        self.state.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// Resolves when the cap asks for this connection to close (it was
    /// among the oldest idle ones at the cap): close it gracefully. One task
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
            h.state.idle_since.store(since, Ordering::Relaxed);
        }
        assert_eq!(cap.evict_oldest(2), 2);
        let mut told_now = Vec::new();
        for h in &handles {
            told_now.push(told(h).await);
        }
        assert_eq!(told_now, [false, true, true, false]);
        // Busy again: no longer a candidate.
        handles[0].busy();
        assert_eq!(cap.evict_oldest(BATCH), 2);
        assert_eq!(cap.evicted(), 4);
    }
}
