//! Signals sent to a real child process: SIGTERM stops gracefully and exits 0
//! after the workers finished; a second SIGINT stops at once.
//!
//! The child is this test binary itself, re-run with `CLUSTER_CORE_CHILD` set,
//! so that the cluster owns the whole process and its signals.

use std::time::Duration;

use cluster_core::{Cluster, Phase};
use test_support::{this_test, Run};

const CHILD: &str = "CLUSTER_CORE_CHILD";

/// Runs in the child process only: the program under test.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let stubborn = mode == "stubborn";
    // An hour: only a second SIGINT ends such a stop within the test.
    let delay = if mode == "delayed" { 3600 } else { 0 };
    let builder = Cluster::builder();
    let builder = if mode == "quit-handler" {
        builder.on_sigquit(|cluster| async move {
            println!("sigquit handled, phase {}", cluster.phase());
        })
    } else {
        builder
    };
    builder
        .workers(2)
        .shutdown_timeout(Duration::from_secs(120))
        .drain_delay(Duration::from_secs(delay))
        .run_with_primary(
            move |w| async move {
                println!("online {}", w.id());
                if stubborn {
                    // Ignores the disconnect: only a kill ends it.
                    std::future::pending::<()>().await;
                }
                w.disconnected().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                println!("finished {}", w.id());
            },
            |cluster| async move {
                let mut phases = cluster.phases();
                let _ = phases.wait_for(|p| *p >= Phase::Draining).await;
                println!("draining");
            },
        )
        .unwrap();
    println!("primary exits");
}

/// The child in `mode`.
fn start(mode: &str) -> Run {
    let mut command = this_test("signals::child");
    command.env(CHILD, mode);
    Run::command(mode, command)
}

/// Waits for the exit; the status and the lines not read yet.
fn wait(mut run: Run) -> (std::process::ExitStatus, Vec<String>) {
    let status = run.exit_status();
    (status, run.rest())
}

#[test]
fn sigterm_stops_gracefully_after_the_workers_finish_and_exits_0() {
    let mut run = start("graceful");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGTERM);
    let mut finished = vec![
        run.line(|l| l.starts_with("finished ")),
        run.line(|l| l.starts_with("finished ")),
    ];
    finished.sort();
    assert_eq!(finished, ["finished 1", "finished 2"]);
    let (status, rest) = wait(run);
    assert!(status.success(), "{status}");
    assert!(rest.iter().any(|l| l.contains("primary exits")), "{rest:?}");
}

#[test]
fn a_second_sigint_stops_at_once() {
    let mut run = start("stubborn");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGINT);
    // The first SIGINT only drains; the workers ignore it (shutdown timeout 120 s).
    run.line(|l| l.ends_with("draining"));
    run.signal(libc::SIGINT);
    // Far less than the 120 s shutdown timeout: the workers were killed.
    let (status, rest) = wait(run);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}

/// Without a hot upgrade, SIGQUIT (whose default action dumps core) is
/// ignored: the cluster serves on, and stops gracefully on SIGTERM.
#[test]
fn sigquit_without_a_handler_is_ignored() {
    let mut run = start("graceful");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGQUIT);
    run.signal(libc::SIGQUIT);
    run.signal(libc::SIGTERM);
    run.line(|l| l.starts_with("finished "));
    let (status, _) = wait(run);
    assert!(status.success(), "{status}");
}

#[test]
fn sigquit_runs_the_handler_given_to_the_builder() {
    let mut run = start("quit-handler");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGQUIT);
    run.line(|l| l.starts_with("sigquit handled"));
    run.signal(libc::SIGTERM);
    let (status, _) = wait(run);
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigint_skips_the_drain_delay() {
    let mut run = start("delayed");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGINT);
    // Draining at once; the workers would be disconnected only in an hour.
    run.line(|l| l.ends_with("draining"));
    run.signal(libc::SIGINT);
    let (status, rest) = wait(run);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}
