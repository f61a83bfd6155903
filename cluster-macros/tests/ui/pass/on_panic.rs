// `on_panic`: "ignore" or "restart", in the cluster's `HttpConfig`.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::http::{HttpConfig, OnPanic};
use cluster_thread::Worker;

static SEEN: Mutex<Vec<Option<OnPanic>>> = Mutex::new(Vec::new());

fn record(worker: &Worker) {
    let http = worker.state::<HttpConfig>();
    let mode = [OnPanic::Ignore, OnPanic::Restart]
        .into_iter()
        .find(|&mode| http.as_deref() == Some(&HttpConfig::default().on_panic(mode)));
    SEEN.lock().unwrap().push(mode);
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
    assert_eq!(
        *SEEN.lock().unwrap(),
        [Some(OnPanic::Ignore), Some(OnPanic::Restart)]
    );
}
