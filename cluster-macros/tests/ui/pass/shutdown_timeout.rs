// `shutdown_timeout`: durations in ms, s, m, h, and combined: the workers'
// shutdown timeout.
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use cluster_thread::Worker;

static SEEN: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    SEEN.lock().unwrap().push(worker.shutdown_timeout());
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
    let ms: Vec<u128> = SEEN.lock().unwrap().iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [500, 30_000, 120_000, 3_600_000, 90_000]);
}
