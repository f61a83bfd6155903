// CLUSTER_THREAD_BALANCE overrides `balance` at run time (read by
// cluster-net, as for a builder program); an invalid value fails the
// `listen`, naming the variable, and so the start (exit code failure).
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::{Balance, Worker, WorkerExt};

static SEEN: Mutex<Vec<Result<Balance, String>>> = Mutex::new(Vec::new());

#[cluster_thread::main(workers = 1, balance = "os")]
async fn os(worker: Worker) -> Result<(), cluster_thread::net::Error> {
    let listened = worker.listen("127.0.0.1:0").await;
    SEEN.lock()
        .unwrap()
        .push(listened.as_ref().map(|l| l.balance()).map_err(|e| e.to_string()));
    listened.map(drop)
}

fn main() {
    std::env::set_var("CLUSTER_THREAD_BALANCE", "sticky");
    assert_eq!(os(), ExitCode::SUCCESS);
    std::env::set_var("CLUSTER_THREAD_BALANCE", "fastest");
    assert_eq!(os(), ExitCode::FAILURE);
    std::env::remove_var("CLUSTER_THREAD_BALANCE");
    assert_eq!(os(), ExitCode::SUCCESS);
    let seen = SEEN.lock().unwrap();
    assert_eq!(seen[0], Ok(Balance::Sticky));
    let bad = seen[1].as_ref().unwrap_err();
    assert!(bad.contains("CLUSTER_THREAD_BALANCE=\"fastest\""), "{bad}");
    assert_eq!(seen[2], Ok(Balance::Os));
    assert_eq!(seen.len(), 3);
}
