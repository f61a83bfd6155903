//! CPU affinity for `pin_workers`: which CPUs the process may run on, and
//! pinning a worker thread to one. Linux only; elsewhere, a warning.

/// The CPUs this process may run on (its affinity), in order; `None` (with
/// a warning) where that cannot be known.
pub(crate) fn allowed_cpus() -> Option<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_getaffinity, CpuSet};
        match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            Ok(set) => {
                let cpus: Vec<usize> = (0..CpuSet::count())
                    .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                    .collect();
                (!cpus.is_empty()).then_some(cpus)
            }
            Err(e) => {
                tracing::warn!(error = %e, "pin_workers: cannot read this process's CPU affinity; workers are not pinned");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        tracing::warn!("pin_workers: CPU affinity is set on Linux only; workers are not pinned");
        None
    }
}

/// Pins the calling thread to `cpu` (a warning if the kernel refuses).
pub(crate) fn pin_to(cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_setaffinity, CpuSet};
        let mut set = CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
        if let Err(e) = pinned {
            tracing::warn!(cpu, error = %e, "pin_workers: cannot pin the worker thread");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}
