//! The drain signal: set once when the server stops accepting, read by
//! every connection (to shut down gracefully) and by `/healthz`.
//!
//! A flag on the server's thread, not a channel: the server wakes every
//! connection task when it sets it (`Tasks::wake_all`), so no connection
//! registers a waker for it.

use std::cell::Cell;
use std::rc::Rc;

use cluster_core::{Phase, Worker};

/// Whether this server drains.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    started: Rc<Cell<bool>>,
}

/// A connection's view of its server's [`Drain`].
#[derive(Debug, Clone)]
pub(crate) struct DrainFlag(Rc<Cell<bool>>);

impl DrainFlag {
    /// Whether the drain started.
    pub(crate) fn is_set(&self) -> bool {
        self.0.get()
    }

    /// Ready once the drain started. It registers no waker: it must be
    /// polled by a task the server wakes when the drain starts.
    pub(crate) async fn started(&self) {
        std::future::poll_fn(|_| {
            if self.is_set() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

impl Drain {
    /// Starts the drain; the caller wakes the connections.
    pub(crate) fn start(&self) {
        self.started.set(true);
    }

    /// What a connection reads.
    pub(crate) fn flag(&self) -> DrainFlag {
        DrainFlag(Rc::clone(&self.started))
    }

    /// True once this server drains, this worker was asked to disconnect, or
    /// the cluster is draining or stopping.
    pub(crate) fn is_draining(&self, worker: &Worker) -> bool {
        self.started.get()
            || !worker.is_connected()
            || worker.cluster_info().phase >= Phase::Draining
    }
}
