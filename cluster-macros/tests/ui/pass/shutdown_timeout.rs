// `shutdown_timeout`: durations in ms, s, m, h, and combined.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::Worker;

static SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.shutdown_timeout_ms);
    }
}

#[cluster_thread::main(workers = 1, shutdown_timeout = "500ms")]
async fn millis(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, shutdown_timeout = "30s")]
async fn seconds(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, shutdown_timeout = "2m")]
async fn minutes(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, shutdown_timeout = "1h")]
async fn hours(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, shutdown_timeout = "1m30s")]
async fn combined(worker: Worker) {
    record(&worker);
}

fn main() {
    for run in [millis, seconds, minutes, hours, combined] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    assert_eq!(
        *SEEN.lock().unwrap(),
        [500, 30_000, 120_000, 3_600_000, 90_000]
    );
}
