//! What the cluster knows of each worker's memory. Threads share one heap,
//! so by itself nothing: an allocator that can tell (the facade's
//! `jemalloc` feature: one arena per worker thread) sets a reader here, and
//! the workers replaced for going over `max_memory` are counted here, for
//! the control socket, the metrics and the status page to read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

type Reader = Arc<dyn Fn(u64) -> Option<u64> + Send + Sync>;

/// Each worker's memory, if known, and the recycles per slot: a cluster
/// extension (`hooks::cluster_extension::<WorkerMemory>`).
#[derive(Default)]
pub struct WorkerMemory {
    reader: OnceLock<Reader>,
    recycles: Mutex<BTreeMap<usize, u64>>,
}

impl std::fmt::Debug for WorkerMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMemory")
            .field("known", &self.known())
            .finish_non_exhaustive()
    }
}

impl WorkerMemory {
    /// Sets what reads a worker's memory in bytes from its id (`None`: not
    /// known for that worker). The first reader set stays; false if one was.
    pub fn set_reader(&self, reader: impl Fn(u64) -> Option<u64> + Send + Sync + 'static) -> bool {
        self.reader.set(Arc::new(reader)).is_ok()
    }

    /// Whether anything tells the workers' memory.
    pub fn known(&self) -> bool {
        self.reader.get().is_some()
    }

    /// The memory of worker `id` in bytes, if known: never a guess.
    pub fn bytes(&self, id: u64) -> Option<u64> {
        self.reader.get().and_then(|read| read(id))
    }

    /// Counts one worker of `slot` replaced for going over `max_memory`.
    pub fn count_recycle(&self, slot: usize) {
        *self.lock().entry(slot).or_default() += 1;
    }

    /// How many workers of `slot` were replaced for going over `max_memory`.
    pub fn recycles(&self, slot: usize) -> u64 {
        self.lock().get(&slot).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, u64>> {
        self.recycles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
