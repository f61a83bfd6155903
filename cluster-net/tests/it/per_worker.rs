//! Per-worker ports: slot i on base + i, and a restarted worker back on its port.

use std::net::SocketAddr;

use crate::common::{hello, serve, spec, until, Server};
use cluster_core::ClusterEvent;
use cluster_net::{NetConfig, Ports};

/// A base port with `n` free ports after it (tried, not assumed).
async fn serve_per_worker(n: usize) -> (Server, u16) {
    let base = crate::common::free_port_run(n as u16);
    let addr: &'static str = Box::leak(format!("127.0.0.1:{base}").into_boxed_str());
    let server = serve(
        n,
        NetConfig::default().ports(Ports::PerWorker),
        spec(addr),
        &[],
    )
    .await;
    (server, base)
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
