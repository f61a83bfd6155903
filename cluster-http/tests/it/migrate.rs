//! Connection migration: idle HTTP/1.1 keep-alive connections survive the
//! workers that held them (rolling reloads, a scale-down) on the same TCP
//! connection, and close only where no worker is left to take them.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::common::{self, migrated, serve_app, start, until, DEADLINE};
use cluster_core::ClusterEvent;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client's keep-alive connection on a raw socket: it never reconnects,
/// so a close is an error.
struct Conn {
    stream: BufReader<TcpStream>,
    local: SocketAddr,
}

/// An answer: status, `x-worker-id`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    worker: u64,
    body: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        Conn {
            stream: BufReader::new(stream),
            local,
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<Answer> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(head.as_bytes()).await?;
        self.answer().await
    }

    /// Reads one answer (a keep-alive one: `connection` is refused).
    async fn answer(&mut self) -> std::io::Result<Answer> {
        let exchange = async {
            let mut line = String::new();
            let (mut status, mut worker, mut len) = (0, 0, 0);
            loop {
                line.clear();
                if self.stream.read_line(&mut line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some(rest) = l.strip_prefix("HTTP/1.1 ") {
                    status = rest[..3].parse().unwrap();
                } else if let Some((k, v)) = l.split_once(": ") {
                    match k.to_ascii_lowercase().as_str() {
                        "x-worker-id" => worker = v.parse().unwrap(),
                        "content-length" => len = v.parse().unwrap(),
                        "connection" => panic!("a keep-alive answer said `connection: {v}`"),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body).await?;
            Ok(Answer {
                status,
                worker,
                body: String::from_utf8(body).unwrap(),
            })
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)?
    }

    /// The local address of the socket, as the kernel sees it now.
    fn local_now(&self) -> SocketAddr {
        self.stream.get_ref().local_addr().unwrap()
    }
}

/// Each connection's first answer, on its connection.
async fn open_all(addr: SocketAddr, n: usize) -> (Vec<Conn>, BTreeSet<u64>) {
    let mut conns = Vec::new();
    let mut workers = BTreeSet::new();
    for _ in 0..n {
        let mut c = Conn::open(addr).await;
        let answer = c.send("GET", "/", "").await.unwrap();
        assert_eq!(answer.status, 200);
        workers.insert(answer.worker);
        conns.push(c);
    }
    (conns, workers)
}

/// One POST on each connection: all answered, on the same TCP connection,
/// by none of `gone`.
async fn post_on_each(conns: &mut [Conn], gone: &BTreeSet<u64>) {
    for (i, c) in conns.iter_mut().enumerate() {
        let body = format!("post {i} from {}", c.local);
        let answer = c
            .send("POST", "/echo", &body)
            .await
            .unwrap_or_else(|e| panic!("connection {i} ({}) lost: {e}", c.local));
        assert_eq!((answer.status, answer.body.as_str()), (200, body.as_str()));
        assert!(
            !gone.contains(&answer.worker),
            "answered by worker {}, which is gone",
            answer.worker
        );
        assert_eq!(c.local_now(), c.local);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_connections_survive_twenty_rolling_reloads() {
    let running = start(2, |b| b, serve_app(None)).await;
    let (mut conns, first_workers) = open_all(running.addr, 200).await;
    assert_eq!(first_workers.len(), 2, "both workers hold connections");
    for i in 0..20 {
        tokio::time::timeout(DEADLINE, running.cluster.reload())
            .await
            .expect("a reload within the deadline")
            .unwrap();
        if i == 0 {
            // All 200 sat idle on the first workers: each was handed over.
            // (Later, one still queued for a draining worker moves with
            // its queue, which the hand-over count does not see.)
            let moved = migrated(&running.cluster);
            assert!(moved >= 200, "{moved} moved in the first reload");
        }
    }
    post_on_each(&mut conns, &first_workers).await;
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_moves_the_connections_of_the_removed_workers() {
    let running = start(3, |b| b, serve_app(None)).await;
    let (mut conns, workers) = open_all(running.addr, 30).await;
    assert_eq!(workers.len(), 3);
    let kept = running
        .cluster
        .workers()
        .iter()
        .find(|w| w.slot() == 0)
        .map(|w| w.id())
        .unwrap();
    tokio::time::timeout(DEADLINE, running.cluster.scale(1))
        .await
        .expect("a scale-down within the deadline")
        .unwrap();
    let gone: BTreeSet<u64> = workers.into_iter().filter(|&w| w != kept).collect();
    post_on_each(&mut conns, &gone).await;
    assert!(migrated(&running.cluster) >= 10);
    common::stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_worker_left_the_connections_close() {
    let running = start(1, |b| b, serve_app(None)).await;
    let (mut conns, _) = open_all(running.addr, 3).await;
    common::stop(&running.cluster).await;
    for c in &mut conns {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(DEADLINE, c.stream.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    }
}

/// A request whose body is still coming when its worker starts to drain:
/// the handler reads all of it and answers on the draining worker (a
/// keep-alive answer), then the connection moves, and its next request is
/// answered by a live worker, on the same TCP connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_being_read_when_the_drain_starts_is_read_whole_then_the_connection_moves() {
    let mut running = start(2, |b| b, serve_app(None)).await;
    let mut c = Conn::open(running.addr).await;
    let first = c.send("GET", "/", "").await.unwrap().worker;
    let body = "half of it, and the other half";
    let (now, later) = body.split_at(12);
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n{now}",
        body.len()
    );
    c.stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let cluster = running.cluster.clone();
    let reload = tokio::spawn(async move { cluster.reload().await });
    until(&mut running.events, |e| match e {
        ClusterEvent::Disconnect { worker } if worker.id() == first => Some(()),
        _ => None,
    })
    .await;
    // Draining now, with the body half read.
    c.stream
        .get_mut()
        .write_all(later.as_bytes())
        .await
        .unwrap();
    let answer = c.answer().await.expect("the request in flight is answered");
    assert_eq!((answer.status, answer.body.as_str()), (200, body));
    assert_eq!(
        answer.worker, first,
        "answered by the worker that read the body"
    );
    let next = c
        .send("GET", "/", "")
        .await
        .expect("the connection moved, not closed");
    assert_eq!(next.status, 200);
    assert_ne!(next.worker, first, "the next request went to a live worker");
    assert_eq!(c.local_now(), c.local);
    tokio::time::timeout(DEADLINE, reload)
        .await
        .expect("the reload within the deadline")
        .unwrap()
        .unwrap();
    common::stop(&running.cluster).await;
}
