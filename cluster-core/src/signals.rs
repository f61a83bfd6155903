//! The primary's signal handling: each signal's [`SignalAction`], set per
//! signal on the builder. By default SIGTERM stops gracefully, SIGINT too
//! (a second one at once), SIGHUP reloads, SIGQUIT runs the hot upgrade
//! (or is ignored with a warning); SIGUSR1 and SIGUSR2 are left alone.
//! Below the cluster: what a signal asks is an [`Order`] the cluster obeys.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use tokio::signal::unix::{signal, Signal as UnixSignal, SignalKind};

use crate::Error;

/// A future whose completion stops the cluster gracefully
/// ([`ClusterBuilder::shutdown_signal`](crate::ClusterBuilder::shutdown_signal)).
pub(crate) type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

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
    /// Stops gracefully, as [`Cluster::disconnect`](crate::Cluster::disconnect) (after the drain delay).
    Stop,
    /// As Ctrl-C: the first stops gracefully, a second one (of any signal
    /// with this action) stops at once, skipping the drain delay.
    Interrupt,
    /// Stops at once, as [`Cluster::stop(false)`](crate::Cluster::stop): every
    /// worker is killed.
    StopNow,
    /// Replaces every worker, one at a time ([`Cluster::reload`](crate::Cluster::reload)).
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

/// One entry of a list of signal actions: a signal (`None`: every one)
/// and its action.
pub(crate) type SignalEntry = (Option<Signal>, SignalAction);

/// Parses `"usr2=upgrade, hup=off, int=stop-now"` (the macro's `signals`
/// and `CLUSTER_THREAD_SIGNALS`): entries applied in order, each a signal
/// (`SIG` and case optional) or `all`, and an action's name.
pub(crate) fn parse_entries(text: &str) -> Option<Vec<SignalEntry>> {
    text.split(',')
        .map(|entry| {
            let (signal, action) = entry.split_once('=')?;
            let signal = signal.trim().to_ascii_lowercase();
            let bare = signal.strip_prefix("sig").unwrap_or(&signal);
            let signal = match bare {
                "all" => None,
                _ => Some(
                    *Signal::ALL
                        .iter()
                        .find(|s| s.name().eq_ignore_ascii_case(&format!("sig{bare}")))?,
                ),
            };
            let action = action.trim().to_ascii_lowercase().replace('_', "-");
            let action = *SignalAction::ALL.iter().find(|a| a.name() == action)?;
            Some((signal, action))
        })
        .collect()
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

    /// Turns the signals handled, and the custom shutdown future, into
    /// [`Order`]s for `obey`, until `stopped` completes. The second signal
    /// with [`SignalAction::Interrupt`] stops at once.
    pub(crate) async fn watch(
        mut self,
        stopped: impl Future<Output = ()>,
        mut custom: Option<ShutdownFuture>,
        mut obey: impl FnMut(Order),
    ) {
        tokio::pin!(stopped);
        let mut interrupted = false;
        loop {
            tokio::select! {
                () = &mut stopped => return,
                () = wait(&mut custom) => {
                    tracing::info!("shutdown signal: stopping gracefully");
                    custom = None;
                    obey(Order::Stop { graceful: true });
                }
                (sig, action) = self.next() => match action {
                    SignalAction::Stop => {
                        tracing::info!("{sig}: stopping gracefully");
                        obey(Order::Stop { graceful: true });
                    }
                    SignalAction::Interrupt if interrupted => {
                        tracing::warn!("second {sig}: stopping now");
                        obey(Order::Stop { graceful: false });
                    }
                    SignalAction::Interrupt => {
                        tracing::info!("{sig}: stopping gracefully (again to stop now)");
                        interrupted = true;
                        obey(Order::Stop { graceful: true });
                    }
                    SignalAction::StopNow => {
                        tracing::warn!("{sig}: stopping now");
                        obey(Order::Stop { graceful: false });
                    }
                    SignalAction::Reload => {
                        tracing::info!("{sig}: reloading every worker");
                        obey(Order::Reload);
                    }
                    SignalAction::Upgrade => obey(Order::Upgrade(sig)),
                    // Off is not installed.
                    SignalAction::Ignore | SignalAction::Off => tracing::info!("{sig} ignored"),
                },
            }
        }
    }
}

/// What a signal (or the shutdown future) asks of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Stop, gracefully (after the drain delay) or at once.
    Stop { graceful: bool },
    /// Replace every worker, one at a time.
    Reload,
    /// Run the upgrade handler; the signal that asked.
    Upgrade(Signal),
}

/// The custom shutdown future, once; never again after it fired.
async fn wait(custom: &mut Option<ShutdownFuture>) {
    match custom {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}
