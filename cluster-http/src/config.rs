//! Settings of an HTTP server: limits, drain, endpoints, panic policy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// What a panic inside a connection (the service panicked) does to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnPanic {
    /// Drain the worker (stop accepting, let its other connections finish),
    /// then return [`Error::ConnectionPanicked`] so that the cluster's restart
    /// policy replaces it with a fresh worker. The default.
    #[default]
    Restart,
    /// Log the panic and go on serving; only the panicking request's
    /// connection (HTTP/1) or stream (HTTP/2) is lost.
    Ignore,
}

impl OnPanic {
    /// `"restart"` or `"ignore"`.
    pub fn name(self) -> &'static str {
        match self {
            OnPanic::Restart => "restart",
            OnPanic::Ignore => "ignore",
        }
    }
}

impl fmt::Display for OnPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OnPanic {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            s if s.eq_ignore_ascii_case("restart") => Ok(OnPanic::Restart),
            s if s.eq_ignore_ascii_case("ignore") => Ok(OnPanic::Ignore),
            _ => Err(Error::BadSetting {
                setting: "on_panic",
                value: format!("{s:?}"),
                reason: "expected \"restart\" or \"ignore\"",
            }),
        }
    }
}

/// The smallest `max_header_size`: hyper's smallest HTTP/1 read buffer.
pub const MIN_HEADER_SIZE: usize = 8192;

/// The settings of an HTTP server. Give one to the cluster as state to set
/// the defaults of every worker's [`Server`](crate::Server):
/// `Cluster::builder().state(HttpConfig::default().healthz("/healthz"))`;
/// each `Server` setter overrides it.
///
/// The connection limits live in `cluster-net`: `NetConfig::max_connections`
/// and `max_connections_per_worker` (or the same on a `ListenSpec`). Past
/// them, new connections wait in the kernel's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_header_size: usize,
    pub(crate) keep_alive_timeout: Duration,
    /// `None`: five sixths of the cluster's shutdown timeout.
    pub(crate) drain_timeout: Option<Duration>,
    pub(crate) healthz: Option<String>,
    pub(crate) metrics: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) on_panic: OnPanic,
    pub(crate) migrate: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::TlsConfig>,
    #[cfg(feature = "http3")]
    pub(crate) http3: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout: Duration::from_secs(30),
            max_header_size: 16 * 1024,
            keep_alive_timeout: Duration::from_secs(30),
            drain_timeout: None,
            healthz: None,
            metrics: None,
            status: None,
            on_panic: OnPanic::Restart,
            migrate: true,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "http3")]
            http3: false,
        }
    }
}

