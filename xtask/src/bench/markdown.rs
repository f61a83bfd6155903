//! `report.md`: the goals' table, then a section per placement, memory,
//! idle connections, start-up and respawn.

use std::fmt::Write as _;

use super::goals::{self, Verdict};
use super::run::Run;
use super::sample::{Generator, Group, Metric, Placement, Scenario, GENERATOR_CPU, SERVER_CPU};
use super::servers::{Kind, Server, PEERS, TLS_PEERS};
use super::summary::{Stat, Summary};

fn si(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".into()
    }
}

/// `median (min–max)`, or just the median for a single repetition.
fn cell(stat: Option<Stat>, fmt: &dyn Fn(f64) -> String) -> String {
    match stat {
        None => "–".into(),
        Some(s) if s.n == 1 || s.min == s.max => fmt(s.median),
        Some(s) => format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    }
}

fn times(stat: Option<Stat>) -> String {
    stat.map_or("–".into(), |s| format!("{:.2}×", s.median))
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn peers_present(run: &Run, peers: &[&str]) -> Vec<&'static Server> {
    peers
        .iter()
        .filter_map(|p| run.servers.iter().copied().find(|s| s.id == *p))
        .collect()
}

fn verdict_cell(v: Option<&Verdict>) -> String {
    match v {
        Some(Verdict {
            met: Some(true),
            detail,
            ..
        }) => format!("**MET** {detail}"),
        Some(Verdict {
            met: Some(false),
            detail,
            ..
        }) => format!("**MISSED** {detail}"),
        Some(Verdict { detail, .. }) => format!("n/a: {detail}"),
        None => "–".into(),
    }
}

/// A table of verdicts: a row per goal, a column per scope.
fn verdict_table(out: &mut String, verdicts: &[Verdict], scopes: &[(String, String)]) {
    let mut goals: Vec<&str> = Vec::new();
    for v in verdicts {
        if !goals.contains(&v.goal.as_str()) {
            goals.push(&v.goal);
        }
    }
    // A goal against another server is judged on their ratio within each
    // repetition (the medians of their values taken apart can disagree).
    let mut header =
        vec!["goal (×: median of the ratios within each repetition, min–max)".to_string()];
    header.extend(scopes.iter().map(|(_, title)| title.clone()));
    let rows: Vec<Vec<String>> = goals
        .iter()
        .map(|goal| {
            let mut row = vec![goal.to_string()];
            row.extend(scopes.iter().map(|(scope, _)| {
                verdict_cell(
                    verdicts
                        .iter()
                        .find(|v| v.goal == *goal && v.scope == *scope),
                )
            }));
            row
        })
        .collect();
    table(out, &header, &rows);
}

