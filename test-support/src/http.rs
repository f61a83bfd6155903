//! A small blocking HTTP/1.1 client: what a test needs to see (status,
//! worker header, body, whether the server closes) and nothing more. Heads
//! are parsed by `httparse` ([`parse_head`], which xtask's load generator
//! and probes share).

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

/// The head of a response at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub status: u16,
    /// Its length in bytes, the blank line included: the body starts there.
    pub len: usize,
    /// `Content-Length`, if sent.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `x-worker-id`, as sent.
    pub worker: Option<&'a str>,
}

/// Parses the response head at the start of `buf`: `Ok(None)` while it is
/// incomplete, an `InvalidData` error if it is not HTTP/1.x.
pub fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head<'_>>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "bad response head ({e}): {:?}",
                    String::from_utf8_lossy(buf)
                ),
            ))
        }
    };
    let mut head = Head {
        status: response.code.unwrap_or_default(),
        len,
        content_length: None,
        chunked: false,
        close: false,
        worker: None,
    };
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).map(str::trim);
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.is_ok_and(|v| v.eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.is_ok_and(|v| v.eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("x-worker-id") {
            head.worker = value.ok();
        }
    }
    Ok(Some(head))
}

/// Writes one request on `s` and reads one response.
pub fn exchange(
    s: &mut (impl Read + Write),
    path: &str,
    keep_alive: bool,
) -> std::io::Result<Response> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: {connection}\r\n\r\n"
    )?;
    read_response(s)
}

/// Reads one response from `s`: its body framed by `Content-Length`, by
/// chunks, or by the end of the stream.
pub fn read_response(s: &mut impl Read) -> std::io::Result<Response> {
    let mut buf = Vec::with_capacity(1024);
    let (status, worker, close, start, framing) = loop {
        if let Some(head) = parse_head(&buf)? {
            let framing = match (head.chunked, head.content_length) {
                (true, _) => Framing::Chunked,
                (false, Some(len)) => Framing::Length(len),
                // No body, whatever the head says (RFC 9112 §6.3).
                (false, None) if matches!(head.status, 100..=199 | 204 | 304) => Framing::Length(0),
                (false, None) => Framing::UntilClose,
            };
            let worker = head.worker.map(str::to_owned);
            break (head.status, worker, head.close, head.len, framing);
        }
        // The end of the stream, clean or not: a TLS stream whose peer
        // closed without `close_notify` says so with an error.
        let end = match fill(s, &mut buf) {
            Ok(n) => n == 0,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
            Err(e) => return Err(e),
        };
        if end {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes of response", buf.len()),
            ));
        }
    };
    let body = match framing {
        Framing::Length(len) => {
            while buf.len() < start + len {
                if fill(s, &mut buf)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            buf[start..start + len].to_vec()
        }
        Framing::UntilClose => {
            s.read_to_end(&mut buf)?;
            buf[start..].to_vec()
        }
        Framing::Chunked => chunks(s, &mut buf, start)?,
    };
    Ok(Response {
        status,
        worker,
        body: String::from_utf8_lossy(&body).into_owned(),
        close,
    })
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads what `s` has into `buf`; how many bytes (0 at its end).
fn fill(s: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// A chunked body from `buf[at..]` on, reading more from `s` as needed (no
/// trailers).
fn chunks(s: &mut impl Read, buf: &mut Vec<u8>, mut at: usize) -> std::io::Result<Vec<u8>> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut body = Vec::new();
    loop {
        match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((used, size))) => {
                let size = usize::try_from(size).map_err(|_| bad(format!("chunk of {size}")))?;
                // The chunk and its CRLF.
                let end = at + used + size + 2;
                while buf.len() < end {
                    if fill(s, buf)? == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                }
                if size == 0 {
                    return Ok(body);
                }
                body.extend_from_slice(&buf[at + used..end - 2]);
                at = end;
            }
            Ok(httparse::Status::Partial) => {
                if fill(s, buf)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => return Err(bad(format!("bad chunk size: {e}"))),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that hands out its bytes a few at a time, as a socket may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(3);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn read(bytes: &[u8]) -> std::io::Result<Response> {
        read_response(&mut Trickle(bytes))
    }

    #[test]
    fn heads_are_parsed_once_complete() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Worker-Id: 7\r\nconnection: close\r\n\r\nhello world\n";
        assert_eq!(parse_head(&bytes[..30]).unwrap(), None);
        let head = parse_head(bytes).unwrap().unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                len: bytes.len() - 12,
                content_length: Some(12),
                chunked: false,
                close: true,
                worker: Some("7"),
            }
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn bodies_are_framed_by_length_chunks_or_close() {
        let r =
            read(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-worker-id: 3\r\n\r\nhello").unwrap();
        assert_eq!(
            (r.status, r.worker.as_deref(), r.body.as_str(), r.close),
            (200, Some("3"), "hello", false)
        );
        let r = read(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "hello, world");
        let r = read(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end").unwrap();
        assert_eq!((r.body.as_str(), r.close), ("to the end", true));
        let r = read(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (204, ""));
    }

    #[test]
    fn a_close_before_the_response_is_told_apart() {
        let e = read(b"").unwrap_err();
        assert!(closed_before_response(&e), "{e}");
        let e = read(b"HTTP/1.1 200 OK\r\n").unwrap_err();
        assert!(!closed_before_response(&e), "{e}");
        let e = read(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
