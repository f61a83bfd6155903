//! The primary's signal handling: each signal's [`SignalAction`], set per
//! signal on the builder. By default SIGTERM stops gracefully, SIGINT too
//! (a second one at once), SIGHUP reloads, SIGQUIT runs the hot upgrade
//! (or is ignored with a warning); SIGUSR1 and SIGUSR2 are left alone.

use std::fmt;
use std::future::poll_fn;
use std::task::Poll;

use tokio::signal::unix::{signal, Signal as UnixSignal, SignalKind};

use crate::builder::ShutdownFuture;
use crate::{Cluster, Error, Phase};

/// A signal the primary can handle ([`ClusterBuilder::on_signal`](crate::ClusterBuilder::on_signal)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// SIGTERM: what `kill`, systemd and Kubernetes send to stop.
    Term,
    /// SIGINT: Ctrl-C.
    Int,
    /// SIGHUP.
    Hup,
    /// SIGQUIT.
    Quit,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2 (nginx's binary upgrade).
    Usr2,
}

impl Signal {
    /// Every signal, in this order.
    pub const ALL: [Signal; 6] = [
        Signal::Term,
        Signal::Int,
        Signal::Hup,
        Signal::Quit,
        Signal::Usr1,
        Signal::Usr2,
    ];

    /// Its name, such as `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Hup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
        }
    }

    /// What the primary does on it unless told otherwise: SIGTERM
    /// [`Stop`](SignalAction::Stop), SIGINT [`Interrupt`](SignalAction::Interrupt),
    /// SIGHUP [`Reload`](SignalAction::Reload), SIGQUIT
    /// [`Upgrade`](SignalAction::Upgrade), SIGUSR1 and SIGUSR2
    /// [`Off`](SignalAction::Off).
    pub fn default_action(self) -> SignalAction {
        match self {
            Signal::Term => SignalAction::Stop,
            Signal::Int => SignalAction::Interrupt,
            Signal::Hup => SignalAction::Reload,
            Signal::Quit => SignalAction::Upgrade,
            Signal::Usr1 | Signal::Usr2 => SignalAction::Off,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Signal::Term => 0,
            Signal::Int => 1,
            Signal::Hup => 2,
            Signal::Quit => 3,
            Signal::Usr1 => 4,
            Signal::Usr2 => 5,
        }
    }

    fn kind(self) -> SignalKind {
        match self {
            Signal::Term => SignalKind::terminate(),
            Signal::Int => SignalKind::interrupt(),
            Signal::Hup => SignalKind::hangup(),
            Signal::Quit => SignalKind::quit(),
            Signal::Usr1 => SignalKind::user_defined1(),
            Signal::Usr2 => SignalKind::user_defined2(),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the primary does when a [`Signal`] arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignalAction {
    /// Stops gracefully, as [`Cluster::disconnect`] (after the drain delay).
    Stop,
    /// As Ctrl-C: the first stops gracefully, a second one (of any signal
    /// with this action) stops at once, skipping the drain delay.
    Interrupt,
    /// Stops at once, as [`Cluster::stop(false)`](Cluster::stop): every
    /// worker is killed.
    StopNow,
    /// Replaces every worker, one at a time ([`Cluster::reload`]).
    Reload,
    /// Runs the upgrade handler ([`ClusterBuilder::on_upgrade`](crate::ClusterBuilder::on_upgrade);
    /// `cluster-net`'s hot upgrade sets it); without one, ignored with a warning.
    Upgrade,
    /// Caught and ignored, with a log line (the signal's default action,
    /// such as ending the process, does not happen).
    Ignore,
    /// Not handled: the signal keeps its disposition, the OS default or the
    /// program's own handler.
    Off,
}

impl SignalAction {
    /// Its name, as the macro's `signals` argument spells it: `stop`,
    /// `interrupt`, `stop-now`, `reload`, `upgrade`, `ignore` or `off`.
    pub fn name(self) -> &'static str {
        match self {
            SignalAction::Stop => "stop",
            SignalAction::Interrupt => "interrupt",
            SignalAction::StopNow => "stop-now",
            SignalAction::Reload => "reload",
            SignalAction::Upgrade => "upgrade",
            SignalAction::Ignore => "ignore",
            SignalAction::Off => "off",
        }
    }

    /// Every action, in the order of the docs.
    pub const ALL: [SignalAction; 7] = [
        SignalAction::Stop,
        SignalAction::Interrupt,
        SignalAction::StopNow,
        SignalAction::Reload,
        SignalAction::Upgrade,
        SignalAction::Ignore,
        SignalAction::Off,
    ];
}

impl fmt::Display for SignalAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) struct Signals {
    handled: Vec<(Signal, SignalAction, UnixSignal)>,
}

