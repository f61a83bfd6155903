#[cluster_thread::main]
async fn main<T: Default>(worker: cluster_thread::Worker) {
    let _ = (worker, T::default());
}
