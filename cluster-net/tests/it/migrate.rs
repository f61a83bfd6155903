//! A worker hands an open connection, and the bytes it already read from
//! it, to another live worker of the same listener, which serves it on:
//! the client's connection never closes.

use std::net::SocketAddr;

use crate::common::{until, DEADLINE};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{Balance, Listen, NetConfig, Ports, WorkerExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Slot 0 reads 3 bytes of each connection and hands it on; the others
/// read `hello` whole and answer `<id> <what they read>`.
async fn start(net: NetConfig) -> (Cluster, Vec<SocketAddr>) {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .state(net)
        .state(crate::common::Accepting::default())
        .build(|w| async move {
            let listener = w.listen(Listen::parse("127.0.0.1:0")?).await?;
            let migrator = cluster_net::hooks::migrator(&listener).expect("a shared listener");
            // Polled once before the test connects: a worker takes
            // connections (and migrated ones) from its first accept on.
            let mut early = crate::common::first_accept(&w, &listener).await;
            loop {
                tokio::select! {
                    mut conn = async { match early.take() {
                        Some(conn) => conn,
                        None => listener.accept().await,
                    } } => {
                        let id = w.id();
                        let mut first = [0u8; 3];
                        if w.slot() == 0 {
                            if conn.read_exact(&mut first).await.is_ok() {
                                if let Err(mut conn) = migrator.hand_over(conn, &first) {
                                    // Read the rest first: closing with unread bytes resets.
                                    let _ = conn.read_exact(&mut [0u8; 2]).await;
                                    let _ = conn.write_all(b"not moved\n").await;
                                }
                            }
                            continue;
                        }
                        tokio::task::spawn_local(async move {
                            let mut hello = [0u8; 5];
                            let _ = conn.read_exact(&mut hello).await;
                            let line = format!("{id} {}\n", String::from_utf8_lossy(&hello));
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
    let mut addrs = Vec::new();
    for _ in 0..2 {
        addrs.push(
            until(&mut events, |e| match e {
                ClusterEvent::Listening {
                    address: Address::Tcp(a),
                    ..
                } => Some(*a),
                _ => None,
            })
            .await,
        );
    }
    crate::common::all_accepting(&cluster, 2).await;
    (cluster, addrs)
}

async fn hello(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut line))
        .await
        .expect("an answer before the deadline")
        .unwrap();
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_moves_with_its_bytes_in_every_mode() {
    for balance in [
        Balance::RoundRobin,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ] {
        let (cluster, addrs) = start(NetConfig::default().balance(balance)).await;
        let other = cluster.workers()[1].id();
        // Whichever worker accepts, the other one answers, with every byte.
        for _ in 0..20 {
            assert_eq!(
                hello(addrs[0]).await,
                format!("{other} hello\n"),
                "{balance:?}"
            );
        }
        cluster.stop(false).await;
    }
}

/// Per-worker ports: no other worker listens on slot 0's port, so the
/// connection stays (and the worker says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_another_worker_on_the_socket_the_connection_stays() {
    let (cluster, _) = start(NetConfig::default().ports(Ports::PerWorker)).await;
    let slot0 = cluster_net::stats(&cluster)
        .into_iter()
        .find(|s| s.slot == 0)
        .map(|s| s.address)
        .unwrap();
    let Address::Tcp(addr) = slot0 else {
        panic!("not TCP")
    };
    assert_eq!(hello(addr).await, "not moved\n");
    cluster.stop(false).await;
}
