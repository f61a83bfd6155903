//! Sockets are released when they are no longer wanted: a removed slot's
//! per-worker port and reuseport socket close once drained (scale-down),
//! and a stopped cluster has closed every socket it bound and removed the
//! Unix socket files it created, as Node closes its handles on disconnect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{hello, until, SpecFn};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{Balance, Listen, NetConfig, Ports};

/// A cluster of `workers` serving `spec`; every address it listens on.
async fn start(workers: usize, net: NetConfig, spec: SpecFn) -> (Cluster, Vec<Address>) {
    let cluster = Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(net)
        .build(move |w| {
            let spec = spec.clone();
            async move { crate::common::serve_worker(w, spec, &[]).await }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addresses = Vec::new();
    for _ in 0..workers {
        addresses.push(
            until(&mut events, |e| match e {
                ClusterEvent::Listening { address, .. } => Some(address.clone()),
                _ => None,
            })
            .await,
        );
    }
    addresses.sort_by_key(ToString::to_string);
    addresses.dedup();
    (cluster, addresses)
}

fn tcp(a: &Address) -> SocketAddr {
    match a {
        Address::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
}

fn refused(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// Binds `addr` as a listener (with SO_REUSEADDR, as ours do): possible
/// only once nobody listens there.
fn can_bind(addr: SocketAddr) -> bool {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).is_ok() && socket.listen(8).is_ok()
}

/// How many listening TCP sockets the kernel has on `addr`'s port.
fn listening_sockets(addr: SocketAddr) -> usize {
    let port = format!(":{:04X}", addr.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            f[1].ends_with(&port) && f[3] == "0A"
        })
        .count()
}

fn spec(s: &'static str) -> SpecFn {
    crate::common::spec(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_means_every_tcp_socket_is_closed() {
    for balance in [
        Balance::RoundRobin,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ] {
        let (cluster, addresses) = start(
            2,
            NetConfig::default().balance(balance),
            spec("127.0.0.1:0"),
        )
        .await;
        let addr = tcp(&addresses[0]);
        hello(addr).await.unwrap();
        cluster.disconnect().await;
        assert!(
            refused(addr),
            "{balance:?}: {addr} still accepts after the stop"
        );
        assert!(can_bind(addr), "{balance:?}: {addr} cannot be bound again");
        drop(cluster);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_means_per_worker_ports_are_closed() {
    let (cluster, addresses) = start(
        3,
        NetConfig::default().ports(Ports::PerWorker),
        spec("127.0.0.1:0"),
    )
    .await;
    assert_eq!(addresses.len(), 3);
    cluster.disconnect().await;
    for a in &addresses {
        assert!(refused(tcp(a)), "{a} still accepts after the stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_means_the_unix_socket_file_is_removed() {
    let path =
        std::env::temp_dir().join(format!("cluster-net-release-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = path.clone();
    let (cluster, _) = start(
        2,
        NetConfig::default(),
        Arc::new(move |_| Listen::Unix(p.clone()).with()),
    )
    .await;
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    cluster.disconnect().await;
    assert!(!path.exists(), "{} left behind", path.display());
}

/// After `scale(3 → 1)` with per-worker ports, the removed slots' ports
/// refuse connections; slot 0's still serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_closes_the_removed_slots_ports() {
    let (cluster, addresses) = start(
        3,
        NetConfig::default().ports(Ports::PerWorker),
        spec("127.0.0.1:0"),
    )
    .await;
    let kept = tcp(&cluster_net::stats(&cluster)
        .into_iter()
        .find(|s| s.slot == 0)
        .unwrap()
        .address);
    cluster.scale(1).await.unwrap();
    for a in addresses.iter().map(tcp).filter(|a| *a != kept) {
        assert!(refused(a), "{a} of a removed slot still accepts");
    }
    hello(kept).await.unwrap();
    cluster.disconnect().await;
}

/// Scaling a reuseport cluster 3 → 1 under a stream of fresh connections:
/// every connection is answered. The removed slots' sockets are drained to
/// the live worker and closed where the kernel moves a closed listener's
/// queue (`tcp_migrate_req`); elsewhere they stay, served by stand-ins
/// (closing them could reset a connection that had just joined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_loses_no_connection_in_reuseport() {
    let (cluster, addresses) = start(
        3,
        NetConfig::default().balance(Balance::ReusePort),
        spec("127.0.0.1:0"),
    )
    .await;
    let addr = tcp(&addresses[0]);
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered, lost) = (stop.clone(), answered.clone(), lost.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let got = tokio::time::timeout(Duration::from_secs(5), hello(addr)).await;
                    match got {
                        Ok(Ok(_)) => answered.fetch_add(1, Ordering::Relaxed),
                        _ => lost.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let answered = answered.clone();
        crate::common::eventually(move || answered.load(Ordering::Relaxed) >= n, "answers")
    };
    wait_for(50).await;
    cluster.scale(1).await.unwrap();
    let after = answered.load(Ordering::Relaxed);
    wait_for(after + 50).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (answered, lost) = (
        answered.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed),
    );
    eprintln!("reuseport 3 → 1: {answered} answered, {lost} lost");
    assert_eq!(lost, 0, "connections lost in the scale-down");
    let migrates = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .is_ok_and(|v| v.trim() == "1");
    assert_eq!(
        listening_sockets(addr),
        if migrates { 1 } else { 3 },
        "the removed slots' sockets (tcp_migrate_req = {migrates})"
    );
    // Scaling up again takes the kept sockets back: still one group.
    cluster.scale(3).await.unwrap();
    for _ in 0..20 {
        hello(addr).await.unwrap();
    }
    assert_eq!(
        listening_sockets(addr),
        3,
        "one socket per slot after the scale-up"
    );
    cluster.disconnect().await;
}
