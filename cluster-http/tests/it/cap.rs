//! The cluster's connection cap: when every place is held by idle
//! keep-alive connections, or by connections that never send a byte (on a
//! plaintext or a TLS port), a new client is served at once: the silent
//! ones go first, then the oldest idle one.

use std::time::Duration;

use crate::common::{self, serve_app, start, stop, H1};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_http::{HttpConfig, TlsConfig};
use cluster_net::NetConfig;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_idle_connection_makes_room_for_a_new_client() {
    const CAP: usize = 4;
    let running = start(
        2,
        |b| b.state(NetConfig::default().connection_cap(CAP)),
        serve_app(None),
    )
    .await;
    let addr = running.addr;
    // Every place held by an idle keep-alive connection, oldest first.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut conn = H1::connect(addr).await.unwrap();
        assert_eq!(conn.get("/").await.unwrap().status, StatusCode::OK);
        held.push(conn);
    }
    // At the cap, with no client waiting: nothing is closed.
    let cap = cluster_net::cap_stats(&running.cluster).unwrap();
    assert_eq!((cap.limit, cap.open, cap.evicted), (CAP, CAP, 0));

    // Without eviction this waits for the 30 s keep-alive timeout.
    let reply = tokio::time::timeout(Duration::from_secs(10), common::get(addr, "/"))
        .await
        .expect("a new client was not served at the cap")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // The oldest idle connection was among those closed.
    held.remove(0).closed().await;
    assert!(cluster_net::cap_stats(&running.cluster).unwrap().evicted >= 1);
    stop(&running.cluster).await;
}

/// Child-process test of silent connections at the cap: the server runs
/// with `RLIMIT_NOFILE` 256 (so the default cap is 128) and header read
/// and handshake timeouts far beyond the test's waits.
/// `cert.pem key.pem` for a TLS child.
const CHILD_TLS: &str = "CLUSTER_HTTP_CAP_TLS";
const FD_LIMIT: u64 = 256;
const SILENT: usize = 200;

/// The server under test, in the child process only.
#[test]
#[ignore = "a child process of another test"]
fn child() {
    test_support::lower_fd_limit(FD_LIMIT).expect("RLIMIT_NOFILE lowered");
    let long = Duration::from_secs(300);
    let mut http = HttpConfig::default()
        .header_read_timeout(long)
        .keep_alive_timeout(long);
    if let Ok(files) = std::env::var(CHILD_TLS) {
        let (cert, key) = files.split_once(' ').unwrap();
        http = http.tls(TlsConfig::pem_files(cert, key).handshake_timeout(long));
    }
    Cluster::builder()
        .workers(2)
        .state(http)
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
            let cap = cluster_net::cap_stats(&cluster).unwrap();
            println!("cap {}", cap.limit);
            let steered = cluster_net::stats(&cluster)
                .iter()
                .any(|s| s.kernel_steering);
            println!("steered {steered}");
        })
        .unwrap();
}

/// 200 connections that never send a byte (not a request, not a TLS
/// hello) fill the cap of 128 and its backlog; a new client is served at
/// once: the silent ones go first at the cap, oldest first. (Before, only
/// idle keep-alive connections could be closed: the client waited for the
/// silent ones' header read timeout.)
///
/// With kernel steering (`steer`) each worker accepts from its own queue,
/// and both wait at the cap: the freed places go to them in turn, so the
/// worker whose queue holds the client reaches it. (Before, one whose
/// queue was full of silent connections could take every freed place, and
/// the other, which had asked for room once, waited for good.) Without it
/// (`steer` false), the acceptor's one queue.
fn silent_connections_do_not_hold_the_cap(pki: Option<&crate::tls::Pki>, steer: bool) {
    let mut command = test_support::this_test("cap::child");
    command.env(
        cluster_net::KERNEL_STEERING_ENV,
        if steer { "auto" } else { "off" },
    );
    if let Some(pki) = pki {
        command.env(
            CHILD_TLS,
            format!("{} {}", pki.cert().display(), pki.key().display()),
        );
    }
    let mut run = test_support::Run::command("the cap child", command);
    let line = run.line(|l| l.contains("listening on "));
    let addr: std::net::SocketAddr = line
        .split_once("listening on ")
        .and_then(|(_, a)| a.trim().parse().ok())
        .unwrap();
    let cap: usize = run.line(|l| l.starts_with("cap "))[4..].parse().unwrap();
    assert_eq!(cap, 128, "the default cap at RLIMIT_NOFILE {FD_LIMIT}");
    let steered = run.line(|l| l.starts_with("steered ")) == "steered true";
    if steer && !steered {
        assert!(!test_support::is_root(), "root, and not kernel-steered");
        eprintln!("notice: this process may not load eBPF: the acceptor's path only");
    }
    assert!(
        steer || !steered,
        "steered with CLUSTER_THREAD_KERNEL_STEERING=off"
    );
    let silent: Vec<std::net::TcpStream> = (0..SILENT)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // The cap is full: the rest wait in the backlog (or, once silent ones
    // are closed to admit them, none does).
    test_support::eventually_blocking(
        || test_support::accept_backlog(addr) <= SILENT - cap,
        "the cap filled",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            match pki {
                None => common::get(addr, "/").await.map(|r| r.status),
                Some(pki) => {
                    let tls = crate::tls::connect(addr, &pki.connector(&[b"http/1.1"])).await?;
                    crate::tls::H1s::new(tls)
                        .await?
                        .get("/")
                        .await
                        .map(|r| r.status)
                }
            }
        })
        .await
    });
    let status = status
        .expect("a new client waited behind silent connections at the cap")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(silent);
    run.signal(libc::SIGTERM);
    let exit = run.exit_status();
    assert!(exit.success(), "{exit}");
}

#[test]
fn silent_connections_go_first_at_the_cap() {
    silent_connections_do_not_hold_the_cap(None, true);
}

#[test]
fn silent_connections_go_first_at_the_cap_through_the_acceptor() {
    silent_connections_do_not_hold_the_cap(None, false);
}

#[test]
fn silent_tls_connections_go_first_at_the_cap() {
    let pki = crate::tls::Pki::new("cap");
    pki.issue("cap");
    silent_connections_do_not_hold_the_cap(Some(&pki), true);
}

#[test]
fn silent_tls_connections_go_first_at_the_cap_through_the_acceptor() {
    let pki = crate::tls::Pki::new("cap-acceptor");
    pki.issue("cap");
    silent_connections_do_not_hold_the_cap(Some(&pki), false);
}
