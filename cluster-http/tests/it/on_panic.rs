//! A service that panics: the panicking request fails alone. With
//! `OnPanic::Restart` (the default) the worker drains (its other requests
//! finish) and is replaced; with `OnPanic::Ignore` it serves on.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::common::{self, eventually, serve_app, start, until, Gate, H2};
use cluster_core::{ClusterEvent, ExitReason};
use cluster_http::{HttpConfig, OnPanic};
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_fails_alone_and_its_worker_is_replaced() {
    let gate = Arc::new(Gate::default());
    let running = start(2, |b| b.state(Arc::clone(&gate)), serve_app(None)).await;
    let addr = running.addr;
    let mut events = running.events;
    let before: BTreeSet<u64> = running.cluster.workers().iter().map(|w| w.id()).collect();

    // Requests in flight on both workers when the panic comes.
    let held: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { common::get(addr, "/block").await }))
        .collect();
    eventually(
        || gate.entered.load(Ordering::SeqCst) == 6,
        "requests in the service",
    )
    .await;

    let failed = common::get(addr, "/panic").await;
    assert!(failed.is_err(), "{failed:?}");
    // The others are served meanwhile.
    for _ in 0..10 {
        let reply = common::get(addr, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    // The requests in flight on the panicking worker finish too.
    gate.open();
    for h in held {
        let reply = h.await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "passed\n");
    }

    let (dead, slot, reason) = until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, reason } => Some((worker.id(), worker.slot(), reason.clone())),
        _ => None,
    })
    .await;
    assert!(before.contains(&dead));
    match &reason {
        ExitReason::Error(e) => {
            assert!(e.contains("panicked: the test asked for a panic"), "{e}");
            assert!(e.contains(&addr.to_string()), "{e}");
        }
        other => panic!("worker {dead} ended {other}"),
    }
    let new = until(&mut events, |e| match e {
        ClusterEvent::Listening { worker, .. } if worker.slot() == slot => Some(worker.id()),
        _ => None,
    })
    .await;
    assert!(!before.contains(&new));

    // The new worker serves: its id shows up.
    let mut seen = BTreeSet::new();
    while !seen.contains(&new) {
        assert!(seen.len() < 200, "worker {new} never answered");
        let reply = common::get(addr, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        seen.insert(reply.worker());
    }
    assert_eq!(running.cluster.info().restarts, 1);
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_panic_ignore_only_the_panicking_stream_is_lost() {
    let running = start(
        1,
        |b| b.state(HttpConfig::default().on_panic(OnPanic::Ignore)),
        serve_app(None),
    )
    .await;
    let addr = running.addr;
    let (h2, driver) = H2::connect(addr).await.unwrap();
    let id = h2.get("/").await.unwrap().worker();

    // HTTP/2: the panicking stream fails, its neighbours on the same
    // connection do not, and the connection lives on.
    let (a, b, c) = tokio::join!(h2.get("/sleep/30"), h2.get("/panic"), h2.get("/sleep/30"));
    assert_eq!(a.unwrap().status, StatusCode::OK);
    assert!(b.is_err(), "{b:?}");
    assert_eq!(c.unwrap().status, StatusCode::OK);
    assert_eq!(h2.get("/").await.unwrap().worker(), id);
    assert!(!driver.is_closed());

    // HTTP/1: only that connection is lost.
    assert!(common::get(addr, "/panic").await.is_err());
    assert_eq!(common::get(addr, "/").await.unwrap().worker(), id);
    assert_eq!(running.cluster.workers().len(), 1);
    assert_eq!(running.cluster.workers()[0].id(), id);
    assert_eq!(running.cluster.info().restarts, 0);
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_http2_stream_restarts_the_worker_after_its_neighbours_finish() {
    let gate = Arc::new(Gate::default());
    let running = start(1, |b| b.state(Arc::clone(&gate)), serve_app(None)).await;
    let addr = running.addr;
    let mut events = running.events;
    let (h2, driver) = H2::connect(addr).await.unwrap();
    let id = h2.get("/").await.unwrap().worker();

    let held = tokio::spawn({
        let h2 = h2.clone();
        async move { h2.get("/block").await }
    });
    eventually(
        || gate.entered.load(Ordering::SeqCst) == 1,
        "the request in the service",
    )
    .await;
    assert!(h2.get("/panic").await.is_err());
    gate.open();
    let reply = held.await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.worker(), id);
    // The worker drained: GOAWAY, then the connection closed.
    driver.closed().await;

    let reason = until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, reason } if worker.id() == id => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(&reason, ExitReason::Error(e) if e.contains("the test asked for a panic")),
        "{reason}"
    );
    let new = until(&mut events, |e| match e {
        ClusterEvent::Listening { worker, .. } => Some(worker.id()),
        _ => None,
    })
    .await;
    assert_ne!(new, id);
    assert_eq!(common::get(addr, "/").await.unwrap().worker(), new);
    common::stop(&running.cluster).await;
}
