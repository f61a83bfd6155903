//! `monit` in a real terminal: tmux runs it 80×24; its pane shows one row
//! per slot; `q` ends it.

use std::process::Command;

use test_support::which;

use crate::common::{have, until, App};

#[test]
fn monit_shows_a_row_per_slot_and_q_quits() {
    if !have(which("tmux").is_some(), "tmux") {
        return;
    }
    let app = App::start("monit", &["--workers", "3"]);
    let server = format!("cluster-cli-it-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &server])
            .args(args)
            .output()
            .expect("tmux runs")
    };
    let command = format!(
        "CLUSTER_THREAD_CONTROL={} {} monit",
        app.dir.display(),
        env!("CARGO_BIN_EXE_cluster-thread")
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "monit",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = until("monit's rows", || {
        let pane = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "monit"]).stdout)
            .into_owned();
        let rows = pane.lines().filter(|l| l.contains(" listening ")).count();
        (rows == 3 && pane.contains("q: quit")).then_some(pane)
    });
    for slot in 0..3 {
        assert!(
            screen
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{slot} "))),
            "slot {slot}:\n{screen}"
        );
    }
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");
    tmux(&["send-keys", "-t", "monit", "q"]);
    until("monit to quit", || {
        (!tmux(&["has-session", "-t", "monit"]).status.success()).then_some(())
    });
    tmux(&["kill-server"]);
}
