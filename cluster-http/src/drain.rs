//! The drain signal: set once when the server stops accepting, watched by
//! every connection (to shut down gracefully) and by `/healthz`.

use std::cell::Cell;

use cluster_core::{Phase, Worker};
use tokio::sync::watch;

/// Whether this server drains, and the signal its connections watch.
#[derive(Debug)]
pub(crate) struct Drain {
    started: Cell<bool>,
    tx: watch::Sender<bool>,
}

impl Drain {
    pub(crate) fn new() -> Drain {
        Drain {
            started: Cell::new(false),
            tx: watch::Sender::new(false),
        }
    }

    /// Starts the drain: every connection is told to shut down gracefully.
    pub(crate) fn start(&self) {
        self.started.set(true);
        self.tx.send_replace(true);
    }

    /// A receiver for a connection to watch.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// True once this server drains, this worker was asked to disconnect, or
    /// the cluster is draining or stopping.
    pub(crate) fn is_draining(&self, worker: &Worker) -> bool {
        self.started.get()
            || !worker.is_connected()
            || worker.cluster_info().phase >= Phase::Draining
    }
}

/// Resolves when the drain starts.
pub(crate) async fn started(rx: &mut watch::Receiver<bool>) {
    // An error means the server is gone: drain all the more.
    let _ = rx.wait_for(|draining| *draining).await;
}
