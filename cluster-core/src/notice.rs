//! What the supervisor's task reads, in order, from one channel: the
//! workers' reports and the timers' alarms. One reader, so a worker's
//! events are emitted in the order it caused them.

use crate::{Address, ExitReason, Message};

/// One input of the supervisor's state machine.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A worker's runtime is up (it runs its function now).
    Online(u64),
    /// A worker called `Worker::ready()`.
    Ready(u64),
    /// A worker listens on an address (`cluster-net` reports it).
    Listening(u64, Address),
    /// A worker sent the primary a message.
    Message(u64, Message),
    /// A worker's thread ended its function, this way.
    Exited(u64, ExitReason),
    /// A killed worker had `kill_timeout` to reach an await: if it is still
    /// alive, it is declared unresponsive.
    KillTimeout(u64),
    /// A slot's restart back-off is over; `epoch` says whether it still holds.
    RestartDue { slot: usize, epoch: u64 },
    /// `listen_timeout` after the start of cycle `.0`: workers online count
    /// as started. (Each timer of a cycle names it: after a stop and a
    /// fork, the old cycle's timers must not act on the new one.)
    StartTimeout(u64),
    /// Cycle `.0`'s graceful stop's shutdown timeout is over: kill the
    /// workers left.
    StopDeadline(u64),
    /// A worker asked to be disconnected (Node's `cluster.worker.disconnect()`).
    Disconnect(u64),
    /// Cycle `.0`'s graceful stop's drain delay is over: disconnect the workers.
    DrainDelayOver(u64),
    /// The switch to `user` / `group` failed: stop at once.
    PrivilegeDropFailed,
}
