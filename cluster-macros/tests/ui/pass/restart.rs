// `restart`: "never", "on-failure", "always". With "always" a returning
// worker would come back forever, so that worker waits until the primary
// disconnects the cluster.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::{Cluster, RestartPolicy, Worker};

static SEEN: Mutex<Vec<Option<RestartPolicy>>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.restart);
    }
}

#[cluster_thread::main(workers = 1, restart = "never")]
async fn never(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, restart = "on-failure")]
async fn on_failure(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, restart = "always", primary = stop)]
async fn always(worker: Worker) {
    record(&worker);
    worker.disconnected().await;
}

async fn stop(cluster: Cluster) {
    cluster.disconnect().await;
}

fn main() {
    for run in [never, on_failure, always] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    assert_eq!(
        *SEEN.lock().unwrap(),
        [
            Some(RestartPolicy::Never),
            Some(RestartPolicy::OnFailure),
            Some(RestartPolicy::Always)
        ]
    );
}
