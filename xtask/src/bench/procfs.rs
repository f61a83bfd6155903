//! What a server costs, read from `/proc`: CPU time and memory of a whole
//! process tree (one process for the Rust servers, primary + workers for Node).

use std::collections::HashMap;
use std::fs;

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// The numeric fields of `/proc/<pid>/stat` after `(comm) state`: index 0 is
/// `ppid` (field 4 in proc(5)), so field N of proc(5) is index N - 4.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .skip(1) // state
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

/// `pid` and all its descendants that are alive now.
pub(crate) fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Index 0 here is ppid (field 4).
            if let Some(fields) = stat_fields(pid) {
                if let Some(&ppid) = fields.first() {
                    children.entry(ppid as u32).or_default().push(pid);
                }
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        if let Some(kids) = children.get(&tree[i]) {
            tree.extend(kids.iter().copied());
        }
        i += 1;
    }
    tree
}

/// CPU seconds (user + system) used so far by the tree under `root`: every
/// thread of every live process, plus the reaped children of each.
pub(crate) fn tree_cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = process_tree(root)
        .into_iter()
        .filter_map(stat_fields)
        // utime(14) stime(15) cutime(16) cstime(17) → indices 10..14 after skipping state.
        .map(|f| f.get(10..14).map_or(0, |t| t.iter().sum::<u64>()))
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU seconds used so far by this process (the load generator).
pub(crate) fn self_cpu_seconds() -> f64 {
    let ticks = stat_fields(std::process::id())
        .and_then(|f| f.get(10..12).map(|t| t.iter().sum::<u64>()))
        .unwrap_or(0);
    ticks as f64 / clock_ticks()
}

/// Memory of a process tree, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// Sum of resident set sizes (shared pages count once per process).
    pub(crate) rss: u64,
    /// Sum of proportional set sizes (shared pages split among sharers).
    pub(crate) pss: u64,
    /// How many processes.
    pub(crate) processes: usize,
}

pub(crate) fn tree_memory(root: u32) -> Memory {
    let page = page_size();
    let mut memory = Memory::default();
    for pid in process_tree(root) {
        let Ok(statm) = fs::read_to_string(format!("/proc/{pid}/statm")) else {
            continue;
        };
        let resident: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        memory.rss += resident * page;
        memory.processes += 1;
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            if let Some(kb) = rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                memory.pss += kb * 1024;
            }
        }
    }
    memory
}

/// Send `signal` to every process of the tree under `root` (children first).
pub(crate) fn signal_tree(root: u32, signal: i32) {
    for pid in process_tree(root).into_iter().rev() {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
}

/// Send `signal` to one process.
pub(crate) fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Restrict the calling thread (and the threads and processes it creates
/// later) to `cpus`.
pub(crate) fn pin_self(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET only writes
    // within the set for indices below CPU_SETSIZE, which we check.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(cpu, &mut set);
            }
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restricts a command's process (and so its threads and children) to `cpu`.
pub(crate) fn pin_command(cmd: &mut std::process::Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes the sched_setaffinity system call (async-signal-safe) and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || pin_self(&[cpu]));
    }
}

/// One line about the machine: CPU model, cores, memory, kernel.
pub(crate) fn machine() -> (String, usize, u64, String) {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    (model, cores, mem, kernel)
}

/// Raises this process's soft limit on open files to its hard limit, which
/// the servers it starts inherit: the idle scenario holds thousands of
/// connections on both sides. Returns the limit now in force.
pub(crate) fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Open file descriptors of the tree under `root` (sockets included).
pub(crate) fn tree_fds(root: u32) -> usize {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(Iterator::count)
        .sum()
}
