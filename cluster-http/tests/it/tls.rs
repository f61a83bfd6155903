//! HTTPS with rustls: real handshakes from a rustls client (and curl, when
//! installed), ALPN h2 and http/1.1, bad input on the TLS port, and a
//! renewed certificate served after a rolling reload while a connection of
//! the old certificate finishes its request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{self, eventually, start, stop, until, Gate, DEADLINE};
use bytes::Bytes;
use cluster_core::{ClusterEvent, Worker};
use cluster_http::rustls::pki_types::{CertificateDer, ServerName};
use cluster_http::rustls::{ClientConfig, RootCertStore};
use cluster_http::{Server, TlsConfig};
use cluster_net::WorkerExt;
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A test CA and the files of a server certificate it signed.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "cluster-http test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { ca, dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Writes a new server certificate for localhost and 127.0.0.1 (with
    /// `cn` as its common name) and its key; returns the certificate.
    pub fn issue(&self, cn: &str) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        // Written aside, then renamed: a worker never reads half a file.
        for (path, text) in [(self.cert(), cert.pem()), (self.key(), key.serialize_pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        cert.der().clone()
    }

    /// Writes `<stem>.cert.pem` and `<stem>.key.pem`: a certificate for
    /// `names` signed by the CA; returns the certificate.
    pub fn issue_named(&self, stem: &str, names: &[&str]) -> CertificateDer<'static> {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = self.named(stem);
        std::fs::write(c, cert.pem()).unwrap();
        std::fs::write(k, key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    /// The files [`issue_named`](Self::issue_named) writes.
    pub fn named(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.cert.pem")),
            self.dir.join(format!("{stem}.key.pem")),
        )
    }

    /// A half-finished renewal: a new certificate written, the old key
    /// left (they do not match).
    pub fn renew_certificate_only(&self, cn: &str) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .signed_by(&KeyPair::generate().unwrap(), &self.ca)
            .unwrap();
        let tmp = self.cert().with_extension("tmp");
        std::fs::write(&tmp, cert.pem()).unwrap();
        std::fs::rename(&tmp, self.cert()).unwrap();
    }

    pub fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        TlsConnector::from(Arc::new(self.client_config(alpn)))
    }

    /// A connector that never resumes a session: each handshake shows the
    /// server's certificate of now (a resumed one keeps its session's).
    pub fn connector_without_resumption(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut config = self.client_config(alpn);
        config.resumption = cluster_http::rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    }

    /// A rustls client config trusting this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(cluster_http::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A client certificate signed by this CA, and a connector presenting
    /// it that trusts `server`'s CA.
    pub fn client(&self, cn: &str, server: &Pki) -> (CertificateDer<'static>, TlsConnector) {
        let (cert, config) = self.client_config_with_cert(cn, server, &[b"http/1.1"]);
        (cert, TlsConnector::from(Arc::new(config)))
    }

    /// A client certificate signed by this CA, and a client config
    /// presenting it, trusting `server`'s CA and offering `alpn`.
    pub fn client_config_with_cert(
        &self,
        cn: &str,
        server: &Pki,
        alpn: &[&[u8]],
    ) -> (CertificateDer<'static>, ClientConfig) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(server.ca.der().clone()).unwrap();
        let provider = Arc::new(cluster_http::rustls::crypto::ring::default_provider());
        let private =
            cluster_http::rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert.der().clone()], private)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        (cert.der().clone(), config)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn tls(&self) -> TlsConfig {
        TlsConfig::pem_files(self.cert(), self.key())
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> Result<TlsStream<TcpStream>, BoxError> {
    connect_as(addr, connector, "localhost").await
}

/// [`connect`], asking (SNI) for `name`.
pub async fn connect_as(
    addr: SocketAddr,
    connector: &TlsConnector,
    name: &str,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let name = ServerName::try_from(name.to_owned())?;
    tokio::time::timeout(DEADLINE, async {
        let tcp = TcpStream::connect(addr).await?;
        Ok(connector.connect(name, tcp).await?)
    })
    .await
    .map_err(|_| "no TLS handshake before the deadline")?
}

fn peer_cert(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("a server certificate")[0]
        .clone()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub worker: String,
    pub body: String,
}

async fn read(response: http::Response<hyper::body::Incoming>) -> Result<Reply, BoxError> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        version: parts.version,
        worker: parts
            .headers
            .get("x-worker-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn request(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .header(http::header::HOST, "localhost")
        .body(Empty::new())
        .unwrap()
}

/// An HTTP/1.1 keep-alive connection over TLS.
pub struct H1s {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl H1s {
    pub async fn new(tls: TlsStream<TcpStream>) -> Result<H1s, BoxError> {
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(H1s { sender })
    }

    pub async fn get(&mut self, path: &str) -> Result<Reply, BoxError> {
        tokio::time::timeout(DEADLINE, async {
            self.sender.ready().await?;
            read(self.sender.send_request(request(path)).await?).await
        })
        .await
        .map_err(|_| "no answer before the deadline")?
    }
}

/// A worker serving the test app over TLS with the PKI's files.
fn serve_tls(
    tls: TlsConfig,
) -> impl Fn(
    Worker,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), cluster_http::Error>>>>
       + Send
       + Sync
       + 'static {
    move |w: Worker| {
        let tls = tls.clone();
        Box::pin(async move {
            let listener = w.listen("127.0.0.1:0").await?;
            Server::new(listener).tls(tls).serve(common::app).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_h2_and_http1_chosen_by_alpn() {
    let pki = Pki::new("alpn");
    let cert = pki.issue("first");
    let running = start(2, |b| b, serve_tls(pki.tls())).await;
    let addr = running.addr;

    // HTTP/1.1, by ALPN.
    let tls = connect(addr, &pki.connector(&[b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(peer_cert(&tls), cert);
    let mut h1 = H1s::new(tls).await.unwrap();
    for _ in 0..3 {
        let r = h1.get("/").await.unwrap();
        assert_eq!(
            (r.status, r.version, r.body.as_str()),
            (StatusCode::OK, Version::HTTP_11, "hello world\n")
        );
    }

    // HTTP/2, by ALPN, several streams on one connection.
    let tls = connect(addr, &pki.connector(&[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            sender.ready().await?;
            read(sender.send_request(request("/sleep/10")).await?).await
        }));
    }
    for s in streams {
        let r = tokio::time::timeout(DEADLINE, s)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.status, r.version, r.body.as_str()),
            (StatusCode::OK, Version::HTTP_2, "slept 10\n")
        );
    }

    // curl, a client that is not ours, when installed.
    match test_support::tool(&["curl"], "curl") {
        None => {}
        Some(curl) => {
            for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
                let out = tokio::task::spawn_blocking({
                    let (curl, ca) = (curl.clone(), pki.dir.join("ca.pem"));
                    move || {
                        std::process::Command::new(curl)
                            .args(["-sS", "--max-time", "30", flag, "--cacert"])
                            .arg(ca)
                            .args(["-w", "%{http_version}"])
                            .arg(format!("https://127.0.0.1:{}/", addr.port()))
                            .output()
                            .unwrap()
                    }
                })
                .await
                .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "curl {flag}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(text, format!("hello world\n{version}"));
            }
        }
    }
    stop(&running.cluster).await;
}

/// Reads until the server closes the connection (what it sends first,
/// such as a TLS alert, does not matter); fails past the deadline.
async fn closed_by_server(mut s: TcpStream) {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the server kept a bad connection open past the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_tls_port_closes_that_connection_and_the_worker_serves_on() {
    let pki = Pki::new("bad");
    pki.issue("bad");
    let tls = pki.tls().handshake_timeout(Duration::from_millis(300));
    let running = start(1, |b| b, serve_tls(tls)).await;
    let addr = running.addr;
    let connector = pki.connector(&[b"http/1.1"]);
    let mut good = H1s::new(connect(addr, &connector).await.unwrap())
        .await
        .unwrap();
    let worker = good.get("/").await.unwrap().worker;

    // Garbage bytes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.write_all(&garbage).await.unwrap();
    closed_by_server(s).await;
    // Plaintext HTTP on the TLS port.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(s).await;
    // A client that stops mid-handshake: half a TLS record header, then nothing.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    closed_by_server(s).await;
    // A client that connects and says nothing.
    closed_by_server(TcpStream::connect(addr).await.unwrap()).await;

    // The same worker serves on: the old connection, and new ones.
    assert_eq!(good.get("/").await.unwrap().worker, worker);
    let mut fresh = H1s::new(connect(addr, &connector).await.unwrap())
        .await
        .unwrap();
    let r = fresh.get("/").await.unwrap();
    assert_eq!((r.status, r.worker), (StatusCode::OK, worker));
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_reload_serves_the_renewed_certificate_and_drops_no_connection() {
    let pki = Pki::new("reload");
    let first = pki.issue("first");
    let gate = Arc::new(Gate::default());
    let mut running = start(1, |b| b.state(Arc::clone(&gate)), serve_tls(pki.tls())).await;
    let addr = running.addr;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);

    // An old keep-alive connection, with a request in flight during the reload.
    let tls = connect(addr, &connector).await.unwrap();
    assert_eq!(peer_cert(&tls), first);
    let mut old = H1s::new(tls).await.unwrap();
    let old_worker = old.get("/").await.unwrap().worker;
    let in_flight = tokio::spawn(async move { old.get("/block").await });
    eventually(
        || gate.entered.load(Ordering::SeqCst) == 1,
        "the request in flight",
    )
    .await;

    // The certificate is renewed on disk, then SIGHUP's rolling reload.
    let renewed = pki.issue("renewed");
    assert_ne!(renewed, first);
    let reload = tokio::spawn({
        let cluster = running.cluster.clone();
        async move { cluster.reload().await }
    });
    until(&mut running.events, |e| {
        matches!(e, ClusterEvent::Disconnect { .. }).then_some(())
    })
    .await;

    // New connections: every one served; once they reach the new worker,
    // with the renewed certificate.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let tls = connect(addr, &connector).await.unwrap();
        let cert = peer_cert(&tls);
        let r = H1s::new(tls).await.unwrap().get("/").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        if cert == renewed {
            assert_ne!(
                r.worker, old_worker,
                "the renewed certificate from the new worker"
            );
            break;
        }
        assert_eq!(cert, first);
        assert!(
            tokio::time::Instant::now() < end,
            "the renewed certificate was never served"
        );
    }
    // The old connection's request finishes on the old worker.
    gate.open();
    let r = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.status, r.body.as_str(), r.worker),
        (StatusCode::OK, "passed\n", old_worker)
    );
    tokio::time::timeout(DEADLINE, reload)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stop(&running.cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_file_stops_the_start_with_its_path() {
    let pki = Pki::new("missing");
    let tls = TlsConfig::pem_files(pki.dir.join("nowhere.pem"), pki.key());
    let cluster = cluster_core::Cluster::builder()
        .workers(1)
        .signals(false)
        .build(serve_tls(tls))
        .unwrap();
    cluster.start().unwrap();
    let e = tokio::time::timeout(DEADLINE, cluster.wait())
        .await
        .unwrap()
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("nowhere.pem"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_renewal_keeps_the_certificate_loaded_before() {
    let pki = Pki::new("broken");
    let first = pki.issue("first");
    let running = start(1, |b| b, serve_tls(pki.tls())).await;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    // Served: the first worker has read the files (listening comes before).
    let tls = connect(running.addr, &connector).await.unwrap();
    assert_eq!(peer_cert(&tls), first);
    std::fs::write(pki.cert(), "not a certificate\n").unwrap();
    tokio::time::timeout(DEADLINE, running.cluster.reload())
        .await
        .unwrap()
        .unwrap();
    let tls = connect(running.addr, &connector).await.unwrap();
    assert_eq!(peer_cert(&tls), first);
    let r = H1s::new(tls).await.unwrap().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    stop(&running.cluster).await;
}

/// Connects, sends one request (which reads the server's session tickets)
/// and says whether the handshake resumed a session, and which worker
/// answered.
async fn resumed_and_worker(addr: SocketAddr, connector: &TlsConnector) -> (bool, String) {
    use cluster_http::rustls::HandshakeKind;
    let tls = connect(addr, connector).await.unwrap();
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    let r = H1s::new(tls).await.unwrap().get("/").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    (resumed, r.worker)
}

/// One session cache and one ticketer for the whole cluster: a session made
/// with one worker is resumed by another (each worker had its own before,
/// so with round-robin most reconnections paid a full handshake), and by
/// the new workers after a rolling reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_with_one_worker_is_resumed_by_another_and_after_a_reload() {
    let pki = Pki::new("resume");
    pki.issue("resume");
    let running = start(
        2,
        |b| b.state(cluster_http::HttpConfig::default().metrics("/metrics")),
        serve_tls(pki.tls()),
    )
    .await;
    // One client config, so one client session cache, for every connection.
    let connector = pki.connector(&[b"http/1.1"]);
    let (resumed, first) = resumed_and_worker(running.addr, &connector).await;
    assert!(!resumed, "the first connection has no session to resume");
    // Until a connection lands on the other worker: every one resumed.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (resumed, worker) = resumed_and_worker(running.addr, &connector).await;
        assert!(resumed, "a full handshake with worker {worker}");
        if worker != first {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "never reached another worker"
        );
    }
    // After a rolling reload: new workers, the same sessions.
    tokio::time::timeout(DEADLINE, running.cluster.reload())
        .await
        .unwrap()
        .unwrap();
    let (resumed, worker) = resumed_and_worker(running.addr, &connector).await;
    assert!(
        resumed,
        "a full handshake with worker {worker} after the reload"
    );
    assert!(
        !["1", "2"].contains(&worker.as_str()),
        "served by a worker of before the reload: {worker}"
    );
    // Counted per slot, resumed or not, in one scrape of any worker.
    let tls = connect(running.addr, &connector).await.unwrap();
    let metrics = H1s::new(tls)
        .await
        .unwrap()
        .get("/metrics")
        .await
        .unwrap()
        .body;
    let count = |resumed: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("cluster_thread_tls_handshakes_total{")
                    && l.contains(&format!("resumed=\"{resumed}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(count("false") >= 1, "{metrics}");
    assert!(count("true") >= 3, "{metrics}");
    assert!(
        metrics.contains("cluster_thread_tls_handshake_failures_total{slot=\"0\"} 0"),
        "{metrics}"
    );
    stop(&running.cluster).await;
}

/// Idle HTTP/1.1 keep-alive connections over TLS move with their rustls
/// session when their worker drains: through rolling reloads, every one is
/// answered on its own TLS session (a client whose connection had closed,
/// or whose session had been replaced, would fail: TLS 1.3 has no
/// renegotiation), by the new workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_survive_rolling_reloads_on_their_session() {
    const CONNS: usize = 200;
    const RELOADS: usize = 20;
    let pki = Pki::new("migrate");
    pki.issue("migrate");
    let running = start(2, |b| b, serve_tls(pki.tls())).await;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    let mut conns = Vec::new();
    let mut first = std::collections::BTreeSet::new();
    for _ in 0..CONNS {
        let mut h1 = H1s::new(connect(running.addr, &connector).await.unwrap())
            .await
            .unwrap();
        first.insert(h1.get("/").await.unwrap().worker);
        conns.push(h1);
    }
    assert_eq!(first.len(), 2, "both workers hold connections");
    for i in 0..RELOADS {
        tokio::time::timeout(DEADLINE, running.cluster.reload())
            .await
            .expect("a reload within the deadline")
            .unwrap();
        if i == 0 {
            let moved = common::migrated(&running.cluster);
            assert!(moved >= CONNS as u64, "{moved} moved in the first reload");
        }
    }
    for (i, h1) in conns.iter_mut().enumerate() {
        let r = h1
            .get("/")
            .await
            .unwrap_or_else(|e| panic!("TLS connection {i} lost: {e}"));
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "hello world\n")
        );
        assert!(!first.contains(&r.worker), "answered by {}, gone", r.worker);
    }
    stop(&running.cluster).await;
}

/// A scale-down 3 → 1: the removed workers' idle TLS connections move with
/// their sessions to the worker left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_moves_the_removed_workers_tls_connections() {
    let pki = Pki::new("scale");
    pki.issue("scale");
    let running = start(3, |b| b, serve_tls(pki.tls())).await;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    let mut conns = Vec::new();
    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let mut h1 = H1s::new(connect(running.addr, &connector).await.unwrap())
            .await
            .unwrap();
        workers.insert(h1.get("/").await.unwrap().worker);
        conns.push(h1);
    }
    assert_eq!(workers.len(), 3, "every worker holds connections");
    let kept = running
        .cluster
        .workers()
        .iter()
        .find(|w| w.slot() == 0)
        .map(|w| w.id().to_string())
        .unwrap();
    tokio::time::timeout(DEADLINE, running.cluster.scale(1))
        .await
        .expect("a scale-down within the deadline")
        .unwrap();
    for (i, h1) in conns.iter_mut().enumerate() {
        let r = h1
            .get("/")
            .await
            .unwrap_or_else(|e| panic!("TLS connection {i} lost: {e}"));
        assert_eq!(
            (r.status, r.worker.as_str()),
            (StatusCode::OK, kept.as_str())
        );
    }
    assert!(common::migrated(&running.cluster) >= 10);
    stop(&running.cluster).await;
}

/// With no worker left to take it (the cluster stops), an idle TLS
/// connection closes with `close_notify`: a clean end for the client, as
/// before migration (and as at a hot upgrade, which cannot take a session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_worker_left_tls_connections_close_cleanly() {
    let pki = Pki::new("last");
    pki.issue("last");
    let running = start(1, |b| b, serve_tls(pki.tls())).await;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    let mut tls = connect(running.addr, &connector).await.unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let stopping = tokio::spawn({
        let cluster = running.cluster.clone();
        async move { stop(&cluster).await }
    });
    // The rest of the answer, then a clean end: close_notify, not a reset.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tls.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .unwrap()
        .unwrap();
}

