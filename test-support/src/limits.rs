//! The test process's own limits.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises this process's soft limit on open files towards `want` (at most
/// its hard limit; never lowers it); the limit now in force. The children
/// it starts afterwards inherit it.
pub fn raise_fd_limit(want: u64) -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = want.min(hard);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        return Ok(target);
    }
    Ok(soft)
}

/// Lowers this process's limit on open files (soft and hard) to `n`: a
/// child re-run of a test calls it first, so what it builds (the default
/// connection cap) sees the limit.
pub fn lower_fd_limit(n: u64) -> std::io::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, n, n)?;
    Ok(())
}

/// Whether the tests run as root (then a privilege the code needs is
/// there, and a feature that needs it must work).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
