//! The cluster's connection cap: when every place is held by idle
//! keep-alive connections, a new client is served at once, and the oldest
//! idle connection is the one closed to make room.

use std::time::Duration;

use crate::common::{self, serve_app, start, stop, H1};
use cluster_net::NetConfig;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_idle_connection_makes_room_for_a_new_client() {
    const CAP: usize = 4;
    let running = start(
        2,
        |b| b.state(NetConfig::default().connection_cap(CAP)),
        serve_app(None),
    )
    .await;
    let addr = running.addr;
    // Every place held by an idle keep-alive connection, oldest first.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut conn = H1::connect(addr).await.unwrap();
        assert_eq!(conn.get("/").await.unwrap().status, StatusCode::OK);
        held.push(conn);
    }
    // At the cap, with no client waiting: nothing is closed.
    let cap = cluster_net::cap_stats(&running.cluster).unwrap();
    assert_eq!((cap.limit, cap.open, cap.evicted), (CAP, CAP, 0));

    // Without eviction this waits for the 30 s keep-alive timeout.
    let reply = tokio::time::timeout(Duration::from_secs(10), common::get(addr, "/"))
        .await
        .expect("a new client was not served at the cap")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // The oldest idle connection was among those closed.
    held.remove(0).closed().await;
    assert!(cluster_net::cap_stats(&running.cluster).unwrap().evicted >= 1);
    stop(&running.cluster).await;
}
