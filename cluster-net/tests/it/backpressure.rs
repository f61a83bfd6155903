//! Connection limits: the rest wait in the backlog and are served when
//! places free up; none is refused.

use std::collections::HashMap;

use crate::common::{active_by_slot, eventually, hello, serve, spec};
use cluster_net::{Balance, NetConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_per_worker_twenty_held_the_rest_wait_and_are_served_later() {
    const WORKERS: usize = 2;
    const LIMIT: usize = 2;
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::Os,
        Balance::ReusePort,
    ] {
        let net = NetConfig::default()
            .balance(balance)
            .max_connections_per_worker(LIMIT);
        // Every worker holds its connections until the client closes them.
        let server = serve(WORKERS, net, spec("127.0.0.1:0"), &[0, 1]).await;
        let addr = server.addr;
        let mut waiting: Vec<_> = (0..20).map(|_| tokio::spawn(hello(addr))).collect();
        let mut per_worker: HashMap<u64, usize> = HashMap::new();
        let mut rounds = 0;
        while !waiting.is_empty() {
            eventually(|| waiting.iter().any(|t| t.is_finished()), "a greeting").await;
            let (done, rest): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|t| t.is_finished());
            // Nothing was closed since the last round: only free places were served.
            assert!(
                done.len() <= WORKERS * LIMIT,
                "{balance}: {} served at once",
                done.len()
            );
            let by_slot = active_by_slot(&server.cluster);
            assert!(
                by_slot.iter().all(|n| *n <= LIMIT),
                "{balance}: {by_slot:?}"
            );
            let mut held = Vec::new();
            for t in done {
                let (id, stream) = t.await.unwrap().expect("connection served, not refused");
                *per_worker.entry(id).or_default() += 1;
                held.push(stream);
            }
            // Closing them frees their places for the ones waiting.
            drop(held);
            waiting = rest;
            rounds += 1;
        }
        assert_eq!(per_worker.values().sum::<usize>(), 20, "{balance}");
        assert!(
            rounds >= 20 / (WORKERS * LIMIT),
            "{balance}: served in {rounds} rounds"
        );
        server.cluster.disconnect().await;
    }
}
