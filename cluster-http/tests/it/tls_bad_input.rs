//! Bad input on a TLS port, each closing only its own connection while the
//! worker serves on: a PROXY header then garbage, a client that stops
//! mid-handshake after its header, TLS records split at every byte, a
//! server name of 10 KiB and of the most a ClientHello can carry, and a
//! TLS 1.2 renegotiation (rustls refuses it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::common::{self, start, stop, DEADLINE};
use crate::tls::{connect, H1s, Pki};
use cluster_core::Worker;
use cluster_http::rustls::pki_types::ServerName;
use cluster_http::{HttpConfig, Server, TlsConfig};
use cluster_net::WorkerExt;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The header a balancer sends before the client's bytes.
const PROXY_V1: &[u8] = b"PROXY TCP4 198.51.100.4 192.0.2.1 41000 443\r\n";

/// A worker serving the test app over TLS, behind the PROXY protocol when
/// `proxy` is set.
fn serve(
    tls: TlsConfig,
    proxy: bool,
) -> impl Fn(Worker) -> Pin<Box<dyn std::future::Future<Output = Result<(), cluster_http::Error>>>>
       + Send
       + Sync
       + 'static {
    move |w: Worker| {
        let tls = tls.clone();
        Box::pin(async move {
            let spec = cluster_net::Listen::parse("127.0.0.1:0")?
                .with()
                .proxy_protocol(proxy);
            let listener = w.listen(spec).await?;
            Server::new(listener).tls(tls).serve(common::app).await
        })
    }
}

/// Reads until the server closes the connection; what it sent first.
async fn closed_by_server(mut s: TcpStream, what: &str) -> Vec<u8> {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "{what}: kept open past the deadline");
    sink
}

/// The TLS handshake failures of slot 0, from one scrape of `/metrics`
/// on `h1`.
async fn handshake_failures(h1: &mut H1s) -> u64 {
    let body = h1.get("/metrics").await.unwrap().body;
    body.lines()
        .find_map(|l| l.strip_prefix("cluster_thread_tls_handshake_failures_total{slot=\"0\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no handshake failures in {body}"))
}

/// A TLS connection (rustls, HTTP/1.1) after `head` written raw.
async fn connect_after(
    addr: SocketAddr,
    head: &[u8],
    pki: &Pki,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, common::BoxError> {
    let connector = pki.connector_without_resumption(&[b"http/1.1"]);
    tokio::time::timeout(DEADLINE, async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(head).await?;
        let name = ServerName::try_from("localhost")?;
        Ok(connector.connect(name, tcp).await?)
    })
    .await
    .map_err(|_| "no TLS handshake before the deadline")?
}

/// The first flight of a real rustls client: its ClientHello record.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let config = Arc::new(pki.client_config(&[b"http/1.1"]));
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = cluster_http::rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

/// A TLS 1.3 ClientHello, written by hand, whose server name is
/// `name_len` bytes of 63-letter labels (no valid DNS name past 253),
/// in records of at most 16 KiB.
fn client_hello_with_sni(name_len: usize) -> Vec<u8> {
    fn u16be(n: usize) -> [u8; 2] {
        u16::try_from(n).expect("fits a u16").to_be_bytes()
    }
    let name: Vec<u8> = (0..name_len)
        .map(|i| if i % 64 == 63 { b'.' } else { b'a' })
        .collect();
    let mut sni = Vec::new();
    sni.extend_from_slice(&u16be(name.len() + 3)); // the list
    sni.push(0); // host_name
    sni.extend_from_slice(&u16be(name.len()));
    sni.extend_from_slice(&name);
    let mut x25519 = [0u8; 32];
    x25519[0] = 9; // the curve's base point: a valid public key
    let mut key_share = Vec::new();
    key_share.extend_from_slice(&u16be(36));
    key_share.extend_from_slice(&[0x00, 0x1d, 0x00, 0x20]);
    key_share.extend_from_slice(&x25519);
    let extensions: [(u16, Vec<u8>); 5] = [
        (0x0000, sni),
        (0x002b, vec![2, 0x03, 0x04]),                // TLS 1.3
        (0x000a, vec![0, 2, 0x00, 0x1d]),             // x25519
        (0x000d, vec![0, 4, 0x04, 0x03, 0x08, 0x04]), // ECDSA P-256, RSA-PSS
        (0x0033, key_share),
    ];
    let mut ext = Vec::new();
    for (kind, data) in extensions {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&u16be(data.len()));
        ext.extend_from_slice(&data);
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(32);
    body.extend_from_slice(&[5u8; 32]); // legacy session id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    body.extend_from_slice(&[1, 0]); // no compression
    body.extend_from_slice(&u16be(ext.len()));
    body.extend_from_slice(&ext);
    let mut handshake = vec![1]; // ClientHello
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut records = Vec::new();
    for fragment in handshake.chunks(16_384) {
        records.extend_from_slice(&[0x16, 0x03, 0x01]);
        records.extend_from_slice(&u16be(fragment.len()));
        records.extend_from_slice(fragment);
    }
    records
}

/// A socket whose every write takes one byte (`TCP_NODELAY`, so each goes
/// out alone): the PROXY header and every TLS record reach the server
/// split at each byte.
struct OneByte(TcpStream);

