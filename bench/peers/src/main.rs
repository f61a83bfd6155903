//! Peer servers for `cargo xtask bench`, one binary:
//!
//! ```text
//! bench-peers <actix|hyper|hyper-tpc|axum|raw> [--workers N] [--port P] [--host IP]
//!             [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! Every server answers `GET /` with 200 `hello world\n` over HTTP/1.1 with
//! keep-alive, prints `listening on <ip>:<port>` once its workers are up, and
//! runs until it is killed (SIGTERM/SIGINT).
//!
//! - `actix`: actix-web 4, `HttpServer::workers(N)`.
//! - `hyper`: hyper 1 (`server::conn::http1`) on a tokio multi-thread runtime
//!   with N worker threads; one accept loop, a task per connection.
//! - `hyper-tpc`: hyper 1 thread per core, the architecture of a cluster_thread
//!   worker with no framework around it: N threads, each with a current-thread
//!   runtime, a `LocalSet` and its own SO_REUSEPORT listener; `http1` builder,
//!   a `spawn_local` task per connection.
//! - `axum`: axum 0.8's own `axum::serve` (a `Router` with one route) on a
//!   tokio multi-thread runtime with N worker threads.
//! - `raw`: no HTTP at all: for every read on a connection it writes one canned
//!   response, and closes the connection after it when the bytes read contain
//!   `close` (the churn scenario's `Connection: close`), as an HTTP server
//!   would. It measures the load generator's ceiling on this machine (the
//!   client never pipelines, and a ~60-byte request arrives in one read on
//!   loopback). Built for speed: a tokio multi-thread runtime with N threads
//!   (work stealing keeps them evenly busy) and one SO_REUSEPORT listener and
//!   accept loop per thread (accepting never queues behind one loop).

//!
//! With `--tls-cert` and `--tls-key` (actix and hyper-tpc only), HTTPS: one
//! rustls `ServerConfig` (ring, ALPN `http/1.1`, rustls' defaults: a stateful
//! session cache of 256 entries shared by every thread, TLS 1.3 tickets from
//! it) shared by all workers, as each of them would be deployed.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;

const BODY: &[u8] = b"hello world\n";
const RAW_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: text/plain\r\n\r\nhello world\n";
const RAW_RESPONSE_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nhello world\n";

struct Args {
    server: String,
    workers: usize,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let server = args.next().ok_or(
        "usage: bench-peers <actix|hyper|hyper-tpc|axum|raw> [--workers N] [--port P] [--host IP] [--tls-cert PEM --tls-key PEM]",
    )?;
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut port: u16 = 8000;
    let mut host = String::from("127.0.0.1");
    let (mut cert, mut key) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--workers" => workers = value.parse().map_err(|e| format!("--workers: {e}"))?,
            "--port" => port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--host" => host = value,
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let addr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("address {host}:{port}: {e}"))?;
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Args {
        server,
        workers,
        addr,
        tls,
    })
}

fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench-peers: {e}");
            std::process::exit(2);
        }
    };
    let tls = match args.tls.as_ref().map(|(c, k)| tls_config(c, k)).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("bench-peers: {e}");
            std::process::exit(2);
        }
    };
    let result = match (args.server.as_str(), tls) {
        ("actix", tls) => actix(args.workers, args.addr, tls),
        ("hyper-tpc", tls) => hyper_thread_per_core(args.workers, args.addr, tls),
        (other, Some(_)) => Err(std::io::Error::other(format!("{other} has no TLS here"))),
        ("hyper", None) => hyper(args.workers, args.addr),
        ("axum", None) => axum(args.workers, args.addr),
        ("raw", None) => raw(args.workers, args.addr),
        (other, None) => Err(std::io::Error::other(format!("unknown server {other}"))),
    };
    if let Err(e) = result {
        eprintln!("bench-peers {}: {e}", args.server);
        std::process::exit(1);
    }
}

