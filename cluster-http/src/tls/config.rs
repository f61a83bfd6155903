//! `TlsConfig`: where the certificate comes from (PEM files, read as each
//! worker's server starts, with the cluster's last good pair kept; or a
//! rustls config of the user's), and the handshake timeout.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cluster_core::hooks;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::ring::Ticketer;
use tokio_rustls::rustls::server::{
    ProducesTickets, ServerSessionMemoryCache, StoresServerSessions,
};
use tokio_rustls::rustls::ServerConfig;

use crate::Error;

/// The ALPN protocols offered when we build the rustls config: HTTP/2
/// first, then HTTP/1.1 (the connection serves either, told apart by the
/// client's first bytes).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The default TLS handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
enum Source {
    Pem { cert: PathBuf, key: PathBuf },
    Config(Arc<ServerConfig>),
}

/// Where a server's TLS certificate comes from, and the handshake timeout.
///
/// With [`pem_files`](Self::pem_files) the files are read each time a
/// worker's server starts, so a rolling reload (SIGHUP) serves a renewed
/// certificate: new workers read the new files while the old ones finish
/// their connections with the old certificate.
#[derive(Clone)]
pub struct TlsConfig {
    source: Source,
    pub(crate) handshake_timeout: Duration,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsConfig");
        match &self.source {
            Source::Pem { cert, key } => d.field("cert", cert).field("key", key),
            Source::Config(_) => d.field("config", &"rustls::ServerConfig"),
        };
        d.field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        let same = match (&self.source, &other.source) {
            (Source::Pem { cert, key }, Source::Pem { cert: c, key: k }) => cert == c && key == k,
            (Source::Config(a), Source::Config(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same && self.handshake_timeout == other.handshake_timeout
    }
}

impl Eq for TlsConfig {}

impl TlsConfig {
    /// A certificate chain and its private key in PEM files (the chain
    /// leaf first, as certbot's `fullchain.pem`; the key PKCS#8, PKCS#1 or
    /// SEC1). ALPN offers `h2` and `http/1.1`.
    pub fn pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            source: Source::Pem {
                cert: cert.into(),
                key: key.into(),
            },
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A rustls config of your own, used as it is (if its ALPN list is
    /// empty, `h2` and `http/1.1` are set on a copy).
    pub fn server_config(config: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig {
            source: Source::Config(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// How long a client has to complete the TLS handshake (default 10 s);
    /// past it the connection is closed.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake timeout.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// As [`load`](Self::load), on a worker: PEM files that cannot be used
    /// (a renewal half done, a typo) after an earlier worker of the cluster
    /// loaded them fine give that earlier certificate, with a warning, so a
    /// rolling reload or a restart never takes HTTPS down; with no earlier
    /// one, the error.
    pub(crate) fn load_on(
        &self,
        worker: Option<&cluster_core::Worker>,
    ) -> Result<Arc<ServerConfig>, Error> {
        let (Some(worker), Source::Pem { cert, key }) = (worker, &self.source) else {
            return self.load();
        };
        let last_good = hooks::extension::<LastGood>(worker);
        let paths = (cert.clone(), key.clone());
        let shared = hooks::extension::<Resumption>(worker);
        match self
            .check()
            .and_then(|()| load_pem(cert, key, Some(shared.get())))
        {
            Ok(config) => {
                last_good.lock().insert(paths, Arc::clone(&config));
                Ok(config)
            }
            Err(e) => match last_good.lock().get(&paths) {
                Some(config) => {
                    tracing::warn!(error = %e, "serving the TLS certificate loaded before");
                    Ok(Arc::clone(config))
                }
                None => Err(e),
            },
        }
    }

    /// The rustls config: the files read now, for the PEM form.
    pub fn load(&self) -> Result<Arc<ServerConfig>, Error> {
        self.check()?;
        match &self.source {
            Source::Config(config) if !config.alpn_protocols.is_empty() => Ok(Arc::clone(config)),
            Source::Config(config) => {
                let mut config = ServerConfig::clone(config);
                config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
                Ok(Arc::new(config))
            }
            Source::Pem { cert, key } => load_pem(cert, key, None),
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.handshake_timeout.is_zero() {
            return Err(Error::BadSetting {
                setting: "tls handshake_timeout",
                value: format!("{:?}", self.handshake_timeout),
                reason: "must be greater than zero",
            });
        }
        Ok(())
    }
}

/// The config each pair of PEM files last loaded into, cluster-wide.
#[derive(Debug, Default)]
struct LastGood(Mutex<HashMap<(PathBuf, PathBuf), Arc<ServerConfig>>>);

impl LastGood {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, PathBuf), Arc<ServerConfig>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sessions to resume: stored by the server (TLS 1.2 session ids, and
/// TLS 1.3 without tickets) and tickets' keys.
#[derive(Clone)]
struct Shared {
    cache: Arc<dyn StoresServerSessions>,
    /// `None` if no ticket key could be made (no randomness): the cache alone.
    ticketer: Option<Arc<dyn ProducesTickets>>,
}

/// How many sessions the cluster's cache keeps (the least recently used
/// go first): a few hundred bytes each.
const SESSION_CACHE: usize = 4096;

/// One session cache and one ticketer for every worker of the cluster (a
/// cluster extension, built on first use): a session made with one worker
/// is resumed by any other, and after a rolling reload by the new workers,
/// certificate renewed or not. rustls' ring ticketer rotates its key every
/// 6 hours and keeps the previous one to decrypt, so a ticket stays good
/// for 6 to 12 hours. Its keys cannot be read out, so a hot upgrade's new
/// process starts with keys of its own: its clients make a full handshake
/// once.
#[derive(Default)]
struct Resumption(OnceLock<Shared>);

impl Resumption {
    fn get(&self) -> Shared {
        self.0
            .get_or_init(|| Shared {
                cache: ServerSessionMemoryCache::new(SESSION_CACHE),
                ticketer: match Ticketer::new() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "no TLS session tickets (sessions are resumed from the cluster's cache only)");
                        None
                    }
                },
            })
            .clone()
    }
}

fn load_pem(cert: &Path, key: &Path, shared: Option<Shared>) -> Result<Arc<ServerConfig>, Error> {
    let pem_error = |path: &Path, e: rustls_pki_types::pem::Error| Error::TlsPem {
        path: path.to_owned(),
        reason: match e {
            rustls_pki_types::pem::Error::Io(e) => e.to_string(),
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
            other => other.to_string(),
        },
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if chain.is_empty() {
        return Err(Error::TlsPem {
            path: cert.to_owned(),
            reason: "no CERTIFICATE in the file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| Error::Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source: e,
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if let Some(shared) = shared {
        config.session_storage = shared.cache;
        if let Some(ticketer) = shared.ticketer {
            config.ticketer = ticketer;
        }
    }
    Ok(Arc::new(config))
}
