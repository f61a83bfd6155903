// `port`: "shared" or "per-worker".
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::{Ports, Worker};

static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        let port = match args.port {
            Some(Ports::Shared) => "shared",
            Some(Ports::PerWorker) => "per-worker",
            _ => "something else",
        };
        SEEN.lock().unwrap().push(port);
    }
}

#[cluster_thread::main(workers = 1, port = "shared")]
async fn shared(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, port = "per-worker")]
async fn per_worker(worker: Worker) {
    record(&worker);
}

fn main() {
    for run in [shared, per_worker] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    assert_eq!(*SEEN.lock().unwrap(), ["shared", "per-worker"]);
}
