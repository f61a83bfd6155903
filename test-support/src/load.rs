//! Steady `GET /` load from client threads, over TCP or TLS, counting what
//! succeeded, what failed, and the idle keep-alive connections the server
//! closed.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls::ClientConfig;

use crate::http::{closed_before_response, exchange};
use crate::tls::{tls_connect, Conn};
use crate::DEADLINE;

/// Counts of a load run.
#[derive(Debug, Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Keep-alive connections the server closed while idle, as the next
    /// request went out: closes seen by the client. This client then
    /// retries on a new connection, as HTTP/1.1 clients may for idempotent
    /// requests (RFC 9112 §9.3.1), so they are not counted as failures; a
    /// client that never retries (or a POST) would have failed each.
    pub closed: AtomicU64,
}

/// Steady `GET /` load from client threads until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` threads of plain HTTP/1.1.
    pub fn start(addr: SocketAddr, clients: usize, keep_alive: bool) -> Load {
        Load::spawn(addr, clients, keep_alive, None)
    }

    /// `clients` threads of HTTPS (HTTP/1.1 over rustls, one session cache
    /// for all, so a new connection resumes a session where it can); a
    /// failed handshake counts as a failed request.
    pub fn start_tls(
        addr: SocketAddr,
        clients: usize,
        keep_alive: bool,
        config: Arc<ClientConfig>,
    ) -> Load {
        Load::spawn(addr, clients, keep_alive, Some(config))
    }

    fn spawn(
        addr: SocketAddr,
        clients: usize,
        keep_alive: bool,
        tls: Option<Arc<ClientConfig>>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let threads = (0..clients)
            .map(|_| {
                let (stop, counts, tls) = (stop.clone(), counts.clone(), tls.clone());
                std::thread::spawn(move || client(addr, keep_alive, tls.as_ref(), &stop, &counts))
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

    /// Stops and returns (ok, failed, closed).
    pub fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let c = &self.counts;
        (
            c.ok.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.closed.load(Ordering::Relaxed),
        )
    }
}

fn client(
    addr: SocketAddr,
    keep_alive: bool,
    tls: Option<&Arc<ClientConfig>>,
    stop: &AtomicBool,
    counts: &Counts,
) {
    let connect = || {
        if let Some(config) = tls {
            return Ok(Conn::Tls(Box::new(tls_connect(addr, config)?)));
        }
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok::<_, std::io::Error>(Conn::Plain(s))
    };
    let mut conn: Option<Conn> = None;
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
                counts.closed.fetch_add(1, Ordering::Relaxed);
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

/// Seconds a fault test runs: short in CI, longer from `cargo xtask soak`.
pub fn seconds() -> f64 {
    std::env::var("CLUSTER_THREAD_FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}
