#[cluster_thread::main(primary = watch)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}

fn watch(cluster: cluster_thread::Cluster) {
    let _ = cluster;
}
