// `drain_delay`: a duration, zero allowed; CLUSTER_THREAD_DRAIN_DELAY overrides it.
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use cluster_thread::__private::Args;
use cluster_thread::Worker;

static SEEN: Mutex<Vec<Option<Duration>>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.drain_delay);
    }
}

#[cluster_thread::main(workers = 1, drain_delay = "2s")]
async fn seconds(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, drain_delay = "0s")]
async fn none(worker: Worker) {
    record(&worker);
}

fn main() {
    std::env::remove_var("CLUSTER_THREAD_DRAIN_DELAY");
    assert_eq!(seconds(), ExitCode::SUCCESS);
    assert_eq!(none(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_DRAIN_DELAY", "750ms");
    assert_eq!(none(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_DRAIN_DELAY", "soon");
    assert_eq!(seconds(), ExitCode::FAILURE);
    let ms = |ms| Some(Duration::from_millis(ms));
    assert_eq!(*SEEN.lock().unwrap(), [ms(2_000), ms(0), ms(750)]);
}
