//! The wire format: one JSON object per line each way. A request names its
//! `command`; every reply line has a `type` (`progress` and `log` lines
//! stream; `status`, `settings`, `done` and `error` end a request). Both
//! carry the protocol `version`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The version of the protocol this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line the socket reads (64 KiB); a longer one is
/// answered with an error and the connection closed.
pub const MAX_LINE: usize = 64 * 1024;

/// The names of the commands, as `command` spells them.
pub const COMMANDS: [&str; 9] = [
    "ls", "reload", "restart", "scale", "upgrade", "stop", "get", "set", "logs",
];

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version the client speaks ([`PROTOCOL_VERSION`]).
    pub version: u32,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    /// `command` at this crate's protocol version.
    pub fn new(command: Command) -> Request {
        Request {
            version: PROTOCOL_VERSION,
            command,
        }
    }
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// The cluster and one row per live worker: answered with a `status`.
    Ls,
    /// A rolling reload, `parallel` slots at a time (default 1).
    Reload {
        /// Slots replaced at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parallel: Option<usize>,
    },
    /// Replaces one slot's worker gracefully.
    Restart {
        /// The slot.
        slot: usize,
    },
    /// Grows or shrinks the cluster.
    Scale {
        /// `4`, `+2`, `-2` or `max`.
        workers: Scale,
    },
    /// A hot upgrade: a new process takes the sockets over, this one drains.
    Upgrade,
    /// Stops the cluster: gracefully, or `now` (every worker killed).
    Stop {
        /// Kill the workers instead of draining them.
        #[serde(default)]
        now: bool,
    },
    /// The live settings: answered with `settings`.
    Get,
    /// Changes a live setting: answered with `settings` (the one changed).
    Set {
        /// The setting's name, such as `drain_delay`.
        key: String,
        /// Its new value, as text (`2s`, `1000`, `debug`).
        value: String,
    },
    /// The recent log lines: `log` lines, then `done` (or, with `follow`,
    /// new lines as they come, until the client closes).
    Logs {
        /// One slot's lines only (default: every slot's and the primary's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<usize>,
        /// How many of the last lines (default 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<usize>,
        /// Keep sending new lines.
        #[serde(default)]
        follow: bool,
    },
}

/// The size a `scale` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Scale {
    /// Exactly this many slots.
    To(usize),
    /// This many more.
    Add(usize),
    /// This many fewer (at least one is left).
    Remove(usize),
    /// One per CPU this process may use.
    Max,
}

/// A `scale` argument that is not `N`, `+N`, `-N` or `max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker count {0:?}: expected N, +N, -N or max")]
pub struct BadScale(pub String);

impl FromStr for Scale {
    type Err = BadScale;

    fn from_str(s: &str) -> Result<Scale, BadScale> {
        let t = s.trim();
        let bad = || BadScale(s.to_owned());
        if t.eq_ignore_ascii_case("max") {
            return Ok(Scale::Max);
        }
        let number = |n: &str| match n.bytes().all(|b| b.is_ascii_digit()) {
            true => n.parse::<usize>().map_err(|_| bad()),
            false => Err(bad()),
        };
        match t.as_bytes().first() {
            Some(b'+') => number(&t[1..]).map(Scale::Add),
            Some(b'-') => number(&t[1..]).map(Scale::Remove),
            _ => number(t).map(Scale::To),
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scale::To(n) => write!(f, "{n}"),
            Scale::Add(n) => write!(f, "+{n}"),
            Scale::Remove(n) => write!(f, "-{n}"),
            Scale::Max => f.write_str("max"),
        }
    }
}

impl TryFrom<String> for Scale {
    type Error = BadScale;

    fn try_from(s: String) -> Result<Scale, BadScale> {
        s.parse()
    }
}

impl From<Scale> for String {
    fn from(s: Scale) -> String {
        s.to_string()
    }
}

impl Scale {
    /// The size this asks of a cluster of `current` slots, with `cpus`
    /// CPUs; an error for less than one.
    pub fn target(self, current: usize, cpus: usize) -> Result<usize, String> {
        let n = match self {
            Scale::To(n) => n,
            Scale::Add(n) => current.saturating_add(n),
            Scale::Remove(n) => current.saturating_sub(n),
            Scale::Max => cpus,
        };
        if n == 0 {
            return Err(format!(
                "scale {self} leaves no worker (the cluster has {current}); at least one is needed"
            ));
        }
        Ok(n)
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The protocol version of the cluster ([`PROTOCOL_VERSION`]).
    pub version: u32,
    /// What it says.
    #[serde(flatten)]
    pub body: Body,
}

impl Reply {
    /// `body` at this crate's protocol version.
    pub fn new(body: Body) -> Reply {
        Reply {
            version: PROTOCOL_VERSION,
            body,
        }
    }

