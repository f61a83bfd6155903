//! The servers under test: how to build them, start them, tell when they are
//! ready, and stop them (the whole process tree).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::{load, procfs};

/// What kind of program a server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `examples/same_port` with `--balance <mode>`.
    ClusterThread(&'static str),
    /// A Rust peer: `bench-peers <name>` (actix, hyper, hyper-tpc, axum).
    RustPeer(&'static str),
    /// `bench/node/cluster.js` with `NODE_CLUSTER_SCHED_POLICY=<policy>`.
    Node(&'static str),
    /// `bench-peers raw`: canned responses, the generator's ceiling.
    Raw,
}

/// A server of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Server {
    /// Short name for flags, JSON and file names.
    pub(crate) id: &'static str,
    /// Name in tables and the chart.
    pub(crate) label: &'static str,
    #[serde(skip)]
    pub(crate) kind: Kind,
    /// Its environment beyond the harness's (cluster_thread's settings).
    #[serde(skip)]
    pub(crate) env: &'static [(&'static str, &'static str)],
    /// Serves HTTPS (the TLS scenarios' servers, and only theirs).
    pub(crate) tls: bool,
}

/// Round-robin and least-connections through the acceptor thread, beside
/// the same modes steered by the kernel (the default, where eBPF may be
/// loaded: as root).
const ACCEPTOR: &[(&str, &str)] = &[("CLUSTER_THREAD_KERNEL_STEERING", "off")];

impl Server {
    pub(crate) fn is_cluster_thread(&self) -> bool {
        matches!(self.kind, Kind::ClusterThread(_))
    }
    pub(crate) fn is_node(&self) -> bool {
        matches!(self.kind, Kind::Node(_))
    }
    /// Can one of its workers be crashed and replaced?
    pub(crate) fn can_respawn(&self) -> bool {
        self.is_cluster_thread() || self.is_node()
    }
}

/// Every server, in table order.
pub(crate) const ALL: &[Server] = &[
    Server {
        id: "ct-rr",
        label: "cluster_thread round-robin",
        kind: Kind::ClusterThread("round-robin"),
        env: &[],
        tls: false,
    },
    Server {
        id: "ct-lc",
        label: "cluster_thread least-connections",
        kind: Kind::ClusterThread("least-connections"),
        env: &[],
        tls: false,
    },
    Server {
        id: "ct-rr-acceptor",
        label: "cluster_thread round-robin (acceptor thread)",
        kind: Kind::ClusterThread("round-robin"),
        env: ACCEPTOR,
        tls: false,
    },
    Server {
        id: "ct-lc-acceptor",
        label: "cluster_thread least-connections (acceptor thread)",
        kind: Kind::ClusterThread("least-connections"),
        env: ACCEPTOR,
        tls: false,
    },
    Server {
        id: "ct-os",
        label: "cluster_thread os",
        kind: Kind::ClusterThread("os"),
        env: &[],
        tls: false,
    },
    Server {
        id: "ct-reuseport",
        label: "cluster_thread reuseport",
        kind: Kind::ClusterThread("reuseport"),
        env: &[],
        tls: false,
    },
    Server {
        id: "actix",
        label: "actix-web 4",
        kind: Kind::RustPeer("actix"),
        env: &[],
        tls: false,
    },
    Server {
        id: "hyper",
        label: "hyper 1 (tokio multi-thread)",
        kind: Kind::RustPeer("hyper"),
        env: &[],
        tls: false,
    },
    Server {
        id: "hyper-tpc",
        label: "hyper 1 (thread per core)",
        kind: Kind::RustPeer("hyper-tpc"),
        env: &[],
        tls: false,
    },
    Server {
        id: "axum",
        label: "axum 0.8 (axum::serve)",
        kind: Kind::RustPeer("axum"),
        env: &[],
        tls: false,
    },
    Server {
        id: "node-rr",
        label: "node cluster SCHED_RR",
        kind: Kind::Node("rr"),
        env: &[],
        tls: false,
    },
    Server {
        id: "node-none",
        label: "node cluster SCHED_NONE",
        kind: Kind::Node("none"),
        env: &[],
        tls: false,
    },
    Server {
        id: "raw",
        label: "raw canned responses (ceiling)",
        kind: Kind::Raw,
        env: &[],
        tls: false,
    },
    Server {
        id: "ct-rr-tls",
        label: "cluster_thread round-robin, TLS",
        kind: Kind::ClusterThread("round-robin"),
        env: &[],
        tls: true,
    },
    Server {
        id: "ct-reuseport-tls",
        label: "cluster_thread reuseport, TLS",
        kind: Kind::ClusterThread("reuseport"),
        env: &[],
        tls: true,
    },
    Server {
        id: "actix-tls",
        label: "actix-web 4 + rustls",
        kind: Kind::RustPeer("actix"),
        env: &[],
        tls: true,
    },
    Server {
        id: "hyper-tpc-tls",
        label: "hyper 1 + tokio-rustls (thread per core)",
        kind: Kind::RustPeer("hyper-tpc"),
        env: &[],
        tls: true,
    },
];

/// The Rust peers: what cluster_thread's users would pick instead.
pub(crate) const RUST_PEERS: &[&str] = &["actix", "hyper", "hyper-tpc", "axum"];

/// The peers that every figure is also given as a ratio to.
pub(crate) const PEERS: &[&str] = &[
    "actix",
    "hyper",
    "hyper-tpc",
    "axum",
    "node-rr",
    "node-none",
];

/// The TLS scenarios' peers (rustls with ring, as cluster_thread's).
pub(crate) const TLS_PEERS: &[&str] = &["actix-tls", "hyper-tpc-tls"];

pub(crate) fn by_id(id: &str) -> Option<&'static Server> {
    ALL.iter().find(|s| s.id == id)
}

