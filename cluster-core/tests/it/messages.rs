//! Typed messages both ways, in order; broadcast; sending to the dead.

use crate::common::{online, until};
use cluster_core::{Cluster, ClusterEvent, Error};

#[tokio::test]
async fn messages_arrive_in_order_both_ways() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|w| async move {
            loop {
                let Ok(n) = w.recv().await.take::<u32>() else {
                    return;
                };
                w.send(n * 2).unwrap();
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 1).await;
    let worker = cluster.worker(1).unwrap();
    for n in 0..200u32 {
        worker.send(n).unwrap();
    }
    for n in 0..200u32 {
        let got = until(&mut events, |e| match e {
            ClusterEvent::Message { message, .. } => message.downcast_ref::<u32>().copied(),
            _ => None,
        })
        .await;
        assert_eq!(got, n * 2);
    }
    cluster.stop(false).await;
}

#[tokio::test]
async fn broadcast_reaches_every_worker_and_each_replies() {
    #[derive(Debug)]
    struct WhoAreYou(&'static str);
    let cluster = Cluster::builder()
        .workers(4)
        .signals(false)
        .build(|w| async move {
            let m = w.recv().await;
            let q = m.downcast_ref::<WhoAreYou>().expect("a question");
            w.send(format!("{} {} {}", q.0, w.id(), w.slot()))
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 4).await;
    assert_eq!(cluster.broadcast(WhoAreYou("I am")), 4);
    let mut answers = Vec::new();
    while answers.len() < 4 {
        answers.push(
            until(&mut events, |e| match e {
                ClusterEvent::Message { message, .. } => message.downcast_ref::<String>().cloned(),
                _ => None,
            })
            .await,
        );
    }
    answers.sort();
    assert_eq!(answers, ["I am 1 0", "I am 2 1", "I am 3 2", "I am 4 3"]);
    cluster.wait().await.unwrap();
}

#[tokio::test]
async fn sending_to_a_dead_worker_is_an_error() {
    let cluster = Cluster::builder()
        .workers(1)
        .signals(false)
        .build(|_| async {})
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let w = until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, .. } => Some(worker.clone()),
        _ => None,
    })
    .await;
    let err = w.send(1u8).unwrap_err();
    assert!(matches!(err, Error::WorkerGone { id: 1 }));
    assert_eq!(err.to_string(), "worker 1 is dead: message not delivered");
}

#[tokio::test]
async fn shared_state_is_the_same_value_in_every_worker() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let cluster = Cluster::builder()
        .workers(3)
        .state(AtomicU64::new(0))
        .signals(false)
        .build(|w| async move {
            w.state::<AtomicU64>()
                .unwrap()
                .fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    cluster.start().unwrap();
    cluster.wait().await.unwrap();
    assert_eq!(
        cluster.state::<AtomicU64>().unwrap().load(Ordering::SeqCst),
        3
    );
}
