//! `report.svg`: one small horizontal bar chart per figure, every server a
//! labelled bar (median) with a min–max whisker, cluster_thread in blues,
//! the Rust peers in oranges and greens, Node in purples, raw in grey.

use std::fmt::Write as _;

use super::run::Run;
use super::sample::{Group, Metric, Scenario};
use super::servers::{Kind, Server};
use super::summary::{Stat, Summary};

struct Panel {
    title: String,
    bars: Vec<(&'static Server, Stat)>,
    decimals: usize,
}

fn color(server: &Server) -> &'static str {
    match server.kind {
        // Through the acceptor thread, beside the kernel-steered default.
        Kind::ClusterThread(_) if !server.env.is_empty() => "#c6dbef",
        Kind::ClusterThread("round-robin") => "#08519c",
        Kind::ClusterThread("least-connections") => "#3182bd",
        Kind::ClusterThread("os") => "#6baed6",
        Kind::ClusterThread(_) => "#9ecae1",
        Kind::RustPeer("actix") => "#e6550d",
        Kind::RustPeer("hyper") => "#31a354",
        Kind::RustPeer("hyper-tpc") => "#74c476",
        Kind::RustPeer(_) => "#fd8d3c",
        Kind::Node("rr") => "#756bb1",
        Kind::Node(_) => "#bcbddc",
        Kind::Raw => "#969696",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn number(v: f64, decimals: usize) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.decimals$}")
    }
}

fn panels(run: &Run, summary: &Summary) -> Vec<Panel> {
    let o = &run.options;
    let mut panels = Vec::new();
    let mut add = |title: String, group: Group, metric: Metric, decimals: usize, raw: bool| {
        let bars: Vec<_> = run
            .servers
            .iter()
            .copied()
            .filter(|s| raw || s.kind != Kind::Raw)
            .filter_map(|s| Some((s, summary.get(group, s.id, metric)?)))
            .collect();
        if !bars.is_empty() {
            panels.push(Panel {
                title,
                bars,
                decimals,
            });
        }
    };
    for (placement, generator) in run.load_scopes() {
        let workers = o.workers_of(placement);
        for scenario in [Scenario::KeepAlive, Scenario::Churn] {
            add(
                format!(
                    "{}: CPU µs/req, {}, {}",
                    scenario.name(),
                    placement.name(),
                    generator.label()
                ),
                Group::load(scenario, placement, generator, workers),
                Metric::CpuUsPerReq,
                2,
                true,
            );
        }
    }
    let mem_w = if o.memory_workers.contains(&8) {
        Some(8)
    } else {
        o.memory_workers.iter().copied().max()
    };
    if let Some(mw) = mem_w {
        add(
            format!("RSS after load at {mw} workers, MiB"),
            Group::of(Scenario::Memory, mw),
            Metric::RssLoadMib,
            1,
            false,
        );
    }
    add(
        "KiB per idle keep-alive connection (after a request)".into(),
        Group::of(Scenario::Idle, o.workers),
        Metric::IdleKibPerConn,
        1,
        false,
    );
    if let Some(sw) = o.startup_workers.iter().copied().max() {
        add(
            format!("Start-up at {sw} workers, ms"),
            Group::of(Scenario::Startup, sw),
            Metric::StartupMs,
            1,
            false,
        );
    }
    add(
        "Respawn: crash until a new worker answers, ms".into(),
        Group::of(Scenario::Respawn, o.workers),
        Metric::RespawnMs,
        2,
        false,
    );
    panels
}

const WIDTH: f64 = 1080.0;
const COLUMN: f64 = 530.0;
const LABEL: f64 = 210.0;
const BAR_AREA: f64 = 240.0;
const BAR: f64 = 16.0;
const GAP: f64 = 5.0;

fn panel_height(p: &Panel) -> f64 {
    34.0 + p.bars.len() as f64 * (BAR + GAP) + 10.0
}

