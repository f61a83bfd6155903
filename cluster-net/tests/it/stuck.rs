//! A worker stuck in a blocking loop is declared unresponsive after
//! `kill_timeout`: the connections waiting for it, and every later one, go
//! to live workers; none is left in its inbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_core::{Cluster, ClusterEvent, ExitReason};
use cluster_net::{Balance, NetConfig, WorkerExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::until;

async fn stuck_worker(balance: Balance) {
    let release = Arc::new(AtomicBool::new(false));
    let stuck = release.clone();
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .kill_timeout(Duration::from_millis(200))
        .state(NetConfig::default().balance(balance))
        .build(move |w| {
            let stuck = stuck.clone();
            async move {
                let listener = w.listen("127.0.0.1:0").await?;
                if w.id() == 1 {
                    // Listens, then blocks its thread: its runtime never
                    // runs again, so its listener is never dropped.
                    while !stuck.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    return Ok(());
                }
                loop {
                    tokio::select! {
                        mut conn = listener.accept() => {
                            let id = w.id();
                            tokio::task::spawn_local(async move {
                                let _ = conn.write_all(format!("{id}\n").as_bytes()).await;
                            });
                        }
                        () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                    }
                }
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addr = None;
    for _ in 0..2 {
        addr = Some(
            until(&mut events, |e| match e {
                ClusterEvent::Listening {
                    address: cluster_core::Address::Tcp(a),
                    ..
                } => Some(*a),
                _ => None,
            })
            .await,
        );
    }
    let addr = addr.unwrap();
    cluster.worker(1).unwrap().kill();
    until(&mut events, |e| match e {
        ClusterEvent::Exit { worker, reason } if worker.id() == 1 => {
            assert_eq!(*reason, ExitReason::Unresponsive);
            Some(())
        }
        _ => None,
    })
    .await;
    until(&mut events, |e| match e {
        ClusterEvent::Listening { worker, .. } if worker.id() == 3 => Some(()),
        _ => None,
    })
    .await;
    let mut unanswered = 0;
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut line)).await;
        if !matches!(read, Ok(Ok(_))) || line.trim() == "1" || line.is_empty() {
            unanswered += 1;
        }
    }
    release.store(true, Ordering::Relaxed);
    cluster.stop(false).await;
    assert_eq!(
        unanswered, 0,
        "{balance:?}: connections left to the stuck worker"
    );
}

#[tokio::test]
async fn round_robin() {
    stuck_worker(Balance::RoundRobin).await;
}

#[tokio::test]
async fn least_connections() {
    stuck_worker(Balance::LeastConnections).await;
}

#[tokio::test]
async fn sticky() {
    stuck_worker(Balance::Sticky).await;
}

#[tokio::test]
async fn reuseport() {
    stuck_worker(Balance::ReusePort).await;
}
