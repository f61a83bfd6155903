//! Per-worker ports: slot i on base + i, and a restarted worker back on its port.

mod common;

use std::net::{SocketAddr, TcpListener};

use cluster_core::ClusterEvent;
use cluster_net::{NetConfig, Ports};
use common::{hello, serve, spec, until, Server};

/// A base port with `n` free ports after it (tried, not assumed).
async fn serve_per_worker(n: usize) -> (Server, u16) {
    for _ in 0..20 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if usize::from(base) + n > 65535 {
            continue;
        }
        let free = (0..n as u16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if !free {
            continue;
        }
        let addr: &'static str = Box::leak(format!("127.0.0.1:{base}").into_boxed_str());
        let server = serve(
            n,
            NetConfig::default().ports(Ports::PerWorker),
            spec(addr),
            &[],
        )
        .await;
        return (server, base);
    }
    panic!("no run of {n} free ports found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_slot_listens_on_base_plus_slot_and_comes_back_after_a_restart() {
    const WORKERS: usize = 3;
    let (mut server, base) = serve_per_worker(WORKERS).await;
    let workers = server.cluster.workers();
    for w in &workers {
        let addr = SocketAddr::from(([127, 0, 0, 1], base + w.slot() as u16));
        for _ in 0..3 {
            let (id, _) = hello(addr).await.unwrap();
            assert_eq!(
                id,
                w.id(),
                "port {} belongs to slot {}",
                addr.port(),
                w.slot()
            );
        }
    }
    // Slot 1 dies; its replacement serves the same port.
    workers[1].send("die").unwrap();
    let new_id = until(&mut server.events, |e| match e {
        ClusterEvent::Listening { worker, .. } if worker.slot() == 1 => Some(worker.id()),
        _ => None,
    })
    .await;
    assert!(new_id > workers.last().unwrap().id());
    let (id, _) = hello(SocketAddr::from(([127, 0, 0, 1], base + 1)))
        .await
        .unwrap();
    assert_eq!(id, new_id);
    server.cluster.disconnect().await;
}
