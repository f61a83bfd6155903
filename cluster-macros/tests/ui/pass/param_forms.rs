// The parameter may be written with any pattern and any path to `Worker`.
use std::process::ExitCode;

use cluster_thread as ct;
use cluster_thread::Worker;

#[cluster_thread::main(workers = 1)]
async fn underscore(_: Worker) {}

#[cluster_thread::main(workers = 1)]
async fn full_path(w: cluster_thread::Worker) {
    let _ = w.id();
}

#[cluster_thread::main(workers = 1)]
async fn renamed_path(mut w: ct::Worker) {
    w = w.clone();
    let _ = w.id();
}

#[cluster_thread::main(workers = 1)]
async fn parenthesized((worker): Worker) {
    let _ = worker.id();
}

fn main() {
    for run in [underscore, full_path, renamed_path, parenthesized] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
}
