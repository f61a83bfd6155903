//! Listen errors name what failed and stop the cluster's start.

use std::os::fd::IntoRawFd;

use cluster_core::{Cluster, Error as CoreError};
use cluster_net::{Listen, WorkerExt};

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
    let err = tokio::time::timeout(std::time::Duration::from_secs(30), cluster.wait())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, CoreError::StartFailed { .. }), "{err}");
    assert!(cluster.workers().is_empty(), "no worker left listening");
    err.to_string()
}

#[tokio::test]
async fn address_in_use_fails_the_start_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = start_error(move || Listen::Tcp(addr)).await;
    assert!(
        err.ends_with(&format!("address {addr} already in use")),
        "{err}"
    );
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
