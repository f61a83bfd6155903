//! The proposal's first demo: every worker listens on the same port and the
//! primary shares the connections among them.
//!
//! Run:  cargo run --release --example same_port -- [--workers N] [--host ADDR] [--port P]
//!           [--balance round-robin|least-connections|os|reuseport|sticky] [--chaos]
//!           [--healthz PATH] [--metrics PATH] [--status PATH] [--drain-delay DURATION]
//!           [--tls-cert PEM --tls-key PEM]... [--http3] [--proxy-protocol [--proxy-from CIDR]...] [--no-migrate] [--no-control]
//! Try:  curl -i localhost:8000/          # x-worker-id changes from one connection to the next
//!       curl localhost:8000/peer         # `127.0.0.1:54321`: the client address this server saw
//!       with --chaos:
//!       curl localhost:8000/sleep/500    # answers `slept 500` after half a second
//!       curl localhost:8000/panic        # that request fails; its worker is replaced, nothing else fails
//!       with --healthz /healthz --metrics /metrics:
//!       curl -i localhost:8000/healthz   # 200 `ok` while serving, 503 `draining` once stopping
//!       curl localhost:8000/metrics      # Prometheus text: every slot in one scrape
//!       with --status /status: open http://localhost:8000/status (one row per slot,
//!       refreshing itself), or curl 'localhost:8000/status?format=json'
//!       with --tls-cert cert.pem --tls-key key.pem: HTTPS, h2 and http/1.1 on the same port
//!       (more pairs: each serves the names of its certificate, by SNI; the first is the default):
//!       curl --cacert ca.pem https://localhost:8000/   # the files are read again on SIGHUP
//!       and --http3 (feature `http3`): HTTP/3 too, on UDP port 8000, every worker on it;
//!       responses over TCP carry `alt-svc: h3=":8000"`, and x-worker-id over HTTP/3 too:
//!       curl --http3-only --cacert ca.pem https://localhost:8000/   (a curl built with HTTP/3)
//!       with --proxy-protocol (behind HAProxy's `send-proxy` / `send-proxy-v2`):
//!       every connection starts with a PROXY v1/v2 header; /peer answers the
//!       client it names (and sticky balance keys on it); with --proxy-from
//!       10.0.0.0/8 (repeatable), only the balancers in those networks may connect
//! Reload: `kill -HUP <pid>` replaces the workers one by one; idle keep-alive
//!       connections move to a live worker instead of closing (--no-migrate:
//!       they close, as in other servers). `kill -QUIT <pid>`: hot upgrade.
//! Operate: `cluster-thread ls`, `monit`, `logs -f`, `scale 4`, `restart 1`,
//!       `reload`, `upgrade`, `stop` (cargo install --path cluster-cli) over its
//!       control socket; --no-control opens none (as CLUSTER_THREAD_CONTROL=off).
//! Stop: Ctrl-C or `kill -TERM <pid>`: in-flight requests finish, exit status 0.
//!       With --drain-delay 2s (or 500ms, 1m30s): /healthz answers 503 for that
//!       long while everything is still served, so that a load balancer takes
//!       this host out first; then the workers drain.
//! Logs: info on stderr (each line names its worker: restarts, reloads, upgrades),
//!       RUST_LOG=debug for each connection; `cluster-thread logs` reads them too.

use std::collections::HashSet;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use cluster_thread::http::{ConnectionInfo, Request, Server};
use cluster_thread::{Balance, Cluster, ClusterBuilder, ClusterEvent, NetConfig, Worker, Workers};
use http_body_util::Full;

