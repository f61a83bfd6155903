//! A privilege-dropped program operated and hot-upgraded (issue 22.5), as
//! root: `same_port` with `CLUSTER_THREAD_USER=nobody` binds as root, then
//! every thread runs as nobody; its control directory and socket are
//! nobody's, so the command run as nobody reaches it; a SIGHUP reload and a
//! SIGQUIT hot upgrade under load lose nothing, and the new process runs as
//! nobody from its start, with its socket in the same directory.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::common::{cli, finish, have, loads, same_port, scratch, until, workers, App};

const NOBODY: u32 = 65534;

/// The `Uid:` line (real, effective, saved, fs) of every thread of `pid`.
fn thread_uids(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads");
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(line.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

fn assert_all_nobody(pid: u32, when: &str) {
    let uids = thread_uids(pid);
    let want = format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}");
    assert!(uids.len() > 2, "{when}: threads {uids:?}");
    assert!(uids.iter().all(|u| *u == want), "{when}: {uids:?}");
}

/// The command as nobody, against the directory `dir`; its stdout.
fn cli_as_nobody(dir: &Path, args: &[&str]) -> String {
    let out = cli(args)
        .env("CLUSTER_THREAD_CONTROL", dir)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("cluster-thread runs");
    assert!(
        out.status.success(),
        "cluster-thread {args:?} as nobody: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ls_as_nobody(dir: &Path) -> serde_json::Value {
    let text = cli_as_nobody(dir, &["ls", "--json"]);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The socket files in `dir`.
fn sockets(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn ids(status: &serde_json::Value) -> Vec<serde_json::Value> {
    workers(status).iter().map(|w| w["id"].clone()).collect()
}

#[test]
fn dropped_to_nobody_it_is_operated_reloads_and_hot_upgrades_as_nobody() {
    if !have(nix::unistd::geteuid().is_root(), "root (to drop to nobody)") {
        return;
    }
    let dir = scratch("dropped");
    let mut command = Command::new(same_port());
    command
        .args(["--port", "0", "--host", "127.0.0.1", "--workers", "2"])
        .env("CLUSTER_THREAD_USER", "nobody")
        .env_remove("CLUSTER_THREAD_GROUP");
    let mut app = App::start_command("same_port", dir.clone(), command);
    let old = app.pid();
    assert_all_nobody(old, "once listening");
    // The directory and the socket are the user's: the program can remove
    // its socket as nobody, a new process as nobody can add its own.
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (NOBODY, 0o700),
        "the control directory"
    );
    let socket = dir.join(format!("same_port-{old}.sock"));
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), NOBODY);
    // The command as the user reaches it.
    let before = ls_as_nobody(&dir);
    assert_eq!(before["pid"], old);

    let loads = loads(&app);
    // A rolling reload by signal: every slot gets a new worker.
    app.run.signal(nix::sys::signal::Signal::SIGHUP as i32);
    until("the reload by SIGHUP", || {
        let now = ls_as_nobody(&dir);
        let done = now["phase"] == "listening"
            && ids(&now).len() == 2
            && ids(&now).iter().all(|id| !ids(&before).contains(id))
            && workers(&now).iter().all(|w| w["state"] == "listening");
        done.then_some(())
    });
    assert_all_nobody(old, "after the reload");
    for load in &loads {
        load.wait_for_more(100);
    }

    // The hot upgrade: the new process starts as nobody, takes the sockets
    // over, and the old one drains and exits 0.
    app.run.signal(nix::sys::signal::Signal::SIGQUIT as i32);
    assert!(app.run.exit_status().success(), "the old process exits 0");
    let new = until("the new process's control socket", || {
        let status = ls_as_nobody(&dir);
        let pid = status["pid"].as_u64()? as u32;
        (pid != old && status["phase"] == "listening").then_some(pid)
    });
    assert_all_nobody(new, "the new process");
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    assert_eq!(
        sockets(&dir),
        [format!("same_port-{new}.sock")],
        "the old socket removed, the new one beside it"
    );
    let out = cli_as_nobody(&dir, &["stop"]);
    assert!(out.contains(&format!("process {new} exited")), "{out}");
    assert!(
        sockets(&dir).is_empty(),
        "the new process removed its socket"
    );
}
