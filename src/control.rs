//! The control socket (crate `cluster-ctl`), with what this build of
//! cluster_thread can report and change through it.

pub use cluster_ctl::*;

// Named by the providers only (`http` turns on `net`).
#[cfg(feature = "net")]
use cluster_core::Cluster;

/// Given as state by the `setup` of a `#[cluster_thread::main]` program
/// (`builder.state(cluster_thread::control::Off)`), keeps the control
/// socket closed, as the macro's `control = false` at compile time or
/// `CLUSTER_THREAD_CONTROL=off` from outside. (A builder program has no
/// control socket unless it calls `control`.)
#[derive(Debug, Clone, Copy, Default)]
pub struct Off;

/// A [`Control`] that knows this build's crates: each worker's open
/// connections and the listeners (`net`), each slot's requests (`http`),
/// the hot upgrade and the `max_connections` setting (`net`). What
/// `#[cluster_thread::main]` opens; for a builder program:
///
/// ```no_run
/// use cluster_thread::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// cluster_thread::Cluster::builder()
///     .from_env()?
///     .control(cluster_thread::control::standard().version(env!("CARGO_PKG_VERSION")))?
///     .run(|worker| async move { worker.disconnected().await })?;
/// # Ok(()) }
/// ```
pub fn standard() -> Control {
    let control = Control::new().setting(max_memory());
    #[cfg(feature = "net")]
    let control = control
        .stats(net_stats)
        .upgrade(upgrade, cluster_net::upgrade::handed_over)
        .setting(max_connections());
    #[cfg(feature = "http")]
    let control = control.stats(http_stats);
    control
}

/// Each worker's open connections, every listener together, and each
/// listening socket.
#[cfg(feature = "net")]
fn net_stats(cluster: &Cluster, stats: &mut Stats) {
    use std::collections::BTreeMap;
    let mut workers: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    let mut sockets: BTreeMap<String, (&'static str, u64)> = BTreeMap::new();
    for s in cluster_net::stats(cluster) {
        let active = s.active as u64;
        *workers.entry((s.slot, s.worker)).or_default() += active;
        let socket = sockets
            .entry(s.address.to_string())
            .or_insert((s.balance.name(), 0));
        socket.1 += active;
    }
    for ((slot, worker), connections) in workers {
        stats.slot(
            slot,
            SlotFigures::new(Some(worker), Some(connections), None),
        );
    }
    for (address, (balance, connections)) in sockets {
        stats.listener(address, balance.to_owned(), connections);
    }
}

/// Each slot's requests so far.
#[cfg(feature = "http")]
fn http_stats(cluster: &Cluster, stats: &mut Stats) {
    for s in cluster_http::slot_stats(cluster) {
        stats.slot(s.slot, SlotFigures::new(None, None, Some(s.requests)));
    }
}

/// The hot upgrade, if the program has one (`hot_upgrade()` or `from_env()` was called).
#[cfg(feature = "net")]
async fn upgrade(cluster: Cluster) -> Result<u32, String> {
    if cluster.state::<cluster_net::upgrade::Inherited>().is_none() {
        return Err("this program has no hot upgrade (ClusterBuilderExt::hot_upgrade)".into());
    }
    cluster_net::upgrade::upgrade(&cluster, None)
        .await
        .map_err(|e| e.to_string())
}

/// `max_memory`: refused unless each worker's memory is known (`jemalloc`).
fn max_memory() -> LiveSetting {
    LiveSetting::new(
        "max_memory",
        "a worker whose memory passes it is replaced gracefully (256MiB, 1GiB, off); needs the jemalloc feature",
        |c| {
            if crate::memory::known(c) {
                crate::memory::show_limit(crate::memory::limit(c))
            } else {
                "unknown memory per worker (no jemalloc feature): off".to_owned()
            }
        },
        |c, v| {
            let limit = crate::memory::parse_limit(v).map_err(|e| format!("{v:?}: {e} (such as 256MiB, 1GiB, or off)"))?;
            crate::memory::set_limit(c, limit).map_err(|e| e.to_string())
        },
    )
}

/// The cluster's connection cap.
#[cfg(feature = "net")]
fn max_connections() -> LiveSetting {
    LiveSetting::new(
        "max_connections",
        "open connections allowed in the whole cluster (the connection cap; at it, idle keep-alive connections close first)",
        |c| {
            cluster_net::cap_stats(c)
                .map_or_else(|| "not listening yet".to_owned(), |cap| cap.limit.to_string())
        },
        |c, v| {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not a number of connections"))?;
            cluster_net::set_connection_cap(c, n).map_err(|e| e.to_string())
        },
    )
}
