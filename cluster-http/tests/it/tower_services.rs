//! tower-http layers (TraceLayer, TimeoutLayer, CompressionLayer) on an
//! axum `Router`, and services that are not `Send` (`Rc<RefCell<_>>`),
//! bare or under a tower layer.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::common::{self, start, stop, DEADLINE};
use axum::routing::get;
use axum::Router;
use cluster_core::Worker;
use cluster_http::{service_fn, Request};
use cluster_net::WorkerExt;
use http::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// One request with extra headers, on a fresh connection; the raw answer
/// (head and body), read until the server closes.
async fn raw(addr: SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
    tokio::time::timeout(DEADLINE, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{headers}\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let body = all.split_off(split + 4);
        let head = String::from_utf8_lossy(&all).into_owned();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(&body)
        } else {
            body
        };
        (head, body)
    })
    .await
    .expect("no answer before the deadline")
}

/// The payload of a chunked body.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&rest[..line])
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        rest = &rest[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/big", get(|| async { "compress me ".repeat(1000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_millis(100),
                ))
                .layer(CompressionLayer::new()),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_router_with_tower_http_layers_is_served() {
    // The trace layer's spans and events go somewhere.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("tower_http=debug")
        .with_test_writer()
        .try_init();
    let running = start(
        2,
        |b| b,
        |w: Worker| async move {
            let listener = w.listen("127.0.0.1:0").await?;
            cluster_http::serve(listener, router()).await
        },
    )
    .await;
    let addr = running.addr;
    let (head, body) = raw(addr, "/", "").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"hello\n");
    // CompressionLayer: gzip when asked for, and only then.
    let (head, body) = raw(addr, "/big", "accept-encoding: gzip\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    assert_eq!(&body[..2], [0x1f, 0x8b], "a gzip stream");
    assert!(body.len() < 12_000 / 4, "compressed: {} bytes", body.len());
    let (head, body) = raw(addr, "/big", "").await;
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert_eq!(body.len(), 12_000);
    // TimeoutLayer: a handler past the timeout answers 408; the worker serves on.
    let (head, _) = raw(addr, "/slow", "").await;
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    let (head, _) = raw(addr, "/", "").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_holding_rc_refcell_is_served_bare_and_under_a_tower_layer() {
    let mut running = start(
        1,
        |b| b,
        |w: Worker| async move {
            // Not Send: lives on this worker's thread only.
            let seen: Rc<RefCell<Vec<String>>> = Rc::default();
            let bare = w.listen("127.0.0.1:0").await?;
            let layered = w.listen("127.0.0.1:0").await?;
            w.send((bare.tcp_addr(), layered.tcp_addr()))
                .expect("the primary listens");
            let service = move |seen: Rc<RefCell<Vec<String>>>| {
                service_fn(move |req: Request| {
                    let seen = Rc::clone(&seen);
                    async move {
                        seen.borrow_mut().push(req.uri().path().to_owned());
                        let body = seen.borrow().join(",").repeat(200);
                        Ok::<_, Infallible>(Response::new(body))
                    }
                })
            };
            // The same !Send service in a tower stack, as a tower `Service`.
            let stack = ServiceBuilder::new()
                .layer(CompressionLayer::new())
                .service(tower::service_fn({
                    let inner = service(Rc::clone(&seen));
                    move |req: Request| hyper::service::Service::call(&inner, req)
                }));
            let (a, b) = tokio::join!(
                cluster_http::serve(bare, service(Rc::clone(&seen))),
                cluster_http::serve(layered, stack),
            );
            a.and(b)
        },
    )
    .await;
    let addrs = common::until(&mut running.events, |e| match e {
        cluster_core::ClusterEvent::Message { message, .. } => message
            .downcast_ref::<(Option<SocketAddr>, Option<SocketAddr>)>()
            .and_then(|(a, b)| Some([(*a)?, (*b)?])),
        _ => None,
    })
    .await;
    let (head, body) = raw(addrs[0], "/a", "").await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with("/a"));
    let (head, body) = raw(addrs[1], "/b", "accept-encoding: gzip\r\n").await;
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    assert_eq!(&body[..2], [0x1f, 0x8b]);
    // One Rc shared by both servers on the worker's thread.
    let (_, body) = raw(addrs[0], "/c", "").await;
    assert!(String::from_utf8_lossy(&body).starts_with("/a,/b,/c"));
    stop(&running.cluster).await;
}
