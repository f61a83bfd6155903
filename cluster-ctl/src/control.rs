//! `Control`: the control socket's settings, and `ControlExt::control`,
//! which opens it for a cluster.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use cluster_core::{Cluster, ClusterBuilder};

use crate::dir;
use crate::provided::{Identity, LiveSetting, Providers, Stats};
use crate::server::{self, Opened};
use crate::Error;

/// The control socket of a cluster: where, under which name, and what it
/// can report and change beyond the core's own (workers, phase, reload,
/// restart, scale, stop, `drain_delay`, `log_level`).
///
/// ```no_run
/// use cluster_core::Cluster;
/// use cluster_ctl::{Control, ControlExt};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// Cluster::builder()
///     .workers(2)
///     .control(Control::new().version(env!("CARGO_PKG_VERSION")))?
///     .run(|worker| async move { worker.disconnected().await })?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
#[must_use = "a Control does nothing until given to `ClusterBuilder::control`"]
pub struct Control {
    dir: Option<PathBuf>,
    name: Option<String>,
    version: Option<String>,
    pub(crate) providers: Providers,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// The defaults: the directory of [`control_dir`](crate::control_dir),
    /// the executable's file name.
    pub fn new() -> Control {
        Control::default()
    }

    /// Puts the socket in `dir` instead (as `CLUSTER_THREAD_CONTROL` does;
    /// the variable still wins, and `off` still turns it off).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The name in the socket's file name, `<name>-<pid>.sock`, and in
    /// `ls` (default: the executable's file name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The program's version, shown by `ls` (`env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a provider of per-slot figures and listeners, called for each
    /// `ls` and once a second for the rates (so it should be quick).
    pub fn stats(
        mut self,
        provider: impl Fn(&Cluster, &mut Stats) + Send + Sync + 'static,
    ) -> Self {
        self.providers.stats.push(Arc::new(provider));
        self
    }

    /// What `upgrade` runs: a hot upgrade returning the new process's pid;
    /// and whether this process has handed over (its socket then leaves
    /// the directory as it drains, the new process's having taken its place).
    pub fn upgrade<F, Fut>(
        mut self,
        upgrade: F,
        handed_over: impl Fn(&Cluster) -> bool + Send + Sync + 'static,
    ) -> Self
    where
        F: Fn(Cluster) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<u32, String>> + Send + 'static,
    {
        self.providers.upgrade = Some(Arc::new(move |c| Box::pin(upgrade(c))));
        self.providers.handed_over = Some(Arc::new(handed_over));
        self
    }

    /// Adds a live setting (one of the same name is replaced).
    pub fn setting(mut self, setting: LiveSetting) -> Self {
        self.providers.settings.retain(|s| s.key != setting.key);
        self.providers.settings.push(setting);
        self
    }

    /// Where the socket goes, for a process of `owner`: `None` when
    /// turned off.
    fn location(&self, owner: dir::Owner) -> Option<PathBuf> {
        let standard = || dir::control_dir_for(owner.uid());
        match std::env::var_os(dir::CONTROL_ENV) {
            Some(_) => standard(),
            None => self.dir.clone().or_else(standard),
        }
    }

    fn identity(&self) -> Identity {
        let name = self.name.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "cluster".to_owned())
        });
        Identity {
            name: dir::clean_name(&name),
            version: self.version.clone(),
        }
    }
}

/// The bound socket, between `control` and the cluster's start.
#[derive(Default)]
pub(crate) struct Pending(Mutex<Option<Opened>>);

/// `ClusterBuilder::control`: `use cluster_ctl::ControlExt;`.
pub trait ControlExt: Sized {
    /// Opens the control socket (unless `CLUSTER_THREAD_CONTROL=off`): its
    /// directory is made or checked, and the socket bound, now (an error
    /// names the path at fault); it is served from the cluster's start on
    /// a thread of its own, and removed when the cluster stops.
    fn control(self, control: Control) -> Result<Self, Error>;
}

impl ControlExt for ClusterBuilder {
    fn control(self, control: Control) -> Result<Self, Error> {
        // A process that drops privileges serves as that user: the
        // directory and the socket are the user's, so the command run as
        // the user, and the new process of a hot upgrade, find and use them.
        let owner = dir::Owner::new(cluster_core::hooks::switch_target(&self));
        let Some(dir) = control.location(owner) else {
            return Ok(self);
        };
        dir::prepare_dir(&dir, owner)?;
        let identity = control.identity();
        let path = dir.join(dir::socket_name(&identity.name, std::process::id()));
        let (listener, file) = dir::bind(&path, owner)?;
        let pending = Pending(Mutex::new(Some(Opened {
            listener,
            file,
            identity,
            providers: control.providers,
        })));
        Ok(self.state(pending).on_start(|cluster| {
            let opened = cluster
                .state::<Pending>()
                .and_then(|p| p.0.lock().unwrap_or_else(PoisonError::into_inner).take());
            let Some(opened) = opened else { return };
            if let Err(e) = server::spawn(cluster.clone(), opened) {
                tracing::error!(error = %e, "the control socket is not served");
            }
        }))
    }
}
