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

/// A program whose `signals` argument remaps the upgrade to SIGUSR2 too
/// and turns SIGHUP off, and whose `setup` sets its own upgrade handler:
/// the generated `main` (which sets the hot upgrade's) must keep it.
#[cluster_thread::main(
    workers = 1,
    signals = "usr2=upgrade, sighup=off",
    shutdown_timeout = "120s",
    setup = own_upgrade
)]
async fn signals_program(worker: Worker) {
    println!("worker {} slot {} ready", worker.id(), worker.slot());
    worker.disconnected().await;
    println!("worker {} done", worker.id());
}

fn own_upgrade(builder: cluster_thread::ClusterBuilder) -> cluster_thread::ClusterBuilder {
    builder.on_upgrade(|cluster| async move {
        println!(
            "setup's upgrade handler, {} workers",
            cluster.workers().len()
        );
    })
}

/// The program, in the child process only (run with `--ignored`).
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let which =
        std::env::var_os(CHILD_ENV).expect("run by this module's tests, which set the program");
    let code = if which == "signals" {
        signals_program()
    } else {
        cluster_program()
    };
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

/// The program `which` as a child process.
fn start(which: &str) -> Run {
    let mut command = test_support::this_test("child_process::child");
    command
        .env(CHILD_ENV, which)
        .env_remove("CLUSTER_THREAD_WORKERS")
        .env_remove("CLUSTER_THREAD_BALANCE");
    Run::command("the macro's program", command)
}

#[test]
fn answers_and_exits_zero_on_sigterm() {
    let mut run = start("1");

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

/// `signals = "usr2=upgrade, sighup=off"` and a `setup` with its own
/// `on_upgrade`: SIGUSR2 and SIGQUIT run the setup's handler (not the hot
/// upgrade the generated `main` installs first), and SIGHUP, turned off, is
/// left to the OS (it ends the process).
#[test]
fn the_signals_argument_and_the_setups_upgrade_handler_are_kept() {
    use std::os::unix::process::ExitStatusExt;
    let mut run = start("signals");
    run.line(|l| ready(l).is_some());
    for signal in [libc::SIGUSR2, libc::SIGQUIT] {
        run.signal(signal);
        let line = run.line(|l| l.contains("upgrade handler"));
        assert!(
            line.ends_with("setup's upgrade handler, 1 workers"),
            "{line}"
        );
    }
    run.signal(libc::SIGHUP);
    let status = run.exit_status();
    assert_eq!(
        status.signal(),
        Some(libc::SIGHUP),
        "{status}; {:#?}",
        run.seen
    );
    assert!(
        run.seen.iter().all(|l| !l.ends_with(" done")),
        "{:#?}",
        run.seen
    );
}
