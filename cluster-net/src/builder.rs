//! What a program built with `ClusterBuilder` adds to get what the `main`
//! macro gives: hot upgrade on SIGQUIT and systemd's sockets and
//! notifications.

use cluster_core::ClusterBuilder;

use crate::upgrade::{self, Inherited};
use crate::{notify_systemd, Error, SystemdSockets};

/// Hot upgrade and systemd for a [`ClusterBuilder`]:
/// `use cluster_net::ClusterBuilderExt;`.
///
/// ```no_run
/// use cluster_core::Cluster;
/// use cluster_net::{ClusterBuilderExt, WorkerExt};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // First thing in `main`: both read the environment before any thread starts.
///     Cluster::builder()
///         .workers(4)
///         .from_env()? // systemd's sockets, the hot upgrade's
///         .run(|worker| async move {
///             let _listener = worker.listen("127.0.0.1:8000").await?;
///             worker.disconnected().await;
///             Ok::<_, cluster_net::Error>(())
///         })?;
///     Ok(())
/// }
/// ```
pub trait ClusterBuilderExt: Sized {
    /// SIGQUIT hands every listening socket to a new copy of the binary
    /// ([`upgrade::Upgrade`]), then this process drains and exits; a second
    /// SIGQUIT while one runs is refused with a warning. In a process
    /// started that way, takes the old process's sockets over (read from
    /// the environment now, so call it before any thread starts) and
    /// acknowledges once it is ready to serve: every worker listens and
    /// has accepted on each of its listeners (with `cluster-http`: its
    /// server built, its TLS certificates loaded). If a worker ends first,
    /// the upgrade is abandoned: this process stops and the old one serves
    /// on.
    fn hot_upgrade(self) -> Result<Self, Error>;

    /// Takes the sockets of systemd's socket activation
    /// ([`SystemdSockets::from_env`], before any thread starts) and sends
    /// systemd its notifications ([`notify_systemd`]).
    fn systemd(self) -> Result<Self, Error>;

    /// Everything a process is given by the environment it starts in,
    /// as `#[cluster_thread::main]` takes it: [`systemd`](Self::systemd)
    /// then [`hot_upgrade`](Self::hot_upgrade). First thing in `main`,
    /// before any thread starts. (The `CLUSTER_THREAD_*` variables of the
    /// core's settings are read by `ClusterBuilder::build`, and
    /// `CLUSTER_THREAD_BALANCE` at the first `listen`, with or without it.)
    // A step of the builder chain, not a constructor: `Cluster::builder().from_env()?`.
    #[allow(clippy::wrong_self_convention)]
    fn from_env(self) -> Result<Self, Error> {
        self.systemd()?.hot_upgrade()
    }
}

impl ClusterBuilderExt for ClusterBuilder {
    fn hot_upgrade(self) -> Result<Self, Error> {
        let inherited = Inherited::from_env()?;
        Ok(self
            .state(inherited)
            .on_upgrade(upgrade::on_sigquit)
            .on_start(|cluster| {
                let Some(inherited) = cluster.state::<Inherited>() else {
                    return;
                };
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    if let Err(e) = inherited.acknowledge_when_listening(&cluster).await {
                        tracing::error!(error = %e, "could not acknowledge the hot upgrade");
                    }
                });
            }))
    }

    fn systemd(self) -> Result<Self, Error> {
        Ok(self
            .state(SystemdSockets::from_env()?)
            .on_start(notify_systemd))
    }
}
