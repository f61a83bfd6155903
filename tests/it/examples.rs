//! The examples' contract (the README's examples table): each example runs
//! as a child process; its printed lines, responses and exit status are
//! checked.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Instant;

use cluster_thread::http::rustls::pki_types::CertificateDer;
use test_support::{get, local, Run, DEADLINE};

#[test]
fn messaging_prints_every_workers_answer_and_exits_0() {
    let mut run = Run::start("messaging", &["3"]);
    assert!(run.line(|_| true).starts_with("Primary "));
    let mut present = Vec::new();
    for _ in 0..3 {
        present.push(run.line(|l| l.ends_with(" is present")));
    }
    present.sort();
    for (slot, line) in present.iter().enumerate() {
        let want = format!(
            "worker {} in slot {slot} on thread cluster-worker-{slot} is present",
            slot + 1
        );
        assert_eq!(*line, want);
    }
    run.line(|l| l == "all 3 workers answered; disconnecting");
    for _ in 0..3 {
        run.line(|l| l.ends_with("exited: returned"));
    }
    assert!(run.exit_status().success());
}

/// `GET /` on new connections answers `hello world` until `n` different
/// workers (by `x-worker-id`) have answered; fails at the deadline.
fn hello_from_workers(addr: std::net::SocketAddr, n: usize) {
    let mut workers = HashSet::new();
    let end = Instant::now() + DEADLINE;
    while workers.len() < n {
        assert!(Instant::now() < end, "only workers {workers:?} answered");
        let r = get(addr, "/").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello world\n"));
        workers.insert(r.worker.expect("x-worker-id"));
    }
}

