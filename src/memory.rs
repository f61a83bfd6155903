//! Each worker's memory, and `max_memory`: a worker over it is replaced
//! gracefully.
//!
//! Worker threads share one heap, so a worker's memory is known only with
//! the allocator's help: with the feature `jemalloc`, jemalloc is the
//! global allocator of `#[cluster_thread::main]` programs and each worker
//! thread allocates from an arena of its own; a worker's memory is what
//! its arena holds (bytes allocated and not yet freed, whichever thread
//! frees them) beyond what it held when the worker started (an arena is
//! reused by later workers: jemalloc never destroys one). Without the
//! feature each worker's memory is unknown (`ls` says so, `/metrics` has
//! no series for it), never guessed, and `max_memory` is refused.
//!
//! With the feature, a builder program sets the global allocator itself
//! and asks for the arenas:
//!
//! ```ignore
//! use cluster_thread::memory::MemoryExt;
//!
//! #[global_allocator]
//! static ALLOC: cluster_thread::memory::Jemalloc = cluster_thread::memory::Jemalloc;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     cluster_thread::Cluster::builder()
//!         .max_memory(256 << 20)? // also turns on the arenas (worker_memory)
//!         .run(|worker| async move { worker.disconnected().await })?;
//!     Ok(())
//! }
//! ```

#[cfg(any(feature = "control", feature = "jemalloc"))]
use std::sync::atomic::{AtomicU64, Ordering};

use cluster_core::ClusterBuilder;
#[cfg(any(feature = "control", feature = "jemalloc"))]
use cluster_core::{hooks, Cluster};

/// `CLUSTER_THREAD_MAX_MEMORY`: overrides `max_memory` (a size such as
/// `256MiB`, or `off`).
pub const MAX_MEMORY_ENV: &str = "CLUSTER_THREAD_MAX_MEMORY";

/// How often each worker's memory is compared with `max_memory`.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a memory setting was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `max_memory` without a figure for each worker.
    #[error(
        "{setting}: each worker's memory is unknown in this build (threads share one heap; \
         only the `jemalloc` feature of cluster_thread gives each worker an arena to count), \
         so a memory limit cannot be kept: build with `--features jemalloc` or leave it unset"
    )]
    Unknown {
        /// The setting or variable at fault.
        setting: &'static str,
    },
    /// A size that does not parse.
    #[error("{setting} = {value:?}: {reason} (a size such as 256MiB or 1GiB, or off)")]
    BadValue {
        /// The setting or variable at fault.
        setting: &'static str,
        /// What it was given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The `jemalloc` feature is on but another allocator serves the program.
    #[error(
        "worker_memory: jemalloc is not this program's global allocator, so its arenas would count \
         nothing; add `#[global_allocator] static ALLOC: cluster_thread::memory::Jemalloc = \
         cluster_thread::memory::Jemalloc;` (macro programs get it unless `global_allocator = false`)"
    )]
    NotGlobalAllocator,
    /// jemalloc refused a control call.
    #[error("worker_memory: jemalloc's {call}: {reason}")]
    Jemalloc {
        /// The mallctl name.
        call: &'static str,
        /// jemalloc's error.
        reason: String,
    },
}

/// A size limit: `off`/`none`/`0` is none; else a size in bytes
/// (`bytesize`'s grammar: `256MiB`, `1.5GiB`, `512kB`, `1048576`).
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if ["off", "none", "0"]
        .iter()
        .any(|o| text.eq_ignore_ascii_case(o))
    {
        return Ok(None);
    }
    let size: bytesize::ByteSize = text.parse().map_err(|_| "not a size".to_owned())?;
    match size.as_u64() {
        0 => Ok(None),
        n => Ok(Some(n)),
    }
}

/// A limit as text: `64.0 MiB`, or `off`.
#[cfg(feature = "control")]
pub(crate) fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "off".to_owned(), |n| bytesize::ByteSize(n).to_string())
}

