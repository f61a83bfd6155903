//! Signals sent to a real child process: SIGTERM stops gracefully and exits 0
//! after the workers finished; a second SIGINT stops at once; each signal's
//! action can be changed, or left to the program.
//!
//! The child is this test binary itself, re-run with `CLUSTER_CORE_CHILD` set,
//! so that the cluster owns the whole process and its signals.

use std::time::Duration;

use std::os::unix::process::ExitStatusExt;
use std::time::Instant;

use cluster_core::{Cluster, ClusterEvent, Phase, Signal, SignalAction};
use test_support::{this_test, Run};
use tokio::signal::unix::{signal, SignalKind};

const CHILD: &str = "CLUSTER_CORE_CHILD";

/// Runs in the child process only: the program under test, in `mode`.
#[test]
#[ignore = "a child process: run by the tests of this module (test_support::this_test)"]
fn child() {
    let mode = std::env::var(CHILD).expect("run by this module's tests, which set the mode");
    if mode == "shutdown-signal" {
        return shutdown_signal_child();
    }
    let stubborn = mode == "stubborn";
    let own = mode == "own-handling";
    // An hour: only a second SIGINT ends such a stop within the test.
    let delay = if mode == "delayed" { 3600 } else { 0 };
    let builder = Cluster::builder().drain_delay(Duration::from_secs(delay));
    let builder = match mode.as_str() {
        "quit-handler" => builder.on_upgrade(|cluster| async move {
            println!("upgrade handled, phase {}", cluster.phase());
        }),
        // As nginx: SIGUSR2 upgrades, SIGQUIT stops gracefully, SIGINT at
        // once, SIGHUP is not handled.
        "nginx" => builder
            .on_signal(Signal::Usr2, SignalAction::Upgrade)
            .on_signal(Signal::Quit, SignalAction::Stop)
            .on_signal(Signal::Int, SignalAction::StopNow)
            .on_signal(Signal::Hup, SignalAction::Off)
            .on_upgrade(|cluster| async move {
                println!("upgrade handled, phase {}", cluster.phase());
            }),
        "own-handling" => builder.signals(false),
        _ => builder,
    };
    builder
        .workers(2)
        .shutdown_timeout(Duration::from_secs(120))
        .run_with_primary(
            move |w| async move {
                w.ready();
                println!("online {}", w.id());
                if stubborn {
                    // Ignores the disconnect: only a kill ends it.
                    std::future::pending::<()>().await;
                }
                w.disconnected().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                println!("finished {}", w.id());
            },
            move |cluster| async move {
                if own {
                    return own_handling(cluster).await;
                }
                let mut events = cluster.events();
                let mut phases = cluster.phases();
                let _ = phases.wait_for(|p| *p >= Phase::Draining).await;
                let began = Instant::now();
                println!("draining");
                while let Some(e) = events.recv().await {
                    if let ClusterEvent::Disconnect { .. } = e {
                        println!("disconnect after {} ms", began.elapsed().as_millis());
                        break;
                    }
                }
            },
        )
        .unwrap();
    println!("primary exits");
}

/// The program's own handling, with the cluster's off: SIGTERM reloads
/// (the cluster's own would stop), twice.
async fn own_handling(cluster: Cluster) {
    let mut term = signal(SignalKind::terminate()).unwrap();
    let _ = cluster.phases().wait_for(|p| *p == Phase::Listening).await;
    println!("own handler installed");
    for _ in 0..2 {
        term.recv().await;
        println!(
            "own SIGTERM: reloaded {:?}",
            cluster.reload().await.map_err(|e| e.to_string())
        );
    }
}

/// `shutdown_signal`: the cluster's signals off, its stop a future of the
/// program's (here SIGUSR1, installed before the cluster starts).
fn shutdown_signal_child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
        let cluster = Cluster::builder()
            .workers(2)
            .signals(false)
            .shutdown_timeout(Duration::from_secs(120))
            .shutdown_signal(async move {
                usr1.recv().await;
                println!("shutdown signal");
            })
            .build(|w| async move {
                println!("online {}", w.id());
                w.disconnected().await;
                println!("finished {}", w.id());
            })
            .unwrap();
        cluster.start().unwrap();
        cluster.wait().await.unwrap();
    });
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
    run.line(|l| l.starts_with("upgrade handled"));
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

/// CLUSTER_THREAD_DRAIN_DELAY is honoured by a builder program (the builder
/// reads it): the workers are disconnected only after it.
#[test]
fn the_drain_delay_variable_delays_a_builder_programs_stop() {
    let mut command = this_test("signals::child");
    command
        .env(CHILD, "graceful")
        .env(cluster_core::DRAIN_DELAY_ENV, "1500ms");
    let mut run = Run::command("drain delay from the environment", command);
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGTERM);
    let line = run.line(|l| l.starts_with("disconnect after "));
    let ms: u64 = line["disconnect after ".len()..]
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms >= 1_500, "{line}");
    let (status, _) = wait(run);
    assert!(status.success(), "{status}");
}

/// As nginx users expect: SIGUSR2 runs the upgrade handler, SIGQUIT stops
/// gracefully (the workers finish, exit 0).
#[test]
fn a_remapped_upgrade_signal_runs_the_upgrade_handler() {
    let mut run = start("nginx");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGUSR2);
    let line = run.line(|l| l.starts_with("upgrade handled"));
    assert_eq!(line, "upgrade handled, phase listening");
    run.signal(libc::SIGQUIT);
    run.line(|l| l.starts_with("finished "));
    run.line(|l| l.starts_with("finished "));
    let (status, rest) = wait(run);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("upgrade")), "{rest:?}");
}

/// SIGINT mapped to `StopNow`: one stops at once (the workers are killed,
/// never finish), exit 0.
#[test]
fn sigint_can_stop_at_once() {
    let mut run = start("nginx");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGINT);
    let (status, rest) = wait(run);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}

/// A signal turned `Off` keeps its default action: SIGHUP ends the process.
#[test]
fn a_signal_turned_off_is_left_to_the_os() {
    let mut run = start("nginx");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGHUP);
    let (status, rest) = wait(run);
    assert_eq!(status.signal(), Some(libc::SIGHUP), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}

/// `signals(false)` and the program's own handler: SIGTERM is the
/// program's (it reloads, twice, where the cluster's would stop), and
/// SIGHUP, not handled by the cluster, ends the process.
#[test]
fn with_signals_off_the_program_handles_them_itself() {
    let mut run = start("own-handling");
    run.line(|l| l == "own handler installed");
    for _ in 0..2 {
        run.signal(libc::SIGTERM);
        let line = run.line(|l| l.starts_with("own SIGTERM"));
        assert_eq!(line, "own SIGTERM: reloaded Ok(())");
    }
    run.signal(libc::SIGHUP);
    let (status, rest) = wait(run);
    assert_eq!(status.signal(), Some(libc::SIGHUP), "{status}");
    assert!(rest.iter().all(|l| l != "draining"), "{rest:?}");
}

/// `shutdown_signal(fut)`: the future's completion stops the cluster
/// gracefully (the workers finish), exit 0.
#[test]
fn a_shutdown_signal_future_stops_gracefully() {
    let mut run = start("shutdown-signal");
    run.line(|l| l.contains("online "));
    run.line(|l| l.contains("online "));
    run.signal(libc::SIGUSR1);
    run.line(|l| l == "shutdown signal");
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
