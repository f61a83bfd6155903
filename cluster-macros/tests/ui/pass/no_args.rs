// No arguments: the defaults ("auto" workers). Each worker returns at once, so
// the cluster stops by itself (`restart = "on-failure"` does not restart an Ok).
#[cluster_thread::main]
async fn main(worker: cluster_thread::Worker) {
    let _ = (worker.id(), worker.slot());
}
