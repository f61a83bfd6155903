//! The status page: one row per slot, as HAProxy's stats page or
//! `pm2 monit` show, in HTML (refreshing itself) or JSON.

use std::fmt::Write;
use std::time::Duration;

use cluster_core::Worker;

use crate::slots::{self, Snapshot};

/// Seconds between the HTML page's own refreshes.
const REFRESH_SECS: u32 = 2;

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

/// The page in HTML.
pub(crate) fn html(worker: &Worker) -> String {
    let all = slots::snapshots(worker);
    let info = worker.cluster_info();
    let mut out = String::with_capacity(1024 + all.len() * 512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>cluster_thread status</title>\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 8px;text-align:right}}\
         tr.down td{{color:#999}}tr.draining td{{background:#ffd}}</style></head><body>\n\
         <h1>cluster_thread</h1>\n<p>phase <b id=\"phase\">{}</b>, {} workers alive, {} restarts; \
         answered by worker {} (slot {}); refreshes every {REFRESH_SECS} s</p>\n\
         <table id=\"slots\"><thead><tr><th>slot</th><th>worker</th><th>state</th><th>uptime</th>\
         <th>restarts</th><th>active</th><th>accepted</th><th>requests</th><th>p50</th><th>p99</th>\
         </tr></thead><tbody>\n",
        info.phase,
        info.workers,
        info.restarts,
        worker.id(),
        worker.slot(),
    );
    let dash = || "–".to_owned();
    for s in &all {
        let state = state(s);
        let worker = if s.live() {
            s.current.id.to_string()
        } else {
            dash()
        };
        let uptime = s
            .uptime()
            .map_or_else(dash, |u| format!("{:.1} s", u.as_secs_f64()));
        let latency = |q| ms(s.quantile(q)).map_or_else(dash, |ms| format!("{ms:.2} ms"));
        let _ = writeln!(
            out,
            "<tr class=\"slot {state}\" data-slot=\"{}\"><td>{}</td><td>{worker}</td><td>{state}</td>\
             <td>{uptime}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.slot,
            s.slot,
            s.current.restarts,
            s.active,
            s.accepted,
            s.requests,
            latency(0.5),
            latency(0.99),
        );
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// The page in JSON: `{"phase", "workers", "restarts", "slots": [...]}`.
/// Every value is a number, a bool, null or one of our fixed names: no
/// escaping needed.
pub(crate) fn json(worker: &Worker) -> String {
    let all = slots::snapshots(worker);
    let info = worker.cluster_info();
    let num = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| format!("{v:.3}"));
    let mut out = format!(
        "{{\"phase\":\"{}\",\"workers\":{},\"restarts\":{},\"slots\":[",
        info.phase, info.workers, info.restarts
    );
    for (i, s) in all.iter().enumerate() {
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
             \"p50_ms\":{},\"p99_ms\":{},\"quic\":{{\"accepted\":{},\"active\":{},\
             \"streams\":{},\"forwarded\":{},\"retries\":{}}}}}",
            s.slot,
            state(s),
            num(s.uptime().map(|u| u.as_secs_f64())),
            s.current.restarts,
            s.active,
            s.accepted,
            s.requests,
            num(ms(s.quantile(0.5))),
            num(ms(s.quantile(0.99))),
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