/// One placement and generator, plaintext (`tls` false) or over TLS: the
/// issue's table (CPU per request and p99 per scenario, then req/s), the
/// ratios of CPU per request to each peer, and the generator's ceiling.
fn load_section(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    (placement, generator): (Placement, Generator),
    tls: bool,
) {
    let o = &run.options;
    let workers = o.workers_of(placement);
    let group = |s: Scenario| Group::load(s, placement, generator, workers);
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| s.is_load() && s.is_tls() == tls && o.wants(*s))
        .filter(|s| {
            run.servers
                .iter()
                .any(|srv| summary.get(group(*s), srv.id, Metric::Rps).is_some())
        })
        .collect();
    if scenarios.is_empty() {
        return;
    }
    if tls {
        let _ = writeln!(
            out,
            "### {} over TLS\n\nTLS 1.3, ECDSA P-256 certificate, rustls with ring on every \
             server; ALPN `http/1.1`. {}\n",
            generator.label(),
            match generator {
                Generator::Builtin =>
                    "tls-churn: the client offers no session (full handshakes); \
                    tls-resumed: it resumes what the server gave it (one session cache per run, \
                    filled in the warm-up); the share of handshakes resumed is in the last column.",
                Generator::Wrk =>
                    "wrk (OpenSSL) keeps no session: its churn is all full \
                    handshakes, and it has no tls-resumed run.",
            }
        );
    } else {
        let _ = writeln!(out, "### {}\n", generator.label());
    }
    let mut header = vec!["server".to_string()];
    for what in ["CPU µs/req", "p99 ms", "req/s"] {
        header.extend(scenarios.iter().map(|s| format!("{} {what}", s.name())));
    }
    header.push("errors".into());
    let resumed = scenarios.contains(&Scenario::TlsResumed) && generator == Generator::Builtin;
    if resumed {
        header.push("tls-resumed: handshakes resumed".into());
    }
    let servers: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| {
            scenarios
                .iter()
                .any(|sc| summary.get(group(*sc), s.id, Metric::Rps).is_some())
        })
        .collect();
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            let g = |sc: Scenario, m: Metric| summary.get(group(sc), s.id, m);
            row.extend(
                scenarios
                    .iter()
                    .map(|sc| cell(g(*sc, Metric::CpuUsPerReq), &|v| fixed(v, 2))),
            );
            row.extend(
                scenarios
                    .iter()
                    .map(|sc| cell(g(*sc, Metric::P99Ms), &|v| fixed(v, 3))),
            );
            row.extend(scenarios.iter().map(|sc| cell(g(*sc, Metric::Rps), &si)));
            let errors: f64 = scenarios
                .iter()
                .filter_map(|sc| g(*sc, Metric::Errors).map(|e| e.max))
                .sum();
            row.push(format!("{errors:.0}"));
            if resumed {
                row.push(cell(g(Scenario::TlsResumed, Metric::ResumedShare), &|v| {
                    format!("{:.0}%", v * 100.0)
                }));
            }
            row
        })
        .collect();
    table(out, &header, &rows);

    let peers = peers_present(run, if tls { TLS_PEERS } else { PEERS });
    if !peers.is_empty() {
        let names: Vec<&str> = scenarios.iter().map(|s| s.name()).collect();
        let _ = writeln!(
            out,
            "CPU µs/req over each peer's in the same repetition (median), {}:\n",
            names.join(" · ")
        );
        let mut header = vec!["server".to_string()];
        header.extend(peers.iter().map(|p| p.label.to_string()));
        let rows: Vec<Vec<String>> = servers
            .iter()
            .filter(|s| s.kind != Kind::Raw)
            .map(|s| {
                let mut row = vec![s.label.to_string()];
                row.extend(peers.iter().map(|p| {
                    if p.id == s.id {
                        return "1".into();
                    }
                    scenarios
                        .iter()
                        .map(|sc| times(summary.ratio(group(*sc), s.id, p.id, Metric::CpuUsPerReq)))
                        .collect::<Vec<_>>()
                        .join(" · ")
                }));
                row
            })
            .collect();
        table(out, &header, &rows);
    }
    let ceiling: Vec<String> = scenarios
        .iter()
        .filter_map(|sc| {
            let s = summary.get(group(*sc), "raw", Metric::Rps)?;
            Some(format!("**{}** req/s {}", si(s.median), sc.name()))
        })
        .collect();
    if !ceiling.is_empty() {
        let _ = writeln!(
            out,
            "The generator's ceiling here (`raw`: canned bytes for every read, no HTTP parsing): {}. \
             A server near it is limited by the generator, not by itself: compare CPU µs/req.\n",
            ceiling.join(", ")
        );
    }
}

