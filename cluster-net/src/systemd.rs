//! systemd: socket activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`)
//! and the notifications of a `Type=notify` service.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use socket2::{SockRef, Type};

use cluster_core::hooks;
use cluster_core::{Cluster, ClusterEvent, Phase};
use sd_notify::NotifyState;

use crate::upgrade::UpgradeState;
use crate::Error;

/// The sockets systemd passed to this process, read once from the
/// environment. Give them to the cluster as state so that workers can
/// `listen(Listen::Systemd(..))`:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cluster_net::{Listen, SystemdSockets, WorkerExt};
///
/// // First thing in `main`, before any thread starts.
/// let sockets = SystemdSockets::from_env()?;
/// cluster_core::Cluster::builder().state(sockets).run(|worker| async move {
///     let _listener = worker.listen(Listen::SystemdNamed("web".into())).await?;
///     Ok::<_, cluster_net::Error>(())
/// })?;
/// # Ok(()) }
/// ```
///
/// `cluster_thread`'s `main` macro does this by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdSockets {
    fds: Vec<(RawFd, Option<String>)>,
}

impl SystemdSockets {
    /// Reads `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` (with the
    /// `sd-notify` crate, which also sets the fds close-on-exec, as
    /// `sd_listen_fds` does: they are ours, not our children's) and removes
    /// them from the environment. Call it before any thread starts:
    /// changing the environment races with threads that read it. Empty when
    /// `LISTEN_FDS` is not set.
    pub fn from_env() -> Result<SystemdSockets, Error> {
        let var = |name| std::env::var(name).ok();
        let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        let listed = match check_pid(pid.as_deref(), fds.as_deref(), std::process::id()) {
            Ok(true) => Some(sd_notify::listen_fds_with_names().map(Iterator::collect)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        };
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        match listed {
            None => Ok(SystemdSockets::default()),
            Some(Ok(listed)) => Ok(Self::from_listed(listed, names.is_some())),
            Some(Err(e)) => Err(explain(&e, fds.as_deref(), names.as_deref())),
        }
    }

    /// The sockets as `sd_listen_fds_with_names` lists them; without
    /// `LISTEN_FDNAMES` they have no names (not systemd's `"unknown"`).
    fn from_listed(listed: Vec<(RawFd, String)>, have_names: bool) -> SystemdSockets {
        SystemdSockets {
            fds: listed
                .into_iter()
                .map(|(fd, name)| (fd, have_names.then_some(name)))
                .collect(),
        }
    }

    /// A dup of the listening TCP socket systemd passed for `addr`, if one
    /// is bound there: `listen(addr)` takes it instead of binding, so that a
    /// program listens the same way with and without socket activation (and
    /// its sockets keep their labels across a hot upgrade).
    pub(crate) fn tcp_listener(&self, addr: SocketAddr) -> Option<OwnedFd> {
        self.fds.iter().find_map(|&(fd, _)| {
            // SAFETY: an fd systemd passed, open for the process's life; only
            // borrowed to look at it and dup it.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = SockRef::from(&fd);
            let matches = socket.r#type().ok() == Some(Type::STREAM)
                && socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr);
            matches.then(|| fd.try_clone_to_owned().ok()).flatten()
        })
    }

    /// How many sockets systemd passed.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when systemd passed none (or this is not socket-activated).
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The fd of the `index`-th socket (0-based).
    pub fn fd(&self, index: usize) -> Option<RawFd> {
        self.fds.get(index).map(|(fd, _)| *fd)
    }

    /// The fd of the socket named `name` in `LISTEN_FDNAMES` (a unit's
    /// `FileDescriptorName=`).
    pub fn named(&self, name: &str) -> Option<RawFd> {
        self.fds
            .iter()
            .find(|(_, n)| n.as_deref() == Some(name))
            .map(|(fd, _)| *fd)
    }
}

/// Whether `LISTEN_FDS` is there for this process: an error when it is set
/// for another one (`sd_listen_fds` would silently pass nothing).
fn check_pid(pid: Option<&str>, fds: Option<&str>, own_pid: u32) -> Result<bool, std::io::Error> {
    if fds.is_none() {
        return Ok(false);
    }
    match pid.map(str::parse::<u32>) {
        Some(Ok(p)) if p == own_pid => Ok(true),
        Some(Ok(p)) => Err(std::io::Error::other(format!(
            "LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID={p}, this is {own_pid})"
        ))),
        _ => Err(std::io::Error::other(format!(
            "LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID={:?})",
            pid.unwrap_or("")
        ))),
    }
}

