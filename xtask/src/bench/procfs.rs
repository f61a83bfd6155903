//! What a server costs, read from `/proc`: CPU time and memory of a whole
//! process tree (one process for the Rust servers, primary + workers for Node).

use std::collections::HashMap;
use std::fs;
use std::process::{Child, Command};

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::{sysconf, Pid, SysconfVar};

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

fn page_size() -> u64 {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as u64,
        _ => 4096,
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
        // Gone meanwhile: nothing to signal.
        let _ = test_support::try_signal(pid, signal);
    }
}

/// Send `signal` to one process (gone: nothing to do).
pub(crate) fn signal(pid: u32, signal: i32) {
    let _ = test_support::try_signal(pid, signal);
}

/// Restrict the calling thread (and the threads and processes it creates
/// later) to `cpus`.
pub(crate) fn pin_self(cpus: &[usize]) -> std::io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// Starts `cmd`, restricted to `cpu` (its process, so its threads and
/// children) if given: spawned from a thread pinned there, whose CPU mask
/// the child inherits, so that no code of ours runs between fork and exec.
pub(crate) fn spawn_on(cmd: &mut Command, cpu: Option<usize>) -> std::io::Result<Child> {
    let Some(cpu) = cpu else {
        return cmd.spawn();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pin_self(&[cpu])?;
                cmd.spawn()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
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

/// Open file descriptors of the tree under `root` (sockets included).
pub(crate) fn tree_fds(root: u32) -> usize {
    process_tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(Iterator::count)
        .sum()
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    /// The child of a pinned spawn runs on that CPU alone; the caller's own
    /// mask is left as it was.
    #[test]
    fn spawn_on_pins_the_child_only() {
        let allowed = |status: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        };
        let before = allowed(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
        let mut cmd = Command::new("cat");
        cmd.arg("/proc/self/status").stdout(Stdio::piped());
        let out = super::spawn_on(&mut cmd, Some(0))
            .and_then(std::process::Child::wait_with_output)
            .unwrap();
        let child = allowed(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(child.as_deref(), Some("0"));
        let after = allowed(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
        assert_eq!(after, before);
    }
}
