//! Restarts: a panicking worker comes back in its slot with a new id; a slot
//! whose workers crash on start is errored, not crash-looping; exits the
//! policy calls final are not restarted.

use std::time::Duration;

use crate::common::{drain, until};
use cluster_core::{Cluster, ClusterEvent, Error, ExitReason, RestartPolicy};

#[tokio::test]
async fn a_panicking_worker_is_restarted_into_its_slot_with_a_new_id() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|w| async move {
            if w.id() == 1 {
                panic!("worker {} gave up", w.id());
            }
            w.disconnected().await
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let (slot, reason) = until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, reason } => Some((worker.slot(), reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(slot, 0);
    assert_eq!(reason, ExitReason::Panicked("worker 1 gave up".into()));
    let (id, slot) = until(&mut events, |e| match e {
        ClusterEvent::Online { worker } if worker.id() > 2 => Some((worker.id(), worker.slot())),
        _ => None,
    })
    .await;
    assert_eq!(
        (id, slot),
        (3, 0),
        "the replacement takes slot 0 with the next id"
    );
    let workers: Vec<_> = cluster
        .workers()
        .iter()
        .map(|w| (w.slot(), w.id()))
        .collect();
    assert_eq!(workers, [(0, 3), (1, 2)]);
    cluster.disconnect().await;
}

#[tokio::test]
async fn a_slot_crashing_on_start_is_errored_after_max_restarts() {
    let cluster = Cluster::builder()
        .workers(1)
        .max_restarts(3)
        .min_uptime(Duration::from_secs(60))
        .restart_delay(Duration::from_millis(2))
        .signals(false)
        .build(|_| async { Err::<(), _>("no database") })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let result = cluster.wait().await;
    assert!(
        matches!(&result, Err(Error::Errored { slots, max_restarts: 3 }) if slots == &[0]),
        "{result:?}"
    );
    let all = drain(&mut events).await;
    let forks: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Fork { worker } => Some(worker.id()),
            _ => None,
        })
        .collect();
    assert_eq!(forks, [1, 2, 3, 4], "ids grow and are never reused");
    let delays: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Restarting { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    // The first restart is immediate, then the delay grows ×1.5.
    assert_eq!(delays, [Duration::from_millis(2), Duration::from_millis(3)]);
    let errored = all.iter().find_map(|e| match e {
        ClusterEvent::Errored {
            slot,
            restarts,
            last,
        } => Some((*slot, *restarts, last.clone())),
        _ => None,
    });
    assert_eq!(
        errored,
        Some((0, 3, ExitReason::Error("no database".into())))
    );
}

#[tokio::test]
async fn never_leaves_the_slot_empty_and_always_restarts_a_return() {
    for (policy, restarted) in [(RestartPolicy::Never, false), (RestartPolicy::Always, true)] {
        let cluster = Cluster::builder()
            .workers(1)
            .restart(policy)
            .signals(false)
            .build(|w| async move {
                if w.id() == 1 {
                    return;
                }
                w.disconnected().await
            })
            .unwrap();
        let mut events = cluster.events();
        cluster.start().unwrap();
        until(&mut events, |e| {
            matches!(e, ClusterEvent::Exit { .. }).then_some(())
        })
        .await;
        if restarted {
            let id = until(&mut events, |e| match e {
                ClusterEvent::Online { worker } if worker.id() == 2 => Some(worker.slot()),
                _ => None,
            })
            .await;
            assert_eq!(id, 0);
            cluster.disconnect().await;
        } else {
            cluster.wait().await.unwrap();
            assert!(cluster.workers().is_empty());
        }
    }
}

/// A request that kills its worker must not make the slot give up: a
/// worker that reported ready and then dies is replaced at once, however
/// often, and its slot is never errored.
#[tokio::test]
async fn workers_that_die_after_ready_are_replaced_and_never_error_the_slot() {
    let cluster = Cluster::builder()
        .workers(1)
        .max_restarts(2)
        .min_uptime(Duration::from_secs(60))
        .restart_delay(Duration::from_millis(1))
        .signals(false)
        .build(|w| async move {
            w.ready();
            // Dies soon after it serves, as under a storm of fatal requests.
            tokio::time::sleep(Duration::from_millis(2)).await;
            if w.id() < 12 {
                panic!("killed by a request");
            }
            w.disconnected().await
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut exits = 0;
    let last = until(&mut events, |e| match e {
        ClusterEvent::Exit { .. } => {
            exits += 1;
            None
        }
        ClusterEvent::Errored { slot, .. } => Some(Err(*slot)),
        ClusterEvent::Ready { worker } if worker.id() == 12 => Some(Ok(worker.slot())),
        _ => None,
    })
    .await;
    assert_eq!(last, Ok(0), "the slot was errored after {exits} exits");
    assert_eq!(exits, 11);
    cluster.disconnect().await;
    cluster.wait().await.unwrap();
}

/// A worker's error that every restart would hit again: its `Display`
/// says so, and the restart policy below knows it by that text.
#[derive(Debug)]
struct BadConfig(&'static str);

impl std::fmt::Display for BadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad config: {}", self.0)
    }
}

#[tokio::test]
async fn an_exit_the_policy_calls_final_is_not_restarted_other_failures_are() {
    let cluster = Cluster::builder()
        .workers(2)
        .restart(RestartPolicy::OnFailureExcept(
            |reason| matches!(reason, ExitReason::Error(e) if e.starts_with("bad config:")),
        ))
        .signals(false)
        .build(|w| async move {
            match w.id() {
                // Slot 0: a final error. Slot 1: a transient one, then serves.
                1 => Err(BadConfig("no port")),
                2 => panic!("transient"),
                _ => {
                    w.disconnected().await;
                    Ok(())
                }
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let (mut final_exit, mut replacement) = (None, None);
    until(&mut events, |e| {
        match e {
            ClusterEvent::Exit { worker, reason } if worker.slot() == 0 => {
                final_exit = Some(reason.clone());
            }
            ClusterEvent::Fork { worker } if worker.slot() == 0 && worker.id() > 2 => {
                panic!("slot 0 was refilled after a final exit");
            }
            ClusterEvent::Online { worker } if worker.id() > 2 => {
                replacement = Some((worker.id(), worker.slot()));
            }
            _ => {}
        }
        (final_exit.is_some() && replacement.is_some()).then_some(())
    })
    .await;
    assert_eq!(replacement, Some((3, 1)), "the panicked slot 1 is refilled");
    assert_eq!(
        final_exit,
        Some(ExitReason::Error("bad config: no port".into()))
    );
    // The exit of slot 0 came before its own restart could: none follows.
    let slots: Vec<_> = cluster.workers().iter().map(|w| w.slot()).collect();
    assert_eq!(slots, [1], "slot 0 is left empty");
    assert_eq!(cluster.size(), 2, "an empty slot, not a removed one");
    cluster.disconnect().await;
    let after = drain(&mut events).await;
    assert!(
        !after
            .iter()
            .any(|e| matches!(e, ClusterEvent::Fork { worker } if worker.slot() == 0)),
        "slot 0 was refilled: {after:?}"
    );
}
