//! An accept loop never ends while its socket is open: a real accept error
//! (the listening socket shut down, so `accept(2)` fails with EINVAL) is
//! counted and waited out, and once the socket listens again the same
//! workers serve it, in the acceptor's modes and in the workers' own.

use std::os::fd::IntoRawFd;
use std::sync::Arc;

use crate::common::{eventually, hello, serve, until};
use cluster_core::{ClusterEvent, ExitReason};
use cluster_net::{stats, Balance, Listen, NetConfig};

async fn survives_an_accept_error(balance: Balance) {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = socket.try_clone().unwrap().into_raw_fd();
    let mut server = serve(
        1,
        NetConfig::default().balance(balance),
        Arc::new(move |_| Listen::Fd(fd).with()),
        &[],
    )
    .await;
    let addr = socket.local_addr().unwrap();
    hello(addr).await.unwrap();

    let sock = socket2::SockRef::from(&socket);
    sock.shutdown(std::net::Shutdown::Read).unwrap();
    eventually(
        || stats(&server.cluster).iter().any(|s| s.accept_errors > 0),
        "an accept error",
    )
    .await;
    // Listening again (on a new port: it was bound to port 0).
    sock.listen(128).unwrap();
    let addr = socket.local_addr().unwrap();
    for _ in 0..3 {
        hello(addr)
            .await
            .unwrap_or_else(|e| panic!("{balance:?}: not served after the error: {e}"));
    }
    // A loop that spun on stale readiness would not see the kill in time.
    server.cluster.stop(false).await;
    let reason = until(&mut server.events, |e| match e {
        ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, ExitReason::Killed, "{balance:?}");
}

#[tokio::test]
async fn the_acceptor_survives_an_accept_error() {
    survives_an_accept_error(Balance::RoundRobin).await;
}

#[tokio::test]
async fn a_workers_accept_loop_survives_an_accept_error() {
    survives_an_accept_error(Balance::Os).await;
}
