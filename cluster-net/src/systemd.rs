//! systemd socket activation: `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`.

use std::os::fd::RawFd;

use cluster_core::{Cluster, Phase};
use sd_notify::NotifyState;

use crate::Error;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

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
    /// Reads `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` and removes them
    /// from the environment (so child processes do not take the sockets for
    /// theirs). Call it before any thread starts: changing the environment
    /// races with threads that read it. Empty when `LISTEN_FDS` is not set.
    pub fn from_env() -> Result<SystemdSockets, Error> {
        let var = |name| std::env::var(name).ok();
        let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
        let sockets = Self::parse(
            pid.as_deref(),
            fds.as_deref(),
            names.as_deref(),
            std::process::id(),
        )?;
        for &(fd, _) in &sockets.fds {
            // As sd_listen_fds does: the sockets are ours, not our children's.
            // SAFETY: fcntl on an fd systemd passed; a bad fd only fails.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0
            {
                return Err(Error::Fd {
                    fd,
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(sockets)
    }

    fn parse(
        pid: Option<&str>,
        fds: Option<&str>,
        names: Option<&str>,
        own_pid: u32,
    ) -> Result<SystemdSockets, Error> {
        let Some(fds) = fds else {
            return Ok(SystemdSockets::default());
        };
        let bad = |reason: String| Error::Systemd { reason };
        match pid.map(str::parse::<u32>) {
            Some(Ok(p)) if p == own_pid => {}
            Some(Ok(p)) => {
                return Err(bad(format!(
                    "LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID={p}, this is {own_pid})"
                )))
            }
            Some(Err(_)) | None => {
                return Err(bad(format!(
                    "LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID={:?})",
                    pid.unwrap_or("")
                )))
            }
        }
        let n: RawFd = fds
            .parse()
            .ok()
            .filter(|n| (0..=1024).contains(n))
            .ok_or_else(|| bad(format!("LISTEN_FDS={fds:?} is not a count of fds")))?;
        let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
        if !names.is_empty() && names.len() != n as usize {
            return Err(bad(format!(
                "LISTEN_FDNAMES names {} sockets but LISTEN_FDS={n}",
                names.len()
            )));
        }
        Ok(SystemdSockets {
            fds: (0..n)
                .map(|i| {
                    let name = names.get(i as usize).map(|s| (*s).to_owned());
                    (FIRST_FD + i, name)
                })
                .collect(),
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

/// Tells systemd (a `Type=notify` unit: `$NOTIFY_SOCKET`) how `cluster`
/// is doing: `READY=1` (with `MAINPID`, which changes after a hot upgrade)
/// once every worker listens, `STOPPING=1` when it starts draining. Does
/// nothing outside systemd. Call it on the primary's runtime; the `main`
/// macro does.
pub fn notify_systemd(cluster: &Cluster) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut phases = cluster.phases();
    tokio::spawn(async move {
        let Ok(reached) = phases
            .wait_for(|p| *p >= Phase::Listening)
            .await
            .map(|p| *p)
        else {
            return;
        };
        // A cluster that stopped while starting was never ready.
        if reached == Phase::Listening {
            notify(&[NotifyState::MainPid(std::process::id()), NotifyState::Ready]);
        }
        if phases.wait_for(|p| *p >= Phase::Draining).await.is_ok() {
            notify(&[NotifyState::Stopping]);
        }
    });
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fds_and_names() {
        let s = SystemdSockets::parse(Some("42"), Some("2"), Some("web:admin"), 42).unwrap();
        assert_eq!(
            (s.len(), s.fd(0), s.fd(1), s.fd(2)),
            (2, Some(3), Some(4), None)
        );
        assert_eq!((s.named("admin"), s.named("nope")), (Some(4), None));
    }

    #[test]
    fn nothing_when_not_activated() {
        assert!(SystemdSockets::parse(None, None, None, 1)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn errors_name_the_variable() {
        let err = |pid, fds, names| {
            SystemdSockets::parse(pid, fds, names, 42)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(Some("7"), Some("1"), None),
            "systemd socket activation: LISTEN_FDS set but LISTEN_PID is not this process (LISTEN_PID=7, this is 42)"
        );
        assert!(err(None, Some("1"), None)
            .contains("LISTEN_FDS set but LISTEN_PID is not this process"));
        assert!(err(Some("42"), Some("x"), None).contains("LISTEN_FDS=\"x\" is not a count of fds"));
        assert!(err(Some("42"), Some("2"), Some("web"))
            .contains("LISTEN_FDNAMES names 1 sockets but LISTEN_FDS=2"));
    }
}
