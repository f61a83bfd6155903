//! A small blocking HTTP/1.1 client on raw sockets: what a test needs to see
//! (status, worker header, body, whether the server closes) and nothing more.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `127.0.0.1` with the port of a printed `ip:port`.
pub fn local(addr: &str) -> SocketAddr {
    let port: u16 = addr
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"));
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

/// Whether `e` says the server closed the connection before answering (an
/// idle keep-alive connection closed as the request went out).
pub fn closed_before_response(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    ) || (e.kind() == std::io::ErrorKind::UnexpectedEof && e.to_string().contains("after 0 bytes"))
}