fn draw(out: &mut String, p: &Panel, x: f64, y: f64) {
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{}" class="title">{}</text>"#,
        y + 16.0,
        escape(&p.title)
    );
    let top = p
        .bars
        .iter()
        .map(|(_, s)| s.max.max(s.median))
        .fold(0.0_f64, f64::max);
    let scale = if top > 0.0 { BAR_AREA / top } else { 0.0 };
    let x0 = x + LABEL;
    let _ = writeln!(
        out,
        r##"<line x1="{x0}" y1="{}" x2="{x0}" y2="{}" stroke="#444" stroke-width="1"/>"##,
        y + 26.0,
        y + 30.0 + p.bars.len() as f64 * (BAR + GAP)
    );
    for (i, (server, stat)) in p.bars.iter().enumerate() {
        let by = y + 30.0 + i as f64 * (BAR + GAP);
        let len = (stat.median * scale).max(1.0);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            by + BAR - 4.0,
            escape(server.label)
        );
        let _ = writeln!(
            out,
            r#"<rect x="{x0}" y="{by}" width="{len:.1}" height="{BAR}" fill="{}"><title>{}: {} (min {}, max {}, n {})</title></rect>"#,
            color(server),
            escape(server.label),
            number(stat.median, p.decimals),
            number(stat.min, p.decimals),
            number(stat.max, p.decimals),
            stat.n
        );
        if stat.n > 1 && stat.max > stat.min {
            let (a, b) = (x0 + stat.min * scale, x0 + stat.max * scale);
            let mid = by + BAR / 2.0;
            let _ = writeln!(
                out,
                r##"<path d="M{a:.1},{mid} H{b:.1} M{a:.1},{:.1} V{:.1} M{b:.1},{:.1} V{:.1}" stroke="#222" stroke-width="1.2" fill="none"/>"##,
                mid - 4.0,
                mid + 4.0,
                mid - 4.0,
                mid + 4.0
            );
        }
        let tx = x0 + len.max(stat.max * scale) + 6.0;
        let _ = writeln!(
            out,
            r#"<text x="{tx:.1}" y="{}" class="value">{}</text>"#,
            by + BAR - 4.0,
            number(stat.median, p.decimals)
        );
    }
}

pub(crate) fn chart(run: &Run, summary: &Summary) -> String {
    let panels = panels(run, summary);
    let o = &run.options;
    let mut body = String::new();
    let mut y = [78.0_f64, 78.0];
    for p in &panels {
        let col = if y[0] <= y[1] { 0 } else { 1 };
        draw(&mut body, p, 20.0 + col as f64 * COLUMN, y[col]);
        y[col] += panel_height(p) + 12.0;
    }
    let height = y[0].max(y[1]) + 10.0;
    let subtitle = format!(
        "{} · {} cores · lower is better everywhere · {:.1} s runs × {} rep{} · generators: {}{}",
        run.started,
        run.machine.cores,
        o.duration.as_secs_f64(),
        o.reps,
        if o.reps == 1 { "" } else { "s" },
        run.generators(),
        if o.quick { " · --quick smoke run" } else { "" }
    );
    let empty = if panels.is_empty() {
        r#"<text x="20" y="100" class="label">No figures: no scenario produced data.</text>"#
    } else {
        ""
    };
    let legend = r##"<text x="20" y="62" class="legend"><tspan fill="#08519c">■ cluster_thread (one shade per balance mode)</tspan>   <tspan fill="#e6550d">■ actix-web</tspan>   <tspan fill="#31a354">■</tspan><tspan fill="#74c476">■ hyper (multi-thread, thread per core)</tspan>   <tspan fill="#fd8d3c">■ axum</tspan>   <tspan fill="#756bb1">■ Node cluster</tspan>   <tspan fill="#969696">■ raw: canned bytes, no HTTP</tspan>   <tspan fill="#222">├┤ min–max over repetitions</tspan></text>"##;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<style>
.h1 {{ font-size: 18px; font-weight: bold; fill: #111; }}
.sub {{ font-size: 11px; fill: #555; }}
.title {{ font-size: 13px; font-weight: bold; fill: #222; }}
.label {{ font-size: 11px; fill: #222; }}
.value {{ font-size: 11px; fill: #111; }}
.legend {{ font-size: 11px; fill: #333; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="24" class="h1">cluster_thread vs actix-web, hyper, axum and Node's cluster</text>
<text x="20" y="42" class="sub">{}</text>
{legend}
{body}{empty}
</svg>
"##,
        escape(&subtitle)
    )
}
