//! "It never loses a connection it accepted": the `same_port` example under
//! steady load while workers panic, the cluster reloads, or the binary is
//! upgraded in place. Each test prints its figures; the load runs
//! `CLUSTER_THREAD_FAULT_SECONDS` (3 s by default, longer from
//! `cargo xtask soak`).

use std::time::{Duration, Instant};

use test_support::{alive, get, local, seconds, signal, tls_get, Load, Run, DEADLINE};

fn start(args: &[&str]) -> (Run, std::net::SocketAddr) {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--metrics", "/metrics"])
        .collect();
    let mut run = Run::start("same_port", &args);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    (run, addr)
}

/// Open connections the cluster's draining workers moved to live ones, from
/// one scrape of `/metrics`.
fn migrated(addr: std::net::SocketAddr) -> u64 {
    count(
        &get(addr, "/metrics").expect("a scrape").body,
        "cluster_thread_cluster_connections_migrated_total ",
    )
}

/// The sum of the samples of the lines starting with `prefix`.
fn count(metrics: &str, prefix: &str) -> u64 {
    let samples: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
        .collect();
    assert!(!samples.is_empty(), "no {prefix:?} in {metrics}");
    samples.iter().sum()
}

/// A worker panics every 200 ms under steady load: no request fails but the
/// ones that panicked, the port never refuses, no connection hangs.
fn panics_under_load(balance: &'static str, keep_alive: bool) {
    let (mut run, addr) = start(&[
        "--workers",
        "2",
        "--port",
        "0",
        "--chaos",
        "--balance",
        balance,
    ]);
    let load = Load::start(addr, 4, keep_alive);
    load.wait_for_more(100);
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut panics = 0;
    while Instant::now() < end {
        // Each /panic request fails alone (its connection is dropped).
        if get(addr, "/panic").is_err() {
            panics += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    load.wait_for_more(100);
    let (ok, failed, closed) = load.finish();
    let migrated = migrated(addr);
    eprintln!(
        "panics under load ({balance}, {}): {ok} served, {failed} failed, {closed} idle keep-alive closes seen by clients, {migrated} connections migrated, {panics} workers panicked",
        if keep_alive { "keep-alive" } else { "new connection per request" }
    );
    assert!(panics >= 5, "only {panics} panics");
    assert_eq!(
        failed, 0,
        "{balance}: requests failed while workers panicked"
    );
    if keep_alive {
        // The workers' keep-alive connections moved to the live worker.
        assert_eq!(closed, 0, "{balance}: clients saw idle connections close");
        assert!(migrated > 0);
    }
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn panics_every_200ms_round_robin_fresh_connections() {
    panics_under_load("round-robin", false);
}

#[test]
fn panics_every_200ms_reuseport_fresh_connections() {
    panics_under_load("reuseport", false);
}

#[test]
fn panics_every_200ms_round_robin_keep_alive() {
    panics_under_load("round-robin", true);
}

/// A storm of request-triggered panics (4 clients sending `GET /panic`
/// nonstop) must not take the service down: the workers it kills are
/// replaced at once, the slots are never errored, legitimate requests are
/// answered throughout, and once the storm stops `GET /` answers again.
#[test]
fn a_storm_of_panics_does_not_stop_the_service() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let (mut run, addr) = start(&["--workers", "2", "--port", "0", "--chaos"]);
    let load = Load::start(addr, 2, false);
    load.wait_for_more(50);
    let stop = Arc::new(AtomicBool::new(false));
    let panics = Arc::new(AtomicU64::new(0));
    let storm: Vec<_> = (0..4)
        .map(|_| {
            let (stop, panics) = (stop.clone(), panics.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(addr, "/panic").is_err() {
                        panics.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds()));
    stop.store(true, Ordering::Relaxed);
    for t in storm {
        t.join().unwrap();
    }
    // Served again once the storm has stopped (bounded, not timed).
    let end = Instant::now() + DEADLINE;
    while !get(addr, "/").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < end, "not serving after the storm");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, failed, _) = load.finish();
    let panics = panics.load(Ordering::Relaxed);
    eprintln!(
        "panic storm: {panics} requests panicked their worker; legitimate requests: {ok} answered, {failed} failed ({:.1} % answered)",
        100.0 * ok as f64 / (ok + failed).max(1) as f64
    );
    assert!(panics >= 20, "only {panics} panics: no storm");
    assert_eq!(failed, 0, "legitimate requests failed during the storm");
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success(), "the slots were errored");
}

/// SIGHUP reloads every worker, one by one, while traffic flows.
fn reload_under_load(keep_alive: bool) {
    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let load = Load::start(addr, 4, keep_alive);
    load.wait_for_more(100);
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut reloads = 0;
    while Instant::now() < end || reloads == 0 {
        run.signal(libc::SIGHUP);
        // Two new workers start per reload.
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        reloads += 1;
        load.wait_for_more(50);
    }
    let (ok, failed, closed) = load.finish();
    let migrated = migrated(addr);
    eprintln!(
        "reload under load ({}): {ok} served, {failed} failed, {closed} idle keep-alive closes seen by clients, {migrated} connections migrated, {reloads} reloads",
        if keep_alive { "keep-alive" } else { "new connection per request" }
    );
    assert_eq!(failed, 0, "requests failed during reloads");
    if keep_alive {
        assert_eq!(closed, 0, "clients saw idle connections close");
        assert!(migrated > 0);
    }
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

/// SIGHUP in a loop under HTTPS keep-alive load (`same_port --tls-cert`):
/// each draining worker's idle TLS connections move with their rustls
/// sessions to live workers, so no request fails and no client sees its
/// connection close (before in-process TLS migration: one close per idle
/// connection per reload).
#[test]
fn rolling_reload_tls_keep_alive() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("reload-tls-{}", std::process::id()));
    let (cert, key, ca) = crate::examples::test_certificate(&dir);
    let (mut run, addr) = start(&[
        "--workers",
        "2",
        "--port",
        "0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let config = test_support::tls_client_config(&ca);
    let load = Load::start_tls(addr, 4, true, config.clone());
    load.wait_for_more(100);
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut reloads = 0;
    while Instant::now() < end || reloads == 0 {
        run.signal(libc::SIGHUP);
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        reloads += 1;
        load.wait_for_more(50);
    }
    let (ok, failed, closed) = load.finish();
    let metrics = tls_get(addr, &config, "/metrics").expect("a scrape").body;
    let migrated = count(
        &metrics,
        "cluster_thread_cluster_connections_migrated_total ",
    );
    let failures = count(&metrics, "cluster_thread_tls_handshake_failures_total{");
    eprintln!(
        "reload under TLS keep-alive load: {ok} served, {failed} failed, {closed} idle keep-alive closes seen by clients, {migrated} TLS connections migrated, {reloads} reloads, {failures} handshake failures"
    );
    assert_eq!(failed, 0, "requests failed during reloads");
    assert_eq!(closed, 0, "clients saw idle TLS connections close");
    assert_eq!(failures, 0, "TLS handshakes failed");
    assert!(migrated > 0);
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rolling_reload_fresh_connections() {
    reload_under_load(false);
}

#[test]
fn rolling_reload_keep_alive() {
    reload_under_load(true);
}

/// SIGQUIT: a new process takes the sockets over; the old one drains and
/// exits 0; no request fails, and with keep-alive no client sees its
/// connection close: the old process passes them to the new one.
fn hot_upgrade_under_load(keep_alive: bool) {
    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let old = run.child.id();
    let load = Load::start(addr, 4, keep_alive);
    load.wait_for_more(100);
    run.signal(libc::SIGQUIT);
    let new = new_process(&mut run, old);
    let status = run.exit_status();
    assert!(status.success(), "the old process: {status}");
    load.wait_for_more(200);
    let (ok, failed, closed) = load.finish();
    eprintln!(
        "hot upgrade under load ({}): {ok} served, {failed} failed, {closed} idle keep-alive closes seen by clients; pid {old} -> {new}",
        if keep_alive { "keep-alive" } else { "new connection per request" }
    );
    assert_eq!(failed, 0, "requests failed during the upgrade");
    assert_eq!(closed, 0, "clients saw idle connections close");
    stop(new);
}

/// The process that took over from `old` (it writes to the same stdout);
/// killed if the test fails before it stops it.
fn new_process(run: &mut Run, old: u32) -> NewProcess {
    let primary = run.line(|l| l.starts_with("Primary ") && !l.contains(&old.to_string()));
    NewProcess(primary.split(' ').nth(1).unwrap().parse().unwrap())
}

struct NewProcess(u32);

impl std::fmt::Display for NewProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Drop for NewProcess {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, libc::SIGKILL);
        }
    }
}

