//! SIGTERM sent to a real child process serving HTTP: the requests in flight
//! complete with 200, idle keep-alive connections (HTTP/1.1 and HTTP/2) are
//! closed, and the process exits 0, long before the drain deadline when
//! nothing is in flight.
//!
//! The child is this test binary itself, re-run with `CLUSTER_HTTP_CHILD`
//! set, so that the cluster owns the whole process and its signals.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_http::HttpConfig;
use common::{serve_app, DEADLINE, H1, H2};
use http::StatusCode;
use tokio::sync::mpsc;

const CHILD: &str = "CLUSTER_HTTP_CHILD";

/// Runs in the child process only: the program under test. Drain and
/// shutdown deadlines are far beyond the parent's waits, so an exit within
/// them shows that the drain ended when the connections did.
#[test]
fn child() {
    if std::env::var(CHILD).is_err() {
        return;
    }
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

struct Run {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Run {
    fn start() -> Run {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run { child, lines }
    }

    async fn line(&mut self, want: impl Fn(&str) -> bool, what: &str) -> String {
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.lines.recv().await {
                    Some(line) if want(&line) => return line,
                    Some(_) => continue,
                    None => panic!("the child's stdout ended before {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no line {what} before the deadline"))
    }

    async fn addr(&mut self) -> SocketAddr {
        let line = self
            .line(|l| l.contains("listening on "), "listening on")
            .await;
        let (_, addr) = line.split_once("listening on ").unwrap();
        addr.trim().parse().unwrap()
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of our own child and a valid signal.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    async fn exit(mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "the child did not exit within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_and_closes_idle_connections() {
    let mut run = Run::start();
    let addr = run.addr().await;

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
        run.line(|l| l.contains("in flight "), "in flight").await;
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
    let status = run.exit().await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_0_long_before_the_deadline() {
    let mut run = Run::start();
    let addr = run.addr().await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = H1::connect(addr).await.unwrap();
        assert_eq!(c.get("/").await.unwrap().status, StatusCode::OK);
        idle.push(c);
    }
    let (h2, h2_driver) = H2::connect(addr).await.unwrap();
    assert_eq!(h2.get("/").await.unwrap().status, StatusCode::OK);

    run.signal(libc::SIGTERM);
    // Within DEADLINE (30 s), while the drain deadline is 100 s and the
    // shutdown timeout 120 s.
    let status = run.exit().await;
    assert!(status.success(), "{status}");
    for c in idle {
        c.closed().await;
    }
    h2_driver.closed().await;
}
