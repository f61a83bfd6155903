//! A rolling reload under load whose new workers are slow to start (they
//! load something before they listen): the reload waits for each to listen
//! (its readiness), up to `listen_timeout`; past it, the old worker is
//! disconnected anyway, and the connections wait in the primary's socket
//! until a worker listens. Either way no request fails.

use std::time::Duration;

use crate::common::{serve_app, start, stop, DEADLINE};
use cluster_core::{ClusterEvent, Events};
use test_support::Load;
use tokio::task::block_in_place;

/// For each slot, whether its new worker listened before its old one was
/// disconnected, from the reload's events.
async fn handovers(events: &mut Events, slots: usize) -> Vec<bool> {
    // (slot, new worker listened, old worker disconnected) in order.
    let mut listened = vec![false; slots];
    let mut order = vec![None; slots];
    while order.iter().any(Option::is_none) {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("the reload's events before the deadline")
            .expect("the cluster runs");
        match event {
            ClusterEvent::Listening { worker, .. } if worker.id() > slots as u64 => {
                listened[worker.slot()] = true;
            }
            ClusterEvent::Disconnect { worker } if worker.id() <= slots as u64 => {
                order[worker.slot()] = Some(listened[worker.slot()]);
            }
            _ => {}
        }
    }
    order.into_iter().flatten().collect()
}

/// Reloads a 2-worker cluster under load; the new workers wait `slow`
/// before they listen. Returns, per slot, whether the new worker listened
/// before the old one was disconnected.
async fn reload_with_slow_starts(slow: Duration, listen_timeout: Duration) -> Vec<bool> {
    let app = serve_app(None);
    let mut running = start(
        2,
        |b| b.listen_timeout(listen_timeout),
        move |w| {
            let app = app(w.clone());
            async move {
                if w.id() > 2 {
                    // The replacement's start-up work, before it listens.
                    tokio::time::sleep(slow).await;
                }
                app.await
            }
        },
    )
    .await;
    let load = Load::start(running.addr, 4, false);
    block_in_place(|| load.wait_for_more(100));
    tokio::time::timeout(DEADLINE, running.cluster.reload())
        .await
        .expect("the reload before the deadline")
        .expect("the reload succeeds");
    let order = handovers(&mut running.events, 2).await;
    // Served by the new workers.
    block_in_place(|| load.wait_for_more(100));
    let (ok, failed, _) = block_in_place(|| load.finish());
    eprintln!("reload with new workers {slow:?} slow to listen, listen_timeout {listen_timeout:?}: {ok} served, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the reload");
    stop(&running.cluster).await;
    order
}

/// Slower than nothing, well within `listen_timeout`: each old worker
/// leaves only once its replacement listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_waits_for_slow_new_workers_to_listen() {
    let order = reload_with_slow_starts(Duration::from_millis(300), DEADLINE).await;
    assert_eq!(order, [true, true]);
}

/// Slower than `listen_timeout`: the reload moves on without them (each
/// old worker is disconnected before its replacement listens), and still
/// no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_listen_timeout_the_reload_moves_on_and_loses_nothing() {
    let order = reload_with_slow_starts(Duration::from_secs(2), Duration::from_millis(100)).await;
    assert_eq!(order, [false, false]);
}

/// PM2's `wait_ready`: the new workers listen at once but are ready only
/// when they say so, 5 s later (a cache to warm). The reload keeps each old
/// worker until its replacement's `ready()`, not its listening; no request
/// fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_ready_a_reload_waits_for_ready_not_listening() {
    const WARM_UP: Duration = Duration::from_secs(5);
    let app = serve_app(None);
    let mut running = start(
        2,
        |b| b.wait_ready(true).listen_timeout(DEADLINE),
        move |w| {
            if w.id() > 2 {
                let w = w.clone();
                // The replacement's warm-up, after it listens.
                tokio::spawn(async move {
                    tokio::time::sleep(WARM_UP).await;
                    w.ready();
                });
            } else {
                w.ready();
            }
            app(w)
        },
    )
    .await;
    let load = Load::start(running.addr, 4, false);
    block_in_place(|| load.wait_for_more(100));
    tokio::time::timeout(DEADLINE * 2, running.cluster.reload())
        .await
        .expect("the reload before the deadline")
        .expect("the reload succeeds");
    // Per slot: (new worker listened, new worker ready) when the old one
    // was disconnected.
    let mut seen = [(false, false); 2];
    let mut order = [None; 2];
    while order.iter().any(Option::is_none) {
        let event = tokio::time::timeout(DEADLINE, running.events.recv())
            .await
            .expect("the reload's events before the deadline")
            .expect("the cluster runs");
        match event {
            ClusterEvent::Listening { worker, .. } if worker.id() > 2 => {
                seen[worker.slot()].0 = true;
            }
            ClusterEvent::Ready { worker } if worker.id() > 2 => seen[worker.slot()].1 = true,
            ClusterEvent::Disconnect { worker } if worker.id() <= 2 => {
                order[worker.slot()] = Some(seen[worker.slot()]);
            }
            _ => {}
        }
    }
    block_in_place(|| load.wait_for_more(100));
    let (ok, failed, _) = block_in_place(|| load.finish());
    eprintln!("reload with wait_ready and a {WARM_UP:?} warm-up: {ok} served, {failed} failed");
    assert_eq!(
        order,
        [Some((true, true)); 2],
        "old workers left before their replacement was ready"
    );
    assert_eq!(failed, 0, "requests failed during the reload");
    stop(&running.cluster).await;
}
