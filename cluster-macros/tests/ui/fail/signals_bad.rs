#[cluster_thread::main(signals = "usr2=upgrayedd")]
async fn upgrade(worker: cluster_thread::Worker) {
    let _ = worker;
}

#[cluster_thread::main(signals = "winch=stop")]
async fn winch(worker: cluster_thread::Worker) {
    let _ = worker;
}

fn main() {
    let _ = (upgrade, winch);
}
