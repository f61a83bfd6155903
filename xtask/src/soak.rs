//! `cargo xtask soak --seconds N`: the `same_port` example (release, with
//! `--chaos`) under mixed load for N seconds while workers crash and the
//! cluster reloads at random; prints requests, failures, restarts and RSS at
//! start and end (a leak shows as growth). Fails if any request failed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bench::{self, procfs, servers};

const USAGE: &str = "usage: cargo xtask soak [--seconds N] [--workers N]";

pub(crate) fn main(mut args: lexopt::Parser) -> anyhow::Result<()> {
    use lexopt::prelude::*;
    let (mut seconds, mut workers) = (60u64, 2usize);
    while let Some(arg) = args.next()? {
        match arg {
            Long("seconds") => seconds = args.value()?.parse()?,
            Long("workers") => workers = args.value()?.parse()?,
            Short('h') | Long("help") => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("{}\n{USAGE}", other.unexpected()),
        }
    }
    let root = bench::workspace_root();
    let target = bench::target_dir()?;
    let bin = servers::build_same_port(&root, &target).map_err(anyhow::Error::msg)?;
    let mut child = Command::new(&bin)
        .args(["--workers", &workers.to_string(), "--port", "0", "--chaos"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().context("the server's stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut started = 0;
    let addr: SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .context("the server did not say where it listens")?;
        started += usize::from(line.ends_with(" started"));
        if let Some(a) = line.strip_prefix("listening on ") {
            let port: u16 = a.rsplit(':').next().unwrap_or("").parse()?;
            break SocketAddr::from(([127, 0, 0, 1], port));
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::spawn(move || client(addr, i % 2 == 0, &stop, &counts))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = procfs::tree_memory(pid).rss;
    let end = Instant::now() + Duration::from_secs(seconds);
    let (mut panics, mut reloads, mut seed) = (0u64, 0u64, 0x2545_F491_4F6C_DD1Du64);
    while Instant::now() < end {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Longer apart than the cluster's min_uptime (1 s): crashes of
        // running workers, not a crash loop (which the cluster would answer
        // with back-off, and tests cover).
        std::thread::sleep(Duration::from_millis(1200 + seed % 1800));
        match seed % 10 {
            0..=5 => {
                // The panicking request itself fails; it is not counted.
                let _ = get(addr, "/panic");
                panics += 1;
            }
            6..=8 => {
                procfs::signal(pid, libc::SIGHUP);
                reloads += 1;
            }
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let rss_end = procfs::tree_memory(pid).rss;
    procfs::signal(pid, libc::SIGTERM);
    let status = child.wait()?;
    started += lines.try_iter().filter(|l| l.ends_with(" started")).count();
    let (ok, failed, retried) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("| soak | value |\n|---|---:|");
    println!(
        "| duration | {seconds} s, {workers} workers, 3 keep-alive + 3 new-connection clients |"
    );
    println!("| requests served | {ok} |");
    println!("| requests failed | {failed} |");
    println!("| idle keep-alive closes retried | {retried} |");
    println!("| workers crashed (GET /panic) | {panics} |");
    println!("| reloads (SIGHUP) | {reloads} |");
    println!("| workers started (initial and replacements) | {started} |");
    println!(
        "| RSS after warm-up / at the end | {:.1} MiB / {:.1} MiB |",
        mib(rss_start),
        mib(rss_end)
    );
    println!("| exit status after SIGTERM | {status} |");
    if failed > 0 || !status.success() {
        bail!("{failed} requests failed; exit status {status}");
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    exchange(&mut s, path, false).map(|(status, _)| status)
}

/// One request; the status and whether the server keeps the connection.
fn exchange(s: &mut TcpStream, path: &str, keep_alive: bool) -> std::io::Result<(u16, bool)> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: soak\r\nconnection: {connection}\r\n\r\n").as_bytes(),
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes", head.len()),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body)?;
    Ok((status, keep_alive && !head.contains("connection: close")))
}

fn client(addr: SocketAddr, keep_alive: bool, stop: &AtomicBool, counts: &Counts) {
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = conn.is_some();
        let mut s = match conn.take().map_or_else(|| TcpStream::connect(addr), Ok) {
            Ok(s) => s,
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.set_nodelay(true);
        match exchange(&mut s, "/", keep_alive) {
            Ok((200, keep)) => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                if keep {
                    conn = Some(s);
                }
            }
            // An idle keep-alive connection closed by a draining worker
            // before it read the request: HTTP/1.1 clients retry it.
            Err(e)
                if reused
                    && (e.to_string().contains("after 0 bytes")
                        || e.kind() == std::io::ErrorKind::ConnectionReset) =>
            {
                counts.retried.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
