//! The load generators: a built-in HTTP/1.1 client (tokio, one current-thread
//! runtime per client thread, a fixed number of connections, a fixed
//! duration, latencies in an HdrHistogram) and `wrk`; plus a small blocking
//! client for probes (readiness, worker ids, `/panic`) and idle connections.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, HandshakeKind};

use super::procfs;

/// What to send, how hard and for how long.
#[derive(Clone, Debug)]
pub(crate) struct LoadSpec {
    pub(crate) addr: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) threads: usize,
    /// Restrict the generator to this CPU.
    pub(crate) cpu: Option<usize>,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// A new connection per request (`Connection: close`), else keep-alive.
    pub(crate) churn: bool,
    /// HTTPS with this client config (its session cache, or none, is what
    /// the new connections resume from); plain HTTP without.
    pub(crate) tls: Option<Arc<ClientConfig>>,
}

/// What a run measured, over the measured window only (warm-up excluded).
#[derive(Clone, Debug, Default)]
pub(crate) struct LoadResult {
    /// 2xx responses completed inside the window.
    pub(crate) requests: u64,
    /// Failed connects, I/O errors, malformed or non-2xx responses.
    pub(crate) errors: u64,
    /// Length of the window, seconds.
    pub(crate) window: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: Option<f64>,
    pub(crate) max_ms: f64,
    /// CPU seconds of the server's process tree during the window.
    pub(crate) server_cpu: f64,
    /// CPU seconds of the load generator during the window.
    pub(crate) client_cpu: Option<f64>,
    /// Built-in generator over TLS: handshakes completed in the window, and
    /// how many of them resumed a session.
    pub(crate) handshakes: Option<(u64, u64)>,
}

fn request_bytes(addr: SocketAddr, path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{connection}\r\n").into_bytes()
}

/// A response's head, once it is complete in `buf` (`test_support`'s
/// parser): its status, and the length of head and body; `Ok(None)` asks
/// for more bytes. The generator needs a `Content-Length`.
fn framed(buf: &[u8]) -> io::Result<Option<Framed<'_>>> {
    let Some(head) = test_support::parse_head(buf)? else {
        return Ok(None);
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    if head.chunked {
        return Err(bad("chunked responses are not supported"));
    }
    let body = head
        .content_length
        .ok_or_else(|| bad("no content-length"))?;
    Ok(Some(Framed {
        status: head.status,
        head_len: head.len,
        total: head.len + body,
        worker: head.worker,
    }))
}

struct Framed<'a> {
    status: u16,
    head_len: usize,
    /// Head and body.
    total: usize,
    /// `x-worker-id`, as sent.
    worker: Option<&'a str>,
}

/// A generator's connection: plain TCP or rustls over it.
enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A new connection to `spec.addr`, its TLS handshake done when over TLS;
/// whether that handshake resumed a session.
async fn connect(spec: &LoadSpec) -> io::Result<(Stream, bool)> {
    let tcp = tokio::net::TcpStream::connect(spec.addr).await?;
    tcp.set_nodelay(true)?;
    let Some(config) = &spec.tls else {
        return Ok((Stream::Plain(tcp), false));
    };
    let name = ServerName::try_from(test_support::SERVER_NAME).map_err(io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((Stream::Tls(Box::new(tls)), resumed))
}

/// One request, one response on an open connection; the status.
async fn exchange(stream: &mut Stream, request: &[u8], buf: &mut [u8]) -> io::Result<u16> {
    stream.write_all(request).await?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(io::Error::other("response larger than the buffer"));
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if let Some(head) = framed(&buf[..len])? {
            let (status, total) = (head.status, head.total);
            if total > buf.len() {
                return Err(io::Error::other("response larger than the buffer"));
            }
            while len < total {
                let n = stream.read(&mut buf[len..total]).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                len += n;
            }
            return Ok(status);
        }
    }
}

