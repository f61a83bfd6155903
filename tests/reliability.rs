//! "It never loses a connection it accepted": the `same_port` example under
//! steady load while workers panic, the cluster reloads, or the binary is
//! upgraded in place. Each test prints its figures; the load runs
//! `CLUSTER_THREAD_FAULT_SECONDS` (3 s by default, longer from
//! `cargo xtask soak`).

mod common;

use std::time::{Duration, Instant};

use common::{alive, get, local, seconds, signal, Load, Run, DEADLINE};

fn start(args: &[&str]) -> (Run, std::net::SocketAddr) {
    let mut run = Run::start("same_port", args);
    let addr = local(&run.line(|l| l.starts_with("listening on ")));
    (run, addr)
}

/// A worker panics every 200 ms under steady load: no request fails but the
/// ones that panicked, the port never refuses, no connection hangs.
fn panics_under_load(balance: &'static str, keep_alive: bool) {
    let (mut run, addr) = start(&[
        "--workers",
        "2",
        "--port",
        "0",
        "--chaos",
        "--balance",
        balance,
    ]);
    let load = Load::start(addr, 4, keep_alive);
    load.wait_for_more(100);
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut panics = 0;
    while Instant::now() < end {
        // Each /panic request fails alone (its connection is dropped).
        if get(addr, "/panic").is_err() {
            panics += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    load.wait_for_more(100);
    let (ok, failed, retried) = load.finish();
    eprintln!(
        "panics under load ({balance}, {}): {ok} served, {failed} failed, {retried} idle keep-alive closes retried, {panics} workers panicked",
        if keep_alive { "keep-alive" } else { "new connection per request" }
    );
    assert!(panics >= 5, "only {panics} panics");
    assert_eq!(
        failed, 0,
        "{balance}: requests failed while workers panicked"
    );
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn panics_every_200ms_round_robin_fresh_connections() {
    panics_under_load("round-robin", false);
}

#[test]
fn panics_every_200ms_reuseport_fresh_connections() {
    panics_under_load("reuseport", false);
}

#[test]
fn panics_every_200ms_round_robin_keep_alive() {
    panics_under_load("round-robin", true);
}

/// SIGHUP reloads every worker, one by one, while traffic flows.
fn reload_under_load(keep_alive: bool) {
    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let load = Load::start(addr, 4, keep_alive);
    load.wait_for_more(100);
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut reloads = 0;
    while Instant::now() < end || reloads == 0 {
        run.signal(libc::SIGHUP);
        // Two new workers start per reload.
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        run.line(|l| l.starts_with("Worker ") && l.ends_with(" started"));
        reloads += 1;
        load.wait_for_more(50);
    }
    let (ok, failed, retried) = load.finish();
    eprintln!(
        "reload under load ({}): {ok} served, {failed} failed, {retried} idle keep-alive closes retried, {reloads} reloads",
        if keep_alive { "keep-alive" } else { "new connection per request" }
    );
    assert_eq!(failed, 0, "requests failed during reloads");
    run.signal(libc::SIGTERM);
    assert!(run.exit_status().success());
}

#[test]
fn rolling_reload_fresh_connections() {
    reload_under_load(false);
}

#[test]
fn rolling_reload_keep_alive() {
    reload_under_load(true);
}

/// SIGQUIT: a new process takes the sockets over; the old one drains and
/// exits 0; no request fails.
#[test]
fn hot_upgrade_under_load() {
    let (mut run, addr) = start(&["--workers", "2", "--port", "0"]);
    let old = run.child.id();
    let load = Load::start(addr, 4, false);
    load.wait_for_more(100);
    run.signal(libc::SIGQUIT);
    // The new process writes to the same stdout.
    let primary = run.line(|l| l.starts_with("Primary ") && !l.contains(&old.to_string()));
    let new: u32 = primary.split(' ').nth(1).unwrap().parse().unwrap();
    let status = run.exit_status();
    assert!(status.success(), "the old process: {status}");
    load.wait_for_more(200);
    let (ok, failed, retried) = load.finish();
    eprintln!("hot upgrade under load: {ok} served, {failed} failed, {retried} retried; pid {old} -> {new}");
    assert_eq!(failed, 0, "requests failed during the upgrade");
    signal(new, libc::SIGTERM);
    let end = Instant::now() + DEADLINE;
    while alive(new) {
        assert!(Instant::now() < end, "the new process did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}
