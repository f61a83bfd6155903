//! A control connection: request lines in (bounded in size and time),
//! reply lines out (each write under a deadline).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::protocol::{Body, Reply, MAX_LINE};

/// How long a new connection may take to send its first request, and a
/// started line to end.
pub(crate) const LINE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a reply line may take to be written (a client that does not
/// read is closed).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn line(body: Body) -> Vec<u8> {
    let mut out = serde_json::to_vec(&Reply::new(body)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A control connection: lines in, reply lines out.
pub(crate) struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    /// A write failed or timed out: nothing more is sent.
    pub(crate) broken: bool,
}

impl Conn {
    pub(crate) fn new(rd: OwnedReadHalf, wr: OwnedWriteHalf) -> Conn {
        Conn {
            rd,
            wr,
            buf: Vec::new(),
            broken: false,
        }
    }

    /// Sends one reply line; false once the connection is broken.
    pub(crate) async fn send(&mut self, body: Body) -> bool {
        if self.broken {
            return false;
        }
        let out = line(body);
        let written = tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(&out)).await;
        self.broken = !matches!(written, Ok(Ok(())));
        !self.broken
    }

    /// Resolves when the client closes its side (or sends more: ignored
    /// while a reply streams).
    pub(crate) async fn closed(&mut self) {
        let mut scratch = [0u8; 256];
        loop {
            match self.rd.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// The next request line: `None` at the client's close or after `idle`
    /// with nothing sent; an error for a line over [`MAX_LINE`], not UTF-8,
    /// or not finished within [`LINE_TIMEOUT`] of its first byte.
    pub(crate) async fn next_line(&mut self, idle: Duration) -> Result<Option<String>, String> {
        let idle_end = Instant::now() + idle;
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                if end > MAX_LINE {
                    return Err(too_long());
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| "the request line is not UTF-8".to_owned());
            }
            if self.buf.len() > MAX_LINE {
                return Err(too_long());
            }
            let deadline = started.map_or(idle_end, |t| t + LINE_TIMEOUT);
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) if started.is_none() => return Ok(None),
                Err(_) => {
                    return Err(format!(
                        "the request line was not finished within {LINE_TIMEOUT:?}"
                    ))
                }
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(n)) => {
                    started.get_or_insert_with(Instant::now);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

fn too_long() -> String {
    format!("the request line is longer than {MAX_LINE} bytes")
}
