//! What a measurement is: which scenario, placement and generator, which
//! server, which figure.

use std::collections::BTreeMap;

use serde::Serialize;

/// The scenarios, in run order (`Scenario::ALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// 50 keep-alive connections, one request after the other on each.
    KeepAlive,
    /// A new connection per request (`Connection: close`).
    Churn,
    /// Keep-alive over TLS (the TLS servers only).
    TlsKeepAlive,
    /// Churn over TLS, every handshake a full one (the client offers no
    /// session).
    TlsChurn,
    /// Churn over TLS, the client resuming the sessions it was given
    /// (tickets or ids, as the server offers).
    TlsResumed,
    /// RSS after start and after a short load, per worker count.
    Memory,
    /// Memory per idle keep-alive connection.
    Idle,
    /// From spawn until every worker is up and `GET /` answers.
    Startup,
    /// From a worker's crash until a new one answers.
    Respawn,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 9] = [
        Scenario::KeepAlive,
        Scenario::Churn,
        Scenario::TlsKeepAlive,
        Scenario::TlsChurn,
        Scenario::TlsResumed,
        Scenario::Memory,
        Scenario::Idle,
        Scenario::Startup,
        Scenario::Respawn,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::KeepAlive => "keep-alive",
            Scenario::Churn => "churn",
            Scenario::TlsKeepAlive => "tls-keep-alive",
            Scenario::TlsChurn => "tls-churn",
            Scenario::TlsResumed => "tls-resumed",
            Scenario::Memory => "memory",
            Scenario::Idle => "idle",
            Scenario::Startup => "startup",
            Scenario::Respawn => "respawn",
        }
    }

    pub(crate) fn by_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Measured under load by a generator, pinned and unpinned.
    pub(crate) fn is_load(self) -> bool {
        matches!(self, Scenario::KeepAlive | Scenario::Churn) || self.is_tls()
    }

    /// Measured over TLS, against the TLS servers.
    pub(crate) fn is_tls(self) -> bool {
        matches!(
            self,
            Scenario::TlsKeepAlive | Scenario::TlsChurn | Scenario::TlsResumed
        )
    }

    /// A new connection per request.
    pub(crate) fn is_churn(self) -> bool {
        matches!(
            self,
            Scenario::Churn | Scenario::TlsChurn | Scenario::TlsResumed
        )
    }
}

/// Where the servers and the generator run in a load scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Placement {
    /// The server on [`SERVER_CPU`] with 1 worker, the generator on [`GENERATOR_CPU`].
    Pinned,
    /// `--workers` workers, no affinity: the generator shares the cores.
    Unpinned,
}

/// The CPU a pinned server runs on.
pub(crate) const SERVER_CPU: usize = 1;
/// The CPU a pinned generator runs on.
pub(crate) const GENERATOR_CPU: usize = 0;

impl Placement {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Placement::Pinned => "pinned",
            Placement::Unpinned => "unpinned",
        }
    }
}

/// A load generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Generator {
    /// xtask's own client (tokio, HdrHistogram).
    Builtin,
    /// `wrk`, from the distribution's packages, without a Lua script.
    Wrk,
}

impl Generator {
    pub(crate) const ALL: [Generator; 2] = [Generator::Builtin, Generator::Wrk];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Generator::Builtin => "builtin",
            Generator::Wrk => "wrk",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Generator::Builtin => "built-in generator",
            Generator::Wrk => "wrk",
        }
    }
}

/// One figure of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Metric {
    Rps,
    P50Ms,
    P90Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    Errors,
    Requests,
    ServerCpuS,
    ClientCpuS,
    CpuUsPerReq,
    ReqPerCpuS,
    RssStartMib,
    RssLoadMib,
    PssStartMib,
    PssLoadMib,
    Processes,
    LoadRequests,
    /// Idle scenario: RSS before the connections are opened.
    IdleBaseMib,
    /// Idle scenario: connections held open (and answered once).
    IdleConnections,
    /// Idle scenario: RSS growth per connection, opened, before any request.
    IdleKibPerConnOpened,
    /// Idle scenario: RSS growth per connection after one request on each.
    IdleKibPerConn,
    StartupMs,
    RespawnMs,
    RespawnMaxMs,
    Failures,
    LostProbes,
    /// TLS scenarios, built-in generator: the share of the connections made
    /// in the window whose handshake resumed a session.
    ResumedShare,
}

impl Metric {
    /// The figures that are also given as ratios between servers.
    pub(crate) fn is_compared(self) -> bool {
        matches!(
            self,
            Metric::Rps
                | Metric::P99Ms
                | Metric::CpuUsPerReq
                | Metric::RssLoadMib
                | Metric::IdleKibPerConn
                | Metric::StartupMs
                | Metric::RespawnMs
        )
    }
}

/// What a sample is comparable with: the same scenario, placement,
/// generator and worker count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub(crate) struct Group {
    pub(crate) scenario: Scenario,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) placement: Option<Placement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) generator: Option<Generator>,
    pub(crate) workers: usize,
}

impl Group {
    /// A load scenario's group.
    pub(crate) fn load(
        scenario: Scenario,
        placement: Placement,
        generator: Generator,
        workers: usize,
    ) -> Group {
        Group {
            scenario,
            placement: Some(placement),
            generator: Some(generator),
            workers,
        }
    }

    /// Any other scenario's group.
    pub(crate) fn of(scenario: Scenario, workers: usize) -> Group {
        Group {
            scenario,
            placement: None,
            generator: None,
            workers,
        }
    }
}

/// One measurement of one server in one repetition.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sample {
    #[serde(flatten)]
    pub(crate) group: Group,
    pub(crate) server: &'static str,
    pub(crate) rep: usize,
    pub(crate) metrics: BTreeMap<Metric, f64>,
    /// Start-up: each launch; respawn: each crash (milliseconds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) attempts_ms: Vec<f64>,
}
