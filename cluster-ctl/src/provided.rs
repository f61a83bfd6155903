//! What the crates beside the core tell the control socket: per-slot
//! figures, listeners, the hot upgrade, live settings; and what `ls` says
//! of the program.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cluster_core::Cluster;

use crate::protocol::ListenerRow;

/// Per-slot figures a provider reports (see [`Control::stats`](crate::Control::stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotFigures {
    /// The worker these are of; `None` for the slot whichever its worker.
    pub worker: Option<u64>,
    /// Connections open now.
    pub connections: Option<u64>,
    /// Requests answered so far.
    pub requests: Option<u64>,
}

impl SlotFigures {
    /// Figures of `worker` (or of the slot, whichever its worker, for `None`).
    pub fn new(worker: Option<u64>, connections: Option<u64>, requests: Option<u64>) -> Self {
        SlotFigures {
            worker,
            connections,
            requests,
        }
    }
}

/// What the stats providers fill in for one `ls`.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) slots: Vec<(usize, SlotFigures)>,
    pub(crate) listeners: Vec<ListenerRow>,
}

impl Stats {
    /// Reports figures for `slot`. The first provider to give a figure of
    /// a worker wins.
    pub fn slot(&mut self, slot: usize, figures: SlotFigures) {
        self.slots.push((slot, figures));
    }

    /// Reports a listening socket.
    pub fn listener(&mut self, address: String, balance: String, connections: u64) {
        self.listeners
            .push(ListenerRow::new(address, balance, connections));
    }

    /// The figures of worker `id` in `slot`: each the first given for it.
    pub(crate) fn of(&self, slot: usize, id: u64) -> SlotFigures {
        let mut out = SlotFigures {
            worker: Some(id),
            ..SlotFigures::default()
        };
        for (_, f) in self
            .slots
            .iter()
            .filter(|(s, f)| *s == slot && f.worker.is_none_or(|w| w == id))
        {
            out.connections = out.connections.or(f.connections);
            out.requests = out.requests.or(f.requests);
        }
        out
    }

    /// A slot's requests, whichever worker.
    pub(crate) fn requests(&self, slot: usize) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(s, _)| *s == slot)
            .find_map(|(_, f)| f.requests)
    }
}

type StatsFn = Arc<dyn Fn(&Cluster, &mut Stats) + Send + Sync>;
/// A hot upgrade: the new process's pid, or why it failed.
pub type UpgradeFuture = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;
type UpgradeFn = Arc<dyn Fn(Cluster) -> UpgradeFuture + Send + Sync>;
type HandedOverFn = Arc<dyn Fn(&Cluster) -> bool + Send + Sync>;
type GetFn = Arc<dyn Fn(&Cluster) -> String + Send + Sync>;
type SetFn = Arc<dyn Fn(&Cluster, &str) -> Result<(), String> + Send + Sync>;

/// A live setting for `cluster-thread get` and `set` (see [`Control::setting`](crate::Control::setting)).
#[derive(Clone)]
pub struct LiveSetting {
    pub(crate) key: String,
    pub(crate) help: String,
    pub(crate) get: GetFn,
    pub(crate) set: SetFn,
}

impl std::fmt::Debug for LiveSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSetting")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LiveSetting {
    /// The setting `key`: `help` says what it takes; `get` reads it as
    /// text, `set` parses and applies a value (its error says why not).
    pub fn new(
        key: impl Into<String>,
        help: impl Into<String>,
        get: impl Fn(&Cluster) -> String + Send + Sync + 'static,
        set: impl Fn(&Cluster, &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> LiveSetting {
        LiveSetting {
            key: key.into(),
            help: help.into(),
            get: Arc::new(get),
            set: Arc::new(set),
        }
    }
}

#[derive(Clone, Default)]
pub(crate) struct Providers {
    pub(crate) stats: Vec<StatsFn>,
    pub(crate) upgrade: Option<UpgradeFn>,
    pub(crate) handed_over: Option<HandedOverFn>,
    pub(crate) settings: Vec<LiveSetting>,
}

/// What `ls` says of the program, fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}
