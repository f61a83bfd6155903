//! The client side: finding the running clusters of this user, and talking
//! to one (blocking, for the command line and tests).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::{Body, Command, Reply, Request, MAX_LINE};

/// A running cluster's control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The program's name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// The socket.
    pub path: PathBuf,
}

/// The sockets in `dir` whose process still runs, by name then pid. A
/// missing directory has none.
pub fn targets(dir: &Path) -> io::Result<Vec<Target>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
        let file = entry.file_name();
        let Some((name, pid)) = file.to_str().and_then(crate::parse_socket_name) else {
            continue;
        };
        if is_socket && alive(pid) {
            out.push(Target {
                name,
                pid,
                path: entry.path(),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.pid).cmp(&(&b.name, b.pid)));
    Ok(out)
}

/// True while process `pid` runs (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// A connection to one cluster's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Bounds each read of a reply line (`None`: wait as long as it takes).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.writer.set_read_timeout(timeout)
    }

    /// Sends one request.
    pub fn send(&mut self, command: Command) -> io::Result<()> {
        let mut line = serde_json::to_vec(&Request::new(command)).map_err(io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line)
    }

    /// The next reply line, parsed and as sent; `None` once the cluster
    /// closed the connection.
    pub fn read_reply(&mut self) -> io::Result<Option<(Reply, String)>> {
        let mut line = String::new();
        let n = io::Read::take(&mut self.reader, MAX_LINE as u64 * 16).read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        let text = line.trim_end().to_owned();
        let reply = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a reply line ({e}): {text:?}"),
            )
        })?;
        Ok(Some((reply, text)))
    }

    /// Sends `command` and reads up to its final line (`None` if the
    /// connection closed first); `each` sees every line on the way.
    pub fn call(
        &mut self,
        command: Command,
        mut each: impl FnMut(&Reply, &str),
    ) -> io::Result<Option<Reply>> {
        if let Err(e) = self.send(command) {
            // Refused before it read the request (another uid, busy): the
            // one line it sent says why.
            return match self.read_reply() {
                Ok(Some((reply, text))) => {
                    each(&reply, &text);
                    Ok(Some(reply))
                }
                _ => Err(e),
            };
        }
        while let Some((reply, text)) = self.read_reply()? {
            each(&reply, &text);
            if reply.is_final() {
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }
}

/// True for the refusal of a socket at its connection limit (worth a retry).
pub fn is_busy(reply: &Reply) -> bool {
    matches!(&reply.body, Body::Error { error } if error.starts_with("busy:"))
}
