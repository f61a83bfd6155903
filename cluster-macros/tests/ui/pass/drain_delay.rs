// `drain_delay`: a duration (humantime's grammar, zero allowed);
// CLUSTER_THREAD_DRAIN_DELAY overrides it at run time (read by the builder,
// as for a builder program). Measured: a graceful stop disconnects the
// worker only after the delay.
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster_thread::{Cluster, Phase, Worker};

static SEEN: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

async fn serve(worker: Worker) {
    worker.ready();
    worker.disconnected().await;
}

/// Stops the cluster once it listens; records how long the stop took.
async fn stop(cluster: Cluster) {
    let _ = cluster.phases().wait_for(|p| *p == Phase::Listening).await;
    let began = Instant::now();
    cluster.disconnect().await;
    SEEN.lock().unwrap().push(began.elapsed());
}

#[cluster_thread::main(workers = 1, drain_delay = "1.5 s", primary = stop)]
async fn delayed(worker: Worker) {
    serve(worker).await;
}

#[cluster_thread::main(workers = 1, drain_delay = "1h", primary = stop)]
async fn an_hour(worker: Worker) {
    serve(worker).await;
}

fn main() {
    std::env::remove_var("CLUSTER_THREAD_DRAIN_DELAY");
    assert_eq!(delayed(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_DRAIN_DELAY", "200ms");
    assert_eq!(an_hour(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_DRAIN_DELAY", "soon");
    assert_eq!(delayed(), ExitCode::FAILURE);
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0] >= Duration::from_millis(1_500), "{seen:?}");
    // The variable's 200 ms, not the attribute's hour.
    assert!(seen[1] >= Duration::from_millis(200), "{seen:?}");
    assert!(seen[1] < Duration::from_secs(600), "{seen:?}");
}
