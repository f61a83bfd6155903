//! Rolling reload: every worker replaced, one slot at a time, the new one
//! ready before the old one is disconnected.

use std::collections::BTreeSet;

use crate::common::online;
use cluster_core::{Cluster, ClusterEvent};

#[tokio::test]
async fn reload_replaces_every_worker_never_dropping_below_n_minus_1() {
    const N: usize = 3;
    let cluster = Cluster::builder()
        .workers(N)
        .signals(false)
        .build(|w| async move {
            // Some start-up work before saying ready.
            tokio::task::yield_now().await;
            w.ready();
            w.disconnected().await
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let old: BTreeSet<u64> = online(&mut events, N).await.into_iter().collect();
    let mut serving = old.clone();
    cluster.reload().await.unwrap();

    let mut min_serving = serving.len();
    let mut ready_at = Vec::new();
    let mut log = Vec::new();
    while let Some(e) = events.try_recv() {
        match &e {
            ClusterEvent::Ready { worker } => {
                serving.insert(worker.id());
                ready_at.push((worker.slot(), log.len()));
            }
            ClusterEvent::Disconnect { worker } => {
                serving.remove(&worker.id());
                min_serving = min_serving.min(serving.len());
                // The new worker of this slot said ready before this one left.
                assert!(
                    ready_at.iter().any(|(slot, _)| *slot == worker.slot())
                        || !old.contains(&worker.id()),
                    "slot {} disconnected before its replacement was ready",
                    worker.slot()
                );
            }
            _ => {}
        }
        log.push(e);
    }
    assert!(
        min_serving >= N - 1,
        "only {min_serving} workers serving during reload"
    );
    let now: Vec<_> = cluster
        .workers()
        .iter()
        .map(|w| (w.slot(), w.id()))
        .collect();
    assert_eq!(now.len(), N);
    for (slot, (s, id)) in now.iter().enumerate() {
        assert_eq!(*s, slot);
        assert!(!old.contains(id), "worker {id} was not replaced");
    }
    assert!(serving.is_disjoint(&old));
    cluster.disconnect().await;
}

#[tokio::test]
async fn a_reload_whose_new_worker_fails_keeps_the_old_one() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|w| async move {
            tokio::task::yield_now().await;
            if w.id() > 1 {
                panic!("bad new version");
            }
            w.ready();
            w.disconnected().await
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    crate::common::until(&mut events, |e| {
        matches!(e, ClusterEvent::Ready { .. }).then_some(())
    })
    .await;
    let err = cluster.reload().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "reload stopped at slot 0: new worker 2 did not start (panicked: bad new version); \
         the old worker keeps serving"
    );
    let now: Vec<_> = cluster.workers().iter().map(|w| w.id()).collect();
    assert_eq!(now, [1], "the old worker keeps its slot");
    cluster.disconnect().await;
}