fn stop(new: NewProcess) {
    signal(new.0, libc::SIGTERM);
    let end = Instant::now() + DEADLINE;
    while alive(new.0) {
        assert!(Instant::now() < end, "process {new} did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn hot_upgrade_fresh_connections() {
    hot_upgrade_under_load(false);
}

#[test]
fn hot_upgrade_keep_alive() {
    hot_upgrade_under_load(true);
}

/// Idle keep-alive connections outlive the process that accepted them: after
/// SIGQUIT and the old process's exit, each is answered on the same socket.
#[test]
fn idle_connections_survive_a_hot_upgrade() {
    use std::net::TcpStream;

    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let old = run.child.id();
    let mut conns: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let r = test_support::exchange(&mut s, "/", true).unwrap();
            assert_eq!((r.status, r.close), (200, false));
            s
        })
        .collect();
    run.signal(libc::SIGQUIT);
    let new = new_process(&mut run, old);
    let status = run.exit_status();
    assert!(status.success(), "the old process: {status}");
    // The old process is gone: only the new one can answer.
    for (i, s) in conns.iter_mut().enumerate() {
        let local = s.local_addr().unwrap();
        let r = test_support::exchange(s, "/", true)
            .unwrap_or_else(|e| panic!("connection {i} ({local}) lost in the upgrade: {e}"));
        assert_eq!((r.status, r.close), (200, false));
    }
    stop(new);
}

