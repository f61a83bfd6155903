//! Each worker's memory and `max_memory`: with the `jemalloc` feature
//! (the `memory_limit` example, whose workers leak 1 MiB per request) a
//! worker over the limit is replaced under load and no request fails;
//! `set max_memory` turns the limit on live; without the feature (same_port)
//! memory is unknown and a limit is refused, at start and by `set`.

use std::process::{Command, Stdio};

use test_support::get;

use crate::common::{finish, loads, memory_limit, scratch, until, workers, App};

/// `memory_limit` (2 workers, 1 MiB leaked per request, `max_memory =
/// "64MiB"` unless `limit` overrides it through the environment).
fn leaky(name: &str, limit: Option<&str>) -> App {
    let mut command = Command::new(memory_limit());
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("LEAK_KIB", "1024");
    match limit {
        Some(limit) => command.env("CLUSTER_THREAD_MAX_MEMORY", limit),
        None => command.env_remove("CLUSTER_THREAD_MAX_MEMORY"),
    };
    App::start_command("memory_limit", scratch(name), command)
}

/// `cluster_thread_memory_recycles_total`, all slots together.
fn recycles(app: &App) -> u64 {
    let metrics = get(app.addr, "/metrics").expect("GET /metrics").body;
    metrics
        .lines()
        .filter(|l| l.starts_with("cluster_thread_memory_recycles_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Each listening worker's `memory_bytes`, which must be known (one just
/// forked, before its thread took its arena, or one whose thread is
/// ending, may have none).
fn memory(app: &App) -> Vec<u64> {
    workers(&app.ls())
        .iter()
        .filter(|w| w["state"] == "listening")
        .map(|w| {
            w["memory_bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("memory is known with jemalloc: {w}"))
        })
        .collect()
}

#[test]
fn a_leaking_worker_over_max_memory_is_replaced_under_load_and_nothing_fails() {
    let app = leaky("leak", None);
    assert!(
        memory(&app).iter().all(|&b| b < 64 << 20),
        "fresh workers are under the limit"
    );
    let get = app.ok(&["get", "--json"]);
    assert!(get.contains("64.0 MiB"), "{get}");
    // Fresh connections and keep-alive ones, two clients each: every
    // request leaks 1 MiB, so each worker passes 64 MiB after ~64 of them.
    let loads = loads(&app);
    let mut highest = 0;
    // Several generations of workers in each slot, each replaced.
    until("4 workers replaced for max_memory", || {
        highest = highest.max(memory(&app).into_iter().max().unwrap_or(0));
        (recycles(&app) >= 4).then_some(())
    });
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    // A replacement under way when the load stopped ends: one worker per slot.
    until("one worker per slot", || {
        (app.slots() == [0, 1]).then_some(())
    });
    // Each replacement logged, with the memory it was found at.
    let logs = app.ok(&["logs", "--lines", "10000"]);
    let found: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("worker over max_memory: replacing it gracefully"))
        .collect();
    assert!(found.len() >= 4, "{logs}");
    assert!(logs.contains("worker over max_memory replaced"), "{logs}");
    let at: Vec<f64> = found
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("memory=")? + 7..];
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    eprintln!(
        "recycles: {}, found over at {at:?} MiB (limit 64 MiB: 1 MiB per request \
         since the crossing), highest memory seen by ls: {:.1} MiB",
        recycles(&app),
        highest as f64 / f64::from(1 << 20)
    );
}

#[test]
fn set_max_memory_turns_the_limit_on_while_the_cluster_runs() {
    let app = leaky("set", Some("off"));
    let out = app.ok(&["get"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("max_memory") && l.contains("off")),
        "{out}"
    );
    let loads = loads(&app);
    // Past 64 MiB with no limit: nothing replaces the workers.
    until("a worker past 64 MiB", || {
        memory(&app).iter().any(|&b| b > 64 << 20).then_some(())
    });
    assert_eq!(recycles(&app), 0, "no limit, no recycle");
    let out = app.ok(&["set", "max_memory", "64MiB"]);
    assert!(out.contains("max_memory = 64.0 MiB"), "{out}");
    until("the workers over the new limit replaced", || {
        (recycles(&app) >= 2).then_some(())
    });
    for load in &loads {
        load.wait_for_more(100);
    }
    finish(loads);
    // A bad value is refused, naming the setting; the limit stays.
    let out = app.cli(&["set", "max_memory", "lots"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("set max_memory") && err.contains("not a size"),
        "{err}"
    );
    let out = app.ok(&["set", "max_memory", "off"]);
    assert!(out.contains("max_memory = off"), "{out}");
}

#[test]
fn without_jemalloc_memory_is_unknown_and_max_memory_is_refused() {
    let app = App::start("nojemalloc", &["--workers", "2"]);
    let status = app.ls();
    for w in workers(&status) {
        assert!(w["memory_bytes"].is_null(), "never a made-up figure: {w}");
    }
    assert!(
        status["memory_bytes"].as_u64() > Some(0),
        "the whole process's memory: {status}"
    );
    let text = app.ok(&["ls"]);
    assert!(text.contains("memory per worker: unknown"), "{text}");
    let out = app.cli(&["set", "max_memory", "64MiB"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_memory") && err.contains("jemalloc"),
        "{err}"
    );
    let out = app.ok(&["get"]);
    assert!(out.contains("unknown memory per worker"), "{out}");

    // A limit from the environment stops the program at start, naming it.
    let mut child = Command::new(crate::common::same_port())
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("CLUSTER_THREAD_MAX_MEMORY", "64MiB")
        .env("CLUSTER_THREAD_CONTROL", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("same_port runs");
    let status = test_support::wait_exit(&mut child, "same_port with CLUSTER_THREAD_MAX_MEMORY");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr reads");
    assert!(
        err.contains("CLUSTER_THREAD_MAX_MEMORY") && err.contains("jemalloc"),
        "{err}"
    );
}
