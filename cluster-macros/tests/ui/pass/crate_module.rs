// `crate = "..."`: the expansion goes through the given path. This facade
// wraps `__private::run` to prove it is the one called.
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

static CALLED: AtomicBool = AtomicBool::new(false);

mod facade {
    pub use cluster_thread::*;

    pub mod __private {
        // Everything the expansion names, and this `run` in place of the facade's.
        pub use cluster_thread::__private::*;
        use std::future::Future;
        use std::process::ExitCode;
        use std::sync::atomic::Ordering;

        pub fn run<F, Fut>(args: Args, worker: F) -> ExitCode
        where
            F: Fn(__Worker) -> Fut + Send + Sync + 'static,
            Fut: Future + 'static,
            Fut::Output: cluster_thread::TaskResult,
        {
            super::super::CALLED.store(true, Ordering::SeqCst);
            cluster_thread::__private::run(args, worker)
        }
    }
}

#[cluster_thread::main(crate = "crate::facade", workers = 1)]
async fn through_facade(worker: facade::Worker) {
    let _ = worker.slot();
}

fn main() {
    assert_eq!(through_facade(), ExitCode::SUCCESS);
    assert!(CALLED.load(Ordering::SeqCst));
}
