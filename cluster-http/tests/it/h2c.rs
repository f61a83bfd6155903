//! HTTP/2 with prior knowledge (h2c), detected from the client's preface:
//! concurrent streams on one connection, and every worker reached.

use std::collections::BTreeSet;

use crate::common::{serve_app, start, stop, H2};
use http::{StatusCode, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_streams_are_served_and_fresh_connections_reach_every_worker() {
    let running = start(3, |b| b, serve_app(None)).await;
    let addr = running.addr;

    // Concurrent streams on one connection: one worker, all answered.
    let (conn, driver) = H2::connect(addr).await.unwrap();
    let replies = futures_join(
        (0..16)
            .map(|i| {
                let conn = conn.clone();
                let path = if i % 2 == 0 { "/" } else { "/sleep/20" };
                tokio::spawn(async move { conn.get(path).await.unwrap() })
            })
            .collect(),
    )
    .await;
    let mut ids = BTreeSet::new();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.version, Version::HTTP_2);
        ids.insert(reply.worker());
    }
    assert_eq!(
        ids.len(),
        1,
        "streams of one connection on many workers: {ids:?}"
    );
    assert!(!driver.is_closed());

    // Fresh HTTP/2 connections: every worker serves some.
    let mut seen = BTreeSet::new();
    let mut tries = 0;
    while seen.len() < 3 {
        tries += 1;
        assert!(tries <= 300, "only workers {seen:?} answered");
        let (c, _driver) = H2::connect(addr).await.unwrap();
        let reply = c.get("/").await.unwrap();
        assert_eq!(reply.version, Version::HTTP_2);
        seen.insert(reply.worker());
    }
    let live: BTreeSet<u64> = running.cluster.workers().iter().map(|w| w.id()).collect();
    assert_eq!(seen, live);

    drop(conn);
    stop(&running.cluster).await;
    // The drain sent GOAWAY and closed the idle connection.
    driver.closed().await;
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
