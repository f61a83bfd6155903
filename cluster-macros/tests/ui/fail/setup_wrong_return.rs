#[cluster_thread::main(setup = build)]
async fn main(worker: cluster_thread::Worker) {
    let _ = worker;
}

fn build(builder: cluster_thread::ClusterBuilder) -> u8 {
    let _ = builder;
    0
}