#[test]
fn same_port_serves_hello_world_from_every_worker_and_exits_0_on_sigterm() {
    let mut run = Run::start("same_port", &["--workers", "2", "--port", "0"]);
    let pid = run.child.id();
    assert_eq!(run.line(|_| true), format!("Primary {pid} is running"));
    run.line(|l| l.starts_with(&format!("Worker {pid}, ")) && l.ends_with(" started"));
    run.line(|l| l.starts_with(&format!("Worker {pid}, ")) && l.ends_with(" started"));
    let addr = local(&run.line(|l| l.starts_with("listening on 0.0.0.0:")));
    hello_from_workers(addr, 2);
    // GET /peer: the client address the server saw.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.ends_with(&format!("\r\n\r\n{me}\n")), "{text}");
    // Without --chaos, /panic is an ordinary page.
    assert_eq!(get(addr, "/panic").unwrap().status, 200);
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn hello_serves_from_every_worker_on_host_and_port_from_the_environment() {
    let mut command = std::process::Command::new(test_support::example("hello"));
    command
        .env("CLUSTER_THREAD_WORKERS", "2")
        .env("CLUSTER_THREAD_BALANCE", "round-robin")
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env(
            test_support::SHUTDOWN_TIMEOUT_ENV,
            test_support::LONG_SHUTDOWN,
        );
    let mut run = Run::command("hello", command);
    let first = run.line(|l| l.starts_with("worker ") && l.contains(" listening on 127.0.0.1:"));
    let second = run.line(|l| l.starts_with("worker ") && l.contains(" listening on 127.0.0.1:"));
    // One shared socket: both workers name the same address.
    let addr = |line: &str| line.rsplit(' ').next().map(str::to_owned);
    assert_eq!(addr(&first), addr(&second), "{first} / {second}");
    let addr = local(&first);
    hello_from_workers(addr, 2);
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn same_port_chaos_a_panic_costs_one_request_and_the_worker_is_replaced() {
    let mut run = Run::start(
        "same_port",
        &[
            "--workers",
            "2",
            "--port",
            "0",
            "--balance",
            "os",
            "--chaos",
        ],
    );
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    assert_eq!(get(addr, "/sleep/20").unwrap().body, "slept 20\n");
    // A slow request in flight on some worker while another request panics.
    let slow = std::thread::spawn(move || get(addr, "/sleep/300"));
    let panicked = get(addr, "/panic");
    assert!(
        panicked.as_ref().map_or(true, |r| r.status >= 500),
        "{panicked:?}"
    );
    let r = slow
        .join()
        .unwrap()
        .expect("the slow request survives the panic");
    assert_eq!((r.status, r.body.as_str()), (200, "slept 300\n"));
    // The replacement (id 3 or more) serves.
    let end = Instant::now() + DEADLINE;
    loop {
        let r = get(addr, "/").unwrap();
        assert_eq!(r.status, 200);
        if r.worker
            .and_then(|w| w.parse::<u64>().ok())
            .is_some_and(|id| id >= 3)
        {
            break;
        }
        assert!(Instant::now() < end, "no replacement worker answered");
    }
    run.signal(libc::SIGINT);
    assert!(run.exit_status().success());
}

#[test]
fn different_ports_gives_each_slot_its_own_port() {
    let base = test_support::free_port_run(2);
    let mut run = Run::start(
        "different_ports",
        &["--workers", "2", "--port", &base.to_string()],
    );
    let mut ports = HashSet::new();
    for _ in 0..2 {
        let line = run.line(|l| l.starts_with("worker ") && l.contains(" listening on 0.0.0.0:"));
        let words: Vec<&str> = line.split(' ').collect();
        let (id, addr) = (words[1].to_owned(), local(words[4]));
        ports.insert(addr.port());
        let r = get(addr, "/").unwrap();
        assert_eq!(
            (r.status, r.worker.as_deref(), r.body.as_str()),
            (200, Some(id.as_str()), "hello world\n")
        );
    }
    assert_eq!(ports, HashSet::from([base, base + 1]));
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn same_port_healthz_metrics_and_drain_delay() {
    // Far longer than the test: only the second SIGINT below ends the delay.
    let mut run = Run::start(
        "same_port",
        &[
            "--workers",
            "2",
            "--port",
            "0",
            "--healthz",
            "/healthz",
            "--metrics",
            "/metrics",
            "--status",
            "/status",
            "--drain-delay",
            "10m",
        ],
    );
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    // The status page: both slots serving, once the second worker serves
    // too (the first "listening on" line may come before).
    let end = Instant::now() + DEADLINE;
    loop {
        let status = get(addr, "/status?format=json").unwrap();
        assert_eq!(status.status, 200);
        assert!(status.body.starts_with("{\"phase\":\""), "{}", status.body);
        if status.body.matches("\"state\":\"serving\"").count() == 2 {
            break;
        }
        assert!(Instant::now() < end, "{}", status.body);
    }
    let health = get(addr, "/healthz").unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let metrics = get(addr, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("cluster_thread_requests_total{"),
        "{}",
        metrics.body
    );
    // A graceful stop (SIGINT as SIGTERM).
    run.signal(libc::SIGINT);
    // The drain delay: health checks fail at once, the rest is served.
    let end = Instant::now() + DEADLINE;
    while get(addr, "/healthz").unwrap().status != 503 {
        assert!(Instant::now() < end, "/healthz still 200 after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = get(addr, "/").unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "hello world\n"));
    // A second SIGINT (the first was handled: 503 above) skips the delay.
    run.signal(libc::SIGINT);
    assert!(run.exit_status().success());
}

#[test]
fn same_port_refuses_a_bad_drain_delay() {
    let mut run = Run::start("same_port", &["--drain-delay", "soon"]);
    let status = run.exit_status();
    assert_eq!(status.code(), Some(2), "{status}");
}

#[test]
fn different_ports_answers_healthz_and_metrics_on_each_port() {
    let base = test_support::free_port_run(2);
    let mut run = Run::start(
        "different_ports",
        &[
            "--workers",
            "2",
            "--port",
            &base.to_string(),
            "--healthz",
            "/healthz",
            "--metrics",
            "/metrics",
        ],
    );
    for _ in 0..2 {
        let line = run.line(|l| l.starts_with("worker ") && l.contains(" listening on 0.0.0.0:"));
        let addr = local(line.rsplit(' ').next().unwrap());
        assert_eq!(get(addr, "/healthz").unwrap().body, "ok\n");
        let metrics = get(addr, "/metrics").unwrap();
        assert!(
            metrics.body.contains("cluster_thread_workers "),
            "{}",
            metrics.body
        );
    }
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn axum_counts_hits_across_every_worker() {
    let mut run = Run::start("axum", &["--workers", "2", "--port", "0"]);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    for n in 1..=6 {
        let r = get(addr, "/").unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.ends_with(&format!(": hit {n}\n")), "{}", r.body);
    }
    assert_eq!(get(addr, "/hits").unwrap().body, "6\n");
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn echo_tcp_echoes_lines_with_the_worker_id() {
    let mut run = Run::start("echo_tcp", &["--port", "0"]);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let (id, text) = line.trim_end().split_once(": ").unwrap();
    assert!(id.parse::<u64>().is_ok() && text == "ping", "{line:?}");
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn hot_upgrade_hands_the_port_to_a_new_process_on_sigquit() {
    let mut run = Run::start("hot_upgrade", &["--port", "0"]);
    let old = run.child.id();
    let addr = local(&run.line(|l| l.starts_with(&format!("pid {old} listening on "))));
    assert_eq!(
        get(addr, "/").unwrap().body,
        format!("served by pid {old}\n")
    );
    run.signal(libc::SIGQUIT);
    // The new process prints to the same stdout, and serves the same address.
    let line = run.line(|l| {
        l.starts_with("pid ")
            && l.contains(" listening on ")
            && !l.starts_with(&format!("pid {old} "))
    });
    let new: u32 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(local(line.rsplit(' ').next().unwrap()), addr);
    assert!(
        run.exit_status().success(),
        "the old process drains and exits 0"
    );
    assert_eq!(
        get(addr, "/").unwrap().body,
        format!("served by pid {new}\n")
    );
    test_support::signal(new, libc::SIGTERM);
    let end = Instant::now() + DEADLINE;
    while test_support::alive(new) {
        assert!(Instant::now() < end, "the new process did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A program built with `Cluster::builder()` upgrades as macro programs do
/// once it asks for it (`hot_upgrade()`), instead of dumping core.
#[test]
fn axum_hot_upgrades_on_sigquit() {
    let mut run = Run::start("axum", &["--workers", "2", "--port", "0"]);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    assert_eq!(get(addr, "/hits").unwrap().status, 200);
    run.signal(libc::SIGQUIT);
    // The new process says so on the same stdout, then the old one exits 0.
    run.line(|l| l.starts_with("listening on "));
    assert!(
        run.exit_status().success(),
        "the old process drains and exits 0"
    );
    // The new process has its own counter: it starts again from zero.
    assert_eq!(get(addr, "/hits").unwrap().body, "0\n");
    let pid = served_by(addr);
    test_support::signal(pid, libc::SIGTERM);
    let end = Instant::now() + DEADLINE;
    while test_support::alive(pid) {
        assert!(Instant::now() < end, "the new process did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The pid of the process listening on `addr` (found through /proc).
fn served_by(addr: std::net::SocketAddr) -> u32 {
    let hex_port = format!(":{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inode = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1].ends_with(&hex_port) && f[3] == "0A")
        .map(|f| f[9].to_owned())
        .expect("a listening socket on the port");
    let link = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(link.as_str())) {
                if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    if pid != std::process::id() {
                        return pid;
                    }
                }
            }
        }
    }
    panic!("nobody holds {link}");
}

/// A test CA and a server certificate for 127.0.0.1 and localhost in
/// `dir`: (`cert.pem`, `key.pem`), and the CA's certificate for the client
/// (also in `ca.pem`).
pub(crate) fn test_certificate(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    CertificateDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "same_port test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    // Its own name: with the CA's (rcgen's default for both), OpenSSL-based
    // clients take the certificate for a self-signed one.
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    // For clients that read the CA from a file.
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    (cert_path, key_path, ca.der().clone())
}

/// `same_port --workers 2 --port 0` with `flags`, and with `tls`
/// `--tls-cert`/`--tls-key` of a fresh certificate in a directory of its
/// own (`tag`, under the target's temporary directory); running, its TCP
/// address known.
struct SamePort {
    run: Run,
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
    /// The CA clients trust (with `tls`).
    ca: Option<CertificateDer<'static>>,
}

impl SamePort {
    fn start(tag: &str, tls: bool, flags: &[&str]) -> SamePort {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("same-port-{tag}-{}", std::process::id()));
        let mut args: Vec<String> = ["--workers", "2", "--port", "0"]
            .iter()
            .chain(flags)
            .map(|a| a.to_string())
            .collect();
        let ca = tls.then(|| {
            let (cert, key, ca) = test_certificate(&dir);
            for (flag, path) in [("--tls-cert", cert), ("--tls-key", key)] {
                args.push(flag.to_owned());
                args.push(path.to_str().unwrap().to_owned());
            }
            ca
        });
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = Run::start("same_port", &args);
        let addr = local(&run.line(|l| l.starts_with("listening on ") && !l.contains("udp://")));
        SamePort { run, addr, dir, ca }
    }

    fn ca(&self) -> &CertificateDer<'static> {
        self.ca.as_ref().expect("started with TLS")
    }

    /// SIGTERM: it exits 0; its directory is removed.
    fn stop(mut self) {
        self.run.signal(libc::SIGTERM);
        assert!(self.run.exit_status().success());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTPS request over a fresh connection offering `alpn`: the ALPN
/// protocol chosen and the raw response (read for HTTP/1.1 only).
fn https_get(
    addr: std::net::SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    path: &str,
) -> (Option<Vec<u8>>, String, std::net::SocketAddr) {
    https_get_after(addr, b"", ca, alpn, path)
}

/// [`https_get`] with `head` (a PROXY header) sent before the handshake.
fn https_get_after(
    addr: std::net::SocketAddr,
    head: &[u8],
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    path: &str,
) -> (Option<Vec<u8>>, String, std::net::SocketAddr) {
    use cluster_thread::http::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let me = tcp.local_addr().unwrap();
    tcp.write_all(head).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut text = String::new();
    if alpn.as_deref() != Some(b"h2") {
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let head = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
        tls.write_all(head.as_bytes()).unwrap();
        // The server closes after the answer; an unclean close is fine here.
        let _ = tls.read_to_string(&mut text);
    }
    (alpn, text, me)
}

#[test]
fn same_port_serves_https_with_h2_and_http1_on_one_port() {
    let server = SamePort::start("tls", true, &[]);
    let (addr, ca) = (server.addr, server.ca());
    let (alpn, text, _) = https_get(addr, ca, &[b"http/1.1"], "/");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello world\n"), "{text}");
    let (_, text, me) = https_get(addr, ca, &[b"http/1.1"], "/peer");
    assert!(text.ends_with(&format!("\r\n\r\n{me}\n")), "{text}");
    // The same port offers HTTP/2.
    let (alpn, ..) = https_get(addr, ca, &[b"h2", b"http/1.1"], "/");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    // Plain HTTP on it is refused; the workers serve on.
    let plain = get(addr, "/");
    assert!(
        plain.as_ref().map_or(true, |r| r.status != 200),
        "{plain:?}"
    );
    let (_, text, _) = https_get(addr, ca, &[b"http/1.1"], "/");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    server.stop();
}

/// TLS sessions across a hot upgrade (issue 23.4), with a client not ours:
/// `openssl s_client -sess_out` before SIGQUIT, `-sess_in` after, TLS 1.3
/// and 1.2: the new process resumes the sessions (the ticket keys came over
/// the upgrade's private channel) and counts them resumed in `/metrics`.
#[test]
fn same_port_tls_sessions_are_resumed_after_a_hot_upgrade() {
    let Some(openssl) = test_support::tool(&["openssl"], "openssl") else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("same-port-tickets-{}", std::process::id()));
    let (cert, key, ca) = test_certificate(&dir);
    let mut run = Run::start(
        "same_port",
        &[
            "--workers",
            "2",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--metrics",
            "/metrics",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let old = run.pid();
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    let versions = ["-tls1_3", "-tls1_2"];
    let session = |version: &str| dir.join(format!("session{version}.pem"));
    for version in versions {
        let (resumed, _) = test_support::s_client(&openssl, addr, &session(version), version);
        assert!(!resumed, "{version}: nothing to resume yet");
    }
    run.signal(libc::SIGQUIT);
    run.line(|l| l.starts_with("listening on "));
    assert!(run.exit_status().success(), "the old process exits 0");
    let new = served_by(addr);
    assert_ne!(new, old);
    for version in versions {
        let (resumed, worker) = test_support::s_client(&openssl, addr, &session(version), version);
        assert!(
            resumed,
            "{version}: a new session after the upgrade (worker {worker} of process {new})"
        );
    }
    let (_, metrics, _) = https_get(addr, &ca, &[b"http/1.1"], "/metrics");
    let resumed: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("cluster_thread_tls_handshakes_total{") && l.contains("resumed=\"true\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(resumed >= 2, "{metrics}");
    eprintln!("openssl: TLS 1.3 and 1.2 sessions of process {old} resumed by process {new}; {resumed} resumed handshakes in its /metrics");
    test_support::signal(new, libc::SIGTERM);
    test_support::wait_gone(new);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PROXY protocol v2 header (TCP over IPv4) naming `client`.
fn proxy_v2(client: std::net::SocketAddrV4, server: std::net::SocketAddrV4) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c".to_vec();
    h.extend_from_slice(&client.ip().octets());
    h.extend_from_slice(&server.ip().octets());
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&server.port().to_be_bytes());
    h
}

/// `--proxy-protocol` with `--tls-cert`: the header comes before the TLS
/// handshake (v1 and v2, written raw, then a rustls client), and `/peer`
/// over HTTPS answers the client it names, in sticky balance too (its key);
/// a TLS client without a header is closed, and the workers serve on.
#[test]
fn same_port_proxy_protocol_before_tls() {
    for balance in ["round-robin", "sticky"] {
        let server = SamePort::start(
            "proxy-tls",
            true,
            &["--balance", balance, "--proxy-protocol"],
        );
        let (addr, ca) = (server.addr, server.ca());
        let v1 = b"PROXY TCP4 198.51.100.4 192.0.2.1 41000 443\r\n";
        let (alpn, text, _) = https_get_after(addr, v1, ca, &[b"http/1.1"], "/peer");
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "{balance}");
        assert!(
            text.ends_with("\r\n\r\n198.51.100.4:41000\n"),
            "{balance}: {text}"
        );
        let client = "203.0.113.9:52000".parse().unwrap();
        let v2 = proxy_v2(client, "192.0.2.1:443".parse().unwrap());
        let (_, text, _) = https_get_after(addr, &v2, ca, &[b"http/1.1"], "/peer");
        assert!(
            text.ends_with("\r\n\r\n203.0.113.9:52000\n"),
            "{balance}: {text}"
        );
        // HTTP/2 after a header too.
        let (alpn, ..) = https_get_after(addr, &v2, ca, &[b"h2"], "/");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{balance}");
        // A TLS client that sends no header: its ClientHello is no PROXY
        // header, so the connection is closed before any handshake.
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
            .unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
        assert!(sink.is_empty(), "{balance}: answered {sink:?}");
        // A header then garbage: closed; the next one is served.
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        tcp.write_all(v1).unwrap();
        tcp.write_all(&[0xde; 300]).unwrap();
        let _ = tcp.read_to_end(&mut sink);
        let (_, text, _) = https_get_after(addr, v1, ca, &[b"http/1.1"], "/peer");
        assert!(text.ends_with("198.51.100.4:41000\n"), "{balance}: {text}");
        server.stop();
    }
}

/// PROXY protocol before TLS through a real HAProxy in `mode tcp` with
/// `send-proxy-v2` (TLS passthrough): `/peer` over HTTPS answers the
/// client's own address, as HAProxy saw it.
#[test]
fn same_port_tls_behind_haproxy_send_proxy_v2() {
    let Some(haproxy) = test_support::tool(&["haproxy"], "haproxy") else {
        return;
    };
    let server = SamePort::start("haproxy-tls", true, &["--proxy-protocol"]);
    let (app, ca) = (server.addr, server.ca());
    let front = test_support::free_port_run(1);
    let config = server.dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\nfrontend tls\n  bind 127.0.0.1:{front}\n  \
             default_backend app\nbackend app\n  server s1 127.0.0.1:{} send-proxy-v2\n",
            app.port()
        ),
    )
    .unwrap();
    let mut proxy = std::process::Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let front: std::net::SocketAddr = format!("127.0.0.1:{front}").parse().unwrap();
    test_support::eventually_blocking(|| TcpStream::connect(front).is_ok(), "haproxy listening");
    for _ in 0..4 {
        let (alpn, text, me) = https_get(front, ca, &[b"http/1.1"], "/peer");
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(text.ends_with(&format!("\r\n\r\n{me}\n")), "{text}");
    }
    let (alpn, ..) = https_get(front, ca, &[b"h2"], "/");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let _ = proxy.kill();
    let _ = proxy.wait();
    server.stop();
}

/// `--tls-cert`/`--tls-key` twice: each pair serves the names of its
/// certificate, the first the rest, as `openssl s_client -servername` (a
/// client not ours) sees it.
#[test]
fn same_port_serves_a_certificate_per_server_name() {
    let Some(openssl) = test_support::tool(&["openssl"], "openssl") else {
        return;
    };
    use rcgen::{CertificateParams, DnType, KeyPair};
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("same-port-sni-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (cn, names) in [
        ("first-cert", ["first.test"]),
        ("second-cert", ["second.test"]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.map(str::to_owned).to_vec()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        files.push(c.to_str().unwrap().to_owned());
        files.push(k.to_str().unwrap().to_owned());
    }
    let mut run = Run::start(
        "same_port",
        &[
            "--workers",
            "2",
            "--port",
            "0",
            "--tls-cert",
            &files[0],
            "--tls-key",
            &files[1],
            "--tls-cert",
            &files[2],
            "--tls-key",
            &files[3],
        ],
    );
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    let subject = |name: Option<&str>| {
        let mut command = std::process::Command::new(&openssl);
        command
            .args(["s_client", "-connect", &addr.to_string()])
            .stdin(std::process::Stdio::null());
        match name {
            Some(name) => command.args(["-servername", name]),
            None => command.arg("-noservername"),
        };
        let out = command.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("subject="))
            .unwrap_or_else(|| panic!("no subject in {text}"))
            .to_owned()
    };
    assert!(subject(Some("second.test")).contains("second-cert"));
    let s = subject(Some("first.test"));
    assert!(s.contains("first-cert"), "{s}");
    assert!(subject(Some("unknown.test")).contains("first-cert"));
    assert!(subject(None).contains("first-cert"));
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn same_port_serves_http3_to_a_client_not_ours_from_every_worker() {
    let mut server = SamePort::start("h3", true, &["--http3"]);
    let addr = server.addr;
    let udp = format!(":{}", addr.port());
    server
        .run
        .line(|l| l.starts_with("listening on udp://") && l.ends_with(&udp));
    // TCP answers advertise HTTP/3 on the same port number.
    let (_, text, _) = https_get(addr, server.ca(), &[b"http/1.1"], "/");
    let alt_svc = format!("alt-svc: h3=\":{}\"\r\n", addr.port());
    assert!(text.contains(&alt_svc), "{text}");
    if let Some(python) = test_support::python_module("aioquic", "aioquic") {
        let ca_path = server.dir.join("ca.pem");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/h3_get.py");
        let mut workers = HashSet::new();
        let end = Instant::now() + DEADLINE;
        // New connections until both workers have answered, three
        // requests on each.
        while workers.len() < 2 {
            assert!(
                Instant::now() < end,
                "only workers {workers:?} answered over HTTP/3"
            );
            let out = Command::new(&python)
                .args([
                    script,
                    &addr.port().to_string(),
                    ca_path.to_str().unwrap(),
                    "4",
                    "3",
                    "/",
                ])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), 12, "{stdout}");
            for line in lines {
                let f: Vec<&str> = line.splitn(4, ' ').collect();
                assert_eq!((f[1], f[3]), ("200", "hello world"), "{line}");
                workers.insert(f[2].to_owned());
            }
        }
    }
    server.stop();
}

#[test]
fn same_port_wants_both_tls_flags() {
    let mut run = Run::start("same_port", &["--tls-cert", "cert.pem"]);
    assert_eq!(run.exit_status().code(), Some(2));
}

/// Runs `same_port` with `rust_log` (or without RUST_LOG), stderr captured.
fn same_port_logging(
    rust_log: Option<&str>,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::process::{Command, Stdio};
    let mut command = Command::new(test_support::example("same_port"));
    command
        .args(["--workers", "1", "--port", "0", "--chaos"])
        .env_remove("CLUSTER_THREAD_WORKERS")
        .env_remove("CLUSTER_THREAD_BALANCE")
        .env(
            test_support::SHUTDOWN_TIMEOUT_ENV,
            test_support::LONG_SHUTDOWN,
        )
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    (child, rx)
}

/// The first line `want` accepts, within the deadline; every line read is kept.
fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if want(&line) {
                    return line;
                }
            }
            Err(e) => panic!("no such line ({e}); printed: {seen:#?}"),
        }
    }
}

#[test]
fn same_port_logs_restarts_reloads_and_connections_with_rust_log() {
    let (mut child, rx) = same_port_logging(Some("info,cluster_http=debug"));
    let mut seen = Vec::new();
    let line = wait_line(&rx, &mut seen, |l| l.starts_with("listening on "));
    let addr = local(&line);
    // A connection, at debug, in its worker's span and its own (the peer).
    let mut s = TcpStream::connect(addr).unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.read_to_string(&mut text).unwrap();
    let open = wait_line(&rx, &mut seen, |l| l.contains("connection open"));
    assert!(open.contains("worker{id=1 slot=0}"), "{open}");
    assert!(
        open.contains(&format!("connection{{peer=Some({me})}}")),
        "{open}"
    );
    // A restart, at info.
    let _ = get(addr, "/panic");
    let restart = wait_line(&rx, &mut seen, |l| l.contains("restarting"));
    assert!(
        restart.contains("INFO worker{id=1 slot=0}: restarting reason="),
        "{restart}"
    );
    // A reload (SIGHUP), at info.
    test_support::signal(child.id(), libc::SIGHUP);
    wait_line(&rx, &mut seen, |l| l.contains("rolling reload done"));
    test_support::signal(child.id(), libc::SIGTERM);
    wait_line(&rx, &mut seen, |l| {
        l.contains("SIGTERM: stopping gracefully")
    });
    assert!(child.wait().unwrap().success());
}

/// Without RUST_LOG a macro program logs at info (its own subscriber):
/// each line names its worker; a restart says so with its reason, a
/// reload too; nothing at debug.
#[test]
fn same_port_logs_its_workers_life_at_info_without_rust_log() {
    let (mut child, rx) = same_port_logging(None);
    let mut seen = Vec::new();
    let line = wait_line(&rx, &mut seen, |l| l.starts_with("listening on "));
    let addr = local(&line);
    assert_eq!(get(addr, "/").unwrap().status, 200);
    let _ = get(addr, "/panic");
    let restart = wait_line(&rx, &mut seen, |l| l.contains("restarting"));
    assert!(
        restart.contains(" INFO worker{id=1 slot=0}: restarting reason=")
            && restart.contains("panicked: GET /panic"),
        "{restart}"
    );
    test_support::signal(child.id(), libc::SIGHUP);
    wait_line(&rx, &mut seen, |l| l.contains("INFO rolling reload done"));
    test_support::signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    seen.extend(rx.iter());
    let debug: Vec<&String> = seen.iter().filter(|l| l.contains("DEBUG")).collect();
    assert!(debug.is_empty(), "{debug:#?}");
}

/// `RUST_LOG=off`: nothing but what the program prints itself.
#[test]
fn same_port_is_silent_on_stderr_with_rust_log_off() {
    let (mut child, rx) = same_port_logging(Some("off"));
    let mut seen = Vec::new();
    let line = wait_line(&rx, &mut seen, |l| l.starts_with("listening on "));
    let addr = local(&line);
    assert_eq!(get(addr, "/").unwrap().status, 200);
    test_support::signal(child.id(), libc::SIGHUP);
    // The reload is done once a new worker (id 2) answers.
    let end = Instant::now() + DEADLINE;
    while get(addr, "/").unwrap().worker.as_deref() != Some("2") {
        assert!(Instant::now() < end, "the reload did not finish");
    }
    test_support::signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    // Everything printed (stdout's lines and stderr's, both ended now).
    seen.extend(rx.iter());
    let logs: Vec<&String> = seen
        .iter()
        .filter(|l| {
            !(l.starts_with("Primary ")
                || l.starts_with("Worker ")
                || l.starts_with("listening on "))
        })
        .collect();
    assert!(logs.is_empty(), "{logs:#?}");
}

/// `--proxy-protocol`: behind a balancer that sends PROXY headers, `/peer`
/// answers the client the header names; a connection without one is closed.
#[test]
fn same_port_proxy_protocol_gives_the_balancers_client() {
    let server = SamePort::start("proxy", false, &["--proxy-protocol"]);
    let addr = server.addr;
    let ask = |head: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(head).unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let text = ask(b"PROXY TCP4 198.51.100.4 192.0.2.1 41000 8000\r\n");
    assert!(text.ends_with("\r\n\r\n198.51.100.4:41000\n"), "{text}");
    assert_eq!(ask(b""), "", "a request without a PROXY header is answered");
    server.stop();
}
