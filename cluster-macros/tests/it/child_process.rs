//! A program made by `#[cluster_thread::main]` runs as a child process: its
//! workers answer, and SIGTERM stops it gracefully with exit status 0.
//!
//! The child is this test binary itself, run with `CLUSTER_MACROS_CHILD=1`
//! and only the `child` test selected: that test then calls the function the
//! macro generated, which runs the whole cluster.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use cluster_thread::Worker;

const CHILD_ENV: &str = "CLUSTER_MACROS_CHILD";
const DEADLINE: Duration = Duration::from_secs(30);

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

/// Kills the child with SIGKILL if the test ends before it was reaped.
struct KillOnDrop {
    pid: libc::pid_t,
    reaped: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill(2) with a pid we spawned and have not reaped.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn answers_and_exits_zero_on_sigterm() {
    let start = Instant::now();
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args([
            "child_process::child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env_remove("CLUSTER_THREAD_WORKERS")
        .env_remove("CLUSTER_THREAD_BALANCE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut guard = KillOnDrop {
        pid: libc::pid_t::try_from(child.id()).expect("pid fits pid_t"),
        reaped: false,
    };

    // Lines of stdout arrive on a channel, so every wait has a deadline.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_text = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (status_tx, status) = mpsc::channel::<std::io::Result<ExitStatus>>();
    thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });

    // Both workers answer.
    let mut seen = Vec::new();
    let mut slots = BTreeSet::new();
    let mut ids = BTreeSet::new();
    while slots.len() < 2 {
        let left = DEADLINE.saturating_sub(start.elapsed());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => panic!("waiting for both workers ({e}); stdout so far: {seen:#?}"),
        };
        // The test harness's own `test child ... ` may begin the first line.
        if let Some(rest) = line.find("worker ").map(|at| &line[at + "worker ".len()..]) {
            let words: Vec<&str> = rest.split(' ').collect();
            if let [id, "slot", slot, "ready"] = words.as_slice() {
                ids.insert(id.parse::<u64>().expect("numeric worker id"));
                slots.insert(slot.parse::<usize>().expect("numeric slot"));
            }
        }
        seen.push(line);
    }
    assert_eq!(slots, BTreeSet::from([0, 1]), "{seen:#?}");
    assert_eq!(ids.len(), 2, "two distinct worker ids: {seen:#?}");

    // SIGTERM: a graceful stop, exit status 0.
    if let Ok(early) = status.try_recv() {
        panic!("the child exited before SIGTERM: {early:?}; stdout: {seen:#?}");
    }
    // SAFETY: kill(2) with the pid of our child, which has not been reaped
    // (the waiting thread has not reported it).
    let rc = unsafe { libc::kill(guard.pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
    let left = DEADLINE.saturating_sub(start.elapsed());
    let status = match status.recv_timeout(left) {
        Ok(status) => status.expect("wait for the child"),
        Err(e) => panic!("the child did not exit after SIGTERM ({e}); stdout: {seen:#?}"),
    };
    guard.reaped = true;
    // The rest of stdout: each worker finished its body.
    while let Ok(line) = lines.recv_timeout(DEADLINE.saturating_sub(start.elapsed())) {
        seen.push(line);
    }
    let stderr_text = stderr_text.join().unwrap_or_default();
    assert!(
        status.success(),
        "exit status {status}; stdout: {seen:#?}; stderr: {stderr_text}"
    );
    for id in &ids {
        assert!(
            seen.iter()
                .any(|l| l.ends_with(&format!("worker {id} done"))),
            "worker {id} finished gracefully; stdout: {seen:#?}"
        );
    }
}
