//! SIGTERM sent to a real child process serving HTTP: the requests in flight
//! complete with 200, idle keep-alive connections (HTTP/1.1 and HTTP/2) are
//! closed, and the process exits 0, long before the drain deadline when
//! nothing is in flight.
//!
//! The child is this test binary itself, re-run with `CLUSTER_HTTP_CHILD`
//! set, so that the cluster owns the whole process and its signals.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{self, serve_app, H1, H2};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_http::HttpConfig;
use http::StatusCode;
use test_support::Run;
use tokio::task::block_in_place;

const CHILD: &str = "CLUSTER_HTTP_CHILD";

/// Runs in the child process only: the program under test. Drain and
/// shutdown deadlines are far beyond the parent's waits, so an exit within
/// them shows that the drain ended when the connections did.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    assert!(
        std::env::var_os(CHILD).is_some(),
        "run by this module's tests"
    );
    Cluster::builder()
        .workers(2)
        .shutdown_timeout(Duration::from_secs(120))
        .state(HttpConfig::default().drain_timeout(Duration::from_secs(100)))
        .run_with_primary(serve_app(None), |cluster| async move {
            let mut events = cluster.events();
            while let Some(e) = events.recv().await {
                if let ClusterEvent::Listening {
                    address: Address::Tcp(a),
                    ..
                } = e
                {
                    println!("listening on {a}");
                    break;
                }
            }
        })
        .unwrap();
    println!("primary exits");
}

/// The program under test, started as a child, and the address it serves.
/// Its lines are read on the test's runtime thread (`block_in_place`): the
/// waits are bounded by test-support's deadline.
fn start() -> (Run, SocketAddr) {
    let mut command = test_support::this_test("drain_signals::child");
    command.env(CHILD, "1");
    let mut run = Run::command("the drain_signals child", command);
    let line = block_in_place(|| run.line(|l| l.contains("listening on ")));
    let addr = line
        .split_once("listening on ")
        .and_then(|(_, addr)| addr.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (run, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_and_closes_idle_connections() {
    let (mut run, addr) = start();

    // Idle keep-alive connections, HTTP/1.1 and HTTP/2.
    let mut idle_h1 = H1::connect(addr).await.unwrap();
    assert_eq!(idle_h1.get("/").await.unwrap().status, StatusCode::OK);
    let (idle_h2, idle_h2_driver) = H2::connect(addr).await.unwrap();
    assert_eq!(idle_h2.get("/").await.unwrap().status, StatusCode::OK);

    // Requests in flight: four on their own HTTP/1.1 connections, two streams
    // on one HTTP/2 connection.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        in_flight.push(tokio::spawn(async move {
            common::get(addr, "/wait-drain").await
        }));
    }
    let (h2, h2_driver) = H2::connect(addr).await.unwrap();
    for _ in 0..2 {
        let h2 = h2.clone();
        in_flight.push(tokio::spawn(async move { h2.get("/wait-drain").await }));
    }
    for _ in 0..6 {
        block_in_place(|| run.line(|l| l.contains("in flight ")));
    }

    run.signal(libc::SIGTERM);
    for h in in_flight {
        let reply = h.await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "finished\n");
    }
    idle_h1.closed().await;
    idle_h2_driver.closed().await;
    drop(h2);
    h2_driver.closed().await;
    let status = block_in_place(|| run.exit_status());
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_0_long_before_the_deadline() {
    let (mut run, addr) = start();
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = H1::connect(addr).await.unwrap();
        assert_eq!(c.get("/").await.unwrap().status, StatusCode::OK);
        idle.push(c);
    }
    let (h2, h2_driver) = H2::connect(addr).await.unwrap();
    assert_eq!(h2.get("/").await.unwrap().status, StatusCode::OK);

    run.signal(libc::SIGTERM);
    // Within test-support's DEADLINE (60 s), while the drain deadline is
    // 100 s and the shutdown timeout 120 s.
    let status = block_in_place(|| run.exit_status());
    assert!(status.success(), "{status}");
    for c in idle {
        c.closed().await;
    }
    h2_driver.closed().await;
}