fn by_workers_section(
    out: &mut String,
    run: &Run,
    summary: &Summary,
    scenario: Scenario,
    worker_counts: &[usize],
    cell_of: &dyn Fn(&str, usize) -> Option<String>,
    ratio_metric: Metric,
) {
    let servers: Vec<&Server> = run
        .servers
        .iter()
        .copied()
        .filter(|s| worker_counts.iter().any(|w| cell_of(s.id, *w).is_some()))
        .collect();
    if servers.is_empty() {
        return;
    }
    let mut header = vec!["server".to_string()];
    header.extend(
        worker_counts
            .iter()
            .map(|w| format!("{w} worker{}", if *w == 1 { "" } else { "s" })),
    );
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            row.extend(
                worker_counts
                    .iter()
                    .map(|w| cell_of(s.id, *w).unwrap_or("–".into())),
            );
            row
        })
        .collect();
    table(out, &header, &rows);
    let peers = peers_present(run, PEERS);
    if peers.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Ratio to each peer in the same repetition (median), at {} workers\n",
        worker_counts
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(" · ")
    );
    let mut header = vec!["server".to_string()];
    header.extend(peers.iter().map(|p| p.label.to_string()));
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let mut row = vec![s.label.to_string()];
            for p in &peers {
                if p.id == s.id {
                    row.push("1".into());
                    continue;
                }
                row.push(
                    worker_counts
                        .iter()
                        .map(|w| {
                            times(summary.ratio(Group::of(scenario, *w), s.id, p.id, ratio_metric))
                        })
                        .collect::<Vec<_>>()
                        .join(" · "),
                );
            }
            row
        })
        .collect();
    table(out, &header, &rows);
}

