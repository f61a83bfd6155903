//! The log ring behind `cluster-thread logs`, fed by `log_layer` as the
//! program's events are: a byte cap per slot that holds after a million
//! lines, each line filed under its worker's slot.

use cluster_ctl::{log_layer, logs, DEFAULT_RING_BYTES};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_million_lines_stay_within_the_byte_cap_filed_by_slot() {
    let subscriber = tracing_subscriber::registry().with(log_layer());
    tracing::subscriber::with_default(subscriber, || {
        // The span cluster_core's worker threads enter for their whole life.
        let slot1 = tracing::info_span!(target: "cluster_core::thread", "worker", id = 3, slot = 1);
        let slot0 = tracing::info_span!(target: "cluster_core::thread", "worker", id = 4, slot = 0);
        for i in 0..1_000_000u32 {
            match i % 4 {
                0 | 1 => slot1.in_scope(|| tracing::info!(i, "request served")),
                2 => slot0.in_scope(|| tracing::info!(i, "request served")),
                _ => tracing::info!(i, "primary line"),
            }
        }
        // A span of the same name that is not cluster_core's is not a worker.
        let other = tracing::info_span!("worker", slot = 1);
        other.in_scope(|| tracing::info!("the user's own span"));
    });
    let ring = logs();
    let bytes = ring.ring_bytes();
    for slot in [None, Some(0), Some(1)] {
        let b = bytes[&slot];
        assert!(b <= DEFAULT_RING_BYTES, "{slot:?}: {b} bytes");
        assert!(
            b > DEFAULT_RING_BYTES / 2,
            "{slot:?}: {b} bytes: the ring is used"
        );
    }
    let last = ring.lines(Some(1), 0, 1);
    assert!(
        last[0]
            .line
            .contains(" INFO worker{id=3 slot=1}: request served i=999997"),
        "{last:?}"
    );
    assert!(ring
        .lines(Some(1), 0, 10_000)
        .iter()
        .all(|l| l.slot == Some(1) && l.line.contains("slot=1}")));
    let primary = ring.lines(None, 0, 2);
    assert!(
        primary[0].line.contains("primary line i=999999"),
        "{primary:?}"
    );
    assert!(
        primary[1].line.contains("the user's own span"),
        "{primary:?}"
    );
    assert_eq!(primary[1].slot, None);
}