/// `CLUSTER_THREAD_MAX_MEMORY`, if set.
fn limit_from_env() -> Result<Option<Option<u64>>, Error> {
    match std::env::var(MAX_MEMORY_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::BadValue {
            setting: MAX_MEMORY_ENV,
            value: v.to_string_lossy().into_owned(),
            reason: "not UTF-8".into(),
        }),
        Ok(v) => parse_limit(&v).map(Some).map_err(|reason| Error::BadValue {
            setting: MAX_MEMORY_ENV,
            value: v,
            reason,
        }),
    }
}

/// The limit in force, 0 for none (a cluster extension: `set max_memory`
/// changes it while the cluster runs).
#[derive(Debug, Default)]
#[cfg(any(feature = "control", feature = "jemalloc"))]
pub(crate) struct Limit(AtomicU64);

#[cfg(any(feature = "control", feature = "jemalloc"))]
impl Limit {
    pub(crate) fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    pub(crate) fn set(&self, limit: Option<u64>) {
        self.0.store(limit.unwrap_or(0), Ordering::Relaxed);
    }
}

/// The limit a program starts with (given as state, read at start).
#[cfg(feature = "jemalloc")]
#[derive(Debug, Clone, Copy)]
struct InitialLimit(Option<u64>);

/// Whether each worker's memory is known in this cluster.
#[cfg(feature = "control")]
pub(crate) fn known(cluster: &Cluster) -> bool {
    hooks::cluster_extension::<hooks::WorkerMemory>(cluster).known()
}

/// The `max_memory` of a running cluster; an error without a figure for
/// each worker.
#[cfg(feature = "control")]
pub(crate) fn set_limit(cluster: &Cluster, limit: Option<u64>) -> Result<(), Error> {
    if limit.is_some() && !known(cluster) {
        return Err(Error::Unknown {
            setting: "max_memory",
        });
    }
    hooks::cluster_extension::<Limit>(cluster).set(limit);
    Ok(())
}

/// The `max_memory` in force.
#[cfg(feature = "control")]
pub(crate) fn limit(cluster: &Cluster) -> Option<u64> {
    hooks::cluster_extension::<Limit>(cluster).get()
}

/// `ClusterBuilder`'s memory settings: `use cluster_thread::memory::MemoryExt;`.
pub trait MemoryExt: Sized {
    /// Each worker thread allocates from a jemalloc arena of its own, so
    /// its memory is known (`cluster-thread ls`, `/metrics`, the status
    /// page) and `max_memory` can be kept; `CLUSTER_THREAD_MAX_MEMORY` is
    /// read now. jemalloc must be the global allocator (an error says so
    /// if it is not). Calling it again changes nothing.
    #[cfg(feature = "jemalloc")]
    fn worker_memory(self) -> Result<Self, Error>;

    /// Replaces a worker gracefully once its memory passes `bytes`
    /// (checked every [`CHECK_EVERY`]): as `Cluster::restart_slot`, its
    /// replacement listens first, then it drains and its idle connections
    /// move to live workers. Turns on [`worker_memory`](Self::worker_memory)
    /// (feature `jemalloc`); without that feature, an error naming the
    /// setting. `CLUSTER_THREAD_MAX_MEMORY` overrides it; `cluster-thread
    /// set max_memory 512MiB` changes it while the cluster runs.
    fn max_memory(self, bytes: u64) -> Result<Self, Error>;
}

