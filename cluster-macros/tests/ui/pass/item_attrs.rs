// The generated function keeps the name, visibility and attributes; the
// body's own inner attributes stay in the body.
#![deny(missing_docs)]
//! A crate whose public items need docs.

/// Runs the cluster.
#[cluster_thread::main(workers = 1)]
#[allow(clippy::needless_return)]
pub async fn serve(worker: cluster_thread::Worker) {
    #![allow(unused_variables)]
    let unused = worker.id();
    return;
}

fn main() {
    let code: std::process::ExitCode = serve();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}