/// Several certificates by server name (SNI): each pair serves the names in
/// its certificate (a wildcard one label deep), the first pair the rest;
/// a broken renewal of one pair keeps that pair's certificate and the
/// others reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_certificate_serves_its_names_and_the_first_the_rest() {
    let pki = Pki::new("sni");
    let default = pki.issue_named("default", &["localhost", "default.test"]);
    let a = pki.issue_named("a", &["a.test"]);
    let b = pki.issue_named("b", &["b.test", "*.w.test"]);
    let (ac, ak) = pki.named("a");
    let (bc, bk) = pki.named("b");
    let (dc, dk) = pki.named("default");
    let tls = TlsConfig::pem_files(&dc, &dk)
        .add_pem_files(&ac, &ak)
        .add_pem_files(&bc, &bk);
    let running = start(1, |b| b, serve_tls(tls)).await;
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    let served = |name: &'static str| {
        let connector = connector.clone();
        let addr = running.addr;
        async move {
            let tls = connect_as(addr, &connector, name).await;
            tls.map(|t| peer_cert(&t))
        }
    };
    assert_eq!(served("a.test").await.unwrap(), a);
    assert_eq!(served("b.test").await.unwrap(), b);
    assert_eq!(served("x.w.test").await.unwrap(), b);
    assert_eq!(served("default.test").await.unwrap(), default);
    assert_eq!(served("localhost").await.unwrap(), default);
    // A name no certificate has gets the default one, which the client
    // then refuses (it is not valid for that name): a clear handshake error.
    let e = served("other.test").await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
    // An IP address sends no SNI: the default certificate, which has no IP
    // name here, so this client refuses it.
    assert!(served("127.0.0.1").await.is_err());

    // Pair b renewed half-way (its certificate only), pair a renewed.
    let a2 = pki.issue_named("a", &["a.test"]);
    std::fs::write(&bc, "not a certificate\n").unwrap();
    tokio::time::timeout(DEADLINE, running.cluster.reload())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served("a.test").await.unwrap(), a2);
    assert_eq!(served("b.test").await.unwrap(), b);
    stop(&running.cluster).await;
}

