// `balance`: the five modes, each the `Balance` of that name.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::{Balance, Worker};

static SEEN: Mutex<Vec<Option<Balance>>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.balance);
    }
}

#[cluster_thread::main(workers = 1, balance = "round-robin")]
async fn round_robin(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, balance = "least-connections")]
async fn least_connections(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, balance = "os")]
async fn os(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, balance = "reuseport")]
async fn reuseport(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, balance = "sticky")]
async fn sticky(worker: Worker) {
    record(&worker);
}

fn main() {
    std::env::remove_var("CLUSTER_THREAD_BALANCE");
    for run in [round_robin, least_connections, os, reuseport, sticky] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    let all: Vec<Option<Balance>> = Balance::ALL.into_iter().map(Some).collect();
    assert_eq!(*SEEN.lock().unwrap(), all);
}
