//! kill and disconnect from the primary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{online, until};
use cluster_core::{Cluster, ClusterEvent, ExitReason};

fn exit_of(id: u64) -> impl FnMut(&ClusterEvent) -> Option<ExitReason> {
    move |e| match e {
        ClusterEvent::Exit { worker, reason } if worker.id() == id => Some(reason.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn kill_of_a_worker_parked_at_an_await_is_reported_killed() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|_| std::future::pending::<()>())
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 1).await;
    let w = cluster.worker(1).unwrap();
    w.kill();
    assert_eq!(until(&mut events, exit_of(1)).await, ExitReason::Killed);
    assert!(w.is_dead());
    assert!(
        !w.exited_after_disconnect(),
        "a kill is not a disconnect, as in Node"
    );
    // on-failure: a killed worker is replaced in its slot.
    let slot = until(&mut events, |e| match e {
        ClusterEvent::Online { worker } if worker.id() == 2 => Some(worker.slot()),
        _ => None,
    })
    .await;
    assert_eq!(slot, 0);
    cluster.stop(false).await;
}

static RELEASE: AtomicBool = AtomicBool::new(false);

#[tokio::test]
async fn kill_of_a_worker_stuck_in_a_blocking_loop_is_unresponsive_and_replaced() {
    let cluster = Cluster::builder()
        .workers(1)
        .kill_timeout(Duration::from_millis(100))
        .signals(false)
        .build(|w| async move {
            if w.id() == 1 {
                w.send("blocking").unwrap();
                // Never reaches an await until the test releases it.
                while !RELEASE.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            std::future::pending::<()>().await
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    until(&mut events, |e| {
        matches!(e, ClusterEvent::Message { .. }).then_some(())
    })
    .await;
    let stuck = cluster.worker(1).unwrap();
    stuck.kill();
    assert_eq!(
        until(&mut events, exit_of(1)).await,
        ExitReason::Unresponsive
    );
    assert!(stuck.is_dead());
    let replacement = until(&mut events, |e| match e {
        ClusterEvent::Online { worker } => Some(worker.clone()),
        _ => None,
    })
    .await;
    assert_eq!((replacement.id(), replacement.slot()), (2, 0));
    assert!(!replacement.is_dead());
    RELEASE.store(true, Ordering::SeqCst);
    cluster.stop(false).await;
}

#[tokio::test]
async fn disconnect_is_graceful_and_leaves_the_slot_empty() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|w| async move {
            w.disconnected().await;
            w.send("finishing").unwrap();
            assert!(!w.is_connected());
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 2).await;
    let w = cluster.worker(2).unwrap();
    assert!(w.is_connected());
    w.disconnect();
    assert!(!w.is_connected());
    let said = until(&mut events, |e| match e {
        ClusterEvent::Message { worker, message } if worker.id() == 2 => {
            message.downcast_ref::<&str>().copied()
        }
        _ => None,
    })
    .await;
    assert_eq!(said, "finishing");
    assert_eq!(until(&mut events, exit_of(2)).await, ExitReason::Returned);
    assert!(w.exited_after_disconnect());
    let left: Vec<_> = cluster.workers().iter().map(|w| w.id()).collect();
    assert_eq!(left, [1], "a disconnected worker is not replaced");
    cluster.disconnect().await;
}

#[tokio::test]
async fn a_worker_that_ignores_disconnect_is_killed_after_the_shutdown_timeout() {
    let cluster = Cluster::builder()
        .workers(1)
        .shutdown_timeout(Duration::from_millis(50))
        .signals(false)
        .build(|_| std::future::pending::<()>())
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 1).await;
    let w = cluster.worker(1).unwrap();
    w.disconnect();
    assert_eq!(until(&mut events, exit_of(1)).await, ExitReason::Killed);
    assert!(w.exited_after_disconnect(), "it exited after a disconnect");
    cluster.wait().await.unwrap();
}
