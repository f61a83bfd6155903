//! What every worker's servers count, per slot, shared by the whole cluster
//! (a cluster extension): so that one scrape of `/metrics` or the status
//! page shows every slot, whichever worker answers, and a slot's counters
//! go on across its workers' restarts.
//!
//! On the hot path (a connection, a request) only relaxed atomic adds;
//! the lock is taken when a server starts, drains or ends, and by a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cluster_core::hooks;
use cluster_core::{Cluster, Worker};

/// The upper bounds of the latency histogram's buckets, in microseconds
/// (0.5 ms to 10 s, as Prometheus clients' defaults with a finer start).
pub(crate) const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Every slot's counts, indexed by slot.
#[derive(Debug, Default)]
pub(crate) struct Slots(Mutex<Vec<Arc<Slot>>>);

impl Slots {
    /// The counts of `slot`, created on first use.
    pub(crate) fn get(&self, slot: usize) -> Arc<Slot> {
        let mut slots = self.lock();
        while slots.len() <= slot {
            slots.push(Arc::default());
        }
        Arc::clone(&slots[slot])
    }

    /// Every slot seen so far.
    pub(crate) fn all(&self) -> Vec<Arc<Slot>> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One slot's counts, across its workers.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) requests: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    /// Open connections its draining workers handed to live workers.
    pub(crate) migrated: AtomicU64,
    /// HTTP/3's counts (also in `accepted` and `active`).
    pub(crate) quic: QuicCounts,
    pub(crate) latency: Histogram,
    current: Mutex<Current>,
}

/// One slot's HTTP/3 counts, across its workers.
#[derive(Debug, Default)]
pub(crate) struct QuicCounts {
    /// QUIC connections whose handshake completed.
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    /// Request streams.
    pub(crate) streams: AtomicU64,
    /// Datagrams the slot's endpoints read and forwarded to the endpoint
    /// their connection ID names.
    pub(crate) forwarded: AtomicU64,
    /// Clients asked to prove their address first (a Retry).
    pub(crate) retries: AtomicU64,
}

/// A [`QuicCounts`] read at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuicSnapshot {
    pub(crate) accepted: u64,
    pub(crate) active: u64,
    pub(crate) streams: u64,
    pub(crate) forwarded: u64,
    pub(crate) retries: u64,
}

impl QuicCounts {
    fn snapshot(&self) -> QuicSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QuicSnapshot {
            accepted: get(&self.accepted),
            active: get(&self.active),
            streams: get(&self.streams),
            forwarded: get(&self.forwarded),
            retries: get(&self.retries),
        }
    }
}

/// The worker serving a slot now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Current {
    pub(crate) id: u64,
    pub(crate) restarts: u32,
    pub(crate) since: Option<Instant>,
    /// Its servers still running (a worker may serve several listeners).
    pub(crate) servers: u32,
    pub(crate) draining: bool,
}

/// What a slot looks like now, for a scrape.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) slot: usize,
    pub(crate) current: Current,
    pub(crate) requests: u64,
    pub(crate) accepted: u64,
    pub(crate) active: u64,
    pub(crate) migrated: u64,
    pub(crate) quic: QuicSnapshot,
    /// Per bucket (not cumulative), the last one past the largest bound.
    pub(crate) buckets: [u64; BUCKETS_US.len() + 1],
    pub(crate) sum_us: u64,
}

impl Snapshot {
    /// Serving now: a worker's server runs for this slot.
    pub(crate) fn live(&self) -> bool {
        self.current.servers > 0
    }

    pub(crate) fn uptime(&self) -> Option<Duration> {
        self.current
            .since
            .filter(|_| self.live())
            .map(|s| s.elapsed())
    }

    /// The `q` quantile of the latency, interpolated within its bucket as
    /// Prometheus's `histogram_quantile` does; `None` before any request.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let count: u64 = self.buckets.iter().sum();
        if count == 0 {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BUCKETS_US[i - 1] };
                // Past the last bound: the largest bound, as Prometheus does.
                let Some(&upper) = BUCKETS_US.get(i) else {
                    return Some(Duration::from_micros(lower));
                };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                let us = lower as f64 + (upper - lower) as f64 * within;
                return Some(Duration::from_micros(us as u64));
            }
            below += n;
        }
        None
    }
}