impl Signals {
    /// Installs the handlers of every signal not `Off` now, so that a
    /// signal arriving during start-up is not lost (nor kills the process
    /// by its default action).
    pub(crate) fn install(actions: &[(Signal, SignalAction)]) -> Result<Signals, Error> {
        let handled = actions
            .iter()
            .filter(|(_, action)| *action != SignalAction::Off)
            .map(|&(sig, action)| {
                signal(sig.kind())
                    .map(|s| (sig, action, s))
                    .map_err(|source| Error::Signal {
                        signal: sig.name(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Signals { handled })
    }

    pub(crate) fn any(&self) -> bool {
        !self.handled.is_empty()
    }

    /// The next signal handled, and its action; never, if none is.
    async fn next(&mut self) -> (Signal, SignalAction) {
        poll_fn(|cx| {
            for (sig, action, s) in &mut self.handled {
                if let Poll::Ready(Some(())) = s.poll_recv(cx) {
                    return Poll::Ready((*sig, *action));
                }
            }
            Poll::Pending
        })
        .await
    }

    pub(crate) async fn watch(mut self, cluster: Cluster, mut custom: Option<ShutdownFuture>) {
        let mut phases = cluster.phases();
        let mut interrupted = false;
        loop {
            tokio::select! {
                _ = phases.wait_for(|p| *p == Phase::Stopped) => return,
                () = wait(&mut custom) => {
                    tracing::info!("shutdown signal: stopping gracefully");
                    custom = None;
                    stop(&cluster, true);
                }
                (sig, action) = self.next() => match action {
                    SignalAction::Stop => {
                        tracing::info!("{sig}: stopping gracefully");
                        stop(&cluster, true);
                    }
                    SignalAction::Interrupt if interrupted => {
                        tracing::warn!("second {sig}: stopping now");
                        stop(&cluster, false);
                    }
                    SignalAction::Interrupt => {
                        tracing::info!("{sig}: stopping gracefully (again to stop now)");
                        interrupted = true;
                        stop(&cluster, true);
                    }
                    SignalAction::StopNow => {
                        tracing::warn!("{sig}: stopping now");
                        stop(&cluster, false);
                    }
                    SignalAction::Reload => {
                        tracing::info!("{sig}: reloading every worker");
                        let cluster = cluster.clone();
                        tokio::spawn(async move {
                            if let Err(e) = cluster.reload().await {
                                tracing::error!(error = %e, "reload failed");
                            }
                        });
                    }
                    SignalAction::Upgrade => match &cluster.inner.config.on_upgrade {
                        Some(handler) => {
                            tracing::info!("{sig}: upgrading");
                            tokio::spawn(handler(cluster.clone()));
                        }
                        None => tracing::warn!("{sig} ignored: this program has no hot upgrade (see cluster_net::ClusterBuilderExt::hot_upgrade)"),
                    },
                    // Off is not installed.
                    SignalAction::Ignore | SignalAction::Off => tracing::info!("{sig} ignored"),
                },
            }
        }
    }
}

/// The custom shutdown future, once; never again after it fired.
async fn wait(custom: &mut Option<ShutdownFuture>) {
    match custom {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

fn stop(cluster: &Cluster, graceful: bool) {
    let cluster = cluster.clone();
    tokio::spawn(async move { cluster.stop(graceful).await });
}
