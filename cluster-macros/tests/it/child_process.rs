//! A program made by `#[cluster_thread::main]` runs as a child process: its
//! workers answer, and SIGTERM stops it gracefully with exit status 0.
//!
//! The child is this test binary itself, run with `CLUSTER_MACROS_CHILD=1`
//! and only the `child` test selected: that test then calls the function the
//! macro generated, which runs the whole cluster.

use std::collections::BTreeSet;
use std::process::ExitCode;

use cluster_thread::Worker;
use test_support::Run;

const CHILD_ENV: &str = "CLUSTER_MACROS_CHILD";

/// The program under test: two workers, each says it is ready, then waits
/// until the primary disconnects it.
#[cluster_thread::main(workers = 2, restart = "on-failure", shutdown_timeout = "10s")]
async fn cluster_program(worker: Worker) {
    println!("worker {} slot {} ready", worker.id(), worker.slot());
    worker.disconnected().await;
    println!("worker {} done", worker.id());
}

/// Runs the program when this binary is the child; does nothing otherwise.
#[test]
fn child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let code = cluster_program();
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// `(id, slot)` of a `worker <id> slot <slot> ready` line (the test
/// harness's own `test child ... ` may begin the first line).
fn ready(line: &str) -> Option<(u64, usize)> {
    let rest = &line[line.find("worker ")? + "worker ".len()..];
    match rest.split(' ').collect::<Vec<_>>().as_slice() {
        [id, "slot", slot, "ready"] => Some((id.parse().ok()?, slot.parse().ok()?)),
        _ => None,
    }
}

#[test]
fn answers_and_exits_zero_on_sigterm() {
    let mut command = test_support::this_test("child_process::child");
    command
        .env(CHILD_ENV, "1")
        .env_remove("CLUSTER_THREAD_WORKERS")
        .env_remove("CLUSTER_THREAD_BALANCE");
    let mut run = Run::command("the macro's program", command);

    // Both workers answer.
    let (mut ids, mut slots) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..2 {
        let line = run.line(|l| ready(l).is_some());
        let (id, slot) = ready(&line).expect("the line just matched");
        ids.insert(id);
        slots.insert(slot);
    }
    assert_eq!(slots, BTreeSet::from([0, 1]), "{:#?}", run.seen);
    assert_eq!(ids.len(), 2, "two distinct worker ids: {:#?}", run.seen);

    // SIGTERM: a graceful stop, exit status 0, after each worker finished
    // its body.
    let early = run.child.try_wait().expect("waitpid");
    assert!(
        early.is_none(),
        "the child exited before SIGTERM: {early:?}"
    );
    run.signal(libc::SIGTERM);
    for id in &ids {
        run.line(|l| l.ends_with(&format!("worker {id} done")));
    }
    let status = run.exit_status();
    assert!(
        status.success(),
        "exit status {status}; stdout: {:#?}",
        run.seen
    );
}
