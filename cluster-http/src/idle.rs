//! Keep-alive idle tracking of one connection: requests in flight, and since
//! when none is.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// One connection's activity.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: Cell<usize>,
    requests: Cell<u64>,
    idle_since: Cell<Instant>,
    changed: Notify,
}

impl Activity {
    pub(crate) fn new() -> Rc<Activity> {
        Rc::new(Activity {
            in_flight: Cell::new(0),
            requests: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            changed: Notify::new(),
        })
    }

    /// A request starts; it is in flight until the mark is dropped.
    pub(crate) fn begin(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        self.requests.set(self.requests.get() + 1);
        self.changed.notify_waiters();
        InFlight(Rc::clone(self))
    }

    /// Requests started on this connection so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// Resolves once a request has started on this connection.
    pub(crate) async fn first_request(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.requests.get() > 0 {
                return;
            }
            changed.await;
        }
    }

    /// Resolves once the connection has had no request in flight for
    /// `first` (before its first request) or `after` (after one).
    pub(crate) async fn idle_for(&self, first: Duration, after: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.in_flight.get() > 0 {
                changed.await;
                continue;
            }
            let limit = if self.requests.get() == 0 {
                first
            } else {
                after
            };
            let deadline = self.idle_since.get() + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
            }
        }
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(crate) struct InFlight(Rc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let left = activity.in_flight.get().saturating_sub(1);
        activity.in_flight.set(left);
        if left == 0 {
            activity.idle_since.set(Instant::now());
        }
        activity.changed.notify_waiters();
    }
}
