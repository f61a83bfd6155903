//! Bad and slow clients: a malformed request gets 400, oversized headers get
//! 431, a client slower than the header read timeout is disconnected, idle
//! connections are closed after the keep-alive timeout; the worker serves on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{self, eventually, serve_app, start, stop, DEADLINE, H1, H2};
use cluster_http::HttpConfig;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(300);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_millis(200);

fn config() -> HttpConfig {
    HttpConfig::default()
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .max_header_size(8192)
}

/// Writes `raw` on a fresh connection and reads until the server closes it.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may close before reading everything: a write error is fine.
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the server neither answered nor closed before the deadline");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn still_serves(addr: SocketAddr) {
    let reply = common::get(addr, "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello world\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_the_worker_serves_on() {
    let running = start(2, |b| b, serve_app(Some(config()))).await;
    let addr = running.addr;
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n"[..],
        b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.7\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ] {
        let answer = exchange(addr, raw).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{raw:?} got {answer:?}"
        );
        still_serves(addr).await;
    }
    // Garbage on a keep-alive connection after a good request.
    let answer = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.contains("HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
    still_serves(addr).await;
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_the_worker_serves_on() {
    let running = start(2, |b| b, serve_app(Some(config()))).await;
    let addr = running.addr;
    // Under the limit: fine.
    let small = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(4000)
    );
    let answer = exchange(addr, small.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    // Over it, in one header or in many.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let many: String = (0..40)
        .map(|i| format!("X-Many-{i}: {}\r\n", "b".repeat(250)))
        .collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for raw in [big, many] {
        let answer = exchange(addr, raw.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "got {answer:?}"
        );
        still_serves(addr).await;
    }
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_the_header_read_timeout_is_disconnected() {
    let running = start(2, |b| b, serve_app(Some(config()))).await;
    let addr = running.addr;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {}\r\n\r\n",
        "s".repeat(400)
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // One byte every 20 ms: the whole head would take 8 s, far past 300 ms.
    let writer = tokio::spawn(async move {
        for (sent, byte) in request.bytes().enumerate() {
            if wr.write_all(&[byte]).await.is_err() {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        request.len()
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, rd.read_to_end(&mut answer))
        .await
        .expect("the slow client was not disconnected before the deadline");
    // Closed (perhaps with 408 first), never served.
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_err() || answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{read:?} {answer:?}"
    );
    let sent = writer.await.unwrap();
    assert!(sent < 420, "the whole request went through ({sent} bytes)");
    still_serves(addr).await;

    // A client that connects and sends nothing is disconnected too.
    let answer = exchange(addr, b"").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    still_serves(addr).await;
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_keep_alive_timeout() {
    let running = start(2, |b| b, serve_app(Some(config()))).await;
    let addr = running.addr;

    let mut h1 = H1::connect(addr).await.unwrap();
    assert_eq!(h1.get("/").await.unwrap().status, StatusCode::OK);
    let (h2, h2_driver) = H2::connect(addr).await.unwrap();
    assert_eq!(h2.get("/").await.unwrap().status, StatusCode::OK);
    // A request longer than the keep-alive timeout is not cut: it is in flight.
    let mut slow = H1::connect(addr).await.unwrap();
    let reply = slow.get("/sleep/500").await.unwrap();
    assert_eq!(reply.body, "slept 500\n");

    h1.closed().await;
    h2_driver.closed().await;
    eventually(|| slow.is_closed(), "the slow connection closed once idle").await;
    still_serves(addr).await;
    stop(&running.cluster).await;
}