impl MemoryExt for ClusterBuilder {
    #[cfg(feature = "jemalloc")]
    fn worker_memory(self) -> Result<Self, Error> {
        arenas::check_global()?;
        let builder = match limit_from_env()? {
            Some(limit) => self.state(InitialLimit(limit)),
            None => self,
        };
        Ok(builder.on_worker_thread(arenas::enter).on_start(|cluster| {
            let memory = hooks::cluster_extension::<hooks::WorkerMemory>(cluster);
            let leases = hooks::cluster_extension::<arenas::Leases>(cluster);
            if !memory.set_reader(move |id| leases.bytes(id)) {
                return; // worker_memory was called twice
            }
            if let Some(InitialLimit(limit)) = cluster.state::<InitialLimit>().as_deref() {
                hooks::cluster_extension::<Limit>(cluster).set(*limit);
            }
            tokio::spawn(watch(cluster.clone()));
        }))
    }

    fn max_memory(self, bytes: u64) -> Result<Self, Error> {
        #[cfg(feature = "jemalloc")]
        {
            self.state(InitialLimit(Some(bytes).filter(|&b| b > 0)))
                .worker_memory()
        }
        #[cfg(not(feature = "jemalloc"))]
        {
            let _ = bytes;
            Err(Error::Unknown {
                setting: "max_memory",
            })
        }
    }
}

/// What a macro program's `max_memory` (and `CLUSTER_THREAD_MAX_MEMORY`)
/// does to its builder: with `jemalloc`, the arenas always; without, an
/// error if either asks for a limit.
pub(crate) fn for_macro(
    builder: ClusterBuilder,
    max_memory: Option<u64>,
) -> Result<ClusterBuilder, Error> {
    #[cfg(feature = "jemalloc")]
    {
        // A program with its own allocator (`global_allocator = false`)
        // that is not jemalloc: memory unknown, refused only if a limit
        // is asked for.
        let wants_limit = max_memory.is_some() || limit_from_env()?.flatten().is_some();
        if !wants_limit && arenas::check_global().is_err() {
            return Ok(builder);
        }
        let builder = match max_memory {
            Some(bytes) => builder.state(InitialLimit(Some(bytes))),
            None => builder,
        };
        builder.worker_memory()
    }
    #[cfg(not(feature = "jemalloc"))]
    {
        if max_memory.is_some() {
            return Err(Error::Unknown {
                setting: "max_memory",
            });
        }
        if limit_from_env()?.flatten().is_some() {
            return Err(Error::Unknown {
                setting: MAX_MEMORY_ENV,
            });
        }
        Ok(builder)
    }
}

/// Compares each live worker's memory with the limit every
/// [`CHECK_EVERY`]; replaces each one over it, one slot at a time (as
/// `restart_slot` does), until the cluster stops.
#[cfg(feature = "jemalloc")]
async fn watch(cluster: Cluster) {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, PoisonError};

    let memory = hooks::cluster_extension::<hooks::WorkerMemory>(&cluster);
    let limit = hooks::cluster_extension::<Limit>(&cluster);
    // Workers being replaced: each is over once.
    let replacing: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.phase() >= cluster_core::Phase::Draining {
            return;
        }
        let Some(max) = limit.get() else { continue };
        for worker in cluster.workers() {
            if !worker.is_connected() || !worker.is_online() {
                continue;
            }
            let Some(bytes) = memory.bytes(worker.id()) else {
                continue;
            };
            if bytes <= max
                || !replacing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(worker.id())
            {
                continue;
            }
            let (id, slot) = (worker.id(), worker.slot());
            tracing::warn!(
                id,
                slot,
                memory = %bytesize::ByteSize(bytes),
                max_memory = %bytesize::ByteSize(max),
                "worker over max_memory: replacing it gracefully"
            );
            memory.count_recycle(slot);
            hooks::report_memory_limit(&cluster, worker, bytes, max);
            let cluster = cluster.clone();
            let replacing = Arc::clone(&replacing);
            tokio::spawn(async move {
                match cluster.restart_slot(slot).await {
                    Ok(()) => tracing::info!(id, slot, "worker over max_memory replaced"),
                    Err(e) => {
                        tracing::warn!(id, slot, error = %e, "worker over max_memory not replaced")
                    }
                }
                replacing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            });
        }
    }
}