/// `sd-notify`'s error, said with the variable at fault and its value.
fn explain(e: &std::io::Error, fds: Option<&str>, names: Option<&str>) -> Error {
    let fds = fds.unwrap_or("");
    let reason = if e.kind() == std::io::ErrorKind::Other {
        e.to_string() // ours, from check_pid
    } else if e.kind() != std::io::ErrorKind::InvalidInput {
        format!("LISTEN_FDS={fds}: the fds from 3 on are not all open ({e})")
    } else {
        match (fds.parse::<u32>(), names) {
            (Err(_), _) => format!("LISTEN_FDS={fds:?} is not a count of fds"),
            (Ok(n), Some(names)) if names.split(':').count() != n as usize => format!(
                "LISTEN_FDNAMES names {} sockets but LISTEN_FDS={n}",
                names.split(':').count()
            ),
            _ => format!("LISTEN_FDS={fds:?}, LISTEN_FDNAMES={names:?}: {e}"),
        }
    };
    Error::Systemd { reason }
}

/// Tells systemd (a `Type=notify` unit: `$NOTIFY_SOCKET`) how `cluster`
/// is doing:
///
/// - `READY=1` with `MAINPID` (which changes after a hot upgrade: the unit
///   needs `NotifyAccess=all`) once every worker listens;
/// - `RELOADING=1` with `MONOTONIC_USEC` when a rolling reload (SIGHUP,
///   `ExecReload=/bin/kill -HUP $MAINPID`) starts, `READY=1` when it ends;
/// - `WATCHDOG=1` at half of `WATCHDOG_USEC` (`WatchdogSec=`) while it serves;
/// - `STOPPING=1` when it starts draining, unless it handed its sockets to a
///   new process (a hot upgrade), which is the service from then on.
///
/// Does nothing outside systemd. Call it on the primary's runtime; the
/// `main` macro does.
pub fn notify_systemd(cluster: &Cluster) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let handed_over = hooks::cluster_extension::<UpgradeState>(cluster);
    let mut phases = cluster.phases();
    // Not `events()`: the user's primary keeps the backlog.
    let mut events = hooks::later_events(cluster);
    tokio::spawn(async move {
        let reached = phases.wait_for(|p| *p >= Phase::Listening).await;
        // A cluster that stopped while starting was never ready.
        if reached != Phase::Listening {
            return;
        }
        notify(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
        let mut pings = watchdog.map(|usec| tokio::time::interval(usec / 2));
        loop {
            tokio::select! {
                _ = phases.wait_for(|p| *p >= Phase::Draining) => break,
                Some(event) = events.recv() => match event {
                    ClusterEvent::Reloading => match NotifyState::monotonic_usec_now() {
                        Ok(now) => notify(&[NotifyState::Reloading, now]),
                        Err(e) => tracing::warn!(error = %e, "no CLOCK_MONOTONIC for RELOADING=1"),
                    },
                    ClusterEvent::Reloaded { .. } => notify(&[NotifyState::Ready]),
                    _ => {}
                },
                () = tick(&mut pings) => notify(&[NotifyState::Watchdog]),
            }
        }
        if !handed_over.handed_over() {
            notify(&[NotifyState::Stopping]);
        }
    });
}

/// The next watchdog ping; never without a watchdog.
async fn tick(pings: &mut Option<tokio::time::Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    #[test]
    fn names_only_when_listen_fdnames_is_set() {
        let listed = vec![(3, "web".to_owned()), (4, "admin".to_owned())];
        let s = SystemdSockets::from_listed(listed, true);
        assert_eq!(
            (s.len(), s.fd(0), s.fd(1), s.fd(2)),
            (2, Some(3), Some(4), None)
        );
        assert_eq!((s.named("admin"), s.named("nope")), (Some(4), None));
        let s = SystemdSockets::from_listed(vec![(3, "unknown".to_owned())], false);
        assert_eq!((s.fd(0), s.named("unknown")), (Some(3), None));
    }

    #[test]
    fn listen_pid_must_be_this_process() {
        assert!(!check_pid(None, None, 1).unwrap());
        assert!(check_pid(Some("42"), Some("1"), 42).unwrap());
        assert_eq!(
            explain(&check_pid(Some("7"), Some("1"), 42).unwrap_err(), Some("1"), None)
                .to_string(),
            "systemd socket activation: LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID=7, this is 42)"
        );
        assert!(check_pid(None, Some("1"), 42)
            .unwrap_err()
            .to_string()
            .contains("LISTEN_FDS set but LISTEN_PID is not this process"));
    }

    #[test]
    fn errors_name_the_variable() {
        let invalid = IoError::new(ErrorKind::InvalidInput, "invalid LISTEN_FDS");
        let text = |fds, names| explain(&invalid, Some(fds), names).to_string();
        assert!(text("x", None).contains("LISTEN_FDS=\"x\" is not a count of fds"));
        assert!(text("2", Some("web")).contains("LISTEN_FDNAMES names 1 sockets but LISTEN_FDS=2"));
        let closed = IoError::from_raw_os_error(libc::EBADF);
        assert!(explain(&closed, Some("5"), None)
            .to_string()
            .contains("LISTEN_FDS=5: the fds from 3 on are not all open"));
    }
}
