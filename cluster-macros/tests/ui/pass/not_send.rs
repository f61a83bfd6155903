// The body need not be `Send`: `Rc`, `RefCell` and `spawn_local` across awaits.
use std::cell::RefCell;
use std::rc::Rc;

#[cluster_thread::main(workers = 2)]
async fn main(worker: cluster_thread::Worker) {
    let count = Rc::new(RefCell::new(0));
    let task = {
        let count = Rc::clone(&count);
        tokio::task::spawn_local(async move {
            tokio::task::yield_now().await;
            *count.borrow_mut() += 1;
        })
    };
    tokio::task::yield_now().await;
    task.await.expect("the local task ran");
    assert_eq!(*count.borrow(), 1);
    let _ = worker;
}
