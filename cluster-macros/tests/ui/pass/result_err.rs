// A worker that returns an error ends with that error's text; with
// `restart = "never"` it is not restarted and the cluster stops.
use std::fmt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use cluster_thread::{Cluster, ClusterEvent, ExitReason};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused to work")
    }
}

#[cluster_thread::main(workers = 1, restart = "never", primary = watch)]
async fn refuses() -> Result<(), Refused> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Err(Refused)
}

async fn watch(cluster: Cluster) -> Result<(), String> {
    let mut events = cluster.events();
    while let Some(event) = events.recv().await {
        if let ClusterEvent::Exit { reason, .. } = event {
            return match reason {
                ExitReason::Error(text) if text == "refused to work" => Ok(()),
                other => Err(format!("unexpected exit: {other:?}")),
            };
        }
    }
    Err("no exit event".to_owned())
}

fn main() {
    assert_eq!(refuses(), ExitCode::SUCCESS);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
