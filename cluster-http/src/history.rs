//! Each slot's recent past, for the status page's sparklines: one sample a
//! second over the last five minutes (requests, latency counts, the
//! worker thread's CPU time), and the rates between samples. Taken by one
//! thread per cluster, started by the first server with a status page;
//! nothing on the request path.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::histogram::{self, Counts};

/// How often a sample is taken.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// How many rates a series keeps (five minutes of them).
pub(crate) const KEEP: usize = 300;

/// Clock ticks per second of `/proc`'s CPU times: `USER_HZ`, 100 on every
/// Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// One slot at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) requests: u64,
    pub(crate) latency: Counts,
    /// The serving worker's thread and its CPU time (user + system ticks).
    pub(crate) cpu: Option<(i32, u64)>,
}

/// The rates between consecutive samples, oldest first.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) rps: Vec<f64>,
    /// `None` where no request was answered.
    pub(crate) p99_ms: Vec<Option<f64>>,
    /// `None` where the slot had no worker thread to read.
    pub(crate) cpu_percent: Vec<Option<f64>>,
}

/// A slot's samples.
#[derive(Debug, Default)]
pub(crate) struct History(Mutex<VecDeque<Sample>>);

impl History {
    pub(crate) fn push(&self, sample: Sample) {
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() > KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    pub(crate) fn series(&self) -> Series {
        let samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Series::default();
        for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
            let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
            out.rps
                .push(b.requests.saturating_sub(a.requests) as f64 / secs);
            let mut since: Counts = b.latency;
            for (n, before) in since.iter_mut().zip(&a.latency) {
                *n = n.saturating_sub(*before);
            }
            out.p99_ms
                .push(histogram::quantile(&since, 0.99).map(|d| d.as_secs_f64() * 1e3));
            out.cpu_percent.push(match (a.cpu, b.cpu) {
                // The same thread: a new worker's thread starts its own count.
                (Some((ta, ca)), Some((tb, cb))) if ta == tb => {
                    Some(cb.saturating_sub(ca) as f64 / TICKS_PER_SEC / secs * 100.0)
                }
                _ => None,
            });
        }
        out
    }
}

/// The calling thread's id as the kernel knows it (what `top -H` shows),
/// from `/proc/thread-self/stat`.
pub(crate) fn current_tid() -> Option<i32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// User + system CPU ticks of thread `tid` of this process.
pub(crate) fn cpu_ticks(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the command, which may hold spaces, in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The process's resident memory, from `/proc/self/status`.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, requests: u64, slow: u64, cpu: Option<(i32, u64)>) -> Sample {
        let mut latency = [0; crate::histogram::BUCKETS_US.len() + 1];
        latency[0] = requests - slow;
        latency[5] = slow; // 10 to 25 ms
        Sample {
            at,
            requests,
            latency,
            cpu,
        }
    }

    #[test]
    fn rates_come_from_consecutive_samples() {
        let h = History::default();
        let t = Instant::now();
        h.push(sample(t, 0, 0, Some((7, 100))));
        h.push(sample(t + EVERY, 200, 0, Some((7, 150))));
        // A new thread for the slot: no CPU rate across it.
        h.push(sample(t + EVERY * 2, 300, 100, Some((8, 3))));
        let s = h.series();
        assert_eq!(s.rps, [200.0, 100.0]);
        assert!(s.p99_ms[0].is_some_and(|ms| ms < 0.5), "{s:?}");
        assert!(s.p99_ms[1].is_some_and(|ms| ms > 10.0), "{s:?}");
        assert_eq!(s.cpu_percent, [Some(50.0), None]);
    }

    #[test]
    fn only_the_last_five_minutes_are_kept() {
        let h = History::default();
        let t = Instant::now();
        for i in 0..(KEEP as u64 + 50) {
            h.push(sample(t + EVERY * i as u32, i, 0, None));
        }
        assert_eq!(h.series().rps.len(), KEEP);
    }

    #[test]
    fn this_threads_cpu_time_is_read() {
        let tid = current_tid().expect("a tid");
        assert!(cpu_ticks(tid).is_some());
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
