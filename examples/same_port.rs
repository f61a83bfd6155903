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
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--workers" => value("--workers").and_then(|v| {
                Workers::parse(&v)
                    .map(|w| flags.workers = Some(w))
                    .ok_or(format!("--workers {v}: `auto` or a number"))
            }),
            "--balance" => value("--balance").and_then(|v| {
                v.parse()
                    .map(|b| flags.balance = Some(b))
                    .map_err(|e| format!("--balance {v}: {e}"))
            }),
            "--host" => value("--host").and_then(|v| {
                v.parse()
                    .map(|ip| flags.host = ip)
                    .map_err(|_| format!("--host {v}: not an IP address"))
            }),
            "--port" => value("--port").and_then(|v| {
                v.parse()
                    .map(|p| flags.port = p)
                    .map_err(|_| format!("--port {v}: not a port number"))
            }),
            "--chaos" => {
                flags.chaos = true;
                Ok(())
            }
            "--healthz" => value("--healthz").map(|v| flags.healthz = Some(v)),
            "--metrics" => value("--metrics").map(|v| flags.metrics = Some(v)),
            "--status" => value("--status").map(|v| flags.status = Some(v)),
            "--tls-cert" => value("--tls-cert").map(|v| flags.tls_cert.push(v)),
            "--tls-key" => value("--tls-key").map(|v| flags.tls_key.push(v)),
            "--http3" => {
                flags.http3 = true;
                Ok(())
            }
            "--proxy-protocol" => {
                flags.proxy_protocol = true;
                Ok(())
            }
            "--proxy-from" => value("--proxy-from").and_then(|v| {
                v.parse()
                    .map(|net| flags.proxy_from.push(net))
                    .map_err(|e| format!("--proxy-from {v}: {e}"))
            }),
            "--no-migrate" => {
                flags.migrate = false;
                Ok(())
            }
            "--no-control" => {
                flags.control = false;
                Ok(())
            }
            "--drain-delay" => value("--drain-delay").and_then(|v| {
                humantime::parse_duration(&v)
                    .map(|d| flags.drain_delay = Some(d))
                    .map_err(|e| format!("--drain-delay {v}: {e} (such as 2s or 500ms)"))
            }),
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = parsed {
            eprintln!("same_port: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if !flags.proxy_from.is_empty() && !flags.proxy_protocol {
        eprintln!("same_port: --proxy-from goes with --proxy-protocol\n{USAGE}");
        return ExitCode::from(2);
    }
    if flags.tls_cert.len() != flags.tls_key.len() {
        eprintln!("same_port: --tls-cert and --tls-key go together\n{USAGE}");
        return ExitCode::from(2);
    }
    if cfg!(not(feature = "tls")) && !flags.tls_cert.is_empty() {
        // The benchmark builds it with only the features it uses.
        eprintln!("same_port: built without cluster_thread's `tls` feature\n{USAGE}");
        return ExitCode::from(2);
    }
    if flags.http3 && flags.tls_cert.is_empty() {
        eprintln!(
            "same_port: --http3 needs --tls-cert and --tls-key (HTTP/3 is always TLS)\n{USAGE}"
        );
        return ExitCode::from(2);
    }
    if cfg!(not(feature = "http3")) && flags.http3 {
        eprintln!("same_port: built without cluster_thread's `http3` feature\n{USAGE}");
        return ExitCode::from(2);
    }
    let _ = FLAGS.set(flags);
    println!("Primary {} is running", std::process::id());
    cluster()
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
