// CLUSTER_THREAD_BALANCE overrides `balance` at run time; an invalid value
// stops the program at start (exit code failure, no worker runs).
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::{Balance, Worker};

static SEEN: Mutex<Vec<Option<Balance>>> = Mutex::new(Vec::new());

#[cluster_thread::main(workers = 1, balance = "os")]
async fn os(worker: Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.balance);
    }
}

fn main() {
    std::env::set_var("CLUSTER_THREAD_BALANCE", "sticky");
    assert_eq!(os(), ExitCode::SUCCESS);
    assert_eq!(*SEEN.lock().unwrap(), [Some(Balance::Sticky)]);

    std::env::set_var("CLUSTER_THREAD_BALANCE", "fastest");
    assert_eq!(os(), ExitCode::FAILURE);
    assert_eq!(SEEN.lock().unwrap().len(), 1);

    std::env::remove_var("CLUSTER_THREAD_BALANCE");
    assert_eq!(os(), ExitCode::SUCCESS);
    assert_eq!(
        *SEEN.lock().unwrap(),
        [Some(Balance::Sticky), Some(Balance::Os)]
    );
}
