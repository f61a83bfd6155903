//! One worker's own events, as Node's `worker.on('online' | 'listening' |
//! 'message' | 'disconnect' | 'exit')`: [`WorkerEvent`], the per-worker
//! hub that keeps them for late subscribers, and [`WorkerEvents`].

use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::{Address, ExitReason, Message};

/// An event of one worker, read from
/// [`WorkerHandle::events`](crate::WorkerHandle::events): the
/// [`ClusterEvent`](crate::ClusterEvent)s about that worker, without the
/// worker (the stream is its own).
///
/// They come in the order `Fork → Online → (Ready | Listening | Message)* →
/// Disconnect → Exit`, and each reaches the worker's streams before the
/// cluster's [`Events`](crate::Events) sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// The worker thread was started.
    Fork,
    /// The worker's runtime is up and its function is about to run.
    Online,
    /// The worker called [`Worker::ready`](crate::Worker::ready).
    Ready,
    /// The worker listens on an address (reported by `cluster-net`).
    Listening {
        /// The address really bound (port 0 resolved).
        address: Address,
    },
    /// The worker sent a message to the primary.
    Message {
        /// The message.
        message: Message,
    },
    /// The worker was asked to stop, or is about to exit.
    Disconnect,
    /// The worker has exited; its streams end after this.
    Exit {
        /// How it ended.
        reason: ExitReason,
    },
}

/// Past this many events in a worker's history, its further Ready and
/// Listening events are not kept for late subscribers (Fork, Online,
/// Disconnect and Exit always are).
const HISTORY: usize = 32;

#[derive(Default)]
struct Hub {
    subscribers: Vec<mpsc::UnboundedSender<WorkerEvent>>,
    /// The worker's events but its messages, for each new subscriber: a
    /// handle's owner who subscribes after `fork()` still sees its Fork and
    /// Online. A handful: see `HISTORY`.
    history: Vec<WorkerEvent>,
    /// The worker is gone: new subscriptions get the history and end.
    closed: bool,
}

/// Fans one worker's events out to its subscribers.
#[derive(Default)]
pub(crate) struct WorkerHub(Mutex<Hub>);

impl WorkerHub {
    pub(crate) fn emit(&self, event: &WorkerEvent) {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if hub.closed {
            return;
        }
        let kept = match event {
            WorkerEvent::Message { .. } => false,
            // A worker may call `ready()` (or listen) any number of times:
            // the first few are kept, the history stays small.
            WorkerEvent::Ready | WorkerEvent::Listening { .. } => hub.history.len() < HISTORY,
            _ => true,
        };
        if kept {
            hub.history.push(event.clone());
        }
        hub.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    /// A subscription: the worker's history first (its messages left out),
    /// then its events from now on.
    pub(crate) fn subscribe(&self) -> WorkerEvents {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (tx, rx) = mpsc::unbounded_channel();
        for event in &hub.history {
            let _ = tx.send(event.clone());
        }
        if !hub.closed {
            hub.subscribers.push(tx);
        }
        WorkerEvents { rx }
    }

    /// The worker is gone: every subscription ends once read.
    pub(crate) fn close(&self) {
        let mut hub = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        hub.closed = true;
        hub.subscribers.clear();
    }
}

/// A subscription to one worker's events, from
/// [`WorkerHandle::events`](crate::WorkerHandle::events).
///
/// Unbounded and lossless from the moment it is made (and before it, every
/// event but the messages); it ends after the worker's `Exit`.
#[derive(Debug)]
pub struct WorkerEvents {
    rx: mpsc::UnboundedReceiver<WorkerEvent>,
}

impl WorkerEvents {
    /// The next event; `None` after the worker's `Exit` was read.
    pub async fn recv(&mut self) -> Option<WorkerEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<WorkerEvent> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mut events: WorkerEvents) -> Vec<&'static str> {
        let mut names = Vec::new();
        while let Some(event) = events.try_recv() {
            names.push(match event {
                WorkerEvent::Fork => "fork",
                WorkerEvent::Ready => "ready",
                WorkerEvent::Message { .. } => "message",
                WorkerEvent::Exit { .. } => "exit",
                _ => "other",
            });
        }
        names
    }

    #[test]
    fn the_history_keeps_the_lifecycle_and_stays_small() {
        let hub = WorkerHub::default();
        let early = hub.subscribe();
        hub.emit(&WorkerEvent::Fork);
        for _ in 0..100 {
            hub.emit(&WorkerEvent::Ready);
            hub.emit(&WorkerEvent::Message {
                message: Message::new(1u8),
            });
        }
        hub.emit(&WorkerEvent::Exit {
            reason: ExitReason::Returned,
        });
        hub.close();
        // Made before: every event, messages included.
        assert_eq!(names(early).len(), 202);
        // Made after: the history, without messages, capped, with the exit.
        let late = names(hub.subscribe());
        assert_eq!(late.len(), HISTORY + 1, "{late:?}");
        assert_eq!(late.first(), Some(&"fork"));
        assert_eq!(late.last(), Some(&"exit"));
        assert!(!late.contains(&"message"));
    }
}
