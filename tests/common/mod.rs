//! Helpers for the black-box tests: run an example as a child process, read
//! its lines, send it HTTP and signals.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// The example's binary, built by `cargo test` beside this test (or built now).
pub fn example(name: &str) -> PathBuf {
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

/// The path of `program` on `PATH`, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

pub struct Run {
    pub name: &'static str,
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Lines printed and not yet matched, in order.
    pending: Vec<String>,
    pub seen: Vec<String>,
}

impl Run {
    pub fn start(name: &'static str, args: &[&str]) -> Run {
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
            pending: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The first printed line not matched before that satisfies `want`
    /// (lines of different threads come in any order).
    pub fn line(&mut self, want: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.pending.iter().position(|l| want(l)) {
            return self.pending.remove(i);
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                    self.pending.push(l);
                }
                Err(e) => panic!(
                    "{}: no such line ({e}); printed: {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        signal(self.child.id(), sig);
    }

    pub fn exit_status(&mut self) -> std::process::ExitStatus {
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

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// True while `pid` runs (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// `127.0.0.1` with the port of a printed `ip:port`.
pub fn local(addr: &str) -> SocketAddr {
    let port: u16 = addr.trim().rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub worker: Option<String>,
    pub body: String,
    pub close: bool,
}

/// Writes one request on `s` and reads one response (Content-Length framed).
pub fn exchange(s: &mut TcpStream, path: &str, keep_alive: bool) -> std::io::Result<Response> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: {connection}\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes of response", head.len()),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Response {
        status,
        worker: header("x-worker-id"),
        body: String::from_utf8_lossy(&body).into_owned(),
        close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
    })
}

/// A `GET` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(&mut s, path, false)
}

/// Counts of a load run.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Keep-alive connections the server closed while idle, whose next
    /// request was retried on a new connection, as HTTP/1.1 clients do for
    /// idempotent requests (RFC 9112 §9.3.1). Not failures.
    pub retried: AtomicU64,
}

/// Steady `GET /` load from `clients` threads until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..clients)
            .map(|_| {
                let (stop, counts) = (stop.clone(), counts.clone());
                std::thread::spawn(move || client(addr, keep_alive, &stop, &counts))
            })
            .collect();
        Load {
            stop,
            counts,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.counts.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        let end = Instant::now() + DEADLINE;
        while self.ok() < target {
            assert!(
                Instant::now() < end,
                "load stalled at {} requests",
                self.ok()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops and returns (ok, failed, retried).
    pub fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let c = &self.counts;
        (
            c.ok.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.retried.load(Ordering::Relaxed),
        )
    }
}

fn client(addr: SocketAddr, keep_alive: bool, stop: &AtomicBool, counts: &Counts) {
    let connect = || {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok::<_, std::io::Error>(s)
    };
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = conn.is_some();
        let mut s = match conn.take() {
            Some(s) => s,
            None => match connect() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("connect: {e}");
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        match exchange(&mut s, "/", keep_alive) {
            Ok(r) if r.status == 200 => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                if keep_alive && !r.close {
                    conn = Some(s);
                }
            }
            // The server closed an idle keep-alive connection before reading
            // this request: retry on a new connection.
            Err(e) if reused && closed_before_response(&e) => {
                counts.retried.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                eprintln!("status {}", r.status);
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("request: {e}");
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn closed_before_response(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    ) || (e.kind() == std::io::ErrorKind::UnexpectedEof && e.to_string().contains("after 0 bytes"))
}

/// Seconds a fault test runs: short in CI, longer from `cargo xtask soak`.
pub fn seconds() -> f64 {
    std::env::var("CLUSTER_THREAD_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// A base port with `n` free ports after it, below the kernel's ephemeral
/// range (where no test's client or port-0 socket can take them meanwhile):
/// per-worker ports need base + slot, so port 0 cannot serve here.
pub fn free_port_run(n: u16) -> u16 {
    let first_ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (
        first_ephemeral.saturating_sub(12_000).max(1024),
        first_ephemeral - n,
    );
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into());
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let base = low + (seed % u64::from(high - low)) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("0.0.0.0", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {n} free ports below {first_ephemeral}");
}
