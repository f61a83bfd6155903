//! Helpers shared by the integration tests: bounded waits on events.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use cluster_core::{ClusterEvent, Events};

/// Every wait in these tests is bounded by this deadline.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Reads events until `f` picks one; panics at the deadline or if the stream ends.
pub async fn until<T>(events: &mut Events, mut f: impl FnMut(&ClusterEvent) -> Option<T>) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("event stream ended");
            if let Some(t) = f(&event) {
                return t;
            }
        }
    })
    .await
    .expect("deadline passed waiting for an event")
}

/// Reads every event left until the stream ends (the cluster stopped).
pub async fn drain(events: &mut Events) -> Vec<ClusterEvent> {
    tokio::time::timeout(DEADLINE, async {
        let mut all = Vec::new();
        while let Some(e) = events.recv().await {
            all.push(e);
        }
        all
    })
    .await
    .expect("deadline passed waiting for the cluster to stop")
}

/// Waits until `n` workers have come online; returns their ids.
pub async fn online(events: &mut Events, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        ids.push(
            until(events, |e| match e {
                ClusterEvent::Online { worker } => Some(worker.id()),
                _ => None,
            })
            .await,
        );
    }
    ids
}

/// A short name for an event, with the worker's id.
pub fn kind(e: &ClusterEvent) -> Option<(u64, &'static str)> {
    Some(match e {
        ClusterEvent::Fork { worker } => (worker.id(), "fork"),
        ClusterEvent::Online { worker } => (worker.id(), "online"),
        ClusterEvent::Disconnect { worker } => (worker.id(), "disconnect"),
        ClusterEvent::Exit { worker, .. } => (worker.id(), "exit"),
        _ => return None,
    })
}
