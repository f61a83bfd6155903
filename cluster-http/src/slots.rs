//! What every worker's servers count, per slot, shared by the whole cluster
//! (a cluster extension): so that one scrape of `/metrics` or the status
//! page shows every slot, whichever worker answers, and a slot's counters
//! go on across its workers' restarts.
//!
//! On the hot path (a connection, a request) only relaxed atomic adds;
//! the lock is taken when a server starts, drains or ends, and by a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use cluster_core::hooks;
use cluster_core::{Cluster, Worker};

use crate::histogram::{self, Counts, Histogram};
use crate::history::{self, History, Sample, Series};

/// Every slot's counts, indexed by slot.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Mutex<Vec<Arc<Slot>>>,
    /// The sampling thread, once started.
    sampler: OnceLock<()>,
}

impl Slots {
    /// `worker`'s slot, in its cluster's; with `sampled` (a server with a
    /// status page), the cluster's sampling thread runs from now on.
    pub(crate) fn of(worker: &Worker, sampled: bool) -> Arc<Slot> {
        let slots = hooks::extension::<Slots>(worker);
        if sampled {
            slots.sampler.get_or_init(|| {
                let weak = Arc::downgrade(&slots);
                let spawned = std::thread::Builder::new()
                    .name("cluster-http-sampler".into())
                    .spawn(move || sample(weak));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "no sampling thread: the status page has no history");
                }
            });
        }
        slots.get(worker.slot())
    }

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
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A sample of every slot each second, while the cluster's slots exist.
fn sample(slots: Weak<Slots>) {
    loop {
        std::thread::sleep(history::EVERY);
        let Some(slots) = slots.upgrade() else { return };
        for slot in slots.all() {
            slot.sample();
        }
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
    /// TLS handshakes: full, resumed (a session of any worker), failed.
    pub(crate) tls: TlsCounts,
    pub(crate) latency: Histogram,
    history: History,
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

/// A slot's TLS handshakes.
#[derive(Debug, Default)]
pub(crate) struct TlsCounts {
    pub(crate) full: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) failed: AtomicU64,
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
    /// Its thread's id in the kernel, for its CPU time.
    pub(crate) tid: Option<i32>,
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
    /// TLS handshakes: full, resumed, failed.
    pub(crate) tls: [u64; 3],
    /// Per bucket (not cumulative), the last one past the largest bound.
    pub(crate) buckets: Counts,
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

    /// The `q` quantile of the latency since the start, interpolated
    /// within its bucket as Prometheus's `histogram_quantile` does; `None`
    /// before any request.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        histogram::quantile(&self.buckets, q)
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
                tid: history::current_tid(),
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

    /// Adds a sample to the slot's history.
    fn sample(&self) {
        let current = *self.lock();
        let cpu = current
            .tid
            .filter(|_| current.servers > 0)
            .and_then(|tid| Some((tid, history::cpu_ticks(tid)?)));
        self.history.push(Sample {
            at: Instant::now(),
            requests: self.requests.load(Ordering::Relaxed),
            latency: self.latency.read().0,
            cpu,
        });
    }

    /// The rates of the last minutes.
    pub(crate) fn series(&self) -> Series {
        self.history.series()
    }

    pub(crate) fn snapshot(&self, slot: usize) -> Snapshot {
        let (buckets, sum_us) = self.latency.read();
        Snapshot {
            slot,
            current: *self.lock(),
            requests: self.requests.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            migrated: self.migrated.load(Ordering::Relaxed),
            quic: self.quic.snapshot(),
            tls: [&self.tls.full, &self.tls.resumed, &self.tls.failed]
                .map(|c| c.load(Ordering::Relaxed)),
            active: self.active.load(Ordering::Relaxed),
            buckets,
            sum_us,
        }
    }
}

/// Every slot's snapshot and its last minutes, in slot order.
pub(crate) fn with_series(worker: &Worker) -> Vec<(Snapshot, Series)> {
    hooks::extension::<Slots>(worker)
        .all()
        .iter()
        .enumerate()
        .map(|(i, s)| (s.snapshot(i), s.series()))
        .collect()
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