impl AsyncRead for OneByte {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for OneByte {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let one = &buf[..buf.len().min(1)];
        Pin::new(&mut self.get_mut().0).poll_write(cx, one)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Behind the PROXY protocol, over TLS: a header then garbage, a header
/// then nothing, a header then half a ClientHello then nothing (closed at
/// the handshake timeout), each closes its connection and counts one
/// failed handshake; server names of 10 KiB and of about 64 KiB (the most a
/// ClientHello's extensions can carry) get an alert and a close. The same
/// worker serves throughout, its good connection too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_after_a_proxy_header_and_in_the_handshake_closes_that_connection_only() {
    let pki = Pki::new("bad-proxy");
    pki.issue("bad-proxy");
    // The PROXY header's own timeout is 5 s; the TLS handshake's is short.
    let tls = pki.tls().handshake_timeout(Duration::from_millis(300));
    let running = start(
        1,
        |b| b.state(HttpConfig::default().metrics("/metrics")),
        serve(tls, true),
    )
    .await;
    let addr = running.addr;
    let mut good = H1s::new(connect_after(addr, PROXY_V1, &pki).await.unwrap())
        .await
        .unwrap();
    let worker = good.get("/").await.unwrap().worker;
    let mut failures = handshake_failures(&mut good).await;

    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let hello = client_hello(&pki);
    let cases: [(&str, &[u8]); 3] = [
        ("a PROXY header then garbage", &garbage),
        ("a PROXY header then nothing", b""),
        (
            "a PROXY header then half a ClientHello",
            &hello[..hello.len() / 2],
        ),
    ];
    for (what, after) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PROXY_V1).await.unwrap();
        s.write_all(after).await.unwrap();
        closed_by_server(s, what).await;
        let now = handshake_failures(&mut good).await;
        assert_eq!(now, failures + 1, "{what}: one failed handshake");
        failures = now;
    }

    // Server names far past DNS's 253 bytes: an alert, then the close.
    for len in [10 * 1024, 65_000] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PROXY_V1).await.unwrap();
        s.write_all(&client_hello_with_sni(len)).await.unwrap();
        let reply = closed_by_server(s, "a long server name").await;
        assert_eq!(
            reply.first(),
            Some(&0x15),
            "a server name of {len} bytes: not an alert: {reply:?}"
        );
    }

    // The same worker, never restarted, serves the old connection and new ones.
    assert_eq!(good.get("/").await.unwrap().worker, worker);
    let mut fresh = H1s::new(connect_after(addr, PROXY_V1, &pki).await.unwrap())
        .await
        .unwrap();
    let r = fresh.get("/").await.unwrap();
    assert_eq!((r.status, r.worker), (StatusCode::OK, worker));
    let workers = running.cluster.workers();
    assert_eq!((workers.len(), workers[0].restarts()), (1, 0));
    stop(&running.cluster).await;
}

/// TLS records split at every byte: a rustls client whose socket writes
/// one byte at a time (its PROXY header too, on a PROXY port) handshakes
/// and is answered, three requests on its keep-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_one_byte_at_a_time_is_served() {
    let pki = Pki::new("one-byte");
    pki.issue("one-byte");
    for proxy in [false, true] {
        let running = start(1, |b| b, serve(pki.tls(), proxy)).await;
        let tcp = TcpStream::connect(running.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut slow = OneByte(tcp);
        if proxy {
            slow.write_all(PROXY_V1).await.unwrap();
        }
        let connector = pki.connector_without_resumption(&[b"http/1.1"]);
        let tls = tokio::time::timeout(
            DEADLINE,
            connector.connect(ServerName::try_from("localhost").unwrap(), slow),
        )
        .await
        .expect("a handshake before the deadline")
        .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        for i in 0..3 {
            let request = http::Request::get("https://localhost/")
                .header(http::header::HOST, "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = tokio::time::timeout(DEADLINE, async {
                sender.ready().await?;
                sender.send_request(request).await
            })
            .await
            .expect("an answer before the deadline")
            .unwrap_or_else(|e| panic!("request {i} (PROXY header: {proxy}): {e:?}"));
            assert_eq!(response.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"hello world\n");
        }
        stop(&running.cluster).await;
    }
}

/// A TLS 1.2 renegotiation (`openssl s_client -tls1_2`, its `R` command):
/// rustls refuses it with a `no_renegotiation` alert, sent at once (before:
/// it waited in the session until the server next wrote, and the client
/// waited for it until the idle timeout), and the client ends the
/// connection; the worker serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_renegotiation_is_refused_at_once_and_the_worker_serves_on() {
    let Some(openssl) = test_support::tool(&["openssl"], "openssl") else {
        return;
    };
    let pki = Pki::new("reneg");
    pki.issue("reneg");
    let running = start(1, |b| b, serve(pki.tls(), false)).await;
    let addr = running.addr;
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(openssl)
            .args([
                "s_client",
                "-tls1_2",
                "-servername",
                "localhost",
                "-connect",
            ])
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read once connected; stdin stays open until the client ends, so
        // only the server's answer can end it.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"R\n").unwrap();
        if test_support::wait_timeout(&mut child, DEADLINE)
            .unwrap()
            .is_none()
        {
            let _ = child.kill();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = text
        .find("RENEGOTIATING")
        .and_then(|at| text[at..].find("no renegotiation"));
    assert!(refused.is_some(), "the refusal never came: {text}");
    let mut h1 = H1s::new(connect(addr, &pki.connector(&[b"http/1.1"])).await.unwrap())
        .await
        .unwrap();
    assert_eq!(h1.get("/").await.unwrap().status, StatusCode::OK);
    let workers = running.cluster.workers();
    assert_eq!((workers.len(), workers[0].restarts()), (1, 0));
    stop(&running.cluster).await;
}
