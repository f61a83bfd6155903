//! Workers dying under continuous connection churn, in every balance mode:
//! no connection the kernel accepted is reset or refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use cluster_core::ClusterEvent;
use cluster_net::{Balance, NetConfig};
use common::{hello, serve, spec, until, until_closed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_lost_when_workers_die_under_churn() {
    for balance in Balance::ALL {
        let server = serve(
            4,
            NetConfig::default().balance(balance),
            spec("127.0.0.1:0"),
            &[],
        )
        .await;
        let mut events = server.events;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, served, failed, addr) =
                    (stop.clone(), served.clone(), failed.clone(), server.addr);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match hello(addr).await {
                            Ok((_, s)) => {
                                until_closed(s).await;
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                eprintln!("{balance}: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        // Three deaths, one at a time, each while connections keep coming.
        for round in 0..3 {
            let before = served.load(Ordering::Relaxed);
            common::eventually(|| served.load(Ordering::Relaxed) >= before + 50, "traffic").await;
            let victim = server.cluster.workers()[round % 4].clone();
            victim.send("die").unwrap();
            until(&mut events, |e| match e {
                ClusterEvent::Listening { worker, .. }
                    if worker.slot() == victim.slot() && worker.id() != victim.id() =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        }
        let before = served.load(Ordering::Relaxed);
        common::eventually(
            || served.load(Ordering::Relaxed) >= before + 50,
            "traffic after",
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let (served, failed) = (
            served.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        eprintln!("{balance}: {served} served, {failed} failed, 3 workers died");
        assert_eq!(
            failed,
            0,
            "{balance}: {failed} connections failed of {}",
            served + failed
        );
        server.cluster.disconnect().await;
    }
}
