//! Growing and shrinking the pool at run time.

use crate::common::online;
use cluster_core::Cluster;

#[tokio::test]
async fn scale_up_then_down() {
    let cluster = Cluster::builder()
        .workers(2)
        .signals(false)
        .build(|w| async move { w.disconnected().await })
        .unwrap();
    let mut events = cluster.events();
    cluster.start().unwrap();
    online(&mut events, 2).await;

    cluster.scale(5).await.unwrap();
    let slots: Vec<_> = cluster.workers().iter().map(|w| w.slot()).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4]);
    assert_eq!(cluster.size(), 5);

    cluster.scale(1).await.unwrap();
    let left: Vec<_> = cluster
        .workers()
        .iter()
        .map(|w| (w.slot(), w.id()))
        .collect();
    assert_eq!(left, [(0, 1)]);
    assert_eq!(cluster.size(), 1);

    assert!(cluster.scale(0).await.is_err());
    let forked = cluster.fork().unwrap();
    assert_eq!((forked.slot(), forked.id()), (1, 6));
    forked.online().await.unwrap();
    cluster.disconnect().await;
    assert!(
        cluster.scale(3).await.is_err(),
        "a stopped cluster does not scale"
    );
}
