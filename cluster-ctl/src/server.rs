//! The control thread: its own current-thread runtime, so that nothing a
//! control client does (or fails to do) can delay the primary's runtime,
//! where the supervisor reads its notices and the user's primary runs.
//! One task per connection; each peer's uid checked first; every read and
//! write under a deadline; at most [`MAX_CONNECTIONS`] at once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cluster_core::{hooks, Cluster, Phase};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::commands::{self, Ctx};
use crate::conn::{self, Conn, WRITE_TIMEOUT};
use crate::dir::SocketFile;
use crate::protocol::{Body, Request, COMMANDS, PROTOCOL_VERSION};
use crate::provided::{Identity, Providers};
use crate::Error;

/// Control connections served at once; more are answered `busy` and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a connection may stay idle between requests (`monit` asks
/// every second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The bound socket and what the control thread serves on it.
pub(crate) struct Opened {
    pub(crate) listener: std::os::unix::net::UnixListener,
    pub(crate) file: SocketFile,
    pub(crate) identity: Identity,
    pub(crate) providers: Providers,
}

/// The socket file while the cluster runs: a cluster extension, so that
/// it is removed (before anyone sees the phase stopped) when the cluster's
/// extensions are dropped, or earlier once a hot upgrade handed over.
#[derive(Default)]
pub(crate) struct Installed(pub(crate) Mutex<Option<SocketFile>>);

impl Installed {
    pub(crate) fn remove(cluster: &Cluster) {
        let installed = hooks::cluster_extension::<Installed>(cluster);
        let file = installed
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(file);
    }
}

pub(crate) fn spawn(cluster: Cluster, opened: Opened) -> Result<(), Error> {
    let Opened {
        listener,
        file,
        identity,
        providers,
    } = opened;
    let path = file.path().display().to_string();
    *hooks::cluster_extension::<Installed>(&cluster)
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(file);
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
        stream.write_all(&conn::line(Body::Error { error: why })),
    )
    .await;
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
    let mut conn = Conn::new(rd, wr);
    let mut idle = conn::LINE_TIMEOUT;
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
