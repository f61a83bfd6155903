//! Graceful drain inside one process: a disconnected worker stops accepting,
//! moves its idle connections to a live worker (or closes them), finishes its requests in flight, and returns;
//! the drain deadline closes what is left; a rolling reload fails no request.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, eventually, migrated, serve_app, start, until, Gate, H1};
use cluster_core::{ClusterEvent, ExitReason};
use cluster_http::HttpConfig;
use http::StatusCode;

/// A cluster of two whose worker `victim` holds two keep-alive
/// connections: `idle`, and `in_flight`'s, with a request in the service.
struct Victim {
    running: common::Running,
    gate: Arc<Gate>,
    victim: u64,
    idle: H1,
    in_flight: tokio::task::JoinHandle<(Result<common::Reply, common::BoxError>, H1)>,
}

async fn victim(config: Option<HttpConfig>) -> Victim {
    let gate = Arc::new(Gate::default());
    let running = start(
        2,
        |b| {
            b.state(Arc::clone(&gate))
                .shutdown_timeout(Duration::from_secs(60))
        },
        serve_app(config),
    )
    .await;
    let addr = running.addr;
    let mut busy = H1::connect(addr).await.unwrap();
    let victim = busy.get("/").await.unwrap().worker();
    let idle = loop {
        let mut c = H1::connect(addr).await.unwrap();
        if c.get("/").await.unwrap().worker() == victim {
            break c;
        }
    };
    let in_flight = tokio::spawn(async move {
        let reply = busy.get("/block").await;
        (reply, busy)
    });
    eventually(
        || gate.entered.load(Ordering::SeqCst) == 1,
        "the request in the service",
    )
    .await;
    Victim {
        running,
        gate,
        victim,
        idle,
        in_flight,
    }
}

