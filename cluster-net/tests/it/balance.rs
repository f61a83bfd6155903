//! Each balance mode with 4 workers and 400 fresh connections.

use std::collections::HashMap;

use crate::common::{hello, hello_from, serve, spec, until_closed};
use cluster_net::{Balance, NetConfig};

const WORKERS: usize = 4;
const CONNECTIONS: usize = 400;

/// Connections per worker id, from `clients` sequential clients in parallel.
async fn spread(addr: std::net::SocketAddr, clients: usize) -> HashMap<u64, usize> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..CONNECTIONS / clients {
                let (id, s) = hello(addr).await.expect("served");
                until_closed(s).await;
                ids.push(id);
            }
            ids
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for id in t.await.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        counts.values().sum::<usize>(),
        CONNECTIONS,
        "every connection served"
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even_within_10_percent() {
    let server = serve(WORKERS, NetConfig::default(), spec("127.0.0.1:0"), &[]).await;
    let counts = spread(server.addr, 1).await;
    assert_eq!(counts.len(), WORKERS, "{counts:?}");
    for (id, n) in &counts {
        assert!(
            (90..=110).contains(n),
            "worker {id} got {n} of {CONNECTIONS}: {counts:?}"
        );
    }
    server.cluster.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_and_reuseport_serve_everything_and_spread() {
    for balance in [Balance::Os, Balance::ReusePort] {
        let net = NetConfig::default().balance(balance);
        let server = serve(WORKERS, net, spec("127.0.0.1:0"), &[]).await;
        let counts = spread(server.addr, 8).await;
        // os: the kernel wakes the workers' accepts in turn; reuseport: it
        // hashes the 4-tuple, blind to load. Either way, 400 connections
        // from 8 clients reach more than one worker.
        assert!(counts.len() >= 2, "{balance}: {counts:?}");
        server.cluster.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_worker_that_holds_many() {
    let net = NetConfig::default().balance(Balance::LeastConnections);
    // Slot 0 keeps every connection open; the others close theirs at once.
    let server = serve(WORKERS, net, spec("127.0.0.1:0"), &[0]).await;
    let slot0 = server.cluster.workers()[0].id();
    let mut held = Vec::new();
    let mut to_slot0 = 0;
    for _ in 0..CONNECTIONS {
        let (id, s) = hello(server.addr).await.unwrap();
        if id == slot0 {
            to_slot0 += 1;
            held.push(s);
        } else {
            until_closed(s).await;
        }
    }
    // Round-robin would give it 100; least-connections only the first.
    assert!(
        to_slot0 <= 2,
        "slot 0 got {to_slot0} while holding them all"
    );
    drop(held);
    server.cluster.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keeps_each_client_on_one_slot() {
    let net = NetConfig::default().balance(Balance::Sticky);
    let server = serve(WORKERS, net, spec("127.0.0.1:0"), &[]).await;
    let mut seen: HashMap<u8, Vec<u64>> = HashMap::new();
    // 8 clients (127.0.0.1 … 127.0.0.8), 50 connections each.
    for round in 0..CONNECTIONS / 8 {
        for client in 1..=8u8 {
            let ip = std::net::IpAddr::from([127, 0, 0, client]);
            let (id, s) = hello_from(server.addr, Some(ip)).await.unwrap();
            until_closed(s).await;
            seen.entry(client).or_default().push(id);
            let _ = round;
        }
    }
    let mut slots_used = std::collections::HashSet::new();
    for (client, ids) in &seen {
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "client {client} moved: {ids:?}"
        );
        slots_used.insert(ids[0]);
    }
    assert!(
        slots_used.len() >= 2,
        "8 clients all on one worker: {slots_used:?}"
    );
    server.cluster.disconnect().await;
}
