//! The primary's signal handling: SIGTERM and SIGINT stop, a second SIGINT
//! stops at once, SIGHUP reloads, SIGQUIT runs the hot upgrade handler (or
//! is ignored with a warning).

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::builder::ShutdownFuture;
use crate::{Cluster, Error, Phase};

pub(crate) struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
    quit: Option<Signal>,
}

impl Signals {
    /// Installs the handlers now, so that a signal arriving during start-up is
    /// not lost (nor kills the process by its default action).
    pub(crate) fn install(os: bool) -> Result<Signals, Error> {
        if !os {
            return Ok(Signals {
                term: None,
                int: None,
                hup: None,
                quit: None,
            });
        }
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| Error::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            term: Some(install(SignalKind::terminate(), "SIGTERM")?),
            int: Some(install(SignalKind::interrupt(), "SIGINT")?),
            hup: Some(install(SignalKind::hangup(), "SIGHUP")?),
            quit: Some(install(SignalKind::quit(), "SIGQUIT")?),
        })
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
                Some(()) = recv(&mut self.term) => {
                    tracing::info!("SIGTERM: stopping gracefully");
                    stop(&cluster, true);
                }
                Some(()) = recv(&mut self.int) => {
                    if interrupted {
                        tracing::warn!("second SIGINT: stopping now");
                        stop(&cluster, false);
                    } else {
                        tracing::info!("SIGINT: stopping gracefully (again to stop now)");
                        interrupted = true;
                        stop(&cluster, true);
                    }
                }
                Some(()) = recv(&mut self.hup) => {
                    tracing::info!("SIGHUP: reloading every worker");
                    let cluster = cluster.clone();
                    tokio::spawn(async move {
                        if let Err(e) = cluster.reload().await {
                            tracing::error!(error = %e, "reload failed");
                        }
                    });
                }
                Some(()) = recv(&mut self.quit) => match &cluster.inner.config.on_sigquit {
                    Some(handler) => {
                        tokio::spawn(handler(cluster.clone()));
                    }
                    None => tracing::warn!("SIGQUIT ignored: this program has no hot upgrade (see cluster_net::ClusterBuilderExt::hot_upgrade)"),
                },
            }
        }
    }
}

/// A signal's next delivery; never, for a signal not handled.
async fn recv(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
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
