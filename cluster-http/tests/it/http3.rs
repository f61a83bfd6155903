//! HTTP/3 on the TCP listener's port number: every worker's endpoint on its
//! slot's socket of one UDP port, clients that move (quinn's
//! `Endpoint::rebind`, as a NAT rebinding or a network change would) keep
//! their connection, with the kernel steering by connection ID and with the
//! user-space forwarding alone; the kernel's plain hash breaks them (so
//! these tests can fail). Alt-Svc on TCP responses when on, absent when off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use cluster_core::{Address, ClusterEvent, Worker};
use cluster_http::Server;
use cluster_net::{NetConfig, QuicSteering, WorkerExt};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::common::{start, stop, until, BoxError, Running, DEADLINE};
use crate::tls::{connect, Pki};

/// A worker serving the test app over TLS and HTTP/3 (or not) on 127.0.0.1:0.
pub fn serve_h3(
    pki: &Pki,
    http3: bool,
) -> impl Fn(
    Worker,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), cluster_http::Error>>>>
       + Send
       + Sync
       + 'static {
    let tls = pki.tls();
    move |w: Worker| {
        let tls = tls.clone();
        Box::pin(async move {
            let listener = w.listen("127.0.0.1:0").await?;
            Server::new(listener)
                .tls(tls)
                .http3(http3)
                .serve(crate::common::app)
                .await
        })
    }
}

/// Starts `workers` workers serving HTTP/3 with `steering`, and waits until
/// each one listens on TCP and on its QUIC endpoint.
pub async fn start_h3(pki: &Pki, workers: usize, steering: QuicSteering) -> Running {
    let cluster = cluster_core::Cluster::builder()
        .workers(workers)
        .signals(false)
        .state(NetConfig::default().quic_steering(steering))
        .build(serve_h3(pki, true))
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let (mut tcp, mut udp) = (Vec::new(), 0);
    while tcp.len() < workers || udp < workers {
        match until(&mut events, |e| match e {
            ClusterEvent::Listening { address, .. } => Some(address.clone()),
            _ => None,
        })
        .await
        {
            Address::Tcp(a) => tcp.push(a),
            Address::Udp(_) => udp += 1,
            _ => {}
        }
    }
    Running {
        cluster,
        events,
        addr: tcp[0],
    }
}