/// Per client thread: the histogram and counters its connections share.
struct Tally {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    /// TLS handshakes in the window, and the resumed ones among them.
    handshakes: u64,
    resumed: u64,
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

async fn connection(
    spec: Rc<LoadSpec>,
    request: Rc<Vec<u8>>,
    from: Instant,
    end: Instant,
    tally: Rc<RefCell<Tally>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut stream: Option<Stream> = None;
    loop {
        let began = Instant::now();
        if began >= end {
            return;
        }
        let mut handshake = None;
        let outcome = async {
            let s = match stream.as_mut() {
                Some(s) => s,
                None => {
                    let (s, resumed) = connect(&spec).await?;
                    handshake = Some(resumed);
                    stream.insert(s)
                }
            };
            exchange(s, &request, &mut buf).await
        }
        .await;
        let done = Instant::now();
        let counted = done >= from && done < end;
        if let (Some(resumed), true, true) = (handshake, counted, spec.tls.is_some()) {
            let mut t = tally.borrow_mut();
            t.handshakes += 1;
            t.resumed += u64::from(resumed);
        }
        match outcome {
            Ok(status) => {
                if spec.churn {
                    stream = None;
                }
                if counted {
                    let mut t = tally.borrow_mut();
                    if (200..300).contains(&status) {
                        t.requests += 1;
                        let micros = (done - began).as_micros().max(1) as u64;
                        t.histogram.saturating_record(micros);
                    } else {
                        t.errors += 1;
                    }
                }
            }
            Err(_) => {
                stream = None;
                if counted {
                    tally.borrow_mut().errors += 1;
                }
                // A refused or reset connection fails at once: don't spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Runs the built-in generator against `spec.addr`, measuring the CPU time of
/// the process tree under `server_pid` over the measured window.
pub(crate) fn run_builtin(spec: &LoadSpec, server_pid: u32) -> anyhow::Result<LoadResult> {
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let start = Instant::now() + Duration::from_millis(20);
    let from = start + spec.warmup;
    let end = from + spec.duration;
    let request = request_bytes(spec.addr, "/", spec.churn);
    let mut handles = Vec::new();
    for t in 0..threads {
        let spec = spec.clone();
        let request = request.clone();
        let connections = spec.connections / threads + usize::from(t < spec.connections % threads);
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || -> anyhow::Result<Tally> {
                    if let Some(cpu) = spec.cpu {
                        // This thread only: the measuring thread stays free.
                        procfs::pin_self(&[cpu]).context("pinning a load thread")?;
                    }
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()?;
                    let local = tokio::task::LocalSet::new();
                    let tally = Rc::new(RefCell::new(Tally {
                        histogram: new_histogram(),
                        requests: 0,
                        errors: 0,
                        handshakes: 0,
                        resumed: 0,
                    }));
                    let spec = Rc::new(spec);
                    let request = Rc::new(request);
                    local.block_on(&rt, async {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(start)).await;
                        let tasks: Vec<_> = (0..connections)
                            .map(|_| {
                                let task = connection(
                                    spec.clone(),
                                    request.clone(),
                                    from,
                                    end,
                                    tally.clone(),
                                );
                                tokio::task::spawn_local(tokio::time::timeout_at(
                                    tokio::time::Instant::from_std(end),
                                    task,
                                ))
                            })
                            .collect();
                        for task in tasks {
                            let _ = task.await;
                        }
                    });
                    drop(local);
                    Rc::try_unwrap(tally)
                        .map(RefCell::into_inner)
                        .map_err(|_| anyhow::anyhow!("a connection task outlived its runtime"))
                })?,
        );
    }
    sleep_until(from);
    let server0 = procfs::tree_cpu_seconds(server_pid);
    let client0 = procfs::self_cpu_seconds();
    sleep_until(end);
    let server1 = procfs::tree_cpu_seconds(server_pid);
    let client1 = procfs::self_cpu_seconds();
    let mut histogram = new_histogram();
    let mut result = LoadResult {
        window: spec.duration.as_secs_f64(),
        server_cpu: server1 - server0,
        client_cpu: Some(client1 - client0),
        ..LoadResult::default()
    };
    for handle in handles {
        let tally = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        histogram.add(&tally.histogram)?;
        result.requests += tally.requests;
        result.errors += tally.errors;
        if spec.tls.is_some() {
            let (h, r) = result.handshakes.get_or_insert((0, 0));
            *h += tally.handshakes;
            *r += tally.resumed;
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    result.p50_ms = ms(0.50);
    result.p90_ms = ms(0.90);
    result.p99_ms = ms(0.99);
    result.p999_ms = Some(ms(0.999));
    result.max_ms = histogram.max() as f64 / 1000.0;
    Ok(result)
}

fn sleep_until(when: Instant) {
    let now = Instant::now();
    if when > now {
        std::thread::sleep(when - now);
    }
}

/// Is `wrk` on PATH?
pub(crate) fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Runs `wrk -t<threads> -c<connections> -d<secs>s --latency` (no Lua script;
/// churn adds `-H 'Connection: close'`; TLS: an `https://` URL, where wrk
/// (OpenSSL, no certificate check) makes a full handshake on every new
/// connection: it keeps no session to offer), measuring the server's CPU time
/// around the measured run, after a warm-up run (see [`wrk_seconds`]).
pub(crate) fn run_wrk(spec: &LoadSpec, server_pid: u32) -> anyhow::Result<LoadResult> {
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}/", spec.addr);
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let wrk = |secs: u64, latency: bool| -> anyhow::Result<String> {
        let mut cmd = std::process::Command::new("wrk");
        cmd.arg("-t")
            .arg(threads.to_string())
            .arg("-c")
            .arg(spec.connections.to_string())
            .arg("-d")
            .arg(format!("{secs}s"));
        if latency {
            cmd.arg("--latency");
        }
        if spec.churn {
            cmd.arg("-H").arg("Connection: close");
        }
        cmd.arg(&url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = procfs::spawn_on(&mut cmd, spec.cpu)
            .and_then(std::process::Child::wait_with_output)
            .context("running wrk")?;
        if !out.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (duration, warmup) = wrk_seconds(spec.duration, spec.warmup);
    if warmup > 0 {
        wrk(warmup, false)?;
    }
    let server0 = procfs::tree_cpu_seconds(server_pid);
    let text = wrk(duration, true)?;
    let server1 = procfs::tree_cpu_seconds(server_pid);
    let mut result = parse_wrk(&text)?;
    result.server_cpu = server1 - server0;
    Ok(result)
}

/// wrk's measured and warm-up seconds for the asked ones: wrk takes whole
/// seconds, so the duration is rounded up and the warm-up down.
pub(crate) fn wrk_seconds(duration: Duration, warmup: Duration) -> (u64, u64) {
    (
        (duration.as_secs_f64().ceil() as u64).max(1),
        warmup.as_secs(),
    )
}

/// `303.00us`, `1.20ms`, `2.00s` → milliseconds.
fn wrk_time_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> anyhow::Result<LoadResult> {
    let mut result = LoadResult::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", t] => result.p50_ms = wrk_time_ms(t).unwrap_or(f64::NAN),
            ["90%", t] => result.p90_ms = wrk_time_ms(t).unwrap_or(f64::NAN),
            ["99%", t] => result.p99_ms = wrk_time_ms(t).unwrap_or(f64::NAN),
            ["Latency", _avg, _stdev, max, ..] => {
                result.max_ms = wrk_time_ms(max).unwrap_or(f64::NAN)
            }
            [n, "requests", "in", secs, ..] => {
                result.requests = n.parse().context("wrk request count")?;
                result.window = wrk_time_ms(secs.trim_end_matches(','))
                    .map(|ms| ms / 1000.0)
                    .context("wrk duration")?;
            }
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                let n: u64 = n.parse().unwrap_or(0);
                result.errors += n;
                result.requests = result.requests.saturating_sub(n);
            }
            _ => {}
        }
    }
    if result.window <= 0.0 {
        bail!("could not read wrk's output:\n{text}");
    }
    Ok(result)
}

/// A response read by the blocking probe client.
#[derive(Debug)]
pub(crate) struct Probe {
    pub(crate) status: u16,
    pub(crate) worker_id: Option<u64>,
    pub(crate) body: Vec<u8>,
}

/// `GET path` on a new connection, blocking, `Connection: close`.
pub(crate) fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Probe> {
    read_probe(&mut send_probe(addr, path, timeout)?)
}

/// `GET /` over HTTPS on a new connection (readiness of a TLS server).
pub(crate) fn probe_tls(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<Probe> {
    let r = test_support::tls_get(addr, config, "/")?;
    Ok(Probe {
        status: r.status,
        worker_id: r.worker.and_then(|w| w.parse().ok()),
        body: r.body.into_bytes(),
    })
}

/// `n` probes in flight at once (so that every idle worker can take one);
/// each answer with the time it was complete. A probe unanswered after
/// `timeout` ends with `TimedOut`.
pub(crate) fn probe_many(
    addr: SocketAddr,
    n: usize,
    timeout: Duration,
) -> Vec<(Instant, io::Result<Probe>)> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    let mut done = Vec::new();
    for _ in 0..n {
        match send_probe(addr, "/", timeout).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(s) => pending.push((s, Vec::new())),
            Err(e) => done.push((Instant::now(), Err(e))),
        }
    }
    let mut chunk = [0u8; 4096];
    while !pending.is_empty() {
        let mut i = 0;
        while i < pending.len() {
            let (stream, buf) = &mut pending[i];
            let outcome = match stream.read(&mut chunk) {
                Ok(0) => Some(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    match parse_probe(buf) {
                        Ok(Some(p)) => Some(Ok(p)),
                        Ok(None) => None,
                        Err(e) => Some(Err(e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => Some(Err(e)),
            };
            match outcome {
                Some(result) => {
                    done.push((Instant::now(), result));
                    pending.swap_remove(i);
                }
                None => i += 1,
            }
        }
        if Instant::now() > deadline {
            for _ in pending.drain(..) {
                done.push((Instant::now(), Err(io::ErrorKind::TimedOut.into())));
            }
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    done
}

fn send_probe(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    stream.write_all(&request_bytes(addr, path, true))?;
    Ok(stream)
}

fn read_probe(stream: &mut TcpStream) -> io::Result<Probe> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(probe) = parse_probe(&buf)? {
            return Ok(probe);
        }
    }
}

/// A whole response, or `Ok(None)` while bytes are missing.
fn parse_probe(buf: &[u8]) -> io::Result<Option<Probe>> {
    let Some(head) = framed(buf)? else {
        return Ok(None);
    };
    if buf.len() < head.total {
        return Ok(None);
    }
    Ok(Some(Probe {
        status: head.status,
        worker_id: head.worker.and_then(|w| w.parse().ok()),
        body: buf[head.head_len..head.total].to_vec(),
    }))
}

/// Opens up to `n` connections to `addr` without sending anything; stops at
/// the first that fails (the caller counts what it got).
pub(crate) fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                eprintln!(
                    "bench: idle connection {} of {n} failed: {e}",
                    streams.len() + 1
                );
                break;
            }
        }
    }
    streams
}

/// One keep-alive `GET /` on each connection, all written before any answer
/// is read; how many were answered 200 (the connections stay open).
pub(crate) fn request_each(addr: SocketAddr, streams: &mut [TcpStream]) -> usize {
    let request = request_bytes(addr, "/", false);
    let sent: Vec<bool> = streams
        .iter_mut()
        .map(|s| {
            s.set_nodelay(true).is_ok()
                && s.set_read_timeout(Some(Duration::from_secs(5))).is_ok()
                && s.write_all(&request).is_ok()
        })
        .collect();
    streams
        .iter_mut()
        .zip(sent)
        .filter_map(|(s, sent)| sent.then(|| read_probe(s)))
        .filter(|p| matches!(p, Ok(p) if p.status == 200))
        .count()
}

/// Writes `GET path` on a new connection and returns the open connection
/// without waiting for an answer (for `/panic`).
pub(crate) fn send_only(addr: SocketAddr, path: &str) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_nodelay(true)?;
    stream.write_all(&request_bytes(addr, path, true))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_responses() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nx-worker-id: 4\r\n\r\nhello world\n";
        let head = framed(whole).unwrap().unwrap();
        assert_eq!((head.status, head.head_len, head.total), (200, 55, 67));
        assert!(framed(b"HTTP/1.1 200 OK\r\nContent-").unwrap().is_none());
        assert!(framed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(framed(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        let probe = parse_probe(whole).unwrap().unwrap();
        assert_eq!(
            (probe.worker_id, &probe.body[..]),
            (Some(4), &b"hello world\n"[..])
        );
        assert!(parse_probe(&whole[..60]).unwrap().is_none());
    }

    #[test]
    fn parses_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:8000/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   302.11us  120.00us   5.20ms   90.00%
    Req/Sec    50.00k     1.00k   52.00k    70.00%
  Latency Distribution
     50%  290.00us
     75%  350.00us
     90%  410.00us
     99%    1.10ms
  100000 requests in 1.00s, 12.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec: 100000.00
Transfer/sec:     12.00MB
";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.requests, 100_000);
        assert_eq!(r.errors, 3);
        assert!((r.window - 1.0).abs() < 1e-9);
        assert!((r.p50_ms - 0.29).abs() < 1e-9);
        assert!((r.p99_ms - 1.1).abs() < 1e-9);
        assert!((r.max_ms - 5.2).abs() < 1e-9);
    }
}
