//! Workers dying under continuous connection churn, in every balance mode:
//! no connection the kernel accepted is reset or refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{serve, spec, until, until_closed, DEADLINE};
use cluster_core::ClusterEvent;
use cluster_net::{Balance, NetConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

/// Connects and reads the greeting; the error carries the client's own
/// address (which a worker holding the connection knows it by).
async fn greeted(addr: SocketAddr) -> Result<BufReader<TcpStream>, (Option<SocketAddr>, String)> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| (None, e.to_string()))?;
    let local = stream.local_addr().ok();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(DEADLINE, reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 && line.ends_with('\n') => Ok(reader),
        Ok(Ok(_)) => Err((local, format!("closed without a greeting ({line:?})"))),
        Ok(Err(e)) => Err((local, e.to_string())),
        Err(_) => Err((local, "no greeting before the deadline".into())),
    }
}

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
        let mut server = serve(
            4,
            NetConfig::default().balance(balance),
            spec("127.0.0.1:0"),
            &[],
        )
        .await;
        let events = &mut server.events;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (stop, served, failed, addr) =
                    (stop.clone(), served.clone(), failed.clone(), server.addr);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match greeted(addr).await {
                            Ok(s) => {
                                until_closed(s).await;
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Err((local, e)) => {
                                eprintln!("{balance}: {local:?}: {e}");
                                failed.lock().unwrap().push(local);
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
            until(events, |e| match e {
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
        let served = served.load(Ordering::Relaxed);
        let failed = std::mem::take(&mut *failed.lock().unwrap());
        eprintln!(
            "{balance}: {served} served, {} failed, 3 workers died ({death:?})",
            failed.len()
        );
        // A panicking worker drains first: nothing may fail. A killed one
        // loses the connection it holds at that instant (tokio's budget can
        // make its write yield mid-way), and only that one: the ones queued
        // for it go to the others. So every failed client must be one a
        // killed worker held.
        let in_hand = server.in_hand();
        let lost: Vec<_> = failed
            .iter()
            .filter(|local| match (death, local) {
                (Death::Kill, Some(local)) => !in_hand.contains(local),
                _ => true,
            })
            .collect();
        assert!(
            lost.is_empty(),
            "{balance}: {} of {} connections failed that no killed worker held ({death:?}): {lost:?}",
            lost.len(),
            served + failed.len()
        );
        server.cluster.disconnect().await;
    }
}