/// Client certificates (mTLS): a client without one, or with one another CA
/// signed, is refused at the handshake; one the CA signed is served, and
/// the handler sees its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_requires_and_shows_the_clients_certificate() {
    let pki = Pki::new("mtls");
    pki.issue("mtls");
    let tls = pki.tls().client_ca(pki.ca_file());
    let running = start(
        1,
        |b| b,
        move |w: Worker| {
            let tls = tls.clone();
            async move {
                let listener = w.listen("127.0.0.1:0").await?;
                Server::new(listener)
                    .tls(tls)
                    .serve(|req: cluster_http::Request| async move {
                        let der = req
                            .extensions()
                            .get::<cluster_http::ClientCertificate>()
                            .map(|c| Bytes::copy_from_slice(c.der()))
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(der),
                        ))
                    })
                    .await
            }
        },
    )
    .await;
    let (cert, with_cert) = pki.client("alice", &pki);
    let tls = connect(running.addr, &with_cert).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request("/")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        cert.as_ref(),
        "the handler sees the client's certificate"
    );

    // Without a certificate: refused (in TLS 1.3 the client learns it at
    // its first read, from the server's alert).
    let without = pki.connector_without_resumption(&[b"http/1.1"]);
    let refused = async {
        let tls = connect(running.addr, &without).await?;
        H1s::new(tls).await?.get("/").await
    };
    assert!(
        refused.await.is_err(),
        "a client without a certificate was served"
    );
    // One another CA signed: refused too.
    let other = Pki::new("mtls-other");
    let (_, stranger) = other.client("mallory", &pki);
    let refused = async {
        let tls = connect(running.addr, &stranger).await?;
        H1s::new(tls).await?.get("/").await
    };
    assert!(
        refused.await.is_err(),
        "a certificate of another CA was served"
    );
    stop(&running.cluster).await;
}

