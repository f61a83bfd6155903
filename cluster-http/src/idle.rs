//! Keep-alive idle tracking of one connection: requests in flight, and since
//! when none is.
//!
//! On the hot path (every request) this only updates cells and reads the
//! clock once; the idle timer is armed once per idle period and re-armed
//! lazily when it fires, rather than reset by every request.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use cluster_net::hooks::IdleHandle;
use tokio::time::Instant;

use crate::slots::Slot;

/// One connection's activity. It counts in its slot's figures (accepted,
/// open, requests, latency) from its creation to its drop.
pub(crate) struct Activity {
    slot: Arc<Slot>,
    in_flight: Cell<usize>,
    requests: Cell<u64>,
    idle_since: Cell<Instant>,
    /// Woken when the first request starts.
    first: Cell<Option<Waker>>,
    /// Its first request asked to close the connection after it: never
    /// idle, so the cap is not told.
    closing: Cell<bool>,
    /// Tells the cluster's connection cap when this connection is idle
    /// between requests (then it may be closed to admit a new client).
    cap: Option<IdleHandle>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity")
            .field("in_flight", &self.in_flight.get())
            .field("requests", &self.requests.get())
            .finish_non_exhaustive()
    }
}

impl Activity {
    /// A new connection's: fresh for the cap (the first to go at the cap,
    /// oldest first) until its first request begins.
    pub(crate) fn new(slot: Arc<Slot>, cap: Option<IdleHandle>) -> Rc<Activity> {
        slot.accepted.fetch_add(1, Ordering::Relaxed);
        slot.active.fetch_add(1, Ordering::Relaxed);
        if let Some(cap) = &cap {
            cap.fresh();
        }
        Rc::new(Activity {
            slot,
            in_flight: Cell::new(0),
            requests: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            first: Cell::new(None),
            closing: Cell::new(false),
            cap,
        })
    }

    /// Resolves when the connection cap asks for this (idle) connection.
    pub(crate) async fn evicted(&self) {
        match &self.cap {
            Some(cap) => cap.evicted().await,
            None => std::future::pending().await,
        }
    }

    /// A request starts; it is in flight until the mark is dropped.
    /// `closing`: the connection closes after it (the client said so).
    pub(crate) fn begin(self: &Rc<Self>, closing: bool) -> InFlight {
        self.slot.requests.fetch_add(1, Ordering::Relaxed);
        if closing {
            self.closing.set(true);
        }
        if let Some(cap) = self.cap.as_ref().filter(|_| self.in_flight.get() == 0) {
            cap.busy();
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let requests = self.requests.get() + 1;
        self.requests.set(requests);
        if requests == 1 {
            if let Some(waker) = self.first.take() {
                waker.wake();
            }
        }
        InFlight {
            activity: Rc::clone(self),
            start: Instant::now(),
        }
    }

    /// Requests in flight on this connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Requests started on this connection so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Resolves once a request has started on this connection.
    pub(crate) async fn first_request(&self) {
        std::future::poll_fn(|task| {
            if self.requests.get() > 0 {
                Poll::Ready(())
            } else {
                self.first.set(Some(task.waker().clone()));
                Poll::Pending
            }
        })
        .await;
    }

    /// Resolves once the connection has had no request in flight for
    /// `first` (before its first request) or `after` (after one).
    pub(crate) fn idle_for(&self, first: Duration, after: Duration) -> IdleFor<'_> {
        IdleFor {
            activity: self,
            first,
            after,
            timer: tokio::time::sleep(first),
        }
    }

    /// `limit` for this connection's first request: a quarter of it
    /// (at least a second) while the cluster's connection cap is under
    /// pressure (see `IdleHandle::under_pressure`).
    pub(crate) fn first_limit(&self, limit: Duration) -> Duration {
        if self.cap.as_ref().is_some_and(IdleHandle::under_pressure) {
            under_pressure(limit)
        } else {
            limit
        }
    }

    /// Whether the cap has asked for this connection (see `evicted`).
    pub(crate) fn eviction_asked(&self) -> bool {
        self.cap.as_ref().is_some_and(IdleHandle::is_asked)
    }
}

/// A timeout for a connection's first bytes while the connection cap is
/// under pressure: a quarter, at least a second (never longer).
pub(crate) fn under_pressure(limit: Duration) -> Duration {
    (limit / 4).max(Duration::from_secs(1)).min(limit)
}

pin_project_lite::pin_project! {
    /// From [`Activity::idle_for`]. Its timer is armed once per idle period
    /// and re-armed lazily when it fires, rather than reset by every request.
    pub(crate) struct IdleFor<'a> {
        activity: &'a Activity,
        first: Duration,
        after: Duration,
        #[pin]
        timer: tokio::time::Sleep,
    }
}

impl IdleFor<'_> {
    /// From now on, the limit after a request is `after`.
    pub(crate) fn set_after(self: std::pin::Pin<&mut Self>, after: Duration) {
        *self.project().after = after;
    }

    /// Whether its timer fired: only then can it be ready (a cheap check
    /// for a task that polls it only when it may be).
    pub(crate) fn may_be_due(&self) -> bool {
        self.timer.is_elapsed()
    }
}

impl std::future::Future for IdleFor<'_> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut this = self.project();
        loop {
            std::task::ready!(this.timer.as_mut().poll(cx));
            let activity: &Activity = this.activity;
            let now = Instant::now();
            let deadline = if activity.in_flight.get() > 0 {
                // Busy: it cannot be idle before `after` from now.
                now + *this.after
            } else {
                let limit = if activity.requests.get() == 0 {
                    *this.first
                } else {
                    *this.after
                };
                activity.idle_since.get() + limit
            };
            if now >= deadline {
                return std::task::Poll::Ready(());
            }
            this.timer.as_mut().reset(deadline);
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.slot.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request in flight on its connection, from its head to the end of its
/// response's body (its latency).
#[derive(Debug)]
pub(crate) struct InFlight {
    activity: Rc<Activity>,
    start: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        let now = Instant::now();
        activity.slot.latency.record(now - self.start);
        let left = activity.in_flight.get().saturating_sub(1);
        activity.in_flight.set(left);
        if left == 0 {
            activity.idle_since.set(now);
            if let Some(cap) = activity.cap.as_ref().filter(|_| !activity.closing.get()) {
                cap.idle_since(now.into_std());
            }
        }
    }
}