impl HttpConfig {
    /// How long a client may take to send a request's headers (default 30 s);
    /// a slower one is disconnected. It also bounds the wait for the first
    /// request of a new connection. For HTTP/1 it restarts whenever a
    /// keep-alive connection goes idle, so an idle HTTP/1 connection is
    /// closed after the shorter of this and
    /// [`keep_alive_timeout`](Self::keep_alive_timeout). A connection
    /// accepted while the cluster's connection cap is three quarters full
    /// or more gets a quarter of it (at least a second) for its first
    /// request, as silent connections may be filling the cap (so does the
    /// TLS handshake timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// The largest request head (request line and headers) in bytes, default
    /// 16 KiB, at least [`MIN_HEADER_SIZE`]. A larger HTTP/1 head is answered
    /// `431 Request Header Fields Too Large` and the connection closed; for
    /// HTTP/2 it is the `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.max_header_size = bytes;
        self
    }

    /// How long a connection may stay without a request in flight before it
    /// is closed (default 30 s): HTTP/1 keep-alive connections are closed,
    /// HTTP/2 connections get a GOAWAY.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// How long a drain may take before the connections left are closed
    /// (default: five sixths of the cluster's `shutdown_timeout`, so 25 s of
    /// the default 30 s, leaving time to close them before the worker would
    /// be killed). A drain ends as soon as the last connection ends; this is
    /// only the deadline.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// The drain deadline for a worker whose cluster has this shutdown timeout.
    pub(crate) fn drain_deadline(&self, shutdown_timeout: Duration) -> Duration {
        self.drain_timeout
            .unwrap_or_else(|| shutdown_timeout.mul_f64(5.0 / 6.0))
    }

    /// Answers `GET` and `HEAD` on `path` itself: `200 ok` while serving,
    /// `503 draining` once this worker drains or the cluster is draining or
    /// stopping (for load balancers). Off by default.
    pub fn healthz(mut self, path: impl Into<String>) -> Self {
        self.healthz = Some(path.into());
        self
    }

    /// Answers `GET` and `HEAD` on `path` itself with this worker's metrics in
    /// Prometheus text format (see the crate docs for the list). Off by default.
    pub fn metrics(mut self, path: impl Into<String>) -> Self {
        self.metrics = Some(path.into());
        self
    }

    /// Answers `GET` and `HEAD` on `path` itself with the cluster's status
    /// page: one row per slot (worker id, state, uptime, restarts, active
    /// and accepted connections, requests, p50/p99 latency) and the phase,
    /// in HTML that refreshes itself, or JSON with `?format=json`. Off by
    /// default; it shows the cluster's inner workings, so keep it off a
    /// public port.
    pub fn status(mut self, path: impl Into<String>) -> Self {
        self.status = Some(path.into());
        self
    }

    /// What a panic inside a connection does (default [`OnPanic::Restart`]).
    pub fn on_panic(mut self, on_panic: OnPanic) -> Self {
        self.on_panic = on_panic;
        self
    }

    /// Whether a draining worker hands its open HTTP/1 keep-alive
    /// connections to a live worker of the same listener instead of closing
    /// them (default on). Each moves once no request is in flight on it,
    /// with the bytes already read, and the client never sees it close.
    /// HTTP/2 connections get a GOAWAY and TLS connections close as before;
    /// where no other worker serves the listener (the last one stops, or
    /// the cluster stops) they close too. Off: every drain closes idle
    /// connections, as other servers do.
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// Serves HTTPS: TLS with this certificate on every connection, ALPN
    /// `h2` and `http/1.1` (feature `tls`). PEM files are read when each
    /// worker's server starts, so a rolling reload serves renewed ones.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Also serves HTTP/3 (feature `http3`; needs [`tls`](Self::tls)): the
    /// same service over QUIC on the UDP port of the TCP listener's number,
    /// every worker on it, each connection's datagrams steered to the
    /// worker its connection ID names; TCP responses then carry
    /// `Alt-Svc: h3=":<port>"` (default off).
    #[cfg(feature = "http3")]
    pub fn http3(mut self, on: bool) -> Self {
        self.http3 = on;
        self
    }

    /// Checks every setting; the error names the one at fault.
    pub fn validate(&self) -> Result<(), Error> {
        for (setting, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("keep_alive_timeout", self.keep_alive_timeout),
            ("drain_timeout", self.drain_timeout.unwrap_or(Duration::MAX)),
        ] {
            if value.is_zero() {
                return Err(Error::BadSetting {
                    setting,
                    value: format!("{value:?}"),
                    reason: "must be greater than zero",
                });
            }
        }
        #[cfg(feature = "http3")]
        if self.http3 && self.tls.is_none() {
            return Err(Error::BadSetting {
                setting: "http3",
                value: "true".into(),
                reason: "HTTP/3 needs TLS: set `tls` too",
            });
        }
        if self.max_header_size < MIN_HEADER_SIZE {
            return Err(Error::BadSetting {
                setting: "max_header_size",
                value: self.max_header_size.to_string(),
                reason: "must be at least 8192 bytes (hyper's smallest HTTP/1 read buffer)",
            });
        }
        if u32::try_from(self.max_header_size).is_err() {
            return Err(Error::BadSetting {
                setting: "max_header_size",
                value: self.max_header_size.to_string(),
                reason: "must fit in 32 bits (HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE)",
            });
        }
        let paths = [
            ("healthz", &self.healthz),
            ("metrics", &self.metrics),
            ("status", &self.status),
        ];
        for (i, (setting, path)) in paths.iter().enumerate() {
            let Some(path) = path else { continue };
            if !path.starts_with('/') {
                return Err(Error::BadSetting {
                    setting,
                    value: format!("{path:?}"),
                    reason: "must be a path starting with '/'",
                });
            }
            if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p.as_ref() == Some(path)) {
                return Err(Error::BadPath {
                    setting,
                    path: path.clone(),
                    other,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        HttpConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_setting() {
        let e = HttpConfig::default()
            .max_header_size(100)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid HTTP setting `max_header_size = 100`: must be at least 8192 bytes (hyper's smallest HTTP/1 read buffer)"
        );
        let e = HttpConfig::default()
            .drain_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("`drain_timeout = 0ns`"), "{e}");
        let e = HttpConfig::default()
            .healthz("healthz")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("`healthz = \"healthz\"`"), "{e}");
    }

    #[test]
    fn on_panic_parses() {
        assert_eq!("restart".parse::<OnPanic>().unwrap(), OnPanic::Restart);
        assert_eq!("Ignore".parse::<OnPanic>().unwrap(), OnPanic::Ignore);
        assert!("crash".parse::<OnPanic>().is_err());
    }
}
