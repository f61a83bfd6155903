//! Each worker's own events (`WorkerHandle::events`, Node's `worker.on`):
//! that worker's only, in order, each before the cluster-wide stream sees
//! it; a subscriber made after `fork()` still sees Fork and Online.

use std::collections::HashMap;

use crate::common::DEADLINE;
use cluster_core::{Cluster, ClusterEvent, ExitReason, WorkerEvent, WorkerEvents};

/// A short name for a worker's event.
fn name(e: &WorkerEvent) -> &'static str {
    match e {
        WorkerEvent::Fork => "fork",
        WorkerEvent::Online => "online",
        WorkerEvent::Ready => "ready",
        WorkerEvent::Listening { .. } => "listening",
        WorkerEvent::Message { .. } => "message",
        WorkerEvent::Disconnect => "disconnect",
        WorkerEvent::Exit { .. } => "exit",
        _ => "other",
    }
}

/// The worker and the short name of a cluster event about one worker.
fn about(e: &ClusterEvent) -> Option<(u64, &'static str)> {
    Some(match e {
        ClusterEvent::Fork { worker } => (worker.id(), "fork"),
        ClusterEvent::Online { worker } => (worker.id(), "online"),
        ClusterEvent::Ready { worker } => (worker.id(), "ready"),
        ClusterEvent::Listening { worker, .. } => (worker.id(), "listening"),
        ClusterEvent::Message { worker, .. } => (worker.id(), "message"),
        ClusterEvent::Disconnect { worker } => (worker.id(), "disconnect"),
        ClusterEvent::Exit { worker, .. } => (worker.id(), "exit"),
        _ => return None,
    })
}

async fn next(events: &mut WorkerEvents) -> Option<WorkerEvent> {
    tokio::time::timeout(DEADLINE, events.recv())
        .await
        .expect("a worker's event within the deadline")
}

// Multi-threaded: the supervisor's task runs beside this one, so an event
// sent to the cluster's stream before the worker's could be read first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_stream_has_its_own_events_in_order_before_the_cluster_stream() {
    const WORKERS: usize = 3;
    let cluster = Cluster::builder()
        .workers(WORKERS)
        .signals(false)
        .build(|w| async move {
            // Told to go once the primary has subscribed to this worker.
            let _go = w.recv().await;
            w.send(w.id())?;
            w.ready();
            w.disconnected().await;
            Ok::<_, cluster_core::Error>(())
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut streams: HashMap<u64, WorkerEvents> = HashMap::new();
    let mut seen: HashMap<u64, Vec<&'static str>> = HashMap::new();
    let mut exited = 0;
    let mut ready = 0;
    while exited < WORKERS {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("a cluster event within the deadline")
            .expect("the cluster stream ends after the exits");
        if let ClusterEvent::Fork { worker } = &event {
            // Subscribed only now, after the fork: its Fork is still there.
            streams.insert(worker.id(), worker.events());
            worker.send(()).unwrap();
        }
        let Some((id, kind)) = about(&event) else {
            continue;
        };
        // Delivered to the worker's own stream first: waiting there now.
        let own = streams.get_mut(&id).expect("subscribed at its fork");
        let got = own
            .try_recv()
            .unwrap_or_else(|| panic!("worker {id}'s {kind} reached the cluster stream first"));
        assert_eq!(name(&got), kind, "worker {id}");
        if let (WorkerEvent::Message { message }, ClusterEvent::Message { .. }) = (&got, &event) {
            assert_eq!(
                message.downcast_ref::<u64>(),
                Some(&id),
                "another's message"
            );
        }
        seen.entry(id).or_default().push(kind);
        match kind {
            "ready" => {
                ready += 1;
                if ready == WORKERS {
                    let c = cluster.clone();
                    tokio::spawn(async move { c.disconnect().await });
                }
            }
            "exit" => exited += 1,
            _ => {}
        }
    }
    assert_eq!(seen.len(), WORKERS);
    for (id, kinds) in &seen {
        assert_eq!(
            kinds,
            &["fork", "online", "message", "ready", "disconnect", "exit"],
            "worker {id}"
        );
    }
    for (id, own) in &mut streams {
        assert!(
            next(own).await.is_none(),
            "worker {id}: its stream ends after Exit"
        );
    }
}

#[tokio::test]
async fn a_subscriber_made_after_fork_still_sees_fork_and_online() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|w| async move { w.disconnected().await })
        .unwrap();
    cluster.start().unwrap();
    let worker = cluster.fork().unwrap();
    tokio::time::timeout(DEADLINE, worker.online())
        .await
        .expect("online within the deadline")
        .unwrap();
    // Both made after the worker is online; each gets its whole history.
    let mut first = worker.events();
    let mut second = worker.events();
    for stream in [&mut first, &mut second] {
        assert!(matches!(next(stream).await, Some(WorkerEvent::Fork)));
        assert!(matches!(next(stream).await, Some(WorkerEvent::Online)));
        assert!(stream.try_recv().is_none(), "nothing else happened yet");
    }
    worker.disconnect();
    tokio::time::timeout(DEADLINE, worker.exited())
        .await
        .expect("exited within the deadline");
    assert_eq!(worker.exit_reason(), Some(&ExitReason::Returned));
    for stream in [&mut first, &mut second] {
        assert!(matches!(next(stream).await, Some(WorkerEvent::Disconnect)));
        match next(stream).await {
            Some(WorkerEvent::Exit { reason }) => assert_eq!(reason, ExitReason::Returned),
            other => panic!("expected the exit, got {other:?}"),
        }
        assert!(next(stream).await.is_none());
    }
    // After the exit: the history, then the end.
    let mut late = worker.events();
    let mut kinds = Vec::new();
    while let Some(event) = next(&mut late).await {
        kinds.push(name(&event));
    }
    assert_eq!(kinds, ["fork", "online", "disconnect", "exit"]);
    // Another worker's events are not in this one's stream.
    let other = cluster.worker(1).expect("the first worker lives on");
    tokio::time::timeout(DEADLINE, other.online())
        .await
        .expect("online within the deadline")
        .unwrap();
    let mut theirs = other.events();
    assert!(matches!(next(&mut theirs).await, Some(WorkerEvent::Fork)));
    assert!(matches!(next(&mut theirs).await, Some(WorkerEvent::Online)));
    assert!(theirs.try_recv().is_none());
    cluster.stop(false).await;
}
