// Every setting of the builder from the attribute: what the cluster runs
// with (`Cluster::settings`) is what the attribute says, and the
// environment's variable overrides it at run time (read by the builder, as
// for a builder program).
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use cluster_thread::{Cluster, RestartPolicy, Settings, Signal, SignalAction, Worker};

static SEEN: Mutex<Vec<Settings>> = Mutex::new(Vec::new());

async fn record(cluster: Cluster) {
    SEEN.lock().unwrap().push(cluster.settings());
    cluster.disconnect().await;
}

#[cluster_thread::main(
    workers = 1,
    restart = "always",
    restart_delay = "250ms",
    min_uptime = "2s",
    max_restarts = 3,
    shutdown_timeout = "9s",
    kill_timeout = "1s",
    listen_timeout = "7s",
    drain_delay = "0s",
    signals = "all=off",
    pin_workers = false,
    wait_ready = true,
    stack_size = "4MiB",
    max_connections = 10000,
    connection_cap = 20000,
    control = false,
    log = "off",
    primary = record,
)]
async fn every_setting(worker: Worker) {
    worker.disconnected().await;
}

fn main() {
    for name in ["CLUSTER_THREAD_KILL_TIMEOUT", "CLUSTER_THREAD_SIGNALS"] {
        std::env::remove_var(name);
    }
    assert_eq!(every_setting(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_KILL_TIMEOUT", "3s");
    std::env::set_var("CLUSTER_THREAD_SIGNALS", "term=stop");
    assert_eq!(every_setting(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_KILL_TIMEOUT", "never");
    assert_eq!(every_setting(), ExitCode::FAILURE);
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let s = &seen[0];
    assert_eq!((s.workers, s.restart), (1, RestartPolicy::Always));
    assert_eq!(s.restart_delay, Duration::from_millis(250));
    assert_eq!((s.min_uptime, s.max_restarts), (Duration::from_secs(2), 3));
    assert_eq!(s.shutdown_timeout, Duration::from_secs(9));
    assert_eq!(s.kill_timeout, Duration::from_secs(1));
    assert_eq!(s.listen_timeout, Duration::from_secs(7));
    assert_eq!(s.drain_delay, Duration::ZERO);
    assert_eq!((s.pin_workers, s.stack_size), (false, Some(4 << 20)));
    assert!(s.wait_ready);
    assert!(s.signals.iter().all(|(_, a)| *a == SignalAction::Off), "{s:?}");
    // The variables' values, not the attribute's.
    let s = &seen[1];
    assert_eq!(s.kill_timeout, Duration::from_secs(3));
    let term = s.signals.iter().find(|(sig, _)| *sig == Signal::Term);
    assert_eq!(term, Some(&(Signal::Term, SignalAction::Stop)));
}
