//! Hot upgrade of the binary, as nginx (`USR2`) and pingora do it: the old
//! process starts the new one, hands it every listening socket of the
//! cluster (labelled, over [`handoff`]), waits for its
//! acknowledgement, then drains; the new one serves from the same kernel
//! queues, so no connection is refused in between.
//!
//! The channel is private to the two processes: one end of a
//! `socketpair()` that only the child inherits (its fd number in
//! [`UPGRADE_ENV`]), as nginx passes its listening fds. No path or abstract
//! name exists that another local process could connect to and take the
//! sockets from. One upgrade runs at a time; a new process that exits, or
//! does not acknowledge within the timeout, is killed and reaped, and the
//! old process serves on (and can upgrade again).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cluster_core::hooks;
use cluster_core::{Cluster, Phase};

use crate::handoff::{self, HandoffError, Incoming, Outgoing, Received};
use crate::migrate::{self, Outbox};
use crate::registry::{reuse_label, Registry};
use crate::Error;

/// The variable through which a new process finds its control channel:
/// the number of the inherited fd, set by [`Upgrade::run`] for the process
/// it starts.
pub const UPGRADE_ENV: &str = "CLUSTER_THREAD_UPGRADE";

/// How long each side waits for the other, by default.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The sockets a new process received from the process it replaces. Read
/// once at start ([`Inherited::from_env`]) and given to the cluster as state;
/// `listen` then takes the matching socket instead of binding.
#[derive(Debug, Default)]
pub struct Inherited {
    incoming: Mutex<Option<Incoming>>,
}

impl Inherited {
    /// In the new process, before any thread starts: when started by an
    /// upgrade, receives the old process's sockets over the inherited
    /// channel. Empty otherwise.
    pub fn from_env() -> Result<Inherited, Error> {
        let Some(value) = std::env::var_os(UPGRADE_ENV) else {
            return Ok(Inherited::default());
        };
        std::env::remove_var(UPGRADE_ENV);
        let stream = control_channel(&value.to_string_lossy())?;
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

    /// Takes every slot's socket of `label`'s reuseport group (slot 0's is
    /// the key's own, taken by `label`), with its slot.
    pub(crate) fn take_members(&self, label: &str) -> Vec<(usize, Received)> {
        let mut guard = self.lock();
        let Some(incoming) = guard.as_mut() else {
            return Vec::new();
        };
        let slots: Vec<usize> = incoming
            .sockets()
            .iter()
            .filter_map(|s| {
                let slot = s.id.strip_prefix(label)?.strip_prefix(" reuseport ")?;
                slot.parse().ok()
            })
            .collect();
        slots
            .into_iter()
            .filter_map(|slot| Some((slot, incoming.take(&reuse_label(label, slot))?)))
            .collect()
    }

    /// Tells the old process to stop accepting and drain. Does nothing when
    /// not upgraded, or a second time.
    pub fn acknowledge(&self) -> Result<(), Error> {
        match self.lock().as_mut() {
            Some(incoming) => Ok(incoming.acknowledge()?),
            None => Ok(()),
        }
    }

    /// Acknowledges once `cluster` is ready to serve, as
    /// [`ClusterBuilderExt::hot_upgrade`](crate::ClusterBuilderExt::hot_upgrade)
    /// arranges: every worker listens, and every listener made so far has
    /// been accepted on (a server accepts only once it is built: with
    /// `cluster-http`, its TLS certificates loaded). A worker that exits
    /// before that (a certificate that cannot be loaded, a panic) abandons
    /// the upgrade: nothing is acknowledged and this cluster stops, so the
    /// old process kills and reaps this one and serves on.
    pub async fn acknowledge_when_listening(&self, cluster: &Cluster) -> Result<(), Error> {
        if self.lock().is_none() {
            return Ok(());
        }
        let ready = ready_to_serve(cluster).await;
        if ready {
            self.acknowledge()?;
        }
        // Sockets no worker asked for are closed; the channel stays open
        // for the connections the old process passes as it drains.
        if let Some(incoming) = self.lock().take() {
            let (_unused, channel) = incoming.into_parts();
            if ready {
                let registry = hooks::cluster_extension::<Registry>(cluster);
                migrate::serve_inbox(channel, std::sync::Arc::downgrade(&registry));
            }
        }
        if !ready && cluster.phase() < Phase::Draining {
            tracing::error!("hot upgrade abandoned: a worker ended before this process was ready to serve; stopping, the old process serves on");
            cluster.disconnect_without_delay().await;
        }
        Ok(())
    }
}

/// Waits until `cluster` listens and every listener made has been accepted
/// on (true), or a worker exits or the cluster stops first (false).
async fn ready_to_serve(cluster: &Cluster) -> bool {
    let serving = hooks::cluster_extension::<Serving>(cluster);
    let mut unserved = serving.unserved.subscribe();
    let mut events = hooks::later_events(cluster);
    let mut phases = cluster.phases();
    loop {
        let phase = cluster.phase();
        if phase >= Phase::Draining {
            return false;
        }
        if phase == Phase::Listening && *unserved.borrow_and_update() == 0 {
            return true;
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(cluster_core::ClusterEvent::Exit { worker, reason }) => {
                    tracing::error!(worker = worker.id(), ?reason, "a worker of the new process ended before it was ready to serve");
                    return false;
                }
                Some(_) => {}
                None => return false,
            },
            _ = phases.changed() => {}
            _ = unserved.changed() => {}
        }
    }
}

