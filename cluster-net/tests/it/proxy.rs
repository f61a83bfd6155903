//! PROXY protocol listeners: the client the balancer names is the
//! connection's peer and sticky's key; a connection without a valid header
//! is closed and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{until, DEADLINE};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{stats, Balance, Listen, NetConfig, WorkerExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every worker answers `<id> <peer>` after reading the header.
async fn start(workers: usize, balance: Balance) -> (Cluster, SocketAddr) {
    let cluster = Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(NetConfig::default().balance(balance).proxy_protocol(true))
        .build(|w| async move {
            let listener = w.listen(Listen::parse("127.0.0.1:0")?).await?;
            loop {
                tokio::select! {
                    mut conn = listener.accept() => {
                        let id = w.id();
                        tokio::task::spawn_local(async move {
                            if conn.read_proxy_header().await.is_err() {
                                return;
                            }
                            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                            let mut rest = [0u8; 5];
                            let _ = conn.read_exact(&mut rest).await;
                            let line = format!("{id} {peer} {}\n", String::from_utf8_lossy(&rest));
                            let _ = conn.write_all(line.as_bytes()).await;
                        });
                    }
                    () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                }
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addr = None;
    for _ in 0..workers {
        addr = until(&mut events, |e| match e {
            ClusterEvent::Listening {
                address: Address::Tcp(a),
                ..
            } => Some(Some(*a)),
            _ => None,
        })
        .await;
    }
    (cluster, addr.unwrap())
}

fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, server),
    )
    .build()
    .unwrap()
}

/// Sends `header` and then `hello`; the server's line, or `None` if it closed.
async fn ask(addr: SocketAddr, header: &[u8]) -> Option<(u64, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut line))
        .await
        .expect("no answer nor close before the deadline")
        .ok()?;
    let mut words = line.split_whitespace();
    let id = words.next()?.parse().ok()?;
    let peer = words.next()?.to_owned();
    assert_eq!(
        words.next(),
        Some("hello"),
        "the bytes after the header: {line:?}"
    );
    Some((id, peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancers_client_is_the_peer_in_every_mode() {
    for balance in [
        Balance::RoundRobin,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ] {
        let (cluster, addr) = start(2, balance).await;
        let client: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        let (_, peer) = ask(addr, &v2(client, addr)).await.expect("answered");
        assert_eq!(peer, client.to_string(), "{balance:?}, v2");
        let v1 = b"PROXY TCP4 198.51.100.4 192.0.2.1 41000 8000\r\n";
        let (_, peer) = ask(addr, v1).await.expect("answered");
        assert_eq!(peer, "198.51.100.4:41000", "{balance:?}, v1");
        cluster.stop(false).await;
    }
}

/// Sticky keys on the client the header names, not on the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_follows_the_named_client() {
    let (cluster, addr) = start(3, Balance::Sticky).await;
    let mut slots: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for i in 0..12u8 {
        let client = SocketAddr::from(([203, 0, 113, i], 6000));
        for port in [1000u16, 2000, 3000] {
            let client = SocketAddr::new(client.ip(), port);
            let (id, _) = ask(addr, &v2(client, addr)).await.expect("answered");
            slots.entry(client.ip().to_string()).or_default().insert(id);
        }
    }
    assert!(
        slots.values().all(|ids| ids.len() == 1),
        "a client moved: {slots:?}"
    );
    let workers: BTreeSet<u64> = slots.values().flatten().copied().collect();
    assert!(workers.len() > 1, "every client on one worker: {slots:?}");
    cluster.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_header_closes_the_connection_and_is_counted() {
    for balance in [Balance::RoundRobin, Balance::Sticky] {
        let (cluster, addr) = start(1, balance).await;
        assert!(
            ask(addr, b"GET / HTTP/1.1\r\n\r\n").await.is_none(),
            "{balance:?}"
        );
        assert!(
            ask(addr, b"PROXY TCP9 a b c d\r\n").await.is_none(),
            "{balance:?}"
        );
        let end = tokio::time::Instant::now() + DEADLINE;
        while stats(&cluster).iter().map(|s| s.proxy_rejected).max() != Some(2) {
            assert!(
                tokio::time::Instant::now() < end,
                "{balance:?}: {:?}",
                stats(&cluster)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker serves on.
        let client: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        assert!(ask(addr, &v2(client, addr)).await.is_some());
        cluster.stop(false).await;
    }
}