/// Where the programs are, once built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Programs {
    /// `target/release/examples/same_port`, if it could be built.
    pub(crate) same_port: Option<PathBuf>,
    /// `examples/hello` built with only the features it uses (as the peers
    /// are: actix-web without its default features): the memory rows.
    pub(crate) hello: Option<PathBuf>,
    /// `bench-peers`, if it could be built.
    pub(crate) peers: Option<PathBuf>,
    /// `node` and the script, if node is on PATH.
    pub(crate) node: Option<(PathBuf, PathBuf)>,
    /// The TLS servers' certificate and key, if any TLS server was selected.
    pub(crate) tls: Option<TlsFiles>,
}

/// A certificate for `localhost` signed by a CA made for the run.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// The generators' client config: it trusts that CA only.
    pub(crate) client: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl TlsFiles {
    /// Makes the CA and the certificate (ECDSA P-256, rcgen's default) and
    /// writes `cert.pem` and `key.pem` under `dir`.
    pub(crate) fn make(dir: &Path) -> anyhow::Result<TlsFiles> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "cluster_thread bench CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(vec![test_support::SERVER_NAME.to_string()])?;
        leaf.distinguished_name
            .push(DnType::CommonName, test_support::SERVER_NAME);
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &ca)?;
        std::fs::create_dir_all(dir)?;
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client: test_support::tls_client_config(&ca.der().clone()),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

