//! HTTP/1.1 on a cluster: several requests on one keep-alive connection go
//! to one worker; fresh connections reach every worker.

use std::collections::BTreeSet;

use crate::common::{self, eventually, serve_app, start, stop, H1};
use http::{StatusCode, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_share_a_connection_and_fresh_connections_reach_every_worker() {
    let running = start(3, |b| b, serve_app(None)).await;
    let addr = running.addr;

    // One connection, ten requests: one worker answers them all.
    let mut conn = H1::connect(addr).await.unwrap();
    let mut ids = BTreeSet::new();
    for _ in 0..10 {
        let reply = conn.get("/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.version, Version::HTTP_11);
        assert_eq!(reply.body, "hello world\n");
        assert!(!reply.headers.contains_key("connection"), "{reply:?}");
        ids.insert(reply.worker());
    }
    assert_eq!(ids.len(), 1, "a keep-alive connection moved: {ids:?}");
    assert!(!conn.is_closed());

    // Fresh connections: every worker serves some.
    let mut seen = BTreeSet::new();
    let mut tries = 0;
    while seen.len() < 3 {
        tries += 1;
        assert!(tries <= 300, "only workers {seen:?} answered");
        let reply = common::get(addr, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        seen.insert(reply.worker());
    }
    let live: BTreeSet<u64> = running.cluster.workers().iter().map(|w| w.id()).collect();
    assert_eq!(seen, live);

    drop(conn);
    stop(&running.cluster).await;
    eventually(|| running.cluster.workers().is_empty(), "workers gone").await;
}
