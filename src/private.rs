//! What only the output of `#[cluster_thread::main]` needs. Not a public API:
//! it changes without notice.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use cluster_core::{Cluster, ClusterBuilder, RestartPolicy, TaskResult, Worker, Workers};

pub use cluster_core::{Cluster as __Cluster, Worker as __Worker};

/// The macro's arguments, checked at compile time by the macro.
#[derive(Debug, Clone)]
pub struct Args {
    /// `None` for `"auto"`.
    pub workers: Option<usize>,
    /// `"shared"` or `"per-worker"`.
    pub port: &'static str,
    /// `"round-robin"`, `"least-connections"`, `"os"`, `"reuseport"` or `"sticky"`.
    pub balance: &'static str,
    /// `"never"`, `"on-failure"` or `"always"`.
    pub restart: &'static str,
    /// The shutdown timeout, in milliseconds.
    pub shutdown_timeout_ms: u64,
    /// `"ignore"` or `"restart"`.
    pub on_panic: &'static str,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            workers: None,
            port: "shared",
            balance: "round-robin",
            restart: "on-failure",
            shutdown_timeout_ms: 30_000,
            on_panic: "restart",
        }
    }
}

impl Args {
    /// The cluster builder these arguments describe.
    pub fn builder(&self) -> ClusterBuilder {
        let restart = match self.restart {
            "never" => RestartPolicy::Never,
            "always" => RestartPolicy::Always,
            _ => RestartPolicy::OnFailure,
        };
        Cluster::builder()
            .workers(self.workers.map_or(Workers::Auto, Workers::Count))
            .restart(restart)
            .shutdown_timeout(Duration::from_millis(self.shutdown_timeout_ms))
            .state(self.clone())
    }
}

/// `fn main` of a program using the macro without `primary = ...`.
pub fn run<F, Fut>(args: Args, worker: F) -> ExitCode
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: TaskResult,
{
    exit(args.builder().run(worker))
}

/// `fn main` of a program using the macro with `primary = path`.
pub fn run_with_primary<F, Fut, P, PFut>(args: Args, worker: F, primary: P) -> ExitCode
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: TaskResult,
    P: FnOnce(Cluster) -> PFut,
    PFut: Future + 'static,
    PFut::Output: TaskResult,
{
    exit(args.builder().run_with_primary(worker, primary))
}

#[allow(clippy::print_stderr)] // the program's own `main` reports its fatal error
fn exit(result: Result<(), cluster_core::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