pub(crate) fn markdown(run: &Run, summary: &Summary) -> String {
    let o = &run.options;
    let m = &run.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# cluster_thread benchmark\n");
    let _ = writeln!(
        out,
        "{} · {}, {} cores, {:.1} GiB, Linux {} · generators: {} · {} · took {:.0} s\n",
        run.started,
        m.cpu,
        m.cores,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.kernel,
        run.generators(),
        if o.quick {
            "--quick (a smoke run: figures are rough)"
        } else {
            "full run"
        },
        run.elapsed.as_secs_f64(),
    );
    let _ = writeln!(
        out,
        "Figures are medians over repetitions, with (min–max) when there are several. \
         Servers run interleaved (A B C A B C …). Ratios are taken between servers within \
         the same repetition, then the median of those ratios is shown. CPU is the server's \
         own user + system time over the measured window, summed over its process tree \
         (all threads of one process for the Rust servers, primary + workers for Node). \
         Pinned: each server restricted to CPU {SERVER_CPU} with 1 worker, the generator to CPU \
         {GENERATOR_CPU}. Unpinned: {} workers each, no affinity (the generator shares the cores, so \
         p99 there largely measures the scheduler). Churn: `Connection: close` on every request.\n",
        o.workers
    );
    if !run.notices.is_empty() {
        let _ = writeln!(out, "**Notices**\n");
        for n in &run.notices {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Goals\n");
    let ct = run.cluster_thread_ids();
    if ct.is_empty() {
        let _ = writeln!(out, "Not judged: no cluster_thread server was measured.\n");
    } else {
        let load = goals::load_goals(run, summary);
        if !load.is_empty() {
            let scopes: Vec<(String, String)> = run
                .load_scopes()
                .into_iter()
                .map(|(p, g)| (goals::scope(p, g), format!("{}, {}", p.name(), g.label())))
                .collect();
            verdict_table(&mut out, &load, &scopes);
        }
        let scopes: Vec<(String, String)> = ct
            .iter()
            .map(|id| (id.to_string(), goals::label(id).to_string()))
            .collect();
        // Only where one was measured (a TLS-only run has none).
        let modes = goals::mode_goals(run, summary);
        if modes.iter().any(|v| v.met.is_some()) {
            verdict_table(&mut out, &modes, &scopes);
        }
    }

    for &placement in &o.placements {
        let scopes: Vec<Generator> = run
            .load_scopes()
            .into_iter()
            .filter(|(p, _)| *p == placement)
            .map(|(_, g)| g)
            .collect();
        if scopes.is_empty() {
            continue;
        }
        let title = match placement {
            Placement::Pinned => format!(
                "## Pinned: 1 worker on CPU {SERVER_CPU}, the generator on CPU {GENERATOR_CPU}"
            ),
            Placement::Unpinned => {
                format!("## Unpinned: {} workers each, no affinity", o.workers)
            }
        };
        let (wrk_duration, wrk_warmup) = super::load::wrk_seconds(o.duration, o.warmup);
        let wrk_note = if o.generators.contains(&Generator::Wrk)
            && (wrk_duration as f64 != o.duration.as_secs_f64()
                || wrk_warmup as f64 != o.warmup.as_secs_f64())
        {
            format!(" (wrk: {wrk_duration} s after {wrk_warmup} s; it takes whole seconds)")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{title}\n\n{} connections · {:.1} s measured after {:.1} s of warm-up{wrk_note} · {} repetition(s).\n",
            o.connections,
            o.duration.as_secs_f64(),
            o.warmup.as_secs_f64(),
            o.reps
        );
        for &generator in &scopes {
            load_section(&mut out, run, summary, (placement, generator), false);
        }
        for &generator in &scopes {
            load_section(&mut out, run, summary, (placement, generator), true);
        }
    }

    if o.wants(Scenario::Memory) {
        let _ = writeln!(
            out,
            "## Memory\n\nRSS of the whole process tree in MiB, after start / after {:.1} s of keep-alive load \
             ({} connections). Every server is a hello world: cluster_thread's is `examples/hello` built with \
             only the features it uses (`--no-default-features --features macros,net,http`, as the peers \
             leave out what they do not use); `same_port` with every default feature (TLS, the Prometheus \
             exporter) and its logging maps about 1.3 MiB more code. Node's processes each count their shared \
             pages (PSS is in report.json).\n",
            o.memory_load().as_secs_f64(),
            o.connections
        );
        let f = |id: &str, w: usize| {
            let g = Group::of(Scenario::Memory, w);
            let a = summary.get(g, id, Metric::RssStartMib)?;
            let b = summary.get(g, id, Metric::RssLoadMib)?;
            Some(format!("{} / {}", si(a.median), si(b.median)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            Scenario::Memory,
            &o.memory_workers,
            &f,
            Metric::RssLoadMib,
        );
    }
    if o.wants(Scenario::Idle) {
        idle_section(&mut out, run, summary);
    }
    if o.wants(Scenario::Startup) {
        let _ = writeln!(
            out,
            "## Start-up\n\nMilliseconds from spawning the process until it has reported every worker \
             up (cluster_thread: N `Worker … started` lines and `listening on`; Node: N workers' \
             `listening` events; the Rust peers: `listening on`, printed once their worker \
             threads run) and `GET /` on a new connection answers 200. Median of {} launch(es) per \
             repetition.\n",
            o.launches
        );
        let f = |id: &str, w: usize| {
            summary
                .get(Group::of(Scenario::Startup, w), id, Metric::StartupMs)
                .map(|s| cell(Some(s), &|v| fixed(v, 1)))
        };
        by_workers_section(
            &mut out,
            run,
            summary,
            Scenario::Startup,
            &o.startup_workers,
            &f,
            Metric::StartupMs,
        );
    }
    if o.wants(Scenario::Respawn) {
        respawn_section(&mut out, run, summary);
    }
    let mut command = String::from("cargo xtask bench");
    for arg in std::env::args().skip(2) {
        command.push(' ');
        command.push_str(&arg);
    }
    let _ = writeln!(
        out,
        "Run: `{command}` · raw data: report.json · chart: report.svg"
    );
    out
}

fn idle_section(out: &mut String, run: &Run, summary: &Summary) {
    let o = &run.options;
    let g = Group::of(Scenario::Idle, o.workers);
    let _ = writeln!(
        out,
        "## Memory per idle keep-alive connection\n\n{} workers each, warmed up by {} connections for 0.3 s; \
         then {} keep-alive connections opened and held: RSS growth of the process tree per \
         connection in KiB, once every connection is accepted (no request yet) and after one \
         request on each (the connections still open). Node's figures move with its garbage \
         collector, and can be below zero.\n",
        o.workers, o.connections, o.idle_connections
    );
    let rows: Vec<Vec<String>> = run
        .servers
        .iter()
        .filter_map(|s| {
            let get = |m: Metric| summary.get(g, s.id, m);
            let after = get(Metric::IdleKibPerConn)?;
            Some(vec![
                s.label.to_string(),
                cell(get(Metric::IdleBaseMib), &|v| fixed(v, 1)),
                cell(get(Metric::IdleKibPerConnOpened), &|v| fixed(v, 1)),
                cell(Some(after), &|v| fixed(v, 1)),
                if s.id == "actix" {
                    "1".into()
                } else {
                    times(summary.ratio(g, s.id, "actix", Metric::IdleKibPerConn))
                },
                get(Metric::IdleConnections).map_or("–".into(), |c| format!("{:.0}", c.min)),
            ])
        })
        .collect();
    table(
        out,
        &strings(&[
            "server",
            "RSS before, MiB",
            "KiB/conn, opened",
            "KiB/conn, after a request",
            "× actix-web",
            "connections held",
        ]),
        &rows,
    );
}

fn respawn_section(out: &mut String, run: &Run, summary: &Summary) {
    let o = &run.options;
    let w = o.workers;
    let _ = writeln!(
        out,
        "## Respawn\n\nA worker crashes (cluster_thread with `--chaos`: `GET /panic`; Node: `kill -9` \
         of a worker process, the primary forks again); milliseconds until a new worker \
         (a higher `x-worker-id`) answers `GET /` on a new connection, probed back to back with as many connections at once as there are workers; \
         a probe unanswered after 50 ms is counted as lost and the next one starts. \
         {} crash(es) per repetition, {w} workers, each on a freshly started server: a slot's \
         first restart (cluster_thread restarts it at once; further crashes of a slot in a row \
         back off from 100 ms, as PM2 does). Servers run without `RUST_BACKTRACE`. The Rust peers: n/a (a panic there \
         does not replace a worker).\n",
        o.respawns
    );
    let g = Group::of(Scenario::Respawn, w);
    let rows: Vec<Vec<String>> = run
        .servers
        .iter()
        .filter(|s| s.kind != Kind::Raw)
        .map(|s| {
            let get = |m: Metric| summary.get(g, s.id, m);
            if !s.can_respawn() {
                let mut row = vec![s.label.to_string()];
                row.extend(["n/a"; 4].map(String::from));
                return row;
            }
            vec![
                s.label.to_string(),
                cell(get(Metric::RespawnMs), &|v| fixed(v, 2)),
                get(Metric::RespawnMaxMs).map_or("–".into(), |m| fixed(m.max, 2)),
                get(Metric::Failures).map_or("–".into(), |f| format!("{:.0}", f.max)),
                get(Metric::LostProbes).map_or("–".into(), |f| format!("{:.0}", f.max)),
            ]
        })
        .collect();
    table(
        out,
        &strings(&["server", "median ms", "worst ms", "failed", "lost probes"]),
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::super::json;
    use super::super::run::tests::example as run;
    use super::*;

    #[test]
    fn reports_render_every_part() {
        let run = run();
        let summary = Summary::new(&run);
        let md = markdown(&run, &summary);
        for part in [
            "## Goals",
            "## Pinned: 1 worker on CPU 1, the generator on CPU 0",
            "### wrk",
            "| server | keep-alive CPU µs/req | churn CPU µs/req | keep-alive p99 ms | churn p99 ms |",
            "**MISSED** 1.11× (1.11–1.11): cluster_thread reuseport over hyper 1 (thread per core)",
            "| goal (×: median of the ratios within each repetition, min–max) |",
        ] {
            assert!(md.contains(part), "no `{part}` in\n{md}");
        }
        assert!(!md.contains("## Unpinned"));
        let goals = goals::all_goals(&run, &summary);
        let text = serde_json::to_string(&json::Report::new(&run, &summary, &goals)).unwrap();
        for part in [
            r#""scenario":"churn","placement":"pinned","generator":"wrk","workers":1,"server":"ct-rr","metric":"cpu_us_per_req","median":60.00"#,
            r#""verdict":"MISSED""#,
            r#""placements":["pinned"]"#,
        ] {
            assert!(text.contains(part), "no `{part}` in {text}");
        }
        assert!(super::super::svg::chart(&run, &summary).contains("churn: CPU µs/req, pinned, wrk"));
    }
}
