//! `pin_workers`: each worker thread on one CPU of the process's set.

use std::sync::mpsc;
use std::time::Duration;

use cluster_core::Cluster;

/// `Cpus_allowed_list` of a `/proc/.../status` file, expanded ("0-2,5").
fn allowed(status: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(status).unwrap();
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

/// Each worker's slot and the CPUs its thread may run on.
async fn workers_cpus(pin: bool) -> Vec<(usize, Vec<usize>)> {
    let (tx, rx) = mpsc::channel();
    let cluster = Cluster::builder()
        .workers(3)
        .signals(false)
        .pin_workers(pin)
        .build(move |w| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((w.slot(), allowed("/proc/thread-self/status")));
                w.disconnected().await;
            }
        })
        .unwrap();
    cluster.start().unwrap();
    let mut seen: Vec<_> = (0..3)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("every worker reports")
        })
        .collect();
    cluster.disconnect().await;
    seen.sort();
    seen
}

#[tokio::test]
async fn pinned_workers_each_run_on_one_cpu_of_the_process_set_in_slot_order() {
    let process = allowed("/proc/self/status");
    let seen = workers_cpus(true).await;
    for (slot, cpus) in seen {
        assert_eq!(cpus, [process[slot % process.len()]], "slot {slot}");
    }
}

#[tokio::test]
async fn workers_are_not_pinned_by_default() {
    let process = allowed("/proc/self/status");
    for (slot, cpus) in workers_cpus(false).await {
        assert_eq!(cpus, process, "slot {slot}");
    }
}