impl Programs {
    pub(crate) fn available(&self, server: &Server) -> bool {
        if server.tls && self.tls.is_none() {
            return false;
        }
        match server.kind {
            Kind::ClusterThread(_) => self.same_port.is_some(),
            Kind::RustPeer(_) | Kind::Raw => self.peers.is_some(),
            Kind::Node(_) => self.node.is_some(),
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds the peers crate (its own workspace, its own lock file) into
/// `<target>/bench-peers`.
pub(crate) fn build_peers(root: &Path, target: &Path) -> anyhow::Result<PathBuf> {
    let dir = target.join("bench-peers");
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(root.join("bench/peers/Cargo.toml"))
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .context("running cargo build for bench/peers")?;
    if !status.success() {
        bail!("building bench/peers failed ({status})");
    }
    Ok(dir.join("release/bench-peers"))
}

/// The features `examples/hello` uses: its lean build has only these.
const HELLO_FEATURES: &str = "macros,net,http";

/// Builds `examples/same_port` in release; `Err` says why it cannot be had.
pub(crate) fn build_same_port(root: &Path, target: &Path) -> Result<PathBuf, String> {
    build_example(root, target, "same_port", &[])
}

/// Builds `examples/hello` in release with only [`HELLO_FEATURES`].
pub(crate) fn build_hello(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let features = ["--no-default-features", "--features", HELLO_FEATURES];
    build_example(root, target, "hello", &features)
}

fn build_example(
    root: &Path,
    target: &Path,
    name: &str,
    flags: &[&str],
) -> Result<PathBuf, String> {
    if !root.join(format!("examples/{name}.rs")).exists() {
        return Err(format!("examples/{name}.rs does not exist yet"));
    }
    let out = Command::new(cargo())
        .current_dir(root)
        .args(["build", "--release", "--example", name])
        .args(flags)
        .arg("--target-dir")
        .arg(target)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    let path = target.join(format!("release/examples/{name}"));
    if !out.success() || !path.exists() {
        return Err(format!(
            "`cargo build --release --example {name} {}` failed ({out})",
            flags.join(" ")
        ));
    }
    Ok(path)
}

/// `node` on PATH, if any.
pub(crate) fn find_node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound and released: another program could
/// take it in between, which on this machine nothing does).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running server.
pub(crate) struct Running {
    pub(crate) server: Server,
    pub(crate) workers: usize,
    /// Started as [`Launch::lean`].
    pub(crate) lean: bool,
    pub(crate) addr: SocketAddr,
    /// A TLS server's clients' config.
    pub(crate) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub(crate) child: Child,
    pub(crate) spawned_at: Instant,
    /// Its stdout, line by line, with the time each line was read.
    pub(crate) lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has the process printed everything that says all N workers are up?
    pub(crate) fn reported_ready(&self) -> bool {
        let lines = self.lines.lock().expect("lines lock");
        let count = |f: &dyn Fn(&str) -> bool| lines.iter().filter(|(_, l)| f(l)).count();
        match self.server.kind {
            // `hello`: a line per worker.
            Kind::ClusterThread(_) if self.lean => {
                count(&|l| l.starts_with("worker ") && l.contains(" listening on ")) >= self.workers
            }
            Kind::ClusterThread(_) => {
                count(&|l| l.starts_with("Worker ") && l.ends_with(" started")) >= self.workers
                    && count(&|l| l.starts_with("listening on")) >= 1
            }
            Kind::Node(_) => {
                count(&|l| l.starts_with("worker ") && l.contains(" listening on ")) >= self.workers
            }
            Kind::RustPeer(_) | Kind::Raw => count(&|l| l.starts_with("listening on")) >= 1,
        }
    }

    /// Node workers' pids by cluster id, from `worker <id> pid <pid> listening on ...`.
    pub(crate) fn node_worker_pids(&self) -> Vec<(u64, u32)> {
        let lines = self.lines.lock().expect("lines lock");
        lines
            .iter()
            .filter_map(|(_, l)| {
                let mut words = l.split_whitespace();
                (words.next()? == "worker").then_some(())?;
                let id = words.next()?.parse().ok()?;
                (words.next()? == "pid").then_some(())?;
                let pid = words.next()?.parse().ok()?;
                Some((id, pid))
            })
            .collect()
    }

    /// Waits until the process reported all workers up and `GET /` answers
    /// 200 `hello world\n` on a new connection; the time from spawn to then.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = self.spawned_at + timeout;
        let mut answered = false;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); stdout: {:?}",
                    self.server.label,
                    self.lines.lock().expect("lines lock")
                );
            }
            let reported = self.reported_ready();
            if !answered {
                let probe = match &self.tls {
                    Some(config) => load::probe_tls(self.addr, config),
                    None => load::probe(self.addr, "/", Duration::from_secs(1)),
                };
                if let Ok(probe) = probe {
                    if probe.status != 200 || probe.body != b"hello world\n" {
                        bail!(
                            "{}: GET / answered {} {:?}, not 200 `hello world\\n`",
                            self.server.label,
                            probe.status,
                            String::from_utf8_lossy(&probe.body)
                        );
                    }
                    answered = true;
                }
            }
            if answered && reported {
                return Ok(self.spawned_at.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready within {timeout:?} (answered: {answered}, reported all workers: {reported})",
                    self.server.label
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// SIGTERM to the tree, then SIGKILL to what is left after a grace period.
    pub(crate) fn stop(mut self) {
        self.stop_in_place();
    }

    fn stop_in_place(&mut self) {
        let pid = self.pid();
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let tree = procfs::process_tree(pid);
        procfs::signal_tree(pid, libc::SIGTERM);
        let _ = test_support::wait_timeout(&mut self.child, Duration::from_secs(3));
        // Whatever of the tree is still there (node workers, a stuck server).
        for p in tree {
            if std::path::Path::new(&format!("/proc/{p}")).exists() {
                procfs::signal(p, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_in_place();
    }
}

/// How to start a server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    pub(crate) workers: usize,
    /// `--chaos` (cluster_thread: `GET /panic` crashes a worker).
    pub(crate) chaos: bool,
    /// Restrict the server (and its children) to this CPU.
    pub(crate) cpu: Option<usize>,
    /// cluster_thread: `examples/hello` in its lean build instead of
    /// `same_port` (the memory rows; it has no `--chaos`).
    pub(crate) lean: bool,
}

impl Launch {
    pub(crate) fn workers(workers: usize) -> Launch {
        Launch {
            workers,
            chaos: false,
            cpu: None,
            lean: false,
        }
    }
}

/// Where a server's stderr goes: one file per server and launch settings
/// (pinned and unpinned copies run at the same time).
pub(crate) fn log_path(logs: &Path, server: &Server, launch: Launch) -> PathBuf {
    let cpu = launch.cpu.map_or(String::new(), |c| format!("-cpu{c}"));
    logs.join(format!("{}-{}w{cpu}.stderr", server.id, launch.workers))
}

/// `--tls-cert <pem> --tls-key <pem>` for a TLS server (both programs take
/// these), nothing for the others.
fn tls_args(programs: &Programs, server: &Server) -> anyhow::Result<Vec<String>> {
    if !server.tls {
        return Ok(Vec::new());
    }
    let files = programs.tls.as_ref().context("no TLS certificate made")?;
    Ok(vec![
        "--tls-cert".into(),
        files.cert.display().to_string(),
        "--tls-key".into(),
        files.key.display().to_string(),
    ])
}

/// Starts `server` on a free port of 127.0.0.1; its stderr goes to
/// [`log_path`].
pub(crate) fn spawn(
    programs: &Programs,
    server: &Server,
    launch: Launch,
    logs: &Path,
) -> anyhow::Result<Running> {
    let Launch {
        workers,
        chaos,
        cpu,
        lean,
    } = launch;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (program, args, envs): (PathBuf, Vec<String>, Vec<(&str, String)>) = match server.kind {
        Kind::ClusterThread(mode) if lean => {
            let bin = programs.hello.clone().context("the lean hello not built")?;
            let envs = vec![
                ("CLUSTER_THREAD_WORKERS", workers.to_string()),
                ("CLUSTER_THREAD_BALANCE", mode.into()),
                ("HOST", "127.0.0.1".into()),
                ("PORT", port.to_string()),
            ];
            (bin, vec![], envs)
        }
        Kind::ClusterThread(mode) => {
            let mut args = vec![
                "--workers".into(),
                workers.to_string(),
                // Where the peers listen: a wildcard address would cost a
                // `getsockname` per connection (its local address).
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--balance".into(),
                mode.into(),
            ];
            if chaos {
                args.push("--chaos".into());
            }
            args.extend(tls_args(programs, server)?);
            let bin = programs.same_port.clone().context("same_port not built")?;
            (bin, args, vec![])
        }
        Kind::RustPeer(_) | Kind::Raw => {
            let which = match server.kind {
                Kind::RustPeer(name) => name,
                _ => "raw",
            };
            let bin = programs.peers.clone().context("bench-peers not built")?;
            let mut args = vec![
                which.into(),
                "--workers".into(),
                workers.to_string(),
                "--port".into(),
                port.to_string(),
            ];
            args.extend(tls_args(programs, server)?);
            (bin, args, vec![])
        }
        Kind::Node(policy) => {
            let (node, script) = programs.node.clone().context("node not found")?;
            let args = vec![
                script.display().to_string(),
                "--workers".into(),
                workers.to_string(),
                "--port".into(),
                port.to_string(),
            ];
            (
                node,
                args,
                vec![("NODE_CLUSTER_SCHED_POLICY", policy.into())],
            )
        }
    };
    let mut cmd = Command::new(&program);
    std::fs::create_dir_all(logs)?;
    let stderr = std::fs::File::create(log_path(logs, server, launch))?;
    cmd.args(&args)
        .env_remove("CLUSTER_THREAD_WORKERS")
        .env_remove("CLUSTER_THREAD_BALANCE")
        .env_remove("CLUSTER_THREAD_KERNEL_STEERING")
        // As deployed: no backtrace capture on a panic, no debug logging.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("RUST_LOG")
        .envs(envs)
        .envs(server.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let spawned_at = Instant::now();
    let mut child = procfs::spawn_on(&mut cmd, cpu)
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("child stdout")?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock()
                .expect("lines lock")
                .push((Instant::now(), line));
        }
    });
    Ok(Running {
        server: *server,
        workers,
        lean,
        addr,
        tls: server
            .tls
            .then(|| programs.tls.as_ref().map(|t| t.client.clone()))
            .flatten(),
        child,
        spawned_at,
        lines,
    })
}
