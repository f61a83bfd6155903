//! `control = false` opens no control socket; `log = "off"` installs no
//! subscriber (so the program may install its own after the cluster).

use std::sync::atomic::{AtomicUsize, Ordering};

static WORKERS: AtomicUsize = AtomicUsize::new(0);

#[cluster_thread::main(workers = 2, control = false, log = "off")]
async fn cluster(worker: cluster_thread::Worker) {
    WORKERS.fetch_add(1, Ordering::SeqCst);
    // No subscriber was installed for this program.
    assert!(!tracing::dispatcher::has_been_set());
    worker.disconnect();
}

fn main() {
    let dir = std::env::temp_dir().join(format!("ui-control-{}", std::process::id()));
    std::env::set_var("CLUSTER_THREAD_CONTROL", &dir);
    assert_eq!(cluster(), std::process::ExitCode::SUCCESS);
    assert_eq!(WORKERS.load(Ordering::SeqCst), 2);
    // Not even the directory was made.
    assert!(!dir.exists(), "{}", dir.display());
}
