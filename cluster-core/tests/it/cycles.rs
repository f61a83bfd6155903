//! A fork after a stop begins a new cycle (Node's `cluster.fork()` after
//! `cluster.disconnect()`); the timers of the cycle before (listen timeout,
//! drain delay, shutdown timeout) must not act on it. Each test stops a
//! cycle, waits `GAP`, forks and acts again while the old timer is still
//! due (each timer is longer than `GAP`): the old one fires `GAP` before
//! the new one would.

use std::time::{Duration, Instant};

use crate::common::{until, DEADLINE};
use cluster_core::{Cluster, ClusterBuilder, ClusterEvent, ExitReason, Phase};

/// How far apart the two cycles' timers are.
const GAP: Duration = Duration::from_secs(2);

fn builder() -> ClusterBuilder {
    Cluster::builder().workers(1).signals(false)
}

async fn phase(cluster: &Cluster, want: Phase) {
    tokio::time::timeout(DEADLINE, cluster.phases().wait_for(|p| *p == want))
        .await
        .unwrap_or_else(|_| panic!("{want} before the deadline"));
}

/// The second cycle's worker never says it is ready: the cluster counts it
/// started at its own cycle's listen timeout, not at the first cycle's.
#[tokio::test]
async fn the_old_cycles_listen_timeout_does_not_start_the_new_one() {
    let timeout = GAP * 3 / 2;
    let cluster = builder()
        .listen_timeout(timeout)
        .build(|w| async move { w.disconnected().await })
        .unwrap();
    cluster.start().unwrap();
    cluster.stop(false).await;
    tokio::time::sleep(GAP).await;

    let forked = Instant::now();
    cluster.fork().unwrap();
    phase(&cluster, Phase::Listening).await;
    assert!(
        forked.elapsed() >= timeout,
        "counted as started {:?} after the fork, before its listen timeout of {timeout:?}",
        forked.elapsed()
    );
    cluster.stop(false).await;
}

/// The second cycle's graceful stop disconnects its worker at its own drain
/// delay's end, not at the first cycle's.
#[tokio::test]
async fn the_old_cycles_drain_delay_does_not_cut_the_new_ones_short() {
    let delay = GAP * 3 / 2;
    let cluster = builder()
        .drain_delay(delay)
        .build(|w| async move {
            w.ready();
            w.disconnected().await
        })
        .unwrap();
    cluster.start().unwrap();
    phase(&cluster, Phase::Listening).await;
    // Draining with the delay's timer running; then stopped at once.
    let draining = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.stop(true).await }
    });
    phase(&cluster, Phase::Draining).await;
    cluster.stop(false).await;
    draining.await.unwrap();
    tokio::time::sleep(GAP).await;

    cluster.fork().unwrap();
    let mut events = cluster.events();
    phase(&cluster, Phase::Listening).await;
    let stopped = Instant::now();
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.stop(true).await }
    });
    until(&mut events, |e| {
        matches!(e, ClusterEvent::Disconnect { .. }).then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() >= delay,
        "disconnected {:?} into a drain delay of {delay:?}",
        stopped.elapsed()
    );
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap();
}

/// The second cycle's worker takes longer to drain than is left of the
/// first cycle's shutdown timeout, less than its own: it finishes, and is
/// not killed by the old deadline.
#[tokio::test]
async fn the_old_cycles_shutdown_timeout_does_not_kill_the_new_ones_workers() {
    let timeout = GAP * 2;
    // Ends GAP / 2 or more past the first cycle's deadline (which is GAP or
    // more before the second's), GAP / 2 within the second's.
    let drain = timeout - GAP / 2;
    let cluster = builder()
        .shutdown_timeout(timeout)
        .build(move |w| async move {
            w.ready();
            w.disconnected().await;
            if w.id() > 1 {
                tokio::time::sleep(drain).await; // its drain's work
            }
        })
        .unwrap();
    cluster.start().unwrap();
    phase(&cluster, Phase::Listening).await;
    cluster.disconnect().await;
    tokio::time::sleep(GAP).await;

    cluster.fork().unwrap();
    let mut events = cluster.events();
    phase(&cluster, Phase::Listening).await;
    let stopping = tokio::spawn({
        let cluster = cluster.clone();
        async move { cluster.disconnect().await }
    });
    let reason = until(&mut events, |e| match e {
        ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Returned, "its drain was cut short");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap();
}