    /// True for the lines that end a request's answer.
    pub fn is_final(&self) -> bool {
        !matches!(self.body, Body::Progress { .. } | Body::Log(_))
    }
}

/// What a reply line says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Body {
    /// A step of a long command (a worker started, listening, drained).
    Progress {
        /// What happened.
        message: String,
    },
    /// A log line (`logs`).
    Log(LogLine),
    /// The answer to `ls`.
    Status(Status),
    /// The answer to `get` and `set`.
    Settings {
        /// The settings, by name.
        settings: Vec<Setting>,
    },
    /// A command finished.
    Done {
        /// What was done.
        message: String,
        /// The new process of an `upgrade`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The request was refused or failed.
    Error {
        /// Why.
        error: String,
    },
}

/// The cluster as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The program's name (the socket's name).
    pub name: String,
    /// The process id.
    pub pid: u32,
    /// The program's version, if it said.
    pub program_version: Option<String>,
    /// The version of cluster_thread's control crate.
    pub cluster_thread: String,
    /// The cluster's phase: starting, listening, draining, stopping, stopped.
    pub phase: String,
    /// The slots the cluster keeps.
    pub size: usize,
    /// Seconds since the control socket opened (the cluster started).
    pub uptime_seconds: f64,
    /// Restarts by the restart policy so far.
    pub restarts: u64,
    /// The listeners' balance modes, joined with `,` (null before any listens).
    pub balance: Option<String>,
    /// The shared listening sockets.
    pub listeners: Vec<ListenerRow>,
    /// The whole process's resident memory, if known.
    pub memory_bytes: Option<u64>,
    /// One row per live worker, by slot.
    pub workers: Vec<WorkerRow>,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListenerRow {
    /// Its address.
    pub address: String,
    /// Its balance mode.
    pub balance: String,
    /// Connections open on it now.
    pub connections: u64,
}

impl ListenerRow {
    /// A row.
    pub fn new(address: String, balance: String, connections: u64) -> ListenerRow {
        ListenerRow {
            address,
            balance,
            connections,
        }
    }
}

/// One live worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerRow {
    /// Its slot.
    pub slot: usize,
    /// Its id.
    pub id: u64,
    /// starting, online, listening or draining.
    pub state: String,
    /// Seconds since it was forked.
    pub uptime_seconds: f64,
    /// Restarts of its slot before it.
    pub restarts: u32,
    /// Connections it has open (null if nothing counts them).
    pub connections: Option<u64>,
    /// Requests its slot answered so far (null without HTTP).
    pub requests: Option<u64>,
    /// Its slot's requests per second over the last 5 s.
    pub requests_per_second: Option<f64>,
    /// Its thread's CPU use over the last 5 s, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Its memory: bytes allocated from its allocator arena since it
    /// started (null when unknown: threads share one heap, so only the
    /// facade's `jemalloc` feature, an arena per worker, tells it).
    pub memory_bytes: Option<u64>,
}

/// A live setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Setting {
    /// Its name.
    pub key: String,
    /// Its value now, as text.
    pub value: String,
    /// What it does and what it takes.
    pub help: String,
}

/// A log line and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// Its place in the process's log (increasing).
    pub seq: u64,
    /// The slot of the worker it names; null for the primary's own lines.
    pub slot: Option<usize>,
    /// The line as it was written to stderr.
    pub line: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_flat_objects() {
        let r = Request::new(Command::Scale {
            workers: Scale::Add(2),
        });
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"version":1,"command":"scale","workers":"+2"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let ls: Request = serde_json::from_str(r#"{"version":1,"command":"ls"}"#).unwrap();
        assert_eq!(ls.command, Command::Ls);
        let stop: Request = serde_json::from_str(r#"{"version":1,"command":"stop"}"#).unwrap();
        assert_eq!(stop.command, Command::Stop { now: false });
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Body::Progress {
                message: "x".into(),
            },
            Body::Done {
                message: "upgraded".into(),
                pid: Some(7),
            },
            Body::Error { error: "no".into() },
            Body::Log(LogLine {
                seq: 3,
                slot: Some(1),
                line: "INFO worker{id=3 slot=1}: hi".into(),
            }),
            Body::Status(Status {
                name: "app".into(),
                pid: 1,
                program_version: Some("1.2.0".into()),
                cluster_thread: "0.1.0".into(),
                phase: "listening".into(),
                size: 1,
                uptime_seconds: 1.5,
                restarts: 0,
                balance: Some("round-robin".into()),
                listeners: vec![ListenerRow::new("0.0.0.0:80".into(), "os".into(), 3)],
                memory_bytes: Some(1 << 20),
                workers: vec![WorkerRow {
                    slot: 0,
                    id: 1,
                    state: "listening".into(),
                    uptime_seconds: 1.0,
                    restarts: 0,
                    connections: Some(2),
                    requests: None,
                    requests_per_second: Some(0.5),
                    cpu_percent: Some(1.25),
                    memory_bytes: None,
                }],
            }),
        ];
        for body in replies {
            let reply = Reply::new(body);
            let text = serde_json::to_string(&reply).unwrap();
            assert!(text.starts_with(r#"{"version":1,"type":""#), "{text}");
            assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        }
    }

    #[test]
    fn scale_arguments() {
        assert_eq!("4".parse(), Ok(Scale::To(4)));
        assert_eq!("+2".parse(), Ok(Scale::Add(2)));
        assert_eq!("-2".parse(), Ok(Scale::Remove(2)));
        assert_eq!("MAX".parse(), Ok(Scale::Max));
        for bad in ["", "+", "x", "-1.5", "++1"] {
            assert!(bad.parse::<Scale>().is_err(), "{bad:?}");
        }
        assert_eq!(Scale::Remove(2).target(4, 2), Ok(2));
        assert_eq!(Scale::Max.target(4, 2), Ok(2));
        assert!(Scale::Remove(4).target(4, 2).is_err());
        assert!(Scale::To(0).target(4, 2).is_err());
    }
}