/// HTTP/2 rapid reset (CVE-2023-44487) over TLS: a client that opens
/// streams and cancels each at once, thousands of times. hyper answers with
/// GOAWAY (`ENHANCE_YOUR_CALM`) once too many resets wait, so the attacker's
/// connection ends; the worker is not restarted and serves the others
/// throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_rapid_reset_flood_over_tls_ends_that_connection_only() {
    let pki = Pki::new("rapid-reset");
    pki.issue("rapid");
    let running = start(1, |b| b, serve_tls(pki.tls())).await;
    let addr = running.addr;
    let tls = connect(addr, &pki.connector(&[b"h2"])).await.unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    let connection = tokio::spawn(conn);
    let mut sent = 0;
    let flood = async {
        let mut client = client;
        while sent < 10_000 {
            client = client.ready().await?;
            let request = http::Request::get("https://localhost/sleep/1000")
                .body(())
                .unwrap();
            let (_, mut stream) = client.send_request(request, true)?;
            stream.send_reset(h2::Reason::CANCEL);
            sent += 1;
        }
        Ok::<_, h2::Error>(())
    };
    let flood = tokio::time::timeout(DEADLINE, flood)
        .await
        .expect("the flood ends before the deadline");
    // The server ended the attacker's connection before all were sent.
    let error = flood.expect_err("the server let 10,000 rapid resets through");
    assert!(
        error.is_go_away() || error.is_io() || error.is_remote(),
        "ended by {error:?} after {sent} resets"
    );
    let _ = tokio::time::timeout(DEADLINE, connection).await;
    // Everyone else is served by the same worker, never restarted.
    let mut h1 = H1s::new(connect(addr, &pki.connector(&[b"http/1.1"])).await.unwrap())
        .await
        .unwrap();
    assert_eq!(h1.get("/").await.unwrap().status, StatusCode::OK);
    let workers = running.cluster.workers();
    assert_eq!(workers.len(), 1);
    assert_eq!((workers[0].id(), workers[0].restarts()), (1, 0));
    eprintln!("rapid reset over TLS: the connection ended by {error} after {sent} resets");
    stop(&running.cluster).await;
}

