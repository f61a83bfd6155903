//! PROXY protocol listeners: the client the balancer names is the
//! connection's peer and sticky's key; a connection without a valid header
//! is closed and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{until, DEADLINE};
use cluster_core::{Address, Cluster, ClusterEvent};
use cluster_net::{stats, Balance, Listen, NetConfig, WorkerExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every worker answers `<id> <peer>` after reading the header.
async fn start(workers: usize, balance: Balance) -> (Cluster, SocketAddr) {
    start_with(workers, NetConfig::default().balance(balance)).await
}

/// [`start`] with `net` (and the PROXY protocol on).
async fn start_with(workers: usize, net: NetConfig) -> (Cluster, SocketAddr) {
    let cluster = Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(net.proxy_protocol(true))
        .state(crate::common::Accepting::default())
        .build(|w| async move {
            let listener = w.listen(Listen::parse("127.0.0.1:0")?).await?;
            let mut early = crate::common::first_accept(&w, &listener).await;
            loop {
                tokio::select! {
                    mut conn = async { match early.take() {
                        Some(conn) => conn,
                        None => listener.accept().await,
                    } } => {
                        let id = w.id();
                        tokio::task::spawn_local(async move {
                            if cluster_net::hooks::read_proxy_header(&mut conn).await.is_err() {
                                return;
                            }
                            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                            let mut rest = [0u8; 5];
                            let _ = conn.read_exact(&mut rest).await;
                            let line = format!("{id} {peer} {}\n", String::from_utf8_lossy(&rest));
                            let _ = conn.write_all(line.as_bytes()).await;
                        });
                    }
                    () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                }
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addr = None;
    for _ in 0..workers {
        addr = until(&mut events, |e| match e {
            ClusterEvent::Listening {
                address: Address::Tcp(a),
                ..
            } => Some(Some(*a)),
            _ => None,
        })
        .await;
    }
    // Sticky maps a client among the workers that accept: all of them.
    crate::common::all_accepting(&cluster, workers).await;
    (cluster, addr.unwrap())
}

fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, server),
    )
    .build()
    .unwrap()
}

/// Sends `header` and then `hello`; the server's line, or `None` if it closed.
async fn ask(addr: SocketAddr, header: &[u8]) -> Option<(u64, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut line))
        .await
        .expect("no answer nor close before the deadline")
        .ok()?;
    let mut words = line.split_whitespace();
    let id = words.next()?.parse().ok()?;
    let peer = words.next()?.to_owned();
    assert_eq!(
        words.next(),
        Some("hello"),
        "the bytes after the header: {line:?}"
    );
    Some((id, peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancers_client_is_the_peer_in_every_mode() {
    for balance in [
        Balance::RoundRobin,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ] {
        let (cluster, addr) = start(2, balance).await;
        let client: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        let (_, peer) = ask(addr, &v2(client, addr)).await.expect("answered");
        assert_eq!(peer, client.to_string(), "{balance:?}, v2");
        let v1 = b"PROXY TCP4 198.51.100.4 192.0.2.1 41000 8000\r\n";
        let (_, peer) = ask(addr, v1).await.expect("answered");
        assert_eq!(peer, "198.51.100.4:41000", "{balance:?}, v1");
        cluster.stop(false).await;
    }
}

/// Sticky keys on the client the header names, not on the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_follows_the_named_client() {
    let (cluster, addr) = start(3, Balance::Sticky).await;
    let mut slots: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for i in 0..12u8 {
        let client = SocketAddr::from(([203, 0, 113, i], 6000));
        for port in [1000u16, 2000, 3000] {
            let client = SocketAddr::new(client.ip(), port);
            let (id, _) = ask(addr, &v2(client, addr)).await.expect("answered");
            slots.entry(client.ip().to_string()).or_default().insert(id);
        }
    }
    assert!(
        slots.values().all(|ids| ids.len() == 1),
        "a client moved: {slots:?}"
    );
    let workers: BTreeSet<u64> = slots.values().flatten().copied().collect();
    assert!(workers.len() > 1, "every client on one worker: {slots:?}");
    cluster.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_malformed_header_closes_the_connection_and_is_counted() {
    for balance in [Balance::RoundRobin, Balance::Sticky] {
        let (cluster, addr) = start(1, balance).await;
        assert!(
            ask(addr, b"GET / HTTP/1.1\r\n\r\n").await.is_none(),
            "{balance:?}"
        );
        assert!(
            ask(addr, b"PROXY TCP9 a b c d\r\n").await.is_none(),
            "{balance:?}"
        );
        let end = tokio::time::Instant::now() + DEADLINE;
        while stats(&cluster).iter().map(|s| s.proxy_rejected).max() != Some(2) {
            assert!(
                tokio::time::Instant::now() < end,
                "{balance:?}: {:?}",
                stats(&cluster)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker serves on.
        let client: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        assert!(ask(addr, &v2(client, addr)).await.is_some());
        cluster.stop(false).await;
    }
}

/// `proxy_from`: only the trusted networks may connect to a PROXY port;
/// anyone else is closed before a byte is read and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_trusted_networks_may_send_a_header() {
    for balance in [
        Balance::RoundRobin,
        Balance::Os,
        Balance::ReusePort,
        Balance::Sticky,
    ] {
        let client: SocketAddr = "203.0.113.9:6000".parse().unwrap();
        // The test connects from 127.0.0.1.
        let elsewhere: cluster_net::Cidr = "10.0.0.0/8".parse().unwrap();
        let net = NetConfig::default()
            .balance(balance)
            .proxy_from([elsewhere]);
        let (cluster, addr) = start_with(2, net).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Closed before anything is read: the writes may fail.
        let _ = s.write_all(&v2(client, addr)).await;
        let _ = s.write_all(b"hello").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer))
            .await
            .expect("neither answered nor closed");
        assert!(
            answer.is_empty(),
            "{balance:?}: an untrusted source was served"
        );
        let end = tokio::time::Instant::now() + DEADLINE;
        while stats(&cluster).iter().map(|s| s.proxy_rejected).max() != Some(1) {
            assert!(
                tokio::time::Instant::now() < end,
                "{balance:?}: not counted"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.stop(false).await;

        let loopback: cluster_net::Cidr = "127.0.0.0/8".parse().unwrap();
        let net = NetConfig::default()
            .balance(balance)
            .proxy_from([elsewhere, loopback]);
        let (cluster, addr) = start_with(2, net).await;
        let (_, peer) = ask(addr, &v2(client, addr)).await.expect("answered");
        assert_eq!(peer, client.to_string(), "{balance:?}");
        cluster.stop(false).await;
    }
}

const FD_LIMIT: u64 = 256;
const SILENT: usize = 250;

/// In the child only: a sticky PROXY server with `RLIMIT_NOFILE` 256 (a
/// cap of 128) that answers each client with the peer its header named,
/// and prints `accept errors <n>` if `accept(2)` ever fails.
#[test]
#[ignore = "a child process of another test"]
fn flood_child() {
    test_support::lower_fd_limit(FD_LIMIT).expect("RLIMIT_NOFILE lowered");
    Cluster::builder()
        .workers(2)
        .state(
            NetConfig::default()
                .balance(Balance::Sticky)
                .proxy_protocol(true),
        )
        .run_with_primary(
            |w| async move {
                let listener = w.listen("127.0.0.1:0").await?;
                loop {
                    tokio::select! {
                        mut conn = listener.accept() => {
                            tokio::task::spawn_local(async move {
                                if cluster_net::hooks::read_proxy_header(&mut conn).await.is_ok() {
                                    let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
                                    let _ = conn.write_all(format!("{peer}\n").as_bytes()).await;
                                }
                            });
                        }
                        () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                    }
                }
            },
            |cluster| async move {
                let mut events = cluster.events();
                while let Some(e) = events.recv().await {
                    if let ClusterEvent::Listening { address: Address::Tcp(a), .. } = e {
                        println!("listening on {a}");
                        break;
                    }
                }
                loop {
                    let errors: u64 = stats(&cluster).iter().map(|s| s.accept_errors).max().unwrap_or(0);
                    if errors > 0 {
                        println!("accept errors {errors}");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .unwrap();
}

/// 250 connections that never send their PROXY header to a sticky port
/// (whose acceptor reads the headers) at `RLIMIT_NOFILE` 256: the header
/// reads count under the cap, so the process never runs out of fds, and a
/// balancer's client is served at once (the silent ones go first at the
/// cap). Before, one uncounted task per connection took every fd.
#[test]
fn silent_connections_on_a_sticky_proxy_port_stay_under_the_cap() {
    let command = test_support::this_test("proxy::flood_child");
    let mut run = test_support::Run::command("the proxy flood child", command);
    let line = run.line(|l| l.contains("listening on "));
    let addr: SocketAddr = line
        .split_once("listening on ")
        .and_then(|(_, a)| a.trim().parse().ok())
        .unwrap();
    let silent: Vec<std::net::TcpStream> = (0..SILENT)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    test_support::eventually_blocking(
        || test_support::accept_backlog(addr) <= SILENT - 128,
        "the cap filled",
    );
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::io::Write::write_all(&mut client, b"PROXY TCP4 192.0.2.7 192.0.2.1 51000 80\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut client, &mut answer).expect("the client was served");
    assert_eq!(answer.trim(), "192.0.2.7:51000");
    drop(silent);
    run.signal(libc::SIGTERM);
    let status = run.exit_status();
    assert!(status.success(), "{status}");
    let errors: Vec<String> = run
        .rest()
        .into_iter()
        .filter(|l| l.starts_with("accept errors"))
        .collect();
    assert!(errors.is_empty(), "out of fds: {errors:?}");
}