/// The rustls config of both TLS peers: the certificate chain and key from
/// PEM files, ring, ALPN `http/1.1`, everything else rustls' default.
fn tls_config(cert: &PathBuf, key: &PathBuf) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &PathBuf, e: rustls_pki_types::pem::Error| {
        std::io::Error::other(format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn actix(
    workers: usize,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    use actix_web::{web, App, HttpServer};
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new().route(
                "/",
                web::get().to(|| async {
                    actix_web::HttpResponse::Ok()
                        .content_type("text/plain")
                        .body(BODY)
                }),
            )
        })
        .workers(workers)
        .shutdown_timeout(1);
        let server = match tls {
            Some(config) => server.bind_rustls_0_23(addr, Arc::unwrap_or_clone(config))?,
            None => server.bind(addr)?,
        };
        let bound = server.addrs()[0];
        // `run` starts the workers and waits until each is ready.
        let server = server.run();
        announce(bound);
        server.await
    })
}

fn multi_thread_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
}

async fn hello(
    _req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, Infallible> {
    let mut response =
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(BODY)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

fn hyper(workers: usize, addr: SocketAddr) -> std::io::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    multi_thread_runtime(workers)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        announce(listener.local_addr()?);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    })
}

/// A listening socket with SO_REUSEPORT, so that each thread can have its own
/// on the same port (the kernel spreads connections among them).
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // Bound here, registered with each thread's own runtime there.
    let listener = socket.listen(1024)?.into_std()?;
    Ok(listener)
}

fn hyper_thread_per_core(
    workers: usize,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    // The listeners are made (port 0 resolved by the first) and registered
    // with a runtime inside each thread; `into_std` needs a runtime context.
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let listeners = setup.block_on(async {
        let first = reuseport_listener(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(reuseport_listener(addr)?);
        }
        Ok::<_, std::io::Error>((addr, listeners))
    });
    drop(setup);
    let (bound, listeners) = listeners?;
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
            std::thread::Builder::new()
                .name(format!("hyper-tpc-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .build()?;
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        loop {
                            let stream = match listener.accept().await {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            };
                            let _ = stream.set_nodelay(true);
                            let tls = tls.clone();
                            tokio::task::spawn_local(async move {
                                let http = http1::Builder::new();
                                let _ = match tls {
                                    Some(acceptor) => {
                                        let Ok(stream) = acceptor.accept(stream).await else {
                                            return;
                                        };
                                        http.serve_connection(
                                            TokioIo::new(stream),
                                            service_fn(hello),
                                        )
                                        .await
                                    }
                                    None => {
                                        http.serve_connection(
                                            TokioIo::new(stream),
                                            service_fn(hello),
                                        )
                                        .await
                                    }
                                };
                            });
                        }
                    })
                })
        })
        .collect::<std::io::Result<_>>()?;
    announce(bound);
    for t in threads {
        match t.join() {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::other("a server thread panicked")),
        }
    }
    Ok(())
}

fn axum(workers: usize, addr: SocketAddr) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    multi_thread_runtime(workers)?.block_on(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello world\n" }));
        // TCP_NODELAY as every other server here sets it (axum::serve does not).
        let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        announce(axum::serve::Listener::local_addr(&listener)?);
        axum::serve(listener, app).await
    })
}

fn raw(workers: usize, addr: SocketAddr) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // One SO_REUSEPORT listener and accept loop per worker thread (accepting
    // is never the bottleneck), on a work-stealing runtime (connections
    // spread evenly over the threads whatever the kernel's hash did).
    let bind = |addr| tokio::net::TcpListener::from_std(reuseport_listener(addr)?);
    multi_thread_runtime(workers)?.block_on(async move {
        let first = bind(addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(bind(addr)?);
        }
        announce(addr);
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(async move {
                    loop {
                        let mut stream = match listener.accept().await {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(async move {
                            let mut buf = [0u8; 4096];
                            loop {
                                match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => {
                                        let close = buf[..n].windows(5).any(|w| w == b"close");
                                        let response = if close {
                                            RAW_RESPONSE_CLOSE
                                        } else {
                                            RAW_RESPONSE
                                        };
                                        if stream.write_all(response).await.is_err() || close {
                                            return;
                                        }
                                    }
                                }
                            }
                        });
                    }
                })
            })
            .collect();
        for l in loops {
            let _ = l.await;
        }
        Ok(())
    })
}