impl Slot {
    /// `worker`'s server starts on this slot.
    pub(crate) fn attach(&self, worker: &Worker) {
        let mut current = self.lock();
        if current.id != worker.id() {
            *current = Current {
                id: worker.id(),
                restarts: worker.restarts(),
                since: Some(Instant::now()),
                servers: 0,
                draining: false,
            };
        }
        current.servers += 1;
    }

    /// `id`'s server drains.
    pub(crate) fn draining(&self, id: u64) {
        let mut current = self.lock();
        if current.id == id {
            current.draining = true;
        }
    }

    /// `id`'s server ended (or was dropped with its worker's runtime).
    pub(crate) fn detach(&self, id: u64) {
        let mut current = self.lock();
        if current.id == id {
            current.servers = current.servers.saturating_sub(1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn snapshot(&self, slot: usize) -> Snapshot {
        let mut buckets = [0; BUCKETS_US.len() + 1];
        for (out, b) in buckets.iter_mut().zip(&self.latency.buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        Snapshot {
            slot,
            current: *self.lock(),
            requests: self.requests.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            migrated: self.migrated.load(Ordering::Relaxed),
            quic: self.quic.snapshot(),
            active: self.active.load(Ordering::Relaxed),
            buckets,
            sum_us: self.latency.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A latency histogram: a count per bucket and the sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Every slot's snapshot, in slot order.
pub(crate) fn snapshots(worker: &Worker) -> Vec<Snapshot> {
    hooks::extension::<Slots>(worker)
        .all()
        .iter()
        .enumerate()
        .map(|(i, s)| s.snapshot(i))
        .collect()
}

/// One slot's HTTP counts, across its workers, as the primary reads them
/// ([`slot_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotStats {
    /// The slot.
    pub slot: usize,
    /// The worker whose server runs for the slot now, if one does.
    pub worker: Option<u64>,
    /// Requests answered so far.
    pub requests: u64,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// HTTP/3: QUIC connections accepted so far (also in `accepted`).
    pub quic_accepted: u64,
    /// HTTP/3: QUIC connections open now (also in `active`).
    pub quic_active: u64,
    /// HTTP/3: request streams so far.
    pub quic_streams: u64,
    /// HTTP/3: datagrams the slot's endpoints forwarded to the endpoint
    /// their connection ID names (they reached the wrong socket).
    pub quic_forwarded: u64,
    /// HTTP/3: clients asked to prove their address first (a Retry) while
    /// a flood of handshakes was in progress.
    pub quic_retries: u64,
}

/// Every slot's HTTP counts so far (the slots an HTTP server ran on), in
/// slot order: what the status page shows, for the primary.
pub fn slot_stats(cluster: &Cluster) -> Vec<SlotStats> {
    hooks::cluster_extension::<Slots>(cluster)
        .all()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.snapshot(i);
            SlotStats {
                slot: i,
                worker: s.live().then_some(s.current.id),
                requests: s.requests,
                accepted: s.accepted,
                active: s.active,
                quic_accepted: s.quic.accepted,
                quic_active: s.quic.active,
                quic_streams: s.quic.streams,
                quic_forwarded: s.quic.forwarded,
                quic_retries: s.quic.retries,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds_inclusive() {
        let h = Histogram::default();
        for us in [0, 500, 501, 10_000_000, 10_000_001] {
            h.record(Duration::from_micros(us));
        }
        let n: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(n[0], 2);
        assert_eq!(n[1], 1);
        assert_eq!(n[BUCKETS_US.len() - 1], 1);
        assert_eq!(n[BUCKETS_US.len()], 1);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let slot = Slot::default();
        assert_eq!(slot.snapshot(0).quantile(0.5), None);
        // 100 requests between 1 and 2.5 ms.
        for _ in 0..100 {
            slot.latency.record(Duration::from_micros(2_000));
        }
        let s = slot.snapshot(0);
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(1_750)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_micros(2_485)));
    }
}