/// How many listeners were made and not yet accepted on, cluster-wide: a
/// process is ready to serve (for a hot upgrade's acknowledgement) when
/// none is left. A listener dropped before its first `accept` stays
/// counted: its worker never served.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    unserved: tokio::sync::watch::Sender<usize>,
}

/// A listener's part in [`Serving`], until its first `accept`.
#[derive(Debug)]
pub(crate) struct FirstAccept {
    serving: std::sync::Arc<Serving>,
    pending: std::sync::atomic::AtomicBool,
}

impl FirstAccept {
    /// A new listener of `worker`'s cluster, not accepted on yet.
    pub(crate) fn new(worker: &cluster_core::Worker) -> FirstAccept {
        let serving = hooks::extension::<Serving>(worker);
        serving.unserved.send_modify(|n| *n += 1);
        FirstAccept {
            serving,
            pending: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The listener accepts (its server is built): counted once; true
    /// that first time.
    pub(crate) fn accepting(&self) -> bool {
        let first =
            self.pending.load(Ordering::Relaxed) && self.pending.swap(false, Ordering::AcqRel);
        if first {
            self.serving
                .unserved
                .send_modify(|n| *n = n.saturating_sub(1));
        }
        first
    }
}

/// The control channel named by `UPGRADE_ENV`: an inherited fd, or (from a
/// parent of cluster_thread 0.1) the path of its control socket.
fn control_channel(value: &str) -> Result<UnixStream, Error> {
    let Ok(fd) = value.trim().parse::<RawFd>() else {
        let path = PathBuf::from(value);
        return UnixStream::connect(&path).map_err(|source| {
            HandoffError::Io {
                peer: path.display().to_string(),
                what: "connecting to the old process",
                source,
            }
            .into()
        });
    };
    let bad = |reason: &'static str| Error::BadEnv {
        name: UPGRADE_ENV,
        value: value.to_owned(),
        expected: reason,
    };
    if fd < 3 {
        return Err(bad("the number of an inherited Unix socket (3 or more)"));
    }
    // SAFETY: F_GETFD on any number is sound: a closed fd only fails (EBADF).
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::Fd {
            fd,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is open (checked above) and outlives this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&borrowed);
    let is_unix_stream = socket.domain().is_ok_and(|d| d == socket2::Domain::UNIX)
        && socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM);
    if !is_unix_stream {
        return Err(bad("an inherited Unix stream socket"));
    }
    // SAFETY: the old process made this fd for this process alone; nothing
    // else here owns it (read once, before any thread, and the variable
    // is removed), so taking ownership closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let cloexec = nix::fcntl::fcntl(
        owned.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    cloexec.map_err(|errno| Error::Fd {
        fd,
        source: errno.into(),
    })?;
    Ok(UnixStream::from(owned))
}

/// Where a process stands in its upgrades: one at a time, none after the
/// sockets were handed over. A cluster extension.
#[derive(Debug, Default)]
pub(crate) struct UpgradeState(AtomicU8);

impl UpgradeState {
    /// This process handed its sockets to a new one: it is no longer the
    /// service's main process (so it does not tell systemd `STOPPING=1`).
    pub(crate) fn handed_over(&self) -> bool {
        self.0.load(Ordering::Acquire) == DONE
    }
}

/// True once this process has handed its sockets to a new one in a hot
/// upgrade (it drains now; the new process is the service).
pub fn handed_over(cluster: &Cluster) -> bool {
    hooks::cluster_extension::<UpgradeState>(cluster).handed_over()
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// A hot upgrade with its options; [`upgrade`] is the short form.
///
/// ```no_run
/// # async fn doc(cluster: cluster_core::Cluster) -> Result<(), cluster_net::Error> {
/// use std::time::Duration;
/// use cluster_net::upgrade::Upgrade;
///
/// let pid = Upgrade::new()
///     .program("/usr/local/bin/app")
///     .timeout(Duration::from_secs(10))
///     .run(&cluster)
///     .await?;
/// # let _ = pid; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "an upgrade does nothing until `run`"]
pub struct Upgrade {
    program: Option<PathBuf>,
    args: Option<Vec<OsString>>,
    timeout: Duration,
}

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade {
            program: None,
            args: None,
            timeout: TIMEOUT,
        }
    }
}

impl Upgrade {
    /// This executable (at its path on disk: replace the file first), with
    /// this process's arguments, and a 30 s timeout.
    pub fn new() -> Upgrade {
        Upgrade::default()
    }

