// Without arguments the macro sets nothing: the workers see the builder's,
// `NetConfig`'s and `HttpConfig`'s own defaults.
use std::process::ExitCode;
use std::sync::Mutex;

use cluster_thread::__private::Args;
use cluster_thread::http::HttpConfig;
use cluster_thread::{Worker, DEFAULT_SHUTDOWN_TIMEOUT};

static SEEN: Mutex<Vec<(Args, std::time::Duration, bool)>> = Mutex::new(Vec::new());

#[cluster_thread::main]
async fn defaults(worker: Worker) {
    if let Some(args) = worker.state::<Args>() {
        let http = worker.state::<HttpConfig>();
        let default_http = http.as_deref() == Some(&HttpConfig::default());
        SEEN.lock()
            .unwrap()
            .push(((*args).clone(), worker.shutdown_timeout(), default_http));
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
    for (args, shutdown_timeout, default_http) in seen.iter() {
        assert_eq!(args.workers, None);
        assert!(args.port.is_none());
        assert_eq!(args.balance, None);
        assert_eq!(args.restart, None);
        assert_eq!(args.shutdown_timeout, None);
        assert_eq!(args.drain_delay, None);
        assert_eq!(args.on_panic, None);
        assert_eq!(*shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert!(default_http);
    }
}
