//! Bounded waits: for an event of a cluster, or for a condition to hold.

use std::time::Duration;

use cluster_core::{ClusterEvent, Events};

use crate::DEADLINE;

/// Reads events until `f` picks one; panics at the deadline or if the
/// stream ends.
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

/// Polls `f` until it holds, within the deadline.
pub async fn eventually(mut f: impl FnMut() -> bool, what: &str) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "deadline passed waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`eventually`], for a test without a runtime.
pub fn eventually_blocking(mut f: impl FnMut() -> bool, what: &str) {
    let end = std::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "deadline passed waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