/// Malformed, truncated, oversized and binary requests, then random bytes:
/// each is refused (400 / 431 / closed), and the workers serve on.
#[test]
fn bad_input_is_refused_and_the_workers_serve_on() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};

    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let mut corpus: Vec<Vec<u8>> = [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET / HTTP/1.1\r\nhost\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: a\r\ncontent-length: abc\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        "G E T / HTTP/1.1\r\n\r\n",
        "GET / HT",
        "GET / HTTP/1.1\r\nhost: a\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\u{0}\u{0}\u{4}garbage-frames",
        "\r\n\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    corpus.push(
        format!(
            "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        )
        .into_bytes(),
    );
    corpus.push(
        format!(
            "GET /{} HTTP/1.1\r\nhost: a\r\n\r\n",
            "p".repeat(100 * 1024)
        )
        .into_bytes(),
    );
    corpus.push(
        format!(
            "GET / HTTP/1.1\r\nhost: a\r\n{}\r\n",
            "x: y\r\n".repeat(5000)
        )
        .into_bytes(),
    );
    // Random bytes, from a fixed seed (xorshift): the same corpus every run.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for len in (1..200).step_by(7) {
        let bytes = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        corpus.push(bytes);
    }
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for input in &corpus {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        // The server may close before reading all of a huge input.
        let _ = s.write_all(input);
        let _ = s.shutdown(Shutdown::Write);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        let status = reply.split(' ').nth(1).unwrap_or("closed").to_owned();
        assert_ne!(
            status,
            "200",
            "accepted {:?}",
            String::from_utf8_lossy(&input[..input.len().min(60)])
        );
        *answers.entry(status).or_default() += 1;
        assert_eq!(get(addr, "/").unwrap().status, 200, "the workers serve on");
    }
    eprintln!(
        "bad input: {} inputs answered {answers:?}; workers served on after each",
        corpus.len()
    );
    assert!(
        answers.contains_key("400") && answers.contains_key("431"),
        "{answers:?}"
    );
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

/// 2,000 idle connections and 50 slow clients (a header byte every 50 ms)
/// held open: new requests are still served.
#[test]
fn idle_and_slow_clients_do_not_starve_new_requests() {
    use std::io::Write;
    use std::net::TcpStream;

    // Room for both ends of 2,050 connections, here and in the child.
    let limit = test_support::raise_fd_limit(65536).expect("setrlimit");
    if limit < 4500 {
        eprintln!("skipped: RLIMIT_NOFILE limit {limit} is too low");
        return;
    }
    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let request = b"GET / HTTP/1.1\r\nhost: slow\r\n";
    let started = Instant::now();
    let mut served = 0;
    for byte in request.iter().take(10) {
        for s in &mut slow {
            let _ = s.write_all(&[*byte]);
        }
        let r = get(addr, "/").unwrap();
        assert_eq!(r.status, 200);
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "2000 idle + 50 slow connections held: {served} new requests served in {:?}",
        started.elapsed()
    );
    drop((idle, slow));
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}
