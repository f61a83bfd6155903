//! The control thread: its own current-thread runtime, so that nothing a
//! control client does (or fails to do) can delay the primary's runtime,
//! where the supervisor reads its notices and the user's primary runs.
//! One task per connection; each peer's uid checked first; every read and
//! write under a deadline; at most [`MAX_CONNECTIONS`] at once.

use std::sync::Arc;
use std::time::Duration;

use cluster_core::{Cluster, Phase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::commands::{self, Ctx};
use crate::control::{Installed, Opened};
use crate::protocol::{Body, Reply, Request, COMMANDS, MAX_LINE, PROTOCOL_VERSION};
use crate::Error;

/// Control connections served at once; more are answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a new connection may take to send its first request, and a
/// started line to end.
const LINE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connection may stay idle between requests (`monit` asks
/// every second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reply line may take to be written (a client that does not
/// read is closed).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn spawn(cluster: Cluster, opened: Opened) -> Result<(), Error> {
    let Opened {
        listener,
        file,
        identity,
        providers,
    } = opened;
    let path = file.path().display().to_string();
    *cluster_core::hooks::cluster_extension::<Installed>(&cluster)
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
    let ctx = Arc::new(Ctx::new(cluster, identity, providers));
    std::thread::Builder::new()
        .name("cluster-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "could not build the control thread's runtime; no control socket");
                    return;
                }
            };
            rt.block_on(serve(ctx, listener, path));
            // Dropping the runtime ends every connection's task.
        })
        .map_err(Error::Thread)?;
    Ok(())
}

async fn serve(ctx: Arc<Ctx>, listener: std::os::unix::net::UnixListener, path: String) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, socket = %path, "could not register the control socket");
            return;
        }
    };
    tracing::info!(socket = %path, "control socket open: `cluster-thread ls`");
    let mut listener = Some(listener);
    let mut phases = ctx.cluster.phases();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(commands::sample_every_second(Arc::clone(&ctx)));
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            phase = phases.changed() => match phase {
                None | Some(Phase::Stopped) => return,
                Some(phase) if phase >= Phase::Draining && listener.is_some() && ctx.handed_over() => {
                    // A hot upgrade's new process has its own socket now:
                    // this one leaves, so `cluster-thread` finds the new one.
                    listener = None;
                    Installed::remove(&ctx.cluster);
                    tracing::info!("hot upgrade: control socket closed; the new process has its own");
                }
                Some(_) => {}
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(stream) => {
                    backoff = Duration::from_millis(5);
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            tokio::spawn(connection(Arc::clone(&ctx), stream, permit));
                        }
                        Err(_) => {
                            tokio::spawn(refuse(stream, format!(
                                "busy: {MAX_CONNECTIONS} control connections are open; try again"
                            )));
                        }
                    }
                }
                Err(e) => {
                    // Out of fds, most likely: wait it out, as accept loops do.
                    tracing::warn!(error = %e, ?backoff, "control socket: accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
}

async fn accept(listener: Option<&tokio::net::UnixListener>) -> std::io::Result<UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// One line of refusal, then the close.
async fn refuse(mut stream: UnixStream, why: String) {
    let _ = tokio::time::timeout(
        WRITE_TIMEOUT,
        stream.write_all(&line(Body::Error { error: why })),
    )
    .await;
}

fn line(body: Body) -> Vec<u8> {
    let mut out = serde_json::to_vec(&Reply::new(body)).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Only this process's uid or root may talk to the socket.
fn check_peer(stream: &UnixStream) -> Result<u32, String> {
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("refused: the peer's credentials cannot be read ({e})"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        Ok(cred.uid())
    } else {
        Err(format!(
            "refused: uid {} may not control this cluster (only uid {me} or root)",
            cred.uid()
        ))
    }
}

async fn connection(ctx: Arc<Ctx>, stream: UnixStream, _permit: OwnedSemaphorePermit) {
    let uid = match check_peer(&stream) {
        Ok(uid) => uid,
        Err(why) => {
            tracing::warn!("control socket: {why}");
            return refuse(stream, why).await;
        }
    };
    let (rd, wr) = stream.into_split();
    let mut conn = Conn {
        rd,
        wr,
        buf: Vec::new(),
        broken: false,
    };
    let mut idle = LINE_TIMEOUT;
    loop {
        let line = match conn.next_line(idle).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(error) => {
                conn.send(Body::Error { error }).await;
                return;
            }
        };
        idle = IDLE_TIMEOUT;
        let request = match parse(&line) {
            Ok(request) => request,
            Err(error) => {
                conn.send(Body::Error { error }).await;
                return;
            }
        };
        commands::run(&ctx, request.command, uid, &mut conn).await;
        if conn.broken {
            return;
        }
    }
}

/// A request line, or the error to answer (it names what was wrong).
pub(crate) fn parse(line: &str) -> Result<Request, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not spoken here (this cluster speaks {PROTOCOL_VERSION})"
            ))
        }
        None => return Err("a request needs a numeric \"version\"".into()),
    }
    match value.get("command").and_then(serde_json::Value::as_str) {
        Some(name) if COMMANDS.contains(&name) => {}
        Some(name) => {
            return Err(format!(
                "unknown command {name:?}; the commands are {}",
                COMMANDS.join(", ")
            ))
        }
        None => return Err("a request needs a \"command\"".into()),
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
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
    async fn next_line(&mut self, idle: Duration) -> Result<Option<String>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_named() {
        let e = |l: &str| parse(l).unwrap_err();
        assert!(e("hello").starts_with("not a JSON request"));
        assert!(e(r#"{"command":"ls"}"#).contains("\"version\""));
        assert!(e(r#"{"version":9,"command":"ls"}"#).contains("version 9"));
        assert!(e(r#"{"version":1,"command":"dance"}"#).contains("unknown command \"dance\""));
        assert!(e(r#"{"version":1,"command":"scale","workers":"lots"}"#).contains("lots"));
        assert!(parse(r#"{"version":1,"command":"ls"}"#).is_ok());
    }
}
