//! The examples' contract: each runs as a child process and prints what its
//! header promises.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// The example's binary, built by `cargo test` beside this test (or built now).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name}");
    }
    path
}

fn run(name: &str, args: &[&str]) -> Output {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{name} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn messaging_prints_every_workers_answer_and_exits_0() {
    let out = run("messaging", &["3"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("Primary ") && lines[0].ends_with(" is running"),
        "{stdout}"
    );
    let mut present: Vec<_> = lines
        .iter()
        .filter(|l| l.ends_with(" is present"))
        .collect();
    present.sort();
    assert_eq!(present.len(), 3, "{stdout}");
    for (slot, line) in present.iter().enumerate() {
        // Ids 1..3 fill slots 0..2, in fork order.
        let want = format!(
            "worker {} in slot {slot} on thread cluster-worker-{slot} is present",
            slot + 1
        );
        assert_eq!(**line, want);
    }
    assert!(
        lines.contains(&"all 3 workers answered; disconnecting"),
        "{stdout}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("exited: returned"))
            .count(),
        3,
        "{stdout}"
    );
}
