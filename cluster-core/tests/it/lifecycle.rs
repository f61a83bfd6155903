//! Identity and the order of lifecycle events.

use crate::common::{drain, kind, online};
use cluster_core::{Cluster, ClusterEvent, ExitReason, Phase};

#[tokio::test]
async fn events_come_fork_online_disconnect_exit_for_each_worker() {
    let cluster = Cluster::builder()
        .workers(3)
        .signals(false)
        .build(|w| async move {
            w.ready();
            w.disconnected().await
        })
        .unwrap();
    let mut events = cluster.events();
    let mut phases = cluster.phases();
    cluster.start().unwrap();
    online(&mut events, 3).await;
    // Listening once every worker said it is ready.
    tokio::time::timeout(
        crate::common::DEADLINE,
        phases.wait_for(|p| *p == Phase::Listening),
    )
    .await
    .unwrap();
    cluster.disconnect().await;
    assert_eq!(cluster.phase(), Phase::Stopped);

    let all = drain(&mut events).await;
    for id in 1..=3 {
        let seq: Vec<_> = all
            .iter()
            .filter_map(kind)
            .filter(|(i, _)| *i == id)
            .map(|(_, k)| k)
            .collect();
        // Online was read above; the rest follow in order.
        assert_eq!(seq, ["disconnect", "exit"], "worker {id}");
    }
    let reasons: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Exit { worker, reason } => {
                Some((worker.exited_after_disconnect(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![(true, ExitReason::Returned); 3]);
    let phases: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Phase(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Listening,
            Phase::Draining,
            Phase::Stopping,
            Phase::Stopped
        ]
    );
}

#[tokio::test]
async fn workers_that_never_listen_count_as_started_after_the_listen_timeout() {
    let cluster = Cluster::builder()
        .workers(2)
        .listen_timeout(std::time::Duration::from_millis(50))
        .signals(false)
        .build(|w| async move { w.disconnected().await })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 2).await;
    let phase = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Phase(p) => Some(*p),
        _ => None,
    })
    .await;
    assert_eq!(phase, Phase::Listening);
    cluster.disconnect().await;
}

#[tokio::test]
async fn the_first_subscriber_sees_forks_made_before_it_subscribed() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|_| async {})
        .unwrap();
    cluster.start().unwrap();
    let mut events = cluster.events();
    let all = drain(&mut events).await;
    let seq: Vec<_> = all.iter().filter_map(kind).collect();
    for id in [1, 2] {
        let mine: Vec<_> = seq
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(
            mine,
            ["fork", "online", "disconnect", "exit"],
            "worker {id}"
        );
    }
    // Every worker returned Ok under on-failure: the cluster ends by itself.
    cluster.wait().await.unwrap();
}

#[tokio::test]
async fn identity_inside_a_worker() {
    let cluster = Cluster::builder()
        .workers(2)
        .thread_name("ident")
        .signals(false)
        .build(|w| async move {
            let current = cluster_core::worker().expect("worker() on a worker thread");
            let name = std::thread::current().name().map(str::to_owned);
            w.send((
                current.id() == w.id(),
                cluster_core::is_worker(),
                cluster_core::is_primary(),
                w.slot(),
                name,
                w.thread_id() == Some(std::thread::current().id()),
            ))
        })
        .unwrap();
    assert!(cluster_core::is_primary());
    assert!(cluster_core::worker().is_none());
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut seen = Vec::new();
    for e in drain(&mut events).await {
        if let ClusterEvent::Message { message, .. } = e {
            seen.push(
                message
                    .downcast_ref::<(bool, bool, bool, usize, Option<String>, bool)>()
                    .cloned()
                    .unwrap(),
            );
        }
    }
    seen.sort_by_key(|s| s.3);
    assert_eq!(
        seen,
        vec![
            (true, true, false, 0, Some("ident-0".into()), true),
            (true, true, false, 1, Some("ident-1".into()), true),
        ]
    );
}

#[tokio::test]
async fn worker_futures_need_not_be_send() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|w| async move {
            let counter = std::rc::Rc::new(std::cell::RefCell::new(0));
            let c = counter.clone();
            tokio::task::spawn_local(async move { *c.borrow_mut() += 41 })
                .await
                .unwrap();
            *counter.borrow_mut() += 1;
            let n = *counter.borrow();
            w.send(n)
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let n = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Message { message, .. } => message.downcast_ref::<i32>().copied(),
        _ => None,
    })
    .await;
    assert_eq!(n, 42);
}

