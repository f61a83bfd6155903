//! Helpers of cluster-http's tests: a cluster serving HTTP on port 0, the
//! test service, and HTTP/1.1 and HTTP/2 clients (hyper's) over real
//! sockets; the workspace's own helpers are in test-support.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_core::{Address, Cluster, ClusterBuilder, ClusterEvent, Events, Worker};
use cluster_http::{HttpConfig, Request, Server};
use cluster_net::WorkerExt;
use http::{HeaderMap, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub use test_support::{eventually, until, DEADLINE};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running cluster and the address its workers share.
pub struct Running {
    pub cluster: Cluster,
    pub events: Events,
    pub addr: SocketAddr,
}

/// Starts `workers` workers running `worker` (signals off), and waits until
/// each listens.
pub async fn start<F, Fut>(
    workers: usize,
    configure: impl FnOnce(ClusterBuilder) -> ClusterBuilder,
    worker: F,
) -> Running
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), cluster_http::Error>> + 'static,
{
    let cluster = configure(Cluster::builder().workers(workers).signals(false))
        .build(worker)
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    let mut addr = None;
    for _ in 0..workers {
        let a = until(&mut events, |e| match e {
            ClusterEvent::Listening {
                address: Address::Tcp(a),
                ..
            } => Some(*a),
            _ => None,
        })
        .await;
        addr.get_or_insert(a);
    }
    Running {
        cluster,
        events,
        addr: addr.unwrap(),
    }
}

/// A worker that serves [`app`] on 127.0.0.1:0 with `config` (or the
/// cluster's `HttpConfig` when `None`).
pub fn serve_app(
    config: Option<HttpConfig>,
) -> impl Fn(Worker) -> std::pin::Pin<Box<dyn Future<Output = Result<(), cluster_http::Error>>>>
       + Send
       + Sync
       + 'static {
    move |w: Worker| {
        let config = config.clone();
        Box::pin(async move {
            let listener = w.listen("127.0.0.1:0").await?;
            let server = Server::new(listener);
            let server = match config {
                Some(c) => server.config(c),
                None => server,
            };
            server.serve(app).await
        })
    }
}

/// Requests held in the test service until the test opens the gate; given
/// to the cluster as state, as an `Arc<Gate>`.
#[derive(Debug, Default)]
pub struct Gate {
    pub entered: AtomicUsize,
    pub open: tokio::sync::Notify,
    opened: std::sync::atomic::AtomicBool,
}

impl Gate {
    pub fn open(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.open.notify_waiters();
    }

    async fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.opened.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// The test service. Every answer carries `x-worker-id`, read from
/// `cluster_core::worker()`.
///
/// - `/`: `hello world`
/// - `/sleep/<ms>`: answers after that many milliseconds
/// - `/panic`: panics
/// - `/block`: waits for the cluster's [`Gate`] to open
/// - `/wait-drain`: prints `in flight <id>`, waits until the worker is
///   disconnected, then answers `finished`
/// - `/stuck`: never answers
/// - `/echo`: answers the request's body
pub fn app(req: Request) -> impl Future<Output = Result<Response<String>, Infallible>> {
    let worker = cluster_core::worker().expect("the service runs on a worker");
    async move {
        let path = req.uri().path().to_owned();
        let (status, body) = match path.as_str() {
            "/" => (StatusCode::OK, "hello world\n".to_owned()),
            "/echo" => match req.into_body().collect().await {
                Ok(body) => (
                    StatusCode::OK,
                    String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                ),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            "/panic" => panic!("the test asked for a panic"),
            "/block" => match worker.state::<std::sync::Arc<Gate>>() {
                Some(gate) => {
                    gate.pass().await;
                    (StatusCode::OK, "passed\n".to_owned())
                }
                None => (StatusCode::INTERNAL_SERVER_ERROR, "no gate\n".to_owned()),
            },
            "/wait-drain" => {
                println!("in flight {}", worker.id());
                worker.disconnected().await;
                (StatusCode::OK, "finished\n".to_owned())
            }
            "/stuck" => std::future::pending().await,
            p => match p.strip_prefix("/sleep/").and_then(|ms| ms.parse().ok()) {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    (StatusCode::OK, format!("slept {ms}\n"))
                }
                None => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
            },
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("x-worker-id", worker.id().into());
        Ok(response)
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn worker(&self) -> u64 {
        self.headers
            .get("x-worker-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no x-worker-id in {self:?}"))
    }
}

async fn read(response: Response<hyper::body::Incoming>) -> Result<Reply, BoxError> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(DEADLINE, body.collect())
        .await
        .map_err(|_| "no body before the deadline")??
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn request(addr: SocketAddr, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://{addr}{path}"))
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())
        .unwrap()
}

/// An HTTP/1.1 connection (keep-alive).
pub struct H1 {
    addr: SocketAddr,
    sender: http1::SendRequest<Empty<Bytes>>,
    driver: JoinHandle<Result<(), hyper::Error>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> Result<H1, BoxError> {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await??;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(conn);
        Ok(H1 {
            addr,
            sender,
            driver,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, BoxError> {
        tokio::time::timeout(DEADLINE, async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request(self.addr, path)).await?;
            read(response).await
        })
        .await
        .map_err(|_| "no answer before the deadline")?
    }

    /// Waits until the server has closed the connection.
    pub async fn closed(self) {
        drop(self.sender);
        // The sender is gone, so the driver ends when the server closes.
        let _ = tokio::time::timeout(DEADLINE, self.driver)
            .await
            .expect("the server did not close the connection before the deadline");
    }

    /// True once the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Reply, BoxError> {
    H1::connect(addr).await?.get(path).await
}

/// An HTTP/2 connection with prior knowledge (h2c).
#[derive(Clone)]
pub struct H2 {
    addr: SocketAddr,
    sender: http2::SendRequest<Empty<Bytes>>,
}

pub struct H2Driver(JoinHandle<Result<(), hyper::Error>>);

impl H2Driver {
    /// Waits until the server has closed the connection.
    pub async fn closed(self) {
        let _ = tokio::time::timeout(DEADLINE, self.0)
            .await
            .expect("the server did not close the HTTP/2 connection before the deadline");
    }

    pub fn is_closed(&self) -> bool {
        self.0.is_finished()
    }
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> Result<(H2, H2Driver), BoxError> {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await??;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        let driver = H2Driver(tokio::spawn(conn));
        Ok((H2 { addr, sender }, driver))
    }

    pub async fn get(&self, path: &str) -> Result<Reply, BoxError> {
        let mut sender = self.sender.clone();
        tokio::time::timeout(DEADLINE, async {
            sender.ready().await?;
            let response = sender.send_request(request(self.addr, path)).await?;
            read(response).await
        })
        .await
        .map_err(|_| "no answer before the deadline")?
    }
}

/// Connections handed from one worker to another on the cluster's sockets.
pub fn migrated(cluster: &Cluster) -> u64 {
    cluster_net::stats(cluster)
        .iter()
        .map(|s| s.migrated)
        .max()
        .unwrap_or(0)
}

/// Stops the cluster gracefully, within the deadline.
pub async fn stop(cluster: &Cluster) {
    tokio::time::timeout(DEADLINE, cluster.disconnect())
        .await
        .expect("the cluster did not stop before the deadline");
}
