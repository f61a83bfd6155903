// `workers`: an integer, an integer in a string, or "auto".
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::{Worker, Workers};

static SEEN: Mutex<Vec<(&'static str, usize, Option<Workers>)>> = Mutex::new(Vec::new());

fn record(case: &'static str, worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock()
            .unwrap()
            .push((case, worker.slot(), args.workers));
    }
}

#[cluster_thread::main(workers = 1)]
async fn one(worker: Worker) {
    record("one", &worker);
}

#[cluster_thread::main(workers = 3)]
async fn three(worker: Worker) {
    record("three", &worker);
}

#[cluster_thread::main(workers = "2")]
async fn two_in_a_string(worker: Worker) {
    record("two_in_a_string", &worker);
}

#[cluster_thread::main(workers = "auto")]
async fn auto(worker: Worker) {
    record("auto", &worker);
}

fn slots(case: &str) -> (Vec<usize>, Vec<Option<Workers>>) {
    let seen = SEEN.lock().unwrap();
    let mut slots: Vec<usize> = seen.iter().filter(|s| s.0 == case).map(|s| s.1).collect();
    slots.sort();
    let workers = seen.iter().filter(|s| s.0 == case).map(|s| s.2).collect();
    (slots, workers)
}

fn main() {
    std::env::remove_var("CLUSTER_THREAD_WORKERS");
    for run in [one, three, two_in_a_string, auto] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    let count = |n| Some(Workers::Count(n));
    assert_eq!(slots("one"), (vec![0], vec![count(1)]));
    assert_eq!(slots("three"), (vec![0, 1, 2], vec![count(3); 3]));
    assert_eq!(slots("two_in_a_string"), (vec![0, 1], vec![count(2); 2]));
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(slots("auto"), ((0..n).collect(), vec![Some(Workers::Auto); n]));
}
