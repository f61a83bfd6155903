use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::ClusterEvent;

/// Events kept for the first subscriber, so that a primary that subscribes
/// after the start still sees every fork; beyond this many, older ones are dropped.
const BACKLOG: usize = 1024;

#[derive(Default)]
struct Hub {
    subscribers: Vec<mpsc::UnboundedSender<ClusterEvent>>,
    /// `Some` until the first subscriber takes it.
    backlog: Option<std::collections::VecDeque<ClusterEvent>>,
    closed: bool,
}

/// Fans events out to every subscriber.
pub(crate) struct EventHub(Mutex<Hub>);

impl Default for EventHub {
    fn default() -> Self {
        EventHub(Mutex::new(Hub {
            backlog: Some(Default::default()),
            ..Hub::default()
        }))
    }
}

impl EventHub {
    pub(crate) fn emit(&self, event: ClusterEvent) {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(backlog) = &mut hub.backlog {
            if backlog.len() == BACKLOG {
                backlog.pop_front();
            }
            backlog.push_back(event.clone());
        }
        hub.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    pub(crate) fn subscribe(&self) -> Events {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = mpsc::unbounded_channel();
        // Stopped: an ended stream (a fork starts a new cycle to subscribe to).
        if !hub.closed {
            for event in hub.backlog.take().into_iter().flatten() {
                let _ = tx.send(event);
            }
            hub.subscribers.push(tx);
        }
        Events { rx }
    }

    /// A subscription that leaves the backlog to the first `subscribe`.
    pub(crate) fn subscribe_later(&self) -> Events {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = mpsc::unbounded_channel();
        if !hub.closed {
            hub.subscribers.push(tx);
        }
        Events { rx }
    }

    /// A new cycle after a stop: new subscriptions get its events, the
    /// first one from its start.
    pub(crate) fn reopen(&self) {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        hub.closed = false;
        hub.backlog = Some(Default::default());
    }

    /// After `Stopped`: subscribers' `recv` returns `None` once drained.
    pub(crate) fn close(&self) {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        hub.closed = true;
        hub.subscribers.clear();
    }
}

/// A subscription to a cluster's events, from [`Cluster::events`](crate::Cluster::events).
///
/// Unbounded and lossless: read it, or drop it.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<ClusterEvent>,
}

impl Events {
    /// The next event; `None` after the cluster has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<ClusterEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<ClusterEvent> {
        self.rx.try_recv().ok()
    }
}