/// Resumption with a client not ours (`openssl s_client -sess_out` then
/// `-sess_in`), TLS 1.3 and 1.2: the session made with one worker is
/// reused when the next connection lands on the other, and by the new
/// workers after a rolling reload (SIGHUP's `cluster.reload()`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_resumes_its_session_on_another_worker_and_after_a_reload() {
    let Some(openssl) = test_support::tool(&["openssl"], "openssl") else {
        return;
    };
    let pki = Pki::new("openssl-resume");
    pki.issue("openssl-resume");
    let running = start(2, |b| b, serve_tls(pki.tls())).await;
    let addr = running.addr;
    for version in ["-tls1_3", "-tls1_2"] {
        let session = pki.dir.join(format!("session{version}.pem"));
        let run = {
            let (openssl, session) = (openssl.clone(), session.clone());
            move || {
                let (openssl, session) = (openssl.clone(), session.clone());
                tokio::task::spawn_blocking(move || {
                    test_support::s_client(&openssl, addr, &session, version)
                })
            }
        };
        let (resumed, first) = run().await.unwrap();
        assert!(
            !resumed,
            "{version}: nothing to resume on the first connection"
        );
        // Until a connection lands on the other worker: every one reused.
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (resumed, worker) = run().await.unwrap();
            assert!(resumed, "{version}: a new session with worker {worker}");
            if worker != first {
                break;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{version}: never reached another worker"
            );
        }
        tokio::time::timeout(DEADLINE, running.cluster.reload())
            .await
            .unwrap()
            .unwrap();
        let before: Vec<String> = (1..=2 + 2 * u64::from(version == "-tls1_2"))
            .map(|id| id.to_string())
            .collect();
        let (resumed, worker) = run().await.unwrap();
        assert!(
            !before.contains(&worker),
            "{version}: served by a worker of before the reload: {worker}"
        );
        assert!(
            resumed,
            "{version}: a new session after the reload (worker {worker})"
        );
        eprintln!("openssl {version}: the session made with worker {first} reused by the other worker and by worker {worker} after a reload");
    }
    stop(&running.cluster).await;
}
