//! Helpers of cluster-core's tests; the workspace's own are in test-support.

use cluster_core::{ClusterEvent, Events};
pub use test_support::{drain, until, DEADLINE};

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
