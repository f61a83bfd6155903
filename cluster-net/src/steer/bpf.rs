//! Raw `bpf(2)` through libc, and the socket options that attach programs
//! to a reuseport group: map create and update, program load (the
//! verifier's log in the error), the shared mapping of an mmap-able array.
//! Every kernel object is an `OwnedFd`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::asm::Insn;
use super::error::SteerError;

// Commands (`enum bpf_cmd`).
const MAP_CREATE: libc::c_long = 0;
const MAP_UPDATE_ELEM: libc::c_long = 2;
const PROG_LOAD: libc::c_long = 5;

/// `BPF_MAP_TYPE_ARRAY`.
pub(crate) const MAP_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`.
pub(crate) const MAP_REUSEPORT_SOCKARRAY: u32 = 20;
/// `BPF_F_MMAPABLE`: the array's values can be mmap'ed.
pub(crate) const F_MMAPABLE: u32 = 1 << 10;
/// `BPF_PROG_TYPE_SK_REUSEPORT`.
const PROG_SK_REUSEPORT: u32 = 21;
/// `BPF_SK_REUSEPORT_SELECT`: the program chooses for new connections only.
const SK_REUSEPORT_SELECT: u32 = 39;
/// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`: the program also chooses where a
/// closing listener's queued connections go (Linux 5.14).
const SK_REUSEPORT_SELECT_OR_MIGRATE: u32 = 40;

/// `log_level`: statistics only (instructions processed, states).
const LOG_STATS: u32 = 4;
/// `log_level`: every instruction the verifier walks, then the statistics.
const LOG_VERBOSE: u32 = 1 | LOG_STATS;

// Socket options (asm-generic; sparc numbers its own).
#[cfg(not(target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(not(target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
#[cfg(target_arch = "sparc64")]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x35;
#[cfg(target_arch = "sparc64")]
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 0x36;
#[cfg(not(target_arch = "sparc64"))]
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;
#[cfg(target_arch = "sparc64")]
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 0x0047;

/// `union bpf_attr` for `BPF_MAP_CREATE`, up to `map_name`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf(cmd, attr, sizeof attr)`. The kernel reads the fields it knows from
/// `attr` and treats the rest of its (larger) union as zero.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union
    // bpf_attr` of the size passed; every pointer inside it (keys, values,
    // instructions, license, log buffer) points to memory the caller keeps
    // alive for the call, sized as the attribute says.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An object name as the kernel takes it: at most 15 bytes of `[A-Za-z0-9_.]`.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// The fd a successful `bpf(2)` returned, owned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd (a non-negative int) for a
    // new object: nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// A new map.
pub(crate) fn map_create(
    name: &'static str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> Result<OwnedFd, SteerError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        map_name: object_name(name),
        ..Default::default()
    };
    bpf(MAP_CREATE, &mut attr)
        .map(owned)
        .map_err(|source| SteerError::Bpf {
            what: "creating map",
            object: name,
            source,
        })
}

/// `map[key] = value` (`BPF_ANY`). Sizes must be the map's.
pub(crate) fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf(MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// A program the verifier accepted.
pub(crate) struct Loaded {
    pub(crate) fd: OwnedFd,
    /// The verifier's statistics line (instructions processed, states).
    pub(crate) stats: String,
}

/// How much of a refusal's log the error keeps: its end says why.
const LOG_TAIL_LINES: usize = 60;

/// Loads an `SK_REUSEPORT` program, to be attached as `SELECT_OR_MIGRATE`
/// if `migrate`, else as `SELECT`. On a refusal other than a missing
/// privilege, loads it again with the verbose log and puts the log's end
/// in the error.
pub(crate) fn load_sk_reuseport(
    name: &'static str,
    insns: &[Insn],
    migrate: bool,
) -> Result<Loaded, SteerError> {
    // Not GPL: the helpers these programs call are not GPL-only.
    const LICENSE: &[u8] = b"MIT OR Apache-2.0\0";
    let load = |log_level: u32, log: &mut Vec<u8>| {
        let mut attr = ProgLoadAttr {
            prog_type: PROG_SK_REUSEPORT,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            log_level,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: object_name(name),
            expected_attach_type: if migrate {
                SK_REUSEPORT_SELECT_OR_MIGRATE
            } else {
                SK_REUSEPORT_SELECT
            },
            ..Default::default()
        };
        bpf(PROG_LOAD, &mut attr).map(owned)
    };
    let text = |log: &[u8]| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        String::from_utf8_lossy(&log[..end]).into_owned()
    };
    let mut log = vec![0u8; 4096];
    match load(LOG_STATS, &mut log) {
        Ok(fd) => Ok(Loaded {
            fd,
            stats: text(&log).trim().replace('\n', "; "),
        }),
        Err(source) if source.raw_os_error() == Some(libc::EPERM) => Err(SteerError::Bpf {
            what: "loading program",
            object: name,
            source,
        }),
        Err(source) => {
            // The kernel keeps the log's end when it overflows.
            let mut log = vec![0u8; 1 << 20];
            let _ = load(LOG_VERBOSE, &mut log);
            let log = text(&log);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            Err(SteerError::Verifier {
                program: name,
                source,
                log: tail,
            })
        }
    }
}

/// Makes `prog` the program of the reuseport group `socket` is in.
pub(crate) fn attach_ebpf(socket: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let fd: libc::c_int = prog.as_raw_fd();
    setsockopt(socket, SO_ATTACH_REUSEPORT_EBPF, &fd)
}

/// Takes the program (either kind) off the reuseport group `socket` is in
/// (ENOENT when it has none).
pub(crate) fn detach(socket: BorrowedFd<'_>) -> io::Result<()> {
    let unused: libc::c_int = 0;
    setsockopt(socket, SO_DETACH_REUSEPORT_BPF, &unused)
}

/// Makes `filter` (classic BPF) the program of `socket`'s reuseport group.
pub(crate) fn attach_cbpf(socket: BorrowedFd<'_>, filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: filter.as_ptr().cast_mut(),
    };
    setsockopt(socket, SO_ATTACH_REUSEPORT_CBPF, &prog)
}

fn setsockopt<T>(socket: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T`, the type the option takes, of the
    // length passed; the kernel copies it (and, for a classic program, the
    // instructions it points to, which the caller keeps alive) and keeps no
    // pointer.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A shared, writable mapping of an mmap-able array map's values; unmapped
/// on drop. The kernel reads and writes the same pages.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory with no thread affinity; what
// is read or written through it is decided (atomically) by its users.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` only hands out the address.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes (rounded up to pages) of `map`'s values.
    pub(crate) fn new(
        map: BorrowedFd<'_>,
        len: usize,
        name: &'static str,
    ) -> Result<Self, SteerError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = len.div_ceil(page) * page;
        // SAFETY: a new shared mapping of a map fd the caller holds, at an
        // address the kernel picks: it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SteerError::Bpf {
                what: "mapping the values of map",
                object: name,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| SteerError::Bpf {
            what: "mapping the values of map",
            object: name,
            source: io::Error::from_raw_os_error(libc::EFAULT),
        })?;
        Ok(Mapping { ptr, len })
    }

    /// The mapping's first byte: page-aligned, `len` bytes, valid until drop.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region `new` mapped; nothing borrows it past
        // the owner's drop (references to it borrow the owner).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