#[tokio::test]
async fn a_worker_error_is_reported_with_its_text() {
    let cluster = Cluster::builder()
        .workers(1)
        .restart(cluster_core::RestartPolicy::Never)
        .signals(false)
        .build(|_| async { Err::<(), _>(std::io::Error::other("config file missing")) })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let reason = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Error("config file missing".into()));
    cluster.wait().await.unwrap();
}

#[test]
fn zero_workers_is_an_error_naming_the_setting() {
    let err = Cluster::builder()
        .workers(0)
        .build(|_| async {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid setting `workers = 0`: a cluster needs at least one worker"
    );
}

#[test]
fn start_needs_a_runtime() {
    let cluster = Cluster::builder().workers(1).build(|_| async {}).unwrap();
    assert!(matches!(
        cluster.start(),
        Err(cluster_core::Error::NoRuntime)
    ));
}

#[tokio::test]
async fn a_start_up_failure_stops_the_whole_cluster_with_its_message() {
    let cluster = Cluster::builder()
        .workers(3)
        .signals(false)
        .build(|w| async move {
            if w.slot() == 1 {
                cluster_core::hooks::fail_start(&w, "address 127.0.0.1:1 already in use");
                return Err("address 127.0.0.1:1 already in use");
            }
            w.disconnected().await;
            Ok(())
        })
        .unwrap();
    cluster.start().unwrap();
    let err = tokio::time::timeout(crate::common::DEADLINE, cluster.wait())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "start-up failed in worker 2 (slot 1): address 127.0.0.1:1 already in use"
    );
    assert!(cluster.workers().is_empty(), "no worker is left running");
}

/// Node's `cluster.worker.disconnect()`: a worker disconnects itself; it
/// drains as when the primary asks, its exit counts as asked for, and it is
/// not restarted.
#[tokio::test]
async fn a_worker_can_disconnect_itself() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|w| async move {
            if w.slot() == 0 {
                w.disconnect();
            }
            w.disconnected().await;
            assert!(!w.is_connected());
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let worker = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Disconnect { worker } => Some(worker.clone()),
        _ => None,
    })
    .await;
    assert_eq!(worker.slot(), 0);
    let (exited, reason) = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, reason } => {
            Some((worker.exited_after_disconnect(), reason.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((exited, reason), (true, ExitReason::Returned));
    // Not replaced: only the other worker is left.
    let left: Vec<_> = cluster.workers().iter().map(|w| w.slot()).collect();
    assert_eq!(left, [1]);
    cluster.disconnect().await;
}

/// A cluster is usable again after `disconnect()`: `fork()` starts a new
/// cycle (Node runs a second one), with its own events and phases.
#[tokio::test]
async fn fork_after_disconnect_starts_a_new_cycle() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|w| async move {
            w.ready();
            w.disconnected().await
        })
        .unwrap();
    cluster.start().unwrap();
    cluster.disconnect().await;
    assert_eq!(cluster.phase(), Phase::Stopped);

    let worker = cluster.fork().expect("a fork after the stop");
    assert_eq!((worker.id(), worker.slot()), (2, 0));
    // The cycle's first subscription sees it from its start.
    let mut events = cluster.events();
    let ready = crate::common::until(&mut events, |e| match e {
        ClusterEvent::Ready { worker } => Some(worker.id()),
        _ => None,
    })
    .await;
    assert_eq!(ready, 2);
    let mut phases = cluster.phases();
    tokio::time::timeout(
        crate::common::DEADLINE,
        phases.wait_for(|p| *p == Phase::Listening),
    )
    .await
    .unwrap();
    assert_eq!(cluster.size(), 1);
    cluster.disconnect().await;
    assert_eq!(cluster.phase(), Phase::Stopped);
    assert!(cluster.workers().is_empty());
}

#[tokio::test]
async fn on_worker_thread_runs_in_each_workers_thread_before_its_function() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    // Each worker's id, with the thread the hook ran on.
    let hooked: Arc<Mutex<HashMap<u64, std::thread::ThreadId>>> = Arc::default();
    let seen = Arc::clone(&hooked);
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .on_worker_thread(move |w| {
            seen.lock()
                .unwrap()
                .insert(w.id(), std::thread::current().id());
        })
        .build(move |w| {
            // Already run, on this very thread.
            let ran = hooked.lock().unwrap().get(&w.id()).copied();
            assert_eq!(ran, Some(std::thread::current().id()), "worker {}", w.id());
            async move {
                w.ready();
                w.disconnected().await
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 2).await;
    cluster.disconnect().await;
    let all = drain(&mut events).await;
    let reasons: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        vec![ExitReason::Returned; 2],
        "no hook check failed"
    );
}
