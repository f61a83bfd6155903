//! Workers dying under continuous connection churn, in every balance mode:
//! no connection the kernel accepted is reset or refused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{hello, serve, spec, until, until_closed};
use cluster_core::ClusterEvent;
use cluster_net::{Balance, NetConfig};

/// How a worker goes.
#[derive(Clone, Copy, Debug)]
enum Death {
    /// It panics after its drain (`on_panic = "restart"`).
    Panic,
    /// The primary kills it: its runtime is dropped at its next await.
    Kill,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_lost_when_workers_panic_under_churn() {
    churn(Death::Panic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_queued_connection_is_lost_when_workers_are_killed_under_churn() {
    churn(Death::Kill).await;
}

async fn churn(death: Death) {
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
            crate::common::eventually(|| served.load(Ordering::Relaxed) >= before + 50, "traffic")
                .await;
            let victim = server.cluster.workers()[round % 4].clone();
            match death {
                Death::Panic => victim.send("die").unwrap(),
                Death::Kill => victim.kill(),
            }
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
        crate::common::eventually(
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
        eprintln!("{balance}: {served} served, {failed} failed, 3 workers died ({death:?})");
        // A panicking worker drains first: nothing may fail. A killed one
        // loses the connection it holds at that instant (tokio's budget can
        // make its write yield mid-way), at most one per kill; the ones
        // queued for it go to the others.
        let allowed = match death {
            Death::Panic => 0,
            Death::Kill => 3,
        };
        assert!(
            failed <= allowed,
            "{balance}: {failed} connections failed of {} ({death:?})",
            served + failed
        );
        server.cluster.disconnect().await;
    }
}
