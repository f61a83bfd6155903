//! `Listen::Handle`, Node's `listen(handle)`: a listener the worker bound
//! itself and uses directly. Each worker's is its own: the primary does not
//! share it (nor hold it), it is reported as listening, serves only that
//! worker, and closes with the worker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{stats, Listen};

use crate::common::{hello, serve_worker, until, SpecFn, DEADLINE};

#[tokio::test]
async fn a_handle_is_the_workers_own_listener() {
    let spec: SpecFn = Arc::new(|_| {
        let own = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Listen::Handle(own).with()
    });
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(move |w| {
            let spec = spec.clone();
            async move { serve_worker(w, spec, &[]).await }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    // worker id -> the address its own listener is bound to.
    let mut own: HashMap<u64, SocketAddr> = HashMap::new();
    while own.len() < 2 {
        let (id, addr) = until(&mut events, |e| match e {
            ClusterEvent::Listening {
                worker,
                address: Address::Tcp(a),
            } => Some((worker.id(), *a)),
            _ => None,
        })
        .await;
        own.insert(id, addr);
    }
    let addrs: Vec<SocketAddr> = own.values().copied().collect();
    assert_ne!(addrs[0], addrs[1], "each worker has its own socket");
    // Every connection to a worker's handle is served by that worker.
    for (&id, &addr) in &own {
        for _ in 0..3 {
            let (served_by, _) = hello(addr).await.unwrap();
            assert_eq!(served_by, id, "{addr}");
        }
    }
    // The primary holds no socket of it: none of its listeners is the
    // cluster's.
    assert!(stats(&cluster).is_empty(), "{:?}", stats(&cluster).len());
    tokio::time::timeout(DEADLINE, cluster.disconnect())
        .await
        .unwrap();
    // Gone with its worker: nothing listens there any more.
    for addr in addrs {
        let refused = tokio::net::TcpStream::connect(addr).await;
        assert!(refused.is_err(), "{addr} still accepts");
    }
}
