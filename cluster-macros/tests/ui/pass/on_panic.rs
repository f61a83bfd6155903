// `on_panic`: "ignore" or "restart".
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::Worker;

static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    if let Some(args) = worker.state::<Args>() {
        SEEN.lock().unwrap().push(args.on_panic);
    }
}

#[cluster_thread::main(workers = 1, on_panic = "ignore")]
async fn ignore(worker: Worker) {
    record(&worker);
}

#[cluster_thread::main(workers = 1, on_panic = "restart")]
async fn restart(worker: Worker) {
    record(&worker);
}

fn main() {
    for run in [ignore, restart] {
        assert_eq!(run(), ExitCode::SUCCESS);
    }
    assert_eq!(*SEEN.lock().unwrap(), ["ignore", "restart"]);
}
