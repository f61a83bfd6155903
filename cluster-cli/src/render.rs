//! The text of `ls`, `monit` and `get`: fits 80 columns.

use std::fmt::Write;

use cluster_ctl::protocol::{Setting, Status};

/// `12s`, `3m05s`, `2h07m`, `3d04h`.
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `512 B`, `12.3 KiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

fn or_dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

/// The header lines, then one row per worker, at most `width` columns
/// (`rows`: at most this many worker rows, the rest counted).
pub(crate) fn status_lines(status: &Status, width: usize, rows: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let version = status
        .program_version
        .as_deref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    lines.push(format!(
        "{}{version} (pid {}): {}, up {}",
        status.name,
        status.pid,
        status.phase,
        duration(status.uptime_seconds),
    ));
    lines.push(format!(
        "  {} workers, {} restarts, memory {} (the whole process)",
        status.size,
        status.restarts,
        or_dash(status.memory_bytes, bytes),
    ));
    if !status.workers.is_empty() && status.workers.iter().all(|w| w.memory_bytes.is_none()) {
        lines.push("  memory per worker: unknown (one heap; the jemalloc feature tells it)".into());
    }
    for l in &status.listeners {
        lines.push(format!(
            "  {}  {}  {} open",
            l.address, l.balance, l.connections
        ));
    }
    lines.push(format!(
        "{:>4} {:>5} {:<9} {:>7} {:>8} {:>6} {:>9} {:>7} {:>5} {:>7}",
        "slot", "id", "state", "uptime", "restarts", "conns", "requests", "req/s", "cpu%", "memory"
    ));
    for w in status.workers.iter().take(rows) {
        lines.push(format!(
            "{:>4} {:>5} {:<9} {:>7} {:>8} {:>6} {:>9} {:>7} {:>5} {:>7}",
            w.slot,
            w.id,
            w.state,
            duration(w.uptime_seconds),
            w.restarts,
            or_dash(w.connections, |n| n.to_string()),
            or_dash(w.requests, |n| n.to_string()),
            or_dash(w.requests_per_second, |r| format!("{r:.1}")),
            or_dash(w.cpu_percent, |c| format!("{c:.1}")),
            or_dash(w.memory_bytes, bytes),
        ));
    }
    if status.workers.len() > rows {
        lines.push(format!("  … {} more", status.workers.len() - rows));
    }
    for line in &mut lines {
        if line.chars().count() > width {
            *line = line.chars().take(width).collect();
        }
    }
    lines
}

/// [`status_lines`], every row, as text.
pub(crate) fn status(status: &Status, width: usize) -> String {
    let mut out = String::new();
    for line in status_lines(status, width, usize::MAX) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// `key = value` lines, each with its help.
pub(crate) fn settings(settings: &[Setting]) -> String {
    let mut out = String::new();
    let key_width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in settings {
        let _ = writeln!(out, "{:<key_width$} = {}", s.key, s.value);
        let _ = writeln!(out, "{:<key_width$}   {}", "", s.help);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(5.4), "5s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(7_620.0), "2h07m");
        assert_eq!(duration(277_200.0), "3d05h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_902_400), "12.3 MiB");
    }
}
