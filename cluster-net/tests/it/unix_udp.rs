//! Unix-domain and UDP listeners shared by every worker.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::common::{until, DEADLINE};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::WorkerExt;
use tokio::io::AsyncReadExt;

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::env::temp_dir().join(format!("cluster-net-{}-{nanos}-{name}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_is_shared_and_a_stale_file_replaced() {
    let path = temp_path("web.sock");
    // A stale socket file, as a crashed server leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let spec: &'static str = Box::leak(format!("unix:{}", path.display()).into_boxed_str());
    let server = crate::common::serve(3, Default::default(), crate::common::spec(spec), &[]).await;
    drop(server.events);
    let mut ids = HashSet::new();
    for _ in 0..30 {
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, s.read_to_string(&mut line))
            .await
            .unwrap()
            .unwrap();
        ids.insert(line.trim().parse::<u64>().unwrap());
    }
    assert_eq!(ids.len(), 3, "round-robin over every worker: {ids:?}");
    server.cluster.disconnect().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_socket_is_bound_once_and_shared() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|w| async move {
            let socket = w.listen_udp("127.0.0.1:0".parse().unwrap())?;
            let mut buf = [0u8; 64];
            loop {
                tokio::select! {
                    r = socket.recv_from(&mut buf) => {
                        let (_, from) = r.map_err(|e| cluster_net::Error::Listen { addr: "udp".into(), source: e })?;
                        let _ = socket.send_to(w.id().to_string().as_bytes(), from).await;
                    }
                    () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                }
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut ports = HashSet::new();
    for _ in 0..2 {
        ports.insert(
            until(&mut events, |e| match e {
                ClusterEvent::Listening {
                    address: Address::Udp(a),
                    ..
                } => Some(*a),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(ports.len(), 1, "one port for every worker: {ports:?}");
    let server = *ports.iter().next().unwrap();
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 64];
    // Bursts of datagrams, until both workers have answered some.
    let mut answered = HashSet::new();
    for _ in 0..200 {
        for _ in 0..8 {
            client.send_to(b"who", server).await.unwrap();
        }
        for _ in 0..8 {
            let (n, _) = tokio::time::timeout(DEADLINE, client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let id: u64 = std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
            assert!((1..=2).contains(&id));
            answered.insert(id);
        }
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(
        answered.len(),
        2,
        "one worker received everything: {answered:?}"
    );
    cluster.disconnect().await;
}
