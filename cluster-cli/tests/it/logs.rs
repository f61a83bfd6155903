//! `logs`: the ring of recent lines, per slot, and `-f`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use test_support::{get, DEADLINE};

use crate::common::{cli, App};

#[test]
fn logs_of_one_slot_show_only_its_lines_and_follow_shows_new_ones() {
    let app = App::start("logs", &["--workers", "2"]);
    // At debug, each connection is a line in its worker's span.
    app.ok(&["set", "log_level", "info,cluster_http=debug"]);
    // Round-robin: both workers get some.
    for _ in 0..20 {
        assert_eq!(get(app.addr, "/").unwrap().status, 200);
    }
    let one = app.ok(&["logs", "--slot", "1", "--lines", "1000"]);
    assert!(one.lines().count() >= 5, "{one}");
    for line in one.lines() {
        assert!(line.contains(" slot=1}"), "not slot 1's: {line}");
    }
    let all = app.ok(&["logs", "--lines", "1000"]);
    for want in [" slot=0}", " slot=1}", "control socket open"] {
        assert!(all.contains(want), "{want}: {all}");
    }
    let last_two = app.ok(&["logs", "--slot", "0", "--lines", "2"]);
    assert_eq!(last_two.lines().count(), 2, "{last_two}");

    // -f: the backlog, then each new line.
    let mut follow = cli(&["logs", "-f", "--slot", "0", "--lines", "0"])
        .env("CLUSTER_THREAD_CONTROL", &app.dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = std::time::Instant::now() + DEADLINE;
    let line = loop {
        assert!(std::time::Instant::now() < end, "logs -f showed nothing");
        // New connections until slot 0 logs one.
        let _ = get(app.addr, "/");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            break line;
        }
    };
    assert!(line.contains(" slot=0}"), "{line}");
    let _ = follow.kill();
    let _ = follow.wait();
}
