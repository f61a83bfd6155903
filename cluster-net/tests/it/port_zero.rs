//! `listen(0)`: one random port for every worker; the n-th `listen(0)` of
//! each worker shares one port.

use std::collections::{BTreeSet, HashMap};

use crate::common::until;
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::WorkerExt;

#[tokio::test]
async fn every_worker_gets_the_same_port_and_the_second_listen_another() {
    const WORKERS: usize = 3;
    let cluster = Cluster::builder()
        .workers(WORKERS)
        .signals(false)
        .build(|w| async move {
            let a = w.listen("127.0.0.1:0").await?;
            let b = w.listen("127.0.0.1:0").await?;
            w.disconnected().await;
            drop((a, b));
            Ok::<_, cluster_net::Error>(())
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut ports: HashMap<u64, Vec<u16>> = HashMap::new();
    for _ in 0..2 * WORKERS {
        let (id, port) = until(&mut events, |e| match e {
            ClusterEvent::Listening {
                worker,
                address: Address::Tcp(a),
            } => Some((worker.id(), a.port())),
            _ => None,
        })
        .await;
        ports.entry(id).or_default().push(port);
    }
    let firsts: BTreeSet<_> = ports.values().map(|p| p[0]).collect();
    let seconds: BTreeSet<_> = ports.values().map(|p| p[1]).collect();
    assert_eq!(firsts.len(), 1, "{ports:?}");
    assert_eq!(seconds.len(), 1, "{ports:?}");
    assert_ne!(firsts, seconds, "two listen(0) are two ports");
    assert!(!firsts.contains(&0));
    cluster.disconnect().await;
}