struct Flags {
    host: std::net::IpAddr,
    port: u16,
    chaos: bool,
    healthz: Option<String>,
    metrics: Option<String>,
    status: Option<String>,
    tls_cert: Vec<String>,
    tls_key: Vec<String>,
    http3: bool,
    proxy_protocol: bool,
    proxy_from: Vec<cluster_thread::net::Cidr>,
    migrate: bool,
    /// The cluster's settings, applied by `setup`.
    workers: Option<Workers>,
    balance: Option<Balance>,
    drain_delay: Option<Duration>,
    #[cfg_attr(not(feature = "control"), allow(dead_code))]
    control: bool,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

const X_WORKER_ID: http::HeaderName = http::HeaderName::from_static("x-worker-id");

const USAGE: &str = "usage: same_port [--workers N] [--host ADDR] [--port P] \
    [--balance round-robin|least-connections|os|reuseport|sticky] [--chaos] \
    [--healthz PATH] [--metrics PATH] [--status PATH] [--drain-delay DURATION] \
    [--tls-cert PEM --tls-key PEM]... [--http3] [--proxy-protocol [--proxy-from CIDR]...] [--no-migrate] [--no-control]";

fn main() -> ExitCode {
    let flags = match parse() {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("same_port: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let _ = FLAGS.set(flags);
    println!("Primary {} is running", std::process::id());
    cluster()
}

/// The command line's flags, or what is wrong with them.
fn parse() -> Result<Flags, String> {
    use lexopt::prelude::*;
    let mut flags = Flags {
        host: std::net::Ipv4Addr::UNSPECIFIED.into(),
        port: 8000,
        chaos: false,
        healthz: None,
        metrics: None,
        status: None,
        tls_cert: Vec::new(),
        tls_key: Vec::new(),
        http3: false,
        proxy_protocol: false,
        proxy_from: Vec::new(),
        migrate: true,
        workers: None,
        balance: None,
        drain_delay: None,
        control: true,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("workers") => {
                flags.workers = Some(value(&mut parser, "--workers", |v| {
                    Workers::parse(v).ok_or("`auto` or a number")
                })?);
            }
            Long("balance") => {
                flags.balance = Some(value(&mut parser, "--balance", |v| v.parse())?)
            }
            Long("host") => {
                flags.host = value(&mut parser, "--host", |v| {
                    v.parse().map_err(|_| "not an IP address")
                })?;
            }
            Long("port") => {
                flags.port = value(&mut parser, "--port", |v| {
                    v.parse().map_err(|_| "not a port number")
                })?;
            }
            Long("chaos") => flags.chaos = true,
            Long("healthz") => flags.healthz = Some(value(&mut parser, "--healthz", text)?),
            Long("metrics") => flags.metrics = Some(value(&mut parser, "--metrics", text)?),
            Long("status") => flags.status = Some(value(&mut parser, "--status", text)?),
            Long("tls-cert") => flags.tls_cert.push(value(&mut parser, "--tls-cert", text)?),
            Long("tls-key") => flags.tls_key.push(value(&mut parser, "--tls-key", text)?),
            Long("http3") => flags.http3 = true,
            Long("proxy-protocol") => flags.proxy_protocol = true,
            Long("proxy-from") => flags
                .proxy_from
                .push(value(&mut parser, "--proxy-from", |v| v.parse())?),
            Long("no-migrate") => flags.migrate = false,
            Long("no-control") => flags.control = false,
            Long("drain-delay") => {
                flags.drain_delay = Some(value(&mut parser, "--drain-delay", |v| {
                    humantime::parse_duration(v).map_err(|e| format!("{e} (such as 2s or 500ms)"))
                })?);
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if !flags.proxy_from.is_empty() && !flags.proxy_protocol {
        return Err("--proxy-from goes with --proxy-protocol".into());
    }
    if flags.tls_cert.len() != flags.tls_key.len() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    if cfg!(not(feature = "tls")) && !flags.tls_cert.is_empty() {
        // The benchmark builds it with only the features it uses.
        return Err("built without cluster_thread's `tls` feature".into());
    }
    if flags.http3 && flags.tls_cert.is_empty() {
        return Err("--http3 needs --tls-cert and --tls-key (HTTP/3 is always TLS)".into());
    }
    if cfg!(not(feature = "http3")) && flags.http3 {
        return Err("built without cluster_thread's `http3` feature".into());
    }
    Ok(flags)
}

/// The next value, parsed by `parse`; an error names the flag and the value.
fn value<T, E: std::fmt::Display>(
    parser: &mut lexopt::Parser,
    flag: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, String> {
    let v = parser.value().map_err(|e| e.to_string())?;
    let v = v.to_str().ok_or(format!("{flag}: not UTF-8"))?;
    parse(v).map_err(|e| format!("{flag} {v}: {e}"))
}

fn text(v: &str) -> Result<String, std::convert::Infallible> {
    Ok(v.to_owned())
}

/// Runs once on the primary before any worker: the flags' cluster
/// settings (the `CLUSTER_THREAD_*` variables still win over them).
fn setup(builder: ClusterBuilder) -> ClusterBuilder {
    let flags = FLAGS.get().expect("set in main");
    let mut builder = builder;
    if let Some(workers) = flags.workers {
        builder = builder.workers(workers);
    }
    if let Some(delay) = flags.drain_delay {
        builder = builder.drain_delay(delay);
    }
    if let Some(balance) = flags.balance {
        // Replaces the macro's (`port = "shared"` is NetConfig's default).
        builder = builder.state(NetConfig::default().balance(balance));
    }
    #[cfg(feature = "control")]
    if !flags.control {
        builder = builder.state(cluster_thread::control::Off);
    }
    builder
}

/// Runs once in each worker thread.
#[cluster_thread::main(workers = "auto", port = "shared", setup = setup, primary = primary)]
async fn cluster(worker: Worker) -> anyhow::Result<()> {
    let flags = FLAGS.get().expect("set in main");
    let (port, chaos) = (flags.port, flags.chaos);
    println!(
        "Worker {}, {:?} started",
        std::process::id(),
        std::thread::current().id()
    );
    let listen = cluster_thread::net::Listen::parse(
        &std::net::SocketAddr::new(flags.host, port).to_string(),
    )?;
    let mut spec = listen.with().proxy_protocol(flags.proxy_protocol);
    if !flags.proxy_from.is_empty() {
        spec = spec.proxy_from(flags.proxy_from.iter().copied());
    }
    let listener = worker.listen(spec).await?;
    // Built once: each response only clones it (a reference count).
    let id = http::HeaderValue::from(worker.id());
    let mut server = Server::new(listener).migrate(flags.migrate);
    if let Some(path) = &flags.healthz {
        server = server.healthz(path);
    }
    if let Some(path) = &flags.metrics {
        server = server.metrics(path);
    }
    if let Some(path) = &flags.status {
        server = server.status(path);
    }
    #[cfg(feature = "tls")]
    let mut pairs = flags.tls_cert.iter().zip(&flags.tls_key);
    if let Some((cert, key)) = pairs.next() {
        // Read by each worker as it starts: SIGHUP serves renewed files.
        // The first pair is the default; each other one serves the names
        // of its certificate (SNI).
        let tls = pairs.fold(
            cluster_thread::http::TlsConfig::pem_files(cert, key),
            |tls, (cert, key)| tls.add_pem_files(cert, key),
        );
        server = server.tls(tls);
    }
    #[cfg(feature = "http3")]
    if flags.http3 {
        // The same service on UDP, the port of the same number.
        server = server.http3(true);
    }
    server
        .serve(move |req: Request| {
            let id = id.clone();
            async move {
                let body = match (chaos, req.uri().path()) {
                    (_, "/peer") => match req.extensions().get::<ConnectionInfo>() {
                        Some(info) => Bytes::from(format!("{}\n", info.peer)),
                        None => Bytes::from_static(b"unknown\n"),
                    },
                    (true, "/panic") => panic!("GET /panic on worker {id:?}"),
                    (true, path) if path.starts_with("/sleep/") => {
                        let ms: u64 = path["/sleep/".len()..].parse().unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Bytes::from(format!("slept {ms}\n"))
                    }
                    // Not allocated per request.
                    _ => Bytes::from_static(b"hello world\n"),
                };
                let mut response = http::Response::new(Full::new(body));
                response.headers_mut().insert(X_WORKER_ID, id);
                Ok::<_, Infallible>(response)
            }
        })
        .await?;
    Ok(())
}

/// Runs on the primary: prints each shared address once.
async fn primary(cluster: Cluster) {
    let mut events = cluster.events();
    let mut seen = HashSet::new();
    while let Some(event) = events.recv().await {
        if let ClusterEvent::Listening { address, .. } = event {
            if seen.insert(address.clone()) {
                println!("listening on {address}");
            }
        }
    }
}
