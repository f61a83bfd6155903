//! The status page: the cluster's totals, then one row per slot with its
//! state, its last minutes of requests per second and p99 latency as
//! sparklines, and its worker thread's CPU, as HAProxy's stats page or
//! `pm2 monit` show. HTML that refreshes itself (no script), or JSON with
//! the same series.

use std::fmt::Write;
use std::time::Duration;

use cluster_core::{hooks, Worker};

use crate::history::{self, Series};
use crate::slots::{self, Snapshot};

/// Seconds between the HTML page's own refreshes.
const REFRESH_SECS: u32 = 2;

/// A sparkline's size in CSS pixels.
const SPARK_W: f64 = 150.0;
const SPARK_H: f64 = 24.0;

fn state(s: &Snapshot) -> &'static str {
    match (s.live(), s.current.draining) {
        (false, _) => "down",
        (true, true) => "draining",
        (true, false) => "serving",
    }
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

/// The slot's figures of the last second (the series' last value).
fn last<T: Copy>(series: &[T]) -> Option<T> {
    series.last().copied()
}

/// `values` as an inline SVG polyline, one point per value (a missing one
/// at the baseline), scaled to the largest.
fn sparkline(class: &str, values: &[Option<f64>]) -> String {
    let max = values
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = if values.len() > 1 {
        SPARK_W / (values.len() - 1) as f64
    } else {
        0.0
    };
    let mut points = String::with_capacity(values.len() * 12);
    for (i, v) in values.iter().enumerate() {
        let y = SPARK_H - 1.0 - v.unwrap_or(0.0) / max * (SPARK_H - 2.0);
        let _ = write!(
            points,
            "{}{:.1},{:.1}",
            if i > 0 { " " } else { "" },
            i as f64 * step,
            y
        );
    }
    format!(
        "<svg class=\"spark {class}\" width=\"{SPARK_W}\" height=\"{SPARK_H}\" \
         viewBox=\"0 0 {SPARK_W} {SPARK_H}\" data-points=\"{}\" role=\"img\">\
         <polyline points=\"{points}\"/></svg>",
        values.len()
    )
}

