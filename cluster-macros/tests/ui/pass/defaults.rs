// Without arguments, the workers see the default settings.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::Worker;

static SEEN: Mutex<Vec<Args>> = Mutex::new(Vec::new());

#[cluster_thread::main]
async fn defaults(worker: Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push((*args).clone());
    }
}

fn main() {
    std::env::remove_var("CLUSTER_THREAD_WORKERS");
    std::env::remove_var("CLUSTER_THREAD_BALANCE");
    std::env::remove_var("CLUSTER_THREAD_DRAIN_DELAY");
    assert_eq!(defaults(), ExitCode::SUCCESS);
    let seen = SEEN.lock().unwrap();
    let auto = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(seen.len(), auto);
    for args in seen.iter() {
        assert_eq!(args.workers, None);
        assert_eq!(args.port, "shared");
        assert_eq!(args.balance, "round-robin");
        assert_eq!(args.restart, "on-failure");
        assert_eq!(args.shutdown_timeout_ms, 30_000);
        assert_eq!(args.drain_delay_ms, 0);
        assert_eq!(args.on_panic, "restart");
    }
}
