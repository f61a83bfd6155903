//! The examples' contract (DESIGN.md, "Examples every release keeps
//! working"): each example runs as a child process; its printed lines,
//! responses and exit status are checked.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// The example's binary, built by `cargo test` beside this test (or built now).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name}");
    }
    path
}

struct Run {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(name: &'static str, args: &[&str]) -> Run {
        let mut child = Command::new(example(name))
            .args(args)
            .env_remove("CLUSTER_THREAD_WORKERS")
            .env_remove("CLUSTER_THREAD_BALANCE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next printed line that satisfies `want`.
    fn line(&mut self, want: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "{}: no such line ({e}); printed: {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn exit_status(mut self) -> std::process::ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("{} did not exit", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `GET` on a fresh connection: status, `x-worker-id`, body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Option<String>, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(DEADLINE))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no response head in {raw:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let worker = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-worker-id")
            .then(|| v.trim().to_owned())
    });
    Ok((status, worker, body.to_owned()))
}

fn local(addr: &str) -> SocketAddr {
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

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

#[test]
fn same_port_serves_hello_world_from_every_worker_and_exits_0_on_sigterm() {
    let mut run = Run::start("same_port", &["--workers", "2", "--port", "0"]);
    let pid = run.child.id();
    assert_eq!(run.line(|_| true), format!("Primary {pid} is running"));
    run.line(|l| l.starts_with(&format!("Worker {pid}, ")) && l.ends_with(" started"));
    run.line(|l| l.starts_with(&format!("Worker {pid}, ")) && l.ends_with(" started"));
    let addr = local(&run.line(|l| l.starts_with("listening on 0.0.0.0:")));
    let mut workers = HashSet::new();
    let end = Instant::now() + DEADLINE;
    while workers.len() < 2 {
        assert!(Instant::now() < end, "only workers {workers:?} answered");
        let (status, worker, body) = get(addr, "/").unwrap();
        assert_eq!((status, body.as_str()), (200, "hello world\n"));
        workers.insert(worker.expect("x-worker-id"));
    }
    // Without --chaos, /panic is an ordinary page.
    assert_eq!(get(addr, "/panic").unwrap().0, 200);
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
    assert_eq!(get(addr, "/sleep/20").unwrap().2, "slept 20\n");
    // A slow request in flight on some worker while another request panics.
    let slow = std::thread::spawn(move || get(addr, "/sleep/300"));
    let panicked = get(addr, "/panic");
    assert!(
        panicked.as_ref().map_or(true, |r| r.0 >= 500),
        "{panicked:?}"
    );
    let (status, _, body) = slow
        .join()
        .unwrap()
        .expect("the slow request survives the panic");
    assert_eq!((status, body.as_str()), (200, "slept 300\n"));
    // The replacement (id 3 or more) serves.
    let end = Instant::now() + DEADLINE;
    loop {
        let (status, worker, _) = get(addr, "/").unwrap();
        assert_eq!(status, 200);
        if worker
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
    // A base with two free ports after it.
    let base = (0..20)
        .find_map(|_| {
            let p = std::net::TcpListener::bind("0.0.0.0:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let free = p < 65000
                && (0..2).all(|i| std::net::TcpListener::bind(("0.0.0.0", p + i)).is_ok());
            free.then_some(p)
        })
        .expect("two free ports");
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
        let (status, worker, body) = get(addr, "/").unwrap();
        assert_eq!(
            (status, worker.as_deref(), body.as_str()),
            (200, Some(id.as_str()), "hello world\n")
        );
    }
    assert_eq!(ports, HashSet::from([base, base + 1]));
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn axum_counts_hits_across_every_worker() {
    let mut run = Run::start("axum", &["--workers", "2", "--port", "0"]);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    for n in 1..=6 {
        let (status, _, body) = get(addr, "/").unwrap();
        assert_eq!(status, 200);
        assert!(body.ends_with(&format!(": hit {n}\n")), "{body}");
    }
    assert_eq!(get(addr, "/hits").unwrap().2, "6\n");
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