/// A horizontal bar of `percent` (of one CPU), with its figure.
fn bar(percent: Option<f64>) -> String {
    match percent {
        None => "<span class=\"unknown\">–</span>".to_owned(),
        Some(p) => format!(
            "<div class=\"bar\"><div style=\"width:{:.0}%\"></div></div> {p:.0}%",
            p.clamp(0.0, 100.0)
        ),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The cluster's rates now: requests per second and the slowest slot's p99.
fn totals(all: &[(Snapshot, Series)]) -> (f64, Option<f64>) {
    let rps = all.iter().filter_map(|(_, s)| last(&s.rps)).sum();
    let p99 = all
        .iter()
        .filter_map(|(_, s)| last(&s.p99_ms).flatten())
        .reduce(f64::max);
    (rps, p99)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
    h1{font-size:1.4em;margin:0 0 .3em}\
    .totals{display:flex;gap:2em;margin:.5em 0 1em}.totals div{font-size:.85em;color:#555}\
    .totals b{display:block;font-size:1.6em;color:#222}\
    table{border-collapse:collapse}td,th{padding:4px 10px;text-align:right;border-bottom:1px solid #ddd;white-space:nowrap}\
    th{font-size:.8em;color:#555}\
    .state{border-radius:3px;padding:1px 6px;color:#fff;font-size:.85em}\
    .serving .state{background:#2a8a3e}.draining .state{background:#c98a00}.down .state{background:#999}\
    tr.down td{color:#999}\
    svg.spark polyline{fill:none;stroke-width:1.5}svg.rps polyline{stroke:#2563eb}\
    svg.p99 polyline{stroke:#c2410c}\
    .bar{display:inline-block;width:60px;height:8px;background:#eee;vertical-align:middle}\
    .bar div{height:8px;background:#7c3aed}.unknown{color:#999}";

/// The page in HTML.
pub(crate) fn html(worker: &Worker) -> String {
    let all = slots::with_series(worker);
    let info = worker.cluster_info();
    let (rps, p99) = totals(&all);
    let dash = || "–".to_owned();
    let mut out = String::with_capacity(4096 + all.len() * 8192);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>cluster_thread status</title><style>{STYLE}</style></head><body>\n\
         <h1>cluster_thread</h1>\n\
         <div class=\"totals\"><div>phase<b id=\"phase\">{}</b></div>\
         <div>workers<b id=\"workers\">{}</b></div><div>restarts<b id=\"restarts\">{}</b></div>\
         <div>requests/s<b id=\"rps\">{rps:.0}</b></div><div>p99<b id=\"p99\">{}</b></div>\
         <div>memory (process)<b id=\"rss\">{}</b></div></div>\n\
         <p>answered by worker {} (slot {}); the last {} minutes, a point a second; \
         refreshes every {REFRESH_SECS} s</p>\n\
         <table id=\"slots\"><thead><tr><th>slot</th><th>worker</th><th>state</th><th>uptime</th>\
         <th>restarts</th><th>active</th><th>requests</th><th>requests/s</th><th></th>\
         <th>p99</th><th></th><th>CPU</th><th>memory</th><th>last failure</th></tr></thead><tbody>\n",
        info.phase,
        info.workers,
        info.restarts,
        p99.map_or_else(dash, |ms| format!("{ms:.1} ms")),
        history::resident_bytes().map_or_else(dash, mib),
        worker.id(),
        worker.slot(),
        history::KEEP / 60,
    );
    // Known only with an arena per worker (the facade's `jemalloc`).
    let memory = hooks::extension::<hooks::WorkerMemory>(worker);
    let failures = hooks::extension::<hooks::LastFailures>(worker);
    for (s, series) in &all {
        let state = state(s);
        let failure = failures
            .of(s.slot)
            .map_or_else(dash, |r| html_escape(&shorten(&r.to_string())));
        let worker = if s.live() {
            s.current.id.to_string()
        } else {
            dash()
        };
        let bytes = s.live().then(|| memory.bytes(s.current.id)).flatten();
        let uptime = s
            .uptime()
            .map_or_else(dash, |u| format!("{:.1} s", u.as_secs_f64()));
        let rps: Vec<Option<f64>> = series.rps.iter().copied().map(Some).collect();
        let _ = writeln!(
            out,
            "<tr class=\"slot {state}\" data-slot=\"{}\"><td>{}</td><td>{worker}</td>\
             <td><span class=\"state\">{state}</span></td><td>{uptime}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"failure\">{failure}</td></tr>",
            s.slot,
            s.slot,
            s.current.restarts,
            s.active,
            s.requests,
            last(&series.rps).map_or_else(dash, |r| format!("{r:.0}")),
            sparkline("rps", &rps),
            last(&series.p99_ms)
                .flatten()
                .or(ms(s.quantile(0.99)))
                .map_or_else(dash, |ms| format!("{ms:.2} ms")),
            sparkline("p99", &series.p99_ms),
            bar(last(&series.cpu_percent).flatten()),
            bytes.map_or_else(|| "<span class=\"unknown\">unknown</span>".to_owned(), mib),
        );
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// At most 80 characters of a panic message or an error (they can be long).
fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `text` safe inside HTML: a panic message may hold anything a client sent.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a JSON string, quotes included.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of numbers (`null` for none).
fn array(values: impl Iterator<Item = Option<f64>>) -> String {
    let mut out = String::from("[");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Some(v) => {
                let _ = write!(out, "{v:.3}");
            }
            None => out.push_str("null"),
        }
    }
    out.push(']');
    out
}

/// The page in JSON: `{"phase", "workers", "restarts", "rss_bytes",
/// "interval_seconds", "slots": [{..., "last_failure", "series": {"rps", "p99_ms",
/// "cpu_percent"}}]}`. Every value is a number, a bool, null or one of our
/// fixed names, except `last_failure`, escaped.
pub(crate) fn json(worker: &Worker) -> String {
    let all = slots::with_series(worker);
    let info = worker.cluster_info();
    let num = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}"));
    let failures = hooks::extension::<hooks::LastFailures>(worker);
    let memory = hooks::extension::<hooks::WorkerMemory>(worker);
    let mut out = format!(
        "{{\"phase\":\"{}\",\"workers\":{},\"restarts\":{},\"rss_bytes\":{},\
         \"interval_seconds\":{},\"slots\":[",
        info.phase,
        info.workers,
        info.restarts,
        history::resident_bytes().map_or_else(|| "null".to_owned(), |b| b.to_string()),
        history::EVERY.as_secs_f64(),
    );
    for (i, (s, series)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let worker = if s.live() {
            s.current.id.to_string()
        } else {
            "null".to_owned()
        };
        let _ = write!(
            out,
            "{{\"slot\":{},\"worker\":{worker},\"state\":\"{}\",\"uptime_seconds\":{},\
             \"restarts\":{},\"active\":{},\"accepted\":{},\"requests\":{},\
             \"p50_ms\":{},\"p99_ms\":{},\"cpu_percent\":{},\"memory_bytes\":{},\"memory_recycles\":{},\"last_failure\":{},\
             \"series\":{{\"rps\":{},\"p99_ms\":{},\"cpu_percent\":{}}},\
             \"quic\":{{\"accepted\":{},\"active\":{},\"streams\":{},\"forwarded\":{},\"retries\":{}}}}}",
            s.slot,
            state(s),
            num(s.uptime().map(|u| u.as_secs_f64())),
            s.current.restarts,
            s.active,
            s.accepted,
            s.requests,
            num(ms(s.quantile(0.5))),
            num(ms(s.quantile(0.99))),
            num(last(&series.cpu_percent).flatten()),
            s.live()
                .then(|| memory.bytes(s.current.id))
                .flatten()
                .map_or_else(|| "null".to_owned(), |b| b.to_string()),
            memory.recycles(s.slot),
            failures
                .of(s.slot)
                .map_or_else(|| "null".to_owned(), |r| json_string(&r.to_string())),
            array(series.rps.iter().copied().map(Some)),
            array(series.p99_ms.iter().copied()),
            array(series.cpu_percent.iter().copied()),
            s.quic.accepted,
            s.quic.active,
            s.quic.streams,
            s.quic.forwarded,
            s.quic.retries,
        );
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_may_have_put_in_a_panic_message_is_escaped() {
        let nasty = "<script>alert(\"x\")</script>&'\\\n\u{2028}";
        let html = html_escape(nasty);
        assert!(
            !html.contains('<') && !html.contains('"') && !html.contains('\''),
            "{html}"
        );
        let json = json_string(nasty);
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, nasty);
        assert_eq!(shorten(&"é".repeat(100)).chars().count(), 81);
    }

    #[test]
    fn a_sparkline_has_a_point_per_value_within_its_box() {
        let svg = sparkline("rps", &[Some(0.0), Some(5.0), None, Some(10.0)]);
        assert!(svg.contains("data-points=\"4\""), "{svg}");
        let points = svg
            .split("points=\"")
            .nth(2)
            .and_then(|p| p.split('"').next())
            .unwrap();
        let xy: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert_eq!(xy.len(), 4);
        assert!(xy
            .iter()
            .all(|&(x, y)| (0.0..=SPARK_W).contains(&x) && (0.0..=SPARK_H).contains(&y)));
        // The largest value at the top, zero and missing at the bottom.
        assert_eq!(xy[3].1, 1.0);
        assert_eq!(xy[0].1, xy[2].1);
        assert!(xy[1].1 < xy[0].1 && xy[1].1 > xy[3].1);
    }
}