/// Why worker `id` exited, once it has.
async fn exit_of(events: &mut cluster_core::Events, id: u64) -> ExitReason {
    until(events, |e| match e {
        ClusterEvent::Exit { worker, reason } if worker.id() == id => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_worker_moves_its_connections_and_finishes_its_requests() {
    let Victim {
        running,
        gate,
        victim,
        mut idle,
        in_flight,
    } = victim(None).await;
    let mut events = running.events;
    running.cluster.worker(victim).unwrap().disconnect();
    // The idle connection moves to the other worker at once, open.
    eventually(
        || migrated(&running.cluster) == 1,
        "the idle connection moved",
    )
    .await;
    assert!(!idle.is_closed());
    assert_ne!(idle.get("/").await.unwrap().worker(), victim);
    assert!(!in_flight.is_finished());
    // New connections go to the other worker.
    for _ in 0..10 {
        let reply = common::get(running.addr, "/").await.unwrap();
        assert_ne!(reply.worker(), victim);
    }
    // The request in flight is answered by its worker, as a keep-alive
    // response; then its connection moves too.
    gate.open();
    let (reply, mut busy) = in_flight.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.worker(), victim);
    assert!(!reply.headers.contains_key("connection"), "{reply:?}");
    assert_eq!(exit_of(&mut events, victim).await, ExitReason::Returned);
    assert_eq!(migrated(&running.cluster), 2);
    assert_ne!(busy.get("/").await.unwrap().worker(), victim);
    assert!(!idle.is_closed() && !busy.is_closed());
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migration_a_disconnected_worker_closes_idle_connections() {
    let Victim {
        running,
        gate,
        victim,
        mut idle,
        in_flight,
    } = victim(Some(HttpConfig::default().migrate(false))).await;
    let mut events = running.events;
    running.cluster.worker(victim).unwrap().disconnect();
    // The idle connection is closed at once; the busy one is not.
    eventually(|| idle.is_closed(), "the idle connection closed").await;
    assert!(idle.get("/").await.is_err());
    assert!(!in_flight.is_finished());
    gate.open();
    let (reply, busy) = in_flight.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.worker(), victim);
    assert_eq!(reply.headers["connection"], "close");
    busy.closed().await;
    assert_eq!(exit_of(&mut events, victim).await, ExitReason::Returned);
    assert_eq!(migrated(&running.cluster), 0);
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_closes_what_is_left_and_serve_returns_ok() {
    let gate = Arc::new(Gate::default());
    let running = start(
        1,
        |b| {
            b.state(Arc::clone(&gate))
                .state(HttpConfig::default().drain_timeout(Duration::from_millis(300)))
                // Far longer: the worker must return by itself, not be killed.
                .shutdown_timeout(Duration::from_secs(120))
        },
        serve_app(None),
    )
    .await;
    let addr = running.addr;
    let mut events = running.events;
    let stuck = tokio::spawn(async move { common::get(addr, "/block").await });
    eventually(
        || gate.entered.load(Ordering::SeqCst) == 1,
        "the request in the service",
    )
    .await;

    common::stop(&running.cluster).await;
    let reason = until(&mut events, |e| match e {
        ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Returned);
    // The request that never finished was cut at the deadline.
    assert!(stuck.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_reload_fails_no_request() {
    let running = start(2, |b| b, serve_app(None)).await;
    let addr = running.addr;
    let before: BTreeSet<u64> = running.cluster.workers().iter().map(|w| w.id()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, served) = (stop.clone(), served.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut ids = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    // Half the clients on fresh connections, half on HTTP/2.
                    let reply = if i % 2 == 0 {
                        common::get(addr, "/sleep/2").await
                    } else {
                        match common::H2::connect(addr).await {
                            Ok((c, _driver)) => c.get("/sleep/2").await,
                            Err(e) => Err(e),
                        }
                    };
                    match reply {
                        Ok(r) if r.status == StatusCode::OK => {
                            ids.insert(r.worker());
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.push(format!("{r:?}")),
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (failures, ids)
            })
        })
        .collect();
    eventually(|| served.load(Ordering::Relaxed) >= 40, "traffic").await;
    tokio::time::timeout(common::DEADLINE, running.cluster.reload())
        .await
        .expect("reload within the deadline")
        .unwrap();
    let after_reload = served.load(Ordering::Relaxed);
    eventually(
        || served.load(Ordering::Relaxed) >= after_reload + 40,
        "traffic after the reload",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut ids = BTreeSet::new();
    for c in clients {
        let (failures, seen) = c.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
        ids.extend(seen);
    }
    let now: BTreeSet<u64> = running.cluster.workers().iter().map(|w| w.id()).collect();
    assert!(now.is_disjoint(&before), "{before:?} {now:?}");
    assert!(
        ids.is_superset(&now),
        "new workers {now:?} never answered: {ids:?}"
    );
    common::stop(&running.cluster).await;
}

/// An upgraded connection (`101 Switching Protocols`, as a WebSocket) at a
/// drain: as Node's `worker.disconnect()` waits for every connection of
/// the worker's servers, upgraded ones too, the drain waits for it: the
/// handler's stream still echoes after the drain started, and the worker
/// exits only once the client closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_waits_for_an_upgraded_connection() {
    use cluster_http::{Request, Server};
    use cluster_net::WorkerExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut running = start(
        1,
        |b| b.shutdown_timeout(Duration::from_secs(60)),
        |w| async move {
            let listener = w.listen("127.0.0.1:0").await?;
            Server::new(listener)
                .serve(|mut req: Request| async move {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::task::spawn_local(async move {
                        let Ok(upgraded) = upgrade.await else { return };
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = io.read(&mut buf).await {
                            if io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut response = http::Response::new(String::new());
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    let headers = response.headers_mut();
                    headers.insert(http::header::CONNECTION, "upgrade".parse().unwrap());
                    headers.insert(http::header::UPGRADE, "echo".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(response)
                })
                .await
        },
    )
    .await;
    let mut client = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    client
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(common::DEADLINE, client.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let cluster = running.cluster.clone();
    let stopping = tokio::spawn(async move { cluster.disconnect().await });
    until(&mut running.events, |e| {
        matches!(e, ClusterEvent::Disconnect { .. }).then_some(())
    })
    .await;
    // Draining now: the upgraded stream still answers.
    client.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    tokio::time::timeout(common::DEADLINE, client.read_exact(&mut pong))
        .await
        .expect("an answer before the deadline")
        .expect("the upgraded connection outlives the drain's start");
    assert_eq!(&pong, b"ping");
    assert!(
        !stopping.is_finished(),
        "the worker left with an upgraded connection open"
    );
    // The client closes: the drain ends, and with it the cluster.
    drop(client);
    tokio::time::timeout(common::DEADLINE, stopping)
        .await
        .expect("the drain ends once the upgraded connection closed")
        .unwrap();
}
