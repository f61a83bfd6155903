#[cluster_thread::main(workers = 0, balance = "fastest", threads = 2)]
fn main(worker: cluster_thread::Worker, extra: u8) {
    let _ = (worker, extra);
}
