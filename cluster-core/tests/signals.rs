//! Signals sent to a real child process: SIGTERM stops gracefully and exits 0
//! after the workers finished; a second SIGINT stops at once.
//!
//! The child is this test binary itself, re-run with `CLUSTER_CORE_CHILD` set,
//! so that the cluster owns the whole process and its signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster_core::{Cluster, Phase};

const CHILD: &str = "CLUSTER_CORE_CHILD";
const DEADLINE: Duration = Duration::from_secs(20);

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

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Run {
    fn start(mode: &str) -> Run {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run { child, lines }
    }

    fn expect_line(&self, want: impl Fn(&str) -> bool, what: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line {what}: {e}"),
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn wait(mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest = self.lines.try_iter().collect();
                return (status, rest);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("the child did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn sigterm_stops_gracefully_after_the_workers_finish_and_exits_0() {
    let run = Run::start("graceful");
    run.expect_line(|l| l.contains("online "), "online");
    run.expect_line(|l| l.contains("online "), "online");
    run.signal(libc::SIGTERM);
    let mut finished = vec![
        run.expect_line(|l| l.starts_with("finished "), "finished"),
        run.expect_line(|l| l.starts_with("finished "), "finished"),
    ];
    finished.sort();
    assert_eq!(finished, ["finished 1", "finished 2"]);
    let (status, rest) = run.wait(DEADLINE);
    assert!(status.success(), "{status}");
    assert!(rest.iter().any(|l| l.contains("primary exits")), "{rest:?}");
}

#[test]
fn a_second_sigint_stops_at_once() {
    let run = Run::start("stubborn");
    run.expect_line(|l| l.contains("online "), "online");
    run.expect_line(|l| l.contains("online "), "online");
    run.signal(libc::SIGINT);
    // The first SIGINT only drains; the workers ignore it (shutdown timeout 120 s).
    run.expect_line(|l| l.ends_with("draining"), "draining");
    run.signal(libc::SIGINT);
    // Far less than the 120 s shutdown timeout: the workers were killed.
    let (status, rest) = run.wait(DEADLINE);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}

/// Without a hot upgrade, SIGQUIT (whose default action dumps core) is
/// ignored: the cluster serves on, and stops gracefully on SIGTERM.
#[test]
fn sigquit_without_a_handler_is_ignored() {
    let run = Run::start("graceful");
    run.expect_line(|l| l.contains("online "), "online");
    run.expect_line(|l| l.contains("online "), "online");
    run.signal(libc::SIGQUIT);
    run.signal(libc::SIGQUIT);
    run.signal(libc::SIGTERM);
    run.expect_line(|l| l.starts_with("finished "), "finished");
    let (status, _) = run.wait(DEADLINE);
    assert!(status.success(), "{status}");
}

#[test]
fn sigquit_runs_the_handler_given_to_the_builder() {
    let run = Run::start("quit-handler");
    run.expect_line(|l| l.contains("online "), "online");
    run.expect_line(|l| l.contains("online "), "online");
    run.signal(libc::SIGQUIT);
    run.expect_line(|l| l.starts_with("sigquit handled"), "from the handler");
    run.signal(libc::SIGTERM);
    let (status, _) = run.wait(DEADLINE);
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigint_skips_the_drain_delay() {
    let run = Run::start("delayed");
    run.expect_line(|l| l.contains("online "), "online");
    run.expect_line(|l| l.contains("online "), "online");
    run.signal(libc::SIGINT);
    // Draining at once; the workers would be disconnected only in an hour.
    run.expect_line(|l| l.ends_with("draining"), "draining");
    run.signal(libc::SIGINT);
    let (status, rest) = run.wait(DEADLINE);
    assert!(status.success(), "{status}");
    assert!(rest.iter().all(|l| !l.starts_with("finished ")), "{rest:?}");
}
