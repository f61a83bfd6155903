//! `Cluster::settings()`: the settings in force, as given to the builder.
//! (The environment's overrides are tested on `env.rs`'s parser, and run
//! through the macro's `settings` program in cluster-macros.)

use std::time::Duration;

use cluster_core::{Cluster, RestartPolicy, Signal, SignalAction, DEFAULT_SHUTDOWN_TIMEOUT};

#[test]
fn settings_are_the_builders_resolved() {
    let defaults = Cluster::builder()
        .workers(2)
        .build(|_| async {})
        .unwrap()
        .settings();
    assert_eq!(defaults.workers, 2);
    assert_eq!(defaults.restart, RestartPolicy::OnFailure);
    assert_eq!(defaults.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert_eq!(defaults.kill_timeout, Duration::from_secs(5));
    assert_eq!(defaults.listen_timeout, Duration::from_secs(3));
    assert_eq!(defaults.max_restarts, 16);
    assert_eq!(defaults.stack_size, None);
    assert!(!defaults.pin_workers);
    assert_eq!(
        defaults.signals,
        Signal::ALL.map(|s| (s, s.default_action())).to_vec()
    );

    let cluster = Cluster::builder()
        .workers(3)
        .thread_name("app")
        .stack_size(4 << 20)
        .restart(RestartPolicy::Always)
        .restart_delay(Duration::from_millis(250))
        .restart_delay_max(Duration::from_secs(2))
        .restart_reset_after(Duration::from_secs(60))
        .min_uptime(Duration::from_secs(4))
        .max_restarts(3)
        .shutdown_timeout(Duration::from_secs(9))
        .kill_timeout(Duration::from_secs(1))
        .listen_timeout(Duration::from_secs(7))
        .drain_delay(Duration::from_secs(2))
        .signals(false)
        .on_signal(Signal::Usr2, SignalAction::Upgrade)
        .build(|_| async {})
        .unwrap();
    let s = cluster.settings();
    assert_eq!(
        (s.workers, s.thread_name.as_str(), s.stack_size),
        (3, "app", Some(4 << 20))
    );
    assert_eq!(s.restart, RestartPolicy::Always);
    assert_eq!(
        (s.restart_delay, s.restart_delay_max, s.restart_reset_after),
        (
            Duration::from_millis(250),
            Duration::from_secs(2),
            Duration::from_secs(60)
        )
    );
    assert_eq!((s.min_uptime, s.max_restarts), (Duration::from_secs(4), 3));
    assert_eq!(
        (s.shutdown_timeout, s.kill_timeout, s.listen_timeout),
        (
            Duration::from_secs(9),
            Duration::from_secs(1),
            Duration::from_secs(7)
        )
    );
    assert_eq!(s.drain_delay, Duration::from_secs(2));
    let usr2 = s.signals.iter().find(|(sig, _)| *sig == Signal::Usr2);
    assert_eq!(usr2, Some(&(Signal::Usr2, SignalAction::Upgrade)));
    assert!(s
        .signals
        .iter()
        .filter(|(sig, _)| *sig != Signal::Usr2)
        .all(|(_, action)| *action == SignalAction::Off));
    // The drain delay in force, once changed.
    cluster.set_drain_delay(Duration::from_millis(500));
    assert_eq!(cluster.settings().drain_delay, Duration::from_millis(500));
}
