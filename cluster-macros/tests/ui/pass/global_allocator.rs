//! `global_allocator = false` on `fn main`: the program keeps its own
//! `#[global_allocator]` (with the facade's `jemalloc` feature the macro
//! would otherwise define one, and two do not compile); the workers
//! allocate from it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[cluster_thread::main(
    workers = 1,
    restart = "never",
    control = false,
    log = "off",
    global_allocator = false
)]
async fn main(worker: cluster_thread::Worker) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let block = std::hint::black_box(vec![0u8; 4096]);
    // A panic here fails the program (its workers are not restarted).
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > before);
    drop(block);
    worker.disconnect();
}
