//! The steering's one error type.

use std::io;
use std::os::fd::RawFd;

/// What went wrong setting kernel steering up; each names the object or fd.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SteerError {
    #[error("bpf(2): {what} {object}: {source}")]
    Bpf {
        what: &'static str,
        object: &'static str,
        source: io::Error,
    },
    #[error(
        "the kernel's verifier refused the {program} program ({source}); its log ends:\n{log}"
    )]
    Verifier {
        program: &'static str,
        source: io::Error,
        log: String,
    },
    #[error("attaching the {program} program to the reuseport group of fd {fd}: {source}")]
    Attach {
        program: &'static str,
        fd: RawFd,
        source: io::Error,
    },
    #[error("putting fd {fd} in slot {slot} of the group's socket map: {source}")]
    Insert {
        slot: usize,
        fd: RawFd,
        source: io::Error,
    },
    #[error("slot {slot} is past the {max} slots kernel steering can address")]
    Slot { slot: usize, max: usize },
}