    /// Starts `program` instead of this executable.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Gives the new process these arguments instead of this process's.
    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// How long the new process has to take the sockets over and
    /// acknowledge (once its workers listen) before it is killed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the new process, hands it every listening socket of
    /// `cluster`, waits for its acknowledgement, then stops this cluster
    /// gracefully (its workers drain). Returns the new process's pid.
    ///
    /// Refused while another upgrade runs, or after one succeeded. A new
    /// process that exits or does not acknowledge in time is killed and
    /// reaped; this cluster serves on.
    pub async fn run(self, cluster: &Cluster) -> Result<u32, Error> {
        let state = hooks::cluster_extension::<UpgradeState>(cluster);
        if let Err(now) =
            state
                .0
                .compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(Error::UpgradeRefused {
                reason: if now == RUNNING {
                    "another upgrade is in progress"
                } else {
                    "this process has handed its sockets over already"
                },
            });
        }
        let result = self.hand_over(cluster).await;
        state
            .0
            .store(if result.is_ok() { DONE } else { IDLE }, Ordering::Release);
        let (pid, channel) = result?;
        // The draining workers pass their idle connections over the channel.
        hooks::cluster_extension::<Outbox>(cluster).open(channel, pid);
        // The new process uses the socket files now: they stay at our stop.
        hooks::cluster_extension::<Registry>(cluster).hand_over();
        tracing::info!(
            pid,
            "hot upgrade: the new process took the sockets over; draining"
        );
        let cluster = cluster.clone();
        // The new process serves the same sockets: no drain delay to wait.
        tokio::spawn(async move { cluster.disconnect_without_delay().await });
        Ok(pid)
    }

    async fn hand_over(self, cluster: &Cluster) -> Result<(u32, UnixStream), Error> {
        let fail = |what: &'static str, peer: String| {
            move |source| HandoffError::Io { peer, what, source }
        };
        let program = match self.program {
            Some(p) => p,
            None => this_executable().map_err(fail("finding this executable", "self".into()))?,
        };
        let shown = program.display().to_string();
        let (ours, theirs) =
            UnixStream::pair().map_err(fail("creating the control channel", shown.clone()))?;
        let fd = theirs.as_raw_fd();
        let mut command = std::process::Command::new(&program);
        match self.args {
            Some(args) => command.args(args),
            None => command.args(std::env::args_os().skip(1)),
        };
        command
            .env(UPGRADE_ENV, fd.to_string())
            // systemd's watchdog is for the service's main process, which the
            // new one becomes (it says MAINPID): unset, WATCHDOG_USEC is its own.
            .env_remove("WATCHDOG_PID");
        // SAFETY: between fork and exec the closure only calls fcntl, which
        // is async-signal-safe; `theirs` keeps `fd` open until after spawn.
        // Close-on-exec is cleared in the child alone, so no other process
        // this one starts inherits the channel.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(fail("starting the new process", shown.clone()))?;
        drop(theirs);
        let pid = child.id();
        tracing::info!(pid, program = %shown, "hot upgrade: new process started");
        let sockets = hooks::cluster_extension::<Registry>(cluster).export();
        let timeout = self.timeout;
        let sent = tokio::task::spawn_blocking(move || {
            let outgoing: Vec<Outgoing<'_>> = sockets
                .iter()
                .map(|(label, address, fd)| Outgoing {
                    id: label,
                    address,
                    fd: fd.as_fd(),
                })
                .collect();
            handoff::send(&ours, &outgoing, timeout).map(|()| ours)
        })
        .await
        .unwrap_or_else(|e| {
            Err(HandoffError::Protocol {
                peer: format!("pid {pid}"),
                reason: e.to_string(),
            })
        });
        let channel = match sent {
            Ok(channel) => channel,
            Err(e) => {
                // Never leave it holding our sockets, nor as a zombie.
                let status = tokio::task::spawn_blocking(move || {
                    let _ = child.kill();
                    child.wait()
                })
                .await;
                tracing::warn!(pid, error = %e, status = ?status.ok().and_then(Result::ok), "hot upgrade failed: the new process was stopped; serving on");
                return Err(e.into());
            }
        };
        Ok((pid, channel))
    }
}

/// Runs [`Upgrade::new`] with `program` (default: this executable with the
/// same arguments). See [`Upgrade::run`].
pub async fn upgrade(cluster: &Cluster, program: Option<PathBuf>) -> Result<u32, Error> {
    let upgrade = Upgrade::new();
    match program {
        Some(program) => upgrade.program(program),
        None => upgrade,
    }
    .run(cluster)
    .await
}

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

/// What SIGQUIT does in a cluster built with
/// [`ClusterBuilderExt::hot_upgrade`](crate::ClusterBuilderExt::hot_upgrade).
pub(crate) async fn on_sigquit(cluster: Cluster) {
    if cluster.phase() >= Phase::Draining {
        tracing::warn!("SIGQUIT ignored: the cluster is draining");
        return;
    }
    match Upgrade::new().run(&cluster).await {
        Ok(pid) => tracing::info!(pid, "SIGQUIT: upgraded"),
        Err(e @ Error::UpgradeRefused { .. }) => tracing::warn!(error = %e, "SIGQUIT ignored"),
        Err(e) => {
            tracing::error!(error = %e, "SIGQUIT: hot upgrade failed; this process keeps serving")
        }
    }
}
