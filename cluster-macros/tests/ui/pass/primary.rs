// `primary`: a function run on the primary with the cluster handle, returning
// `()` or a `Result`; given as a bare path or in a string. A primary that
// fails stops the cluster with a failure exit code.
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use cluster_thread::{Cluster, ClusterEvent, Worker};

static PRIMARY_RUNS: AtomicUsize = AtomicUsize::new(0);
static ANSWERS: AtomicUsize = AtomicUsize::new(0);

/// Each worker answers the primary's message with its slot, then waits.
async fn answer(worker: Worker) -> Result<(), cluster_thread::Error> {
    let question = worker.recv().await;
    let n = question.downcast_ref::<usize>().copied().unwrap_or(0);
    worker.send(n + worker.slot())?;
    worker.disconnected().await;
    Ok(())
}

mod app {
    use super::*;

    /// Asks every worker, waits for both answers, then stops the cluster.
    pub async fn ask(cluster: Cluster) {
        PRIMARY_RUNS.fetch_add(1, Ordering::SeqCst);
        let mut events = cluster.events();
        let mut online = 0;
        while let Some(event) = events.recv().await {
            match event {
                ClusterEvent::Online { .. } => {
                    online += 1;
                    if online == 2 {
                        cluster.broadcast(40usize);
                    }
                }
                ClusterEvent::Message { message, .. } => {
                    assert!(message.downcast_ref::<usize>().is_some());
                    if ANSWERS.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                        cluster.disconnect().await;
                    }
                }
                _ => {}
            }
        }
    }
}

async fn ask_then_ok(cluster: Cluster) -> Result<(), String> {
    app::ask(cluster).await;
    Ok(())
}

async fn fails(_cluster: Cluster) -> Result<(), String> {
    PRIMARY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err("the primary gave up".to_owned())
}

#[cluster_thread::main(workers = 2, primary = app::ask)]
async fn bare_path(worker: Worker) -> Result<(), cluster_thread::Error> {
    answer(worker).await
}

#[cluster_thread::main(workers = 2, primary = "ask_then_ok")]
async fn path_in_a_string(worker: Worker) -> Result<(), cluster_thread::Error> {
    answer(worker).await
}

#[cluster_thread::main(workers = 1, primary = fails)]
async fn failing_primary(worker: Worker) {
    worker.disconnected().await;
}

fn main() {
    assert_eq!(bare_path(), ExitCode::SUCCESS);
    assert_eq!(path_in_a_string(), ExitCode::SUCCESS);
    assert_eq!(ANSWERS.load(Ordering::SeqCst), 4);
    assert_eq!(failing_primary(), ExitCode::FAILURE);
    assert_eq!(PRIMARY_RUNS.load(Ordering::SeqCst), 3);
}