#[cfg(feature = "jemalloc")]
pub use tikv_jemallocator::Jemalloc;

/// The arenas, one per live worker thread, reused after it (jemalloc
/// never destroys an arena).
#[cfg(feature = "jemalloc")]
mod arenas {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use cluster_core::{hooks, Worker};
    use tikv_jemalloc_ctl::{Access, AsName};

    use super::Error;

    /// Arenas no worker holds, for the next workers of any cluster.
    static FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    /// The arena of each live worker of one cluster (a cluster extension).
    #[derive(Debug, Default)]
    pub(super) struct Leases(Mutex<HashMap<u64, Lease>>);

    #[derive(Debug, Clone, Copy)]
    struct Lease {
        arena: u32,
        /// What the arena held when the worker took it.
        baseline: u64,
    }

    impl Leases {
        /// Worker `id`'s memory: its arena's bytes beyond the baseline.
        pub(super) fn bytes(&self, id: u64) -> Option<u64> {
            let lease = *self.lock().get(&id)?;
            Some(allocated(lease.arena)?.saturating_sub(lease.baseline))
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// The worker thread's arena, given back when the thread ends.
    struct Held {
        leases: Arc<Leases>,
        id: u64,
        arena: u32,
    }

    impl Drop for Held {
        fn drop(&mut self) {
            self.leases.lock().remove(&self.id);
            FREE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.arena);
        }
    }

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    /// In a worker's thread as it starts: takes a free arena (or creates
    /// one) and binds the thread to it.
    pub(super) fn enter(worker: &Worker) {
        if HELD.with(|h| h.borrow().is_some()) {
            return;
        }
        let reused = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let arena = match reused.map_or_else(create, Ok) {
            Ok(arena) => arena,
            Err(e) => {
                tracing::warn!(error = %e, "this worker's memory is unknown");
                return;
            }
        };
        if let Err(e) = b"thread.arena\0".name().write(arena) {
            FREE.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(arena);
            tracing::warn!(error = %e, arena, "jemalloc's thread.arena: this worker's memory is unknown");
            return;
        }
        let leases = hooks::extension::<Leases>(worker);
        let baseline = allocated(arena).unwrap_or(0);
        leases.lock().insert(worker.id(), Lease { arena, baseline });
        HELD.with(|h| {
            *h.borrow_mut() = Some(Held {
                leases,
                id: worker.id(),
                arena,
            });
        });
    }

    fn create() -> Result<u32, Error> {
        b"arenas.create\0"
            .name()
            .read()
            .map_err(|e| Error::Jemalloc {
                call: "arenas.create",
                reason: e.to_string(),
            })
    }

    /// Bytes allocated from `arena` and not freed: its small and large
    /// allocations, as of a fresh stats epoch.
    fn allocated(arena: u32) -> Option<u64> {
        tikv_jemalloc_ctl::epoch::advance().ok()?;
        let mut total = 0u64;
        for name in [
            &b"stats.arenas.0.small.allocated\0"[..],
            &b"stats.arenas.0.large.allocated\0"[..],
        ] {
            let mut mib = name.name().mib::<[usize; 5]>().ok()?;
            mib[2] = arena as usize;
            let bytes: usize = mib.read().ok()?;
            total += bytes as u64;
        }
        Some(total)
    }

    /// That jemalloc serves this program's allocations: this thread's
    /// count of bytes allocated grows with an allocation.
    pub(super) fn check_global() -> Result<(), Error> {
        let counter =
            tikv_jemalloc_ctl::thread::allocatedp::read().map_err(|e| Error::Jemalloc {
                call: "thread.allocatedp",
                reason: e.to_string(),
            })?;
        let before = counter.get();
        let probe = std::hint::black_box(vec![0u8; 4096]);
        let after = counter.get();
        drop(probe);
        if after > before {
            Ok(())
        } else {
            Err(Error::NotGlobalAllocator)
        }
    }
}
