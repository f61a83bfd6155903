#[cluster_thread::main(primary = watch)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}

async fn watch(cluster: cluster_thread::Cluster) -> u8 {
    let _ = cluster;
    0
}
