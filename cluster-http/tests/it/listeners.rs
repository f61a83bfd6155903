//! `serve` over any listener (tokio's `TcpListener` beside ours), and the
//! client's address in every request (our `ConnectionInfo`, axum's
//! `ConnectInfo<SocketAddr>`).

use std::convert::Infallible;
use std::net::SocketAddr;

use crate::common::{start, stop, until, DEADLINE};
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use cluster_core::{Address, ClusterEvent, ExitReason, Worker};
use cluster_http::{ConnectionInfo, Request, Server};
use cluster_net::WorkerExt;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /peer` answers `<peer> <local>` from the request's `ConnectionInfo`.
async fn peer(req: Request) -> Result<Response<String>, Infallible> {
    let body = match req.extensions().get::<ConnectionInfo>() {
        Some(info) => format!("{} {}", info.peer, info.local),
        None => "none".to_owned(),
    };
    Ok(Response::new(body))
}

/// One request on a fresh connection; the body, with the connection's own
/// addresses as the client sees them (local, remote).
async fn ask(addr: SocketAddr, path: &str) -> (String, SocketAddr, SocketAddr) {
    tokio::time::timeout(DEADLINE, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let (me, them) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
        let head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
        (body, me, them)
    })
    .await
    .expect("no answer before the deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_peer_and_local_address_on_our_listener() {
    // Bound to the wildcard: the local address is the one the client reached.
    let running = start(
        2,
        |b| b,
        |w: Worker| async move {
            let listener = w.listen("0.0.0.0:0").await?;
            cluster_http::serve(listener, peer).await
        },
    )
    .await;
    let addr = SocketAddr::from(([127, 0, 0, 1], running.addr.port()));
    for _ in 0..4 {
        let (body, me, them) = ask(addr, "/peer").await;
        assert_eq!(body, format!("{me} {them}"));
    }
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokio_tcp_listener_is_served_and_drained_too() {
    let mut running = start(
        2,
        // Far beyond the stop's wait (the deadline): only a drain that ends
        // by itself stops the cluster in time.
        |b| b.shutdown_timeout(DEADLINE * 10),
        |w: Worker| async move {
            // Each worker its own port: a listener the cluster knows nothing of.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            cluster_core::hooks::report_listening(&w, Address::Tcp(listener.local_addr().unwrap()));
            Server::new(listener).healthz("/healthz").serve(peer).await
        },
    )
    .await;
    let addr = running.addr;
    let (body, me, them) = ask(addr, "/peer").await;
    assert_eq!(body, format!("{me} {them}"));
    let (health, ..) = ask(addr, "/healthz").await;
    assert_eq!(health, "ok\n");
    // The drain: serve returns Ok, the workers exit, long before their
    // shutdown timeout.
    stop(&running.cluster).await;
    for _ in 0..2 {
        let reason = until(&mut running.events, |e| match e {
            ClusterEvent::Exit { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason, ExitReason::Returned);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_connect_info_extracts_the_client_address() {
    let running = start(
        1,
        |b| b,
        |w: Worker| async move {
            let app = Router::new().route(
                "/peer",
                get(
                    |ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("{peer}\n") },
                ),
            );
            let listener = w.listen("127.0.0.1:0").await?;
            cluster_http::serve(listener, app).await
        },
    )
    .await;
    let (body, me, _) = ask(running.addr, "/peer").await;
    assert_eq!(body, format!("{me}\n"));
    stop(&running.cluster).await;
}
