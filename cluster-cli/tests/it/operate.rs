//! What an operator does to a running cluster: list it, scale it, restart
//! a worker, upgrade it, stop it; under load, nothing fails and no client
//! sees its connection closed.

use crate::common::{finish, loads, scratch, workers, App};

#[test]
fn ls_lists_every_slot_and_bad_usage_exits_2() {
    let app = App::start("ls", &["--workers", "3"]);
    let status = app.ls();
    assert_eq!(status["type"], "status");
    assert_eq!(status["version"], 1);
    assert_eq!(status["pid"], app.pid());
    assert_eq!(status["name"], "same_port");
    assert_eq!(status["phase"], "listening");
    assert_eq!(status["balance"], "round-robin");
    let port = app.addr.port().to_string();
    assert!(
        status["listeners"][0]["address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&port)),
        "{status}"
    );
    let rows = workers(&status);
    assert_eq!(app.slots(), [0, 1, 2]);
    for w in &rows {
        for key in [
            "slot",
            "id",
            "state",
            "uptime_seconds",
            "restarts",
            "connections",
            "requests",
            "cpu_percent",
            "memory_bytes",
        ] {
            assert!(w.get(key).is_some(), "{key} missing in {w}");
        }
        assert_eq!(w["state"], "listening");
        assert!(w["memory_bytes"].is_null(), "memory is unknown: {w}");
    }
    let text = app.ok(&["ls"]);
    for slot in 0..3 {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(&format!("{slot} "))
                && l.contains("listening")),
            "no row for slot {slot}:\n{text}"
        );
    }
    // Usage errors: 2; a refused command: 1, with the reason on stderr.
    for args in [
        &["scale"][..],
        &["dance"],
        &["scale", "lots"],
        &["restart", "x"],
    ] {
        assert_eq!(app.cli(args).status.code(), Some(2), "{args:?}");
    }
    let out = app.cli(&["restart", "9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slot 9 has no live worker"), "{err}");
    assert_eq!(app.slots(), [0, 1, 2], "nothing changed");
}

#[test]
fn scale_up_then_down_under_load_loses_nothing() {
    let app = App::start("scale", &["--workers", "2"]);
    let loads = loads(&app);
    let out = app.ok(&["scale", "4"]);
    assert!(out.contains("scaled from 2 to 4 workers"), "{out}");
    assert!(out.contains("slot 3: worker"), "progress lines: {out}");
    let status = app.ls();
    assert_eq!(app.slots(), [0, 1, 2, 3]);
    assert!(
        workers(&status).iter().all(|w| w["state"] == "listening"),
        "{status}"
    );
    for load in &loads {
        load.wait_for_more(100);
    }
    let out = app.ok(&["scale", "-2"]);
    assert!(out.contains("scaled from 4 to 2 workers"), "{out}");
    assert_eq!(app.slots(), [0, 1]);
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    // Every slot kept counting requests.
    let status = app.ls();
    assert!(
        workers(&status)
            .iter()
            .all(|w| w["requests"].as_u64() > Some(0)),
        "{status}"
    );
}

#[test]
fn restart_0_under_load_replaces_one_worker_and_loses_nothing() {
    let app = App::start("restart", &["--workers", "2"]);
    let before = workers(&app.ls());
    let loads = loads(&app);
    let out = app.ok(&["restart", "0"]);
    assert!(out.contains("slot 0 restarted"), "{out}");
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    let after = workers(&app.ls());
    assert_eq!(after.len(), 2);
    assert_ne!(after[0]["id"], before[0]["id"], "slot 0 has a new worker");
    assert_eq!(after[1]["id"], before[1]["id"], "slot 1 kept its worker");
}

#[test]
fn upgrade_reports_the_new_pid_and_nothing_is_refused() {
    let mut app = App::start("upgrade", &["--workers", "2"]);
    let old = app.pid();
    let loads = loads(&app);
    let out = app.ok(&["upgrade", "--json"]);
    let done: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "done")
        .unwrap_or_else(|| panic!("no done line: {out}"));
    let new = done["pid"].as_u64().expect("the new pid") as u32;
    assert_ne!(new, old);
    // The command returned once the old process had drained and exited.
    assert!(!cluster_ctl::client::alive(old), "process {old} still runs");
    assert!(app.run.exit_status().success());
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    // The socket moved with the service: the new process answers.
    assert_eq!(app.ls()["pid"], new);
    let out = app.ok(&["stop"]);
    assert!(out.contains(&format!("process {new} exited")), "{out}");
}

#[test]
fn stop_returns_once_the_program_exited_0() {
    let mut app = App::start("stop", &["--workers", "2"]);
    let out = app.ok(&["stop"]);
    assert!(out.contains("stopping gracefully"), "{out}");
    assert!(
        out.contains(&format!("process {} exited", app.pid())),
        "{out}"
    );
    assert!(app.run.exit_status().success());
    let left: Vec<_> = std::fs::read_dir(&app.dir)
        .map_or_else(|_| Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    assert!(left.is_empty(), "the socket is removed: {left:?}");
}

#[test]
fn with_several_clusters_ls_lists_them_all_and_the_rest_ask_which() {
    let dir = scratch("several");
    let a = App::start_in(dir.clone(), &["--workers", "1"]);
    let b = App::start_in(dir, &["--workers", "1"]);
    let text = a.ok(&["ls"]);
    for pid in [a.pid(), b.pid()] {
        assert!(text.contains(&format!("(pid {pid})")), "{text}");
    }
    let out = a.cli(&["get"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 clusters are running") && err.contains("--pid"),
        "{err}"
    );
    let pid = b.pid().to_string();
    let out = a.ok(&["get", "--pid", &pid]);
    assert!(out.contains("drain_delay"), "{out}");
}

#[test]
fn settings_change_live() {
    let app = App::start("settings", &["--workers", "1"]);
    let out = app.ok(&["set", "drain_delay", "250ms"]);
    assert!(out.contains("drain_delay = 250ms"), "{out}");
    let out = app.ok(&["set", "max_connections", "500"]);
    assert!(out.contains("max_connections = 500"), "{out}");
    let out = app.ok(&["get"]);
    for want in [
        "drain_delay = 250ms",
        "max_connections = 500",
        "log_level = info",
    ] {
        let found = out
            .lines()
            .any(|l| l.split_whitespace().eq(want.split_whitespace()));
        assert!(found, "{want}: {out}");
    }
    let out = app.cli(&["set", "drain_delay", "soon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set drain_delay"));
}
