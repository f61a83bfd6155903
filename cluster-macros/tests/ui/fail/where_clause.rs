#[cluster_thread::main]
async fn main(worker: cluster_thread::Worker)
where
    u8: Copy,
{
    let _ = worker;
}
