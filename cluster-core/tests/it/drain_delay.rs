//! The drain delay: a graceful stop of the whole cluster enters `Draining`
//! at once, the workers go on serving for the delay, and only then are they
//! disconnected; an immediate stop, or a stop without delay, skips it.

use std::time::{Duration, Instant};

use crate::common::{drain, until, DEADLINE};
use cluster_core::{Cluster, ClusterEvent, ExitReason, Phase};

/// Each worker answers every message with whether it is still connected,
/// until it is disconnected.
fn cluster(delay: Duration) -> Cluster {
    Cluster::builder()
        .workers(2)
        .signals(false)
        .drain_delay(delay)
        .build(|w| async move {
            w.ready();
            loop {
                tokio::select! {
                    _ = w.recv() => { let _ = w.send(w.is_connected()); }
                    () = w.disconnected() => return,
                }
            }
        })
        .unwrap()
}

async fn listening(cluster: &Cluster) {
    let mut phases = cluster.phases();
    tokio::time::timeout(DEADLINE, phases.wait_for(|p| *p == Phase::Listening))
        .await
        .expect("listening before the deadline");
}

async fn draining(cluster: &Cluster) {
    let mut phases = cluster.phases();
    tokio::time::timeout(DEADLINE, phases.wait_for(|p| *p >= Phase::Draining))
        .await
        .expect("draining before the deadline");
}

#[tokio::test]
async fn a_graceful_stop_serves_on_through_the_delay_then_disconnects() {
    // Long enough that the exchange below, done at once, falls inside it.
    let delay = Duration::from_secs(3);
    let cluster = cluster(delay);
    let mut events = cluster.events();
    cluster.start().unwrap();
    listening(&cluster).await;

    let began = Instant::now();
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    draining(&cluster).await;
    assert_eq!(cluster.phase(), Phase::Draining);
    // Both workers still take work, and still are connected.
    assert_eq!(cluster.broadcast("still there?"), 2);
    for _ in 0..2 {
        let connected = until(&mut events, |e| match e {
            ClusterEvent::Message { message, .. } => message.downcast_ref::<bool>().copied(),
            ClusterEvent::Disconnect { worker } => {
                panic!("worker {} disconnected within the delay", worker.id())
            }
            _ => None,
        })
        .await;
        assert!(connected, "a worker answered as disconnected");
    }
    // Then, and not before the delay, both are disconnected and exit.
    until(&mut events, |e| {
        matches!(e, ClusterEvent::Disconnect { .. }).then_some(())
    })
    .await;
    assert!(
        began.elapsed() >= delay,
        "disconnected after {:?}",
        began.elapsed()
    );
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap();
    let exits: Vec<ExitReason> = drain(&mut events)
        .await
        .into_iter()
        .filter_map(|e| match e {
            ClusterEvent::Exit { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(exits, [ExitReason::Returned, ExitReason::Returned]);
}

/// An hour: only a stop that skips the delay ends within the test.
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn an_immediate_stop_skips_the_delay() {
    let cluster = cluster(HOUR);
    cluster.start().unwrap();
    listening(&cluster).await;
    let graceful = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    draining(&cluster).await;
    tokio::time::timeout(DEADLINE, cluster.stop(false))
        .await
        .expect("stopped at once");
    tokio::time::timeout(DEADLINE, graceful)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cluster.phase(), Phase::Stopped);
}

#[tokio::test]
async fn a_disconnect_without_delay_skips_it_and_the_workers_return() {
    let cluster = cluster(HOUR);
    let mut events = cluster.events();
    cluster.start().unwrap();
    listening(&cluster).await;
    let graceful = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    draining(&cluster).await;
    tokio::time::timeout(DEADLINE, cluster.disconnect_without_delay())
        .await
        .expect("stopped without the delay");
    tokio::time::timeout(DEADLINE, graceful)
        .await
        .unwrap()
        .unwrap();
    let returned = drain(&mut events)
        .await
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClusterEvent::Exit {
                    reason: ExitReason::Returned,
                    ..
                }
            )
        })
        .count();
    assert_eq!(returned, 2);
}

#[tokio::test]
async fn a_reload_is_announced_before_and_after() {
    let cluster = cluster(Duration::ZERO);
    let mut events = cluster.events();
    cluster.start().unwrap();
    listening(&cluster).await;
    tokio::time::timeout(DEADLINE, cluster.reload())
        .await
        .unwrap()
        .unwrap();
    let seen: Vec<&'static str> = {
        cluster.disconnect().await;
        drain(&mut events)
            .await
            .iter()
            .filter_map(|e| match e {
                ClusterEvent::Reloading => Some("reloading"),
                ClusterEvent::Reloaded { error: None } => Some("reloaded"),
                ClusterEvent::Reloaded { error: Some(e) } => panic!("reload failed: {e}"),
                ClusterEvent::Fork { .. } => Some("fork"),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        seen,
        ["fork", "fork", "reloading", "fork", "fork", "reloaded"]
    );
}
