//! Listen errors name what failed; a worker that fails with one during
//! start-up stops the cluster's start, one that handles it serves on.

use std::os::fd::IntoRawFd;

use std::net::SocketAddr;

use cluster_core::{Cluster, ClusterEvent, Error as CoreError, Phase};
use cluster_net::{Listen, WorkerExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{until, DEADLINE};

async fn start_error(spec: impl Fn() -> Listen + Send + Sync + 'static) -> String {
    let cluster = Cluster::builder()
        .workers(3)
        .signals(false)
        .build(move |w| {
            let spec = spec();
            async move {
                let _l = w.listen(spec).await?;
                w.disconnected().await;
                Ok::<_, cluster_net::Error>(())
            }
        })
        .unwrap();
    cluster.start().unwrap();
    let err = tokio::time::timeout(DEADLINE, cluster.wait())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, CoreError::StartFailed { .. }), "{err}");
    assert!(cluster.workers().is_empty(), "no worker left listening");
    err.to_string()
}

/// A worker that returns the error before it listened fails the start
/// (`Error::StartFailed`), the message naming the address.
#[tokio::test]
async fn address_in_use_fails_the_start_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = start_error(move || Listen::Tcp(addr)).await;
    assert!(err.starts_with("start-up failed in worker "), "{err}");
    assert!(
        err.ends_with(&format!("address {addr} already in use")),
        "{err}"
    );
}

/// Node's test-cluster-eaddrinuse: a worker listens on a free port, then
/// asks for an address in use, gets the error (naming the address) and goes
/// on with another port. The error is the worker's to handle: the cluster
/// keeps serving, on both ports, and stops only when asked.
#[tokio::test]
async fn a_handled_address_in_use_leaves_the_cluster_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let in_use = taken.local_addr().unwrap();
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(move |w| async move {
            let first = w.listen("127.0.0.1:0").await?;
            let error = match w.listen(Listen::Tcp(in_use)).await {
                Ok(_) => panic!("{in_use} is in use, yet listen succeeded"),
                Err(e @ cluster_net::Error::AddrInUse { .. }) => e.to_string(),
                Err(e) => panic!("not AddrInUse: {e}"),
            };
            let other = w.listen("127.0.0.1:0").await?;
            let ports: Vec<SocketAddr> = [&first, &other]
                .iter()
                .filter_map(|l| l.tcp_addr())
                .collect();
            w.send((error, ports)).unwrap();
            let greeting = format!("{}\n", w.id());
            loop {
                let mut conn = tokio::select! {
                    c = first.accept() => c,
                    c = other.accept() => c,
                    () = w.disconnected() => return Ok::<_, cluster_net::Error>(()),
                };
                let _ = conn.write_all(greeting.as_bytes()).await;
            }
        })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let (error, addrs) = until(&mut events, |e| match e {
            ClusterEvent::Message { message, .. } => {
                message.downcast_ref::<(String, Vec<SocketAddr>)>().cloned()
            }
            _ => None,
        })
        .await;
        assert_eq!(error, format!("address {in_use} already in use"));
        assert_eq!(addrs.len(), 2, "{addrs:?}");
        ports = addrs;
    }
    tokio::time::timeout(
        DEADLINE,
        cluster.phases().wait_for(|p| *p >= Phase::Listening),
    )
    .await
    .unwrap();
    for addr in &ports {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut greeting = String::new();
        tokio::time::timeout(DEADLINE, stream.read_to_string(&mut greeting))
            .await
            .unwrap()
            .unwrap();
        assert!(
            greeting.trim().parse::<u64>().is_ok(),
            "{addr}: {greeting:?}"
        );
    }
    assert_eq!(cluster.phase(), Phase::Listening);
    assert_eq!(cluster.workers().len(), 2, "both workers serve on");
    cluster.disconnect().await;
    tokio::time::timeout(DEADLINE, cluster.wait())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_fd_that_is_not_listening_is_named() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .into_raw_fd();
    let err = start_error(move || Listen::Fd(udp)).await;
    assert!(
        err.ends_with(&format!("fd {udp} is not a listening socket")),
        "{err}"
    );
}

#[test]
fn a_bad_address_is_named() {
    let err = Listen::parse("localhost").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid listen address \"localhost\": expected host:port, [ipv6]:port, a port number, or unix:/path"
    );
}

/// A `unix:` listener replaces only a stale socket: a regular file, a FIFO
/// or a symlink at its path is an error naming the path, and stays.
#[tokio::test]
async fn a_unix_path_that_is_not_a_socket_is_never_deleted() {
    let dir = std::env::temp_dir().join(format!("cluster-net-notsock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"precious").unwrap();
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for path in [&file, &fifo, &link] {
        let shown = path.display().to_string();
        let p = path.clone();
        let err = start_error(move || Listen::Unix(p.clone())).await;
        assert!(
            err.contains(&shown) && err.contains("not a socket"),
            "{err}"
        );
        assert!(
            std::fs::symlink_metadata(path).is_ok(),
            "{shown} was deleted"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    std::fs::remove_dir_all(&dir).unwrap();
}