/// One HTTP/3 client: its own quinn endpoint (so it can move), one connection.
pub struct H3 {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub struct H3Reply {
    pub status: StatusCode,
    pub worker: String,
    pub body: String,
}

impl H3 {
    /// Connects to `addr`; the connection dies after `idle` without an answer.
    pub async fn connect(addr: SocketAddr, pki: &Pki, idle: Duration) -> Result<H3, BoxError> {
        let tls = pki.client_config(&[b"h3"]);
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle)?));
        config.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config);
        let conn = tokio::time::timeout(DEADLINE, endpoint.connect(addr, "localhost")?)
            .await
            .map_err(|_| "no QUIC handshake before the deadline")??;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
        let driver = tokio::spawn(async move {
            let _ = driver.wait_idle().await;
        });
        Ok(H3 {
            endpoint,
            conn,
            send,
            driver,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<H3Reply, BoxError> {
        tokio::time::timeout(DEADLINE, async {
            let req = http::Request::get(format!("https://localhost{path}")).body(())?;
            let mut stream = self.send.send_request(req).await?;
            stream.finish().await?;
            let response = stream.recv_response().await?;
            let mut body = Vec::new();
            while let Some(mut chunk) = stream.recv_data().await? {
                while chunk.has_remaining() {
                    let part = chunk.chunk();
                    body.extend_from_slice(part);
                    let n = part.len();
                    chunk.advance(n);
                }
            }
            Ok(H3Reply {
                status: response.status(),
                worker: response
                    .headers()
                    .get("x-worker-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
        .await
        .map_err(|_| "no HTTP/3 answer before the deadline")?
    }

    /// Moves to a new local port, as a NAT rebinding would.
    pub fn rebind(&self) -> std::io::Result<()> {
        self.endpoint
            .rebind(std::net::UdpSocket::bind("127.0.0.1:0")?)
    }
}

impl Drop for H3 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What the migration run saw.
#[derive(Debug, Default)]
struct Migration {
    answered: usize,
    broken: usize,
    /// A client answered by another worker after it moved (a new connection
    /// would be; a moved one is not).
    switched: usize,
}

/// `clients` clients, at most `parallel` at a time, each making a request,
/// then moving and making another, `moves` times; a client whose request
/// fails is broken and stops.
async fn migrate(
    addr: SocketAddr,
    pki: &Arc<Pki>,
    clients: usize,
    moves: usize,
    idle: Duration,
) -> Migration {
    let parallel = 25;
    let mut total = Migration::default();
    for batch in (0..clients).collect::<Vec<_>>().chunks(parallel) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in batch {
            let pki = Arc::clone(pki);
            tasks.spawn(async move {
                let mut seen = Migration::default();
                let mut client = match H3::connect(addr, &pki, idle).await {
                    Ok(c) => c,
                    Err(e) => panic!("a client could not connect: {e}"),
                };
                let mut first = None;
                for n in 0..=moves {
                    if n > 0 {
                        client.rebind().expect("a new local port");
                    }
                    match client.get("/").await {
                        Ok(r) if r.status == StatusCode::OK => {
                            seen.answered += 1;
                            let first = first.get_or_insert_with(|| r.worker.clone());
                            if *first != r.worker {
                                seen.switched += 1;
                            }
                        }
                        _ => {
                            seen.broken += 1;
                            break;
                        }
                    }
                }
                seen
            });
        }
        while let Some(seen) = tasks.join_next().await {
            let seen = seen.expect("a client task");
            total.answered += seen.answered;
            total.broken += seen.broken;
            total.switched += seen.switched;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_move_keep_their_connection_with_kernel_steering() {
    let pki = Arc::new(Pki::new("h3-cid"));
    pki.issue("h3");
    let running = start_h3(&pki, 4, QuicSteering::Cid).await;
    let (clients, moves) = (100, 5);
    let seen = migrate(running.addr, &pki, clients, moves, Duration::from_secs(10)).await;
    println!("CID steering, 4 workers, {clients} clients x {moves} moves: {seen:?}");
    assert_eq!(seen.broken, 0, "{seen:?}");
    assert_eq!(seen.answered, clients * (moves + 1), "{seen:?}");
    assert_eq!(seen.switched, 0, "{seen:?}");
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_move_keep_their_connection_with_forwarding_alone() {
    let pki = Arc::new(Pki::new("h3-forward"));
    pki.issue("h3");
    // No program on the group: the kernel hashes each move to any worker,
    // and the one that reads a datagram forwards it to the one its ID names.
    let running = start_h3(&pki, 4, QuicSteering::Forward).await;
    let (clients, moves) = (100, 5);
    let seen = migrate(running.addr, &pki, clients, moves, Duration::from_secs(10)).await;
    println!("forwarding alone, 4 workers, {clients} clients x {moves} moves: {seen:?}");
    assert_eq!(seen.broken, 0, "{seen:?}");
    assert_eq!(seen.answered, clients * (moves + 1), "{seen:?}");
    assert_eq!(seen.switched, 0, "{seen:?}");
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernels_hash_alone_breaks_clients_that_move() {
    let pki = Arc::new(Pki::new("h3-hash"));
    pki.issue("h3");
    let running = start_h3(&pki, 4, QuicSteering::Hash).await;
    let (clients, moves) = (20, 2);
    let seen = migrate(running.addr, &pki, clients, moves, Duration::from_secs(2)).await;
    println!("kernel hash, 4 workers, {clients} clients x {moves} moves: {seen:?}");
    // Each move lands on the old worker 1 time in 4.
    assert!(seen.broken >= clients / 2, "{seen:?}");
    stop(&running.cluster).await;
}

/// An HTTP/1.1 request over TLS; the response's `Alt-Svc`, if any.
async fn alt_svc(addr: SocketAddr, pki: &Pki) -> Option<String> {
    let tls = connect(addr, &pki.connector(&[b"http/1.1"])).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/")
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let value = response
        .headers()
        .get(http::header::ALT_SVC)
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = response.into_body().collect().await;
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_svc_is_advertised_on_tcp_when_http3_is_on_and_only_then() {
    let pki = Pki::new("h3-alt-svc");
    pki.issue("h3");
    let running = start_h3(&pki, 2, QuicSteering::Cid).await;
    let port = running.addr.port();
    assert_eq!(
        alt_svc(running.addr, &pki).await,
        Some(format!("h3=\":{port}\""))
    );
    let mut client = H3::connect(running.addr, &pki, Duration::from_secs(10))
        .await
        .unwrap();
    let r = client.get("/").await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, "hello world\n")
    );
    assert!(!r.worker.is_empty());
    stop(&running.cluster).await;

    let running = start(2, |b| b, serve_h3(&pki, false)).await;
    assert_eq!(alt_svc(running.addr, &pki).await, None);
    stop(&running.cluster).await;
}
