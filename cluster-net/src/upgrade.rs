//! Hot upgrade of the binary, as nginx (`USR2`) and pingora do it: the old
//! process starts the new one, hands it every listening socket of the
//! cluster (labelled, over [`handoff`](crate::handoff)), waits for its
//! acknowledgement, then drains; the new one serves from the same kernel
//! queues, so no connection is refused in between.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cluster_core::{Cluster, Phase};

use crate::handoff::{self, Incoming, Outgoing, Received};
use crate::registry::Registry;
use crate::Error;

/// The variable naming the Unix socket a new process fetches its sockets
/// from; set by [`upgrade`] for the process it starts.
pub const UPGRADE_ENV: &str = "CLUSTER_THREAD_UPGRADE";

/// How long each side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The sockets a new process received from the process it replaces. Read
/// once at start ([`Inherited::from_env`]) and given to the cluster as state;
/// `listen` then takes the matching socket instead of binding.
#[derive(Debug, Default)]
pub struct Inherited {
    incoming: Mutex<Option<Incoming>>,
}

impl Inherited {
    /// In the new process, before any thread starts: when started by
    /// [`upgrade`], connects to the old process and receives its sockets.
    /// Empty otherwise.
    pub fn from_env() -> Result<Inherited, Error> {
        let Some(path) = std::env::var_os(UPGRADE_ENV) else {
            return Ok(Inherited::default());
        };
        std::env::remove_var(UPGRADE_ENV);
        let path = PathBuf::from(path);
        let stream = UnixStream::connect(&path).map_err(|source| Error::Handoff {
            peer: path.display().to_string(),
            what: "connecting to the old process",
            source,
        })?;
        let incoming = handoff::receive(stream, TIMEOUT)?;
        tracing::info!(
            sockets = incoming.sockets().len(),
            "took the listening sockets over from the old process"
        );
        Ok(Inherited {
            incoming: Mutex::new(Some(incoming)),
        })
    }

    /// True when this process was not started by an upgrade.
    pub fn is_empty(&self) -> bool {
        self.lock().as_ref().is_none_or(|i| i.sockets().is_empty())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.incoming.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn take(&self, label: &str) -> Option<Received> {
        self.lock().as_mut()?.take(label)
    }

    /// Tells the old process to stop accepting and drain. Does nothing when
    /// not upgraded, or a second time.
    pub fn acknowledge(&self) -> Result<(), Error> {
        match self.lock().as_mut() {
            Some(incoming) => incoming.acknowledge(),
            None => Ok(()),
        }
    }

    /// Acknowledges once `cluster` is listening (every worker took its
    /// sockets), as the `main` macro does.
    pub async fn acknowledge_when_listening(&self, cluster: &Cluster) -> Result<(), Error> {
        if self.lock().is_none() {
            return Ok(());
        }
        let mut phases = cluster.phases();
        let _ = phases.wait_for(|p| *p >= Phase::Listening).await;
        if cluster.phase() == Phase::Listening {
            self.acknowledge()?;
        }
        // Sockets no worker asked for are closed with the connection.
        *self.lock() = None;
        Ok(())
    }
}

/// In the old process: starts `program` (default: this executable, with the
/// same arguments), hands it every listening socket of `cluster`, waits for
/// its acknowledgement, then stops this cluster gracefully (its workers
/// drain). Returns the new process's pid.
pub async fn upgrade(cluster: &Cluster, program: Option<PathBuf>) -> Result<u32, Error> {
    let fail = |what: &'static str, path: &std::path::Path| {
        let peer = path.display().to_string();
        move |source| Error::Handoff { peer, what, source }
    };
    let program = match program {
        Some(p) => p,
        None => this_executable().map_err(fail("finding this executable", "self".as_ref()))?,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "cluster-thread-upgrade-{}-{nanos}.sock",
        std::process::id()
    ));
    let control =
        tokio::net::UnixListener::bind(&path).map_err(fail("binding the control socket", &path))?;
    let child = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .env(UPGRADE_ENV, &path)
        // systemd's watchdog is for the service's main process, which the
        // new one becomes (it says MAINPID): unset, WATCHDOG_USEC is its own.
        .env_remove("WATCHDOG_PID")
        .spawn()
        .map_err(fail("starting the new process", &program))?;
    let pid = child.id();
    tracing::info!(pid, program = %program.display(), "hot upgrade: new process started");
    let accepted = tokio::time::timeout(TIMEOUT, control.accept()).await;
    let _ = std::fs::remove_file(&path);
    let stream = match accepted {
        Ok(Ok((stream, _))) => stream
            .into_std()
            .map_err(fail("taking the control connection", &path))?,
        Ok(Err(e)) => return Err(fail("accepting the new process", &path)(e)),
        Err(_) => {
            return Err(Error::HandoffTimeout {
                peer: format!("pid {pid}"),
                what: "the new process to connect",
                timeout: TIMEOUT,
            })
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(fail("the control connection", &path))?;
    let sockets = cluster.extension::<Registry>().export();
    tokio::task::spawn_blocking(move || {
        let outgoing: Vec<Outgoing<'_>> = sockets
            .iter()
            .map(|(label, address, fd)| Outgoing {
                id: label,
                address,
                fd: fd.as_fd(),
            })
            .collect();
        handoff::send(&stream, &outgoing, TIMEOUT)
    })
    .await
    .map_err(|e| Error::HandoffProtocol {
        peer: format!("pid {pid}"),
        reason: e.to_string(),
    })??;
    tracing::info!(
        pid,
        "hot upgrade: the new process took the sockets over; draining"
    );
    cluster
        .extension::<HandedOver>()
        .0
        .store(true, Ordering::SeqCst);
    let cluster = cluster.clone();
    // The new process serves the same sockets: no drain delay to wait.
    tokio::spawn(async move { cluster.disconnect_without_delay().await });
    Ok(pid)
}

/// Set once this process handed its sockets to a new one: it is no longer
/// the service's main process (so it does not tell systemd `STOPPING=1`).
#[derive(Debug, Default)]
pub(crate) struct HandedOver(pub(crate) AtomicBool);

/// The path this process was started from. When the binary was replaced on
/// disk (the usual way to deploy a new version), Linux reports the old one as
/// `<path> (deleted)`; the new one is at `<path>`.
fn this_executable() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(
        match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(path) => PathBuf::from(path),
            None => exe,
        },
    )
}

/// Runs [`upgrade`] on every SIGQUIT received by this process, as long as
/// `cluster` runs. Call it on the primary's runtime.
pub fn upgrade_on_sigquit(cluster: &Cluster) -> Result<(), Error> {
    let mut quit =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::quit()).map_err(|source| {
            Error::Listen {
                addr: "SIGQUIT handler".into(),
                source,
            }
        })?;
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let mut phases = cluster.phases();
        loop {
            tokio::select! {
                () = async { let _ = phases.wait_for(|p| *p >= Phase::Draining).await; } => return,
                Some(()) = quit.recv() => match upgrade(&cluster, None).await {
                    Ok(pid) => tracing::info!(pid, "SIGQUIT: upgraded"),
                    Err(e) => tracing::error!(error = %e, "SIGQUIT: hot upgrade failed; this process keeps serving"),
                },
            }
        }
    });
    Ok(())
}
