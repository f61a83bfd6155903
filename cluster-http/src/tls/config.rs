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
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions, WebPkiClientVerifier,
};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::ServerConfig;

use super::tickets::{TicketKeys, ROTATION};
use crate::Error;

/// The ALPN protocols offered when we build the rustls config: HTTP/2
/// first, then HTTP/1.1 (the connection serves either, told apart by the
/// client's first bytes).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The default TLS handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and its key, as files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Clone)]
enum Source {
    /// The first pair is the default; each serves the names in its
    /// certificate.
    Pem(Vec<Pair>),
    Config(Arc<ServerConfig>),
}

/// Where a server's TLS certificate comes from, and the handshake timeout.
///
/// With [`pem_files`](Self::pem_files) the files are read each time a
/// worker's server starts, so a rolling reload (SIGHUP) serves a renewed
/// certificate: new workers read the new files while the old ones finish
/// their connections with the old certificate. More pairs
/// ([`add_pem_files`](Self::add_pem_files)) serve other names (SNI).
#[derive(Clone)]
pub struct TlsConfig {
    source: Source,
    pub(crate) handshake_timeout: Duration,
    /// `add_pem_files` or `client_ca` on a `server_config`: refused at load.
    stray: bool,
    /// PEM file of the CAs whose client certificates are required (mTLS).
    client_ca: Option<PathBuf>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TlsConfig");
        match &self.source {
            Source::Pem(pairs) => d.field("pem_files", pairs),
            Source::Config(_) => d.field("config", &"rustls::ServerConfig"),
        };
        d.field("handshake_timeout", &self.handshake_timeout)
            .field("client_ca", &self.client_ca)
            .finish()
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &Self) -> bool {
        let same = match (&self.source, &other.source) {
            (Source::Pem(a), Source::Pem(b)) => a == b,
            (Source::Config(a), Source::Config(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same && self.handshake_timeout == other.handshake_timeout
            && self.client_ca == other.client_ca
    }
}

impl Eq for TlsConfig {}

impl TlsConfig {
    /// A certificate chain and its private key in PEM files (the chain
    /// leaf first, as certbot's `fullchain.pem`; the key PKCS#8, PKCS#1 or
    /// SEC1). ALPN offers `h2` and `http/1.1`.
    pub fn pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            source: Source::Pem(vec![Pair {
                cert: cert.into(),
                key: key.into(),
            }]),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            stray: false,
            client_ca: None,
        }
    }

    /// Another certificate chain and key (PEM files, read as the first
    /// pair's are, with the same last-good rule): served to clients that
    /// ask (SNI) for a DNS name in its certificate's subject alternative
    /// names (`*.example.com` matching one label). A client asking for no
    /// name, or one no certificate has, gets the first pair's. An earlier
    /// pair wins a name that two certificates have. On a
    /// [`server_config`](Self::server_config) of your own, loading fails.
    pub fn add_pem_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        let pair = Pair {
            cert: cert.into(),
            key: key.into(),
        };
        match &mut self.source {
            Source::Pem(pairs) => pairs.push(pair),
            Source::Config(_) => self.stray = true,
        }
        self
    }

    /// A rustls config of your own, used as it is (if its ALPN list is
    /// empty, `h2` and `http/1.1` are set on a copy).
    pub fn server_config(config: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig {
            source: Source::Config(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            stray: false,
            client_ca: None,
        }
    }

    /// Requires a client certificate signed by one of the CAs in `path`
    /// (PEM; mutual TLS, rustls' `WebPkiClientVerifier`): a client without
    /// one, or with another, fails the handshake. The certificate is in
    /// every request's extensions ([`ClientCertificate`](crate::ClientCertificate)).
    /// Read as the PEM pairs are. On a [`server_config`](Self::server_config)
    /// of your own, loading fails (set its verifier there).
    pub fn client_ca(mut self, path: impl Into<PathBuf>) -> Self {
        if matches!(self.source, Source::Config(_)) {
            self.stray = true;
        }
        self.client_ca = Some(path.into());
        self
    }

    /// How long a client has to complete the TLS handshake (default 10 s);
    /// past it the connection is closed.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
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
        let (Some(worker), Source::Pem(pairs)) = (worker, &self.source) else {
            return self.load();
        };
        self.check()?;
        let last_good = hooks::extension::<LastGood>(worker);
        let keys = pairs
            .iter()
            .map(|pair| match load_pair(pair) {
                Ok(key) => {
                    last_good.lock().insert(pair.clone(), Arc::clone(&key));
                    Ok(key)
                }
                Err(e) => match last_good.lock().get(pair) {
                    Some(key) => {
                        tracing::warn!(error = %e, "serving the TLS certificate loaded before");
                        Ok(Arc::clone(key))
                    }
                    None => Err(e),
                },
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = hooks::extension::<Resumption>(worker);
        server_config(
            pairs,
            keys,
            self.client_ca.as_deref(),
            Some(shared.get(worker)),
        )
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
            Source::Pem(pairs) => {
                let keys = pairs.iter().map(load_pair).collect::<Result<Vec<_>, _>>()?;
                server_config(pairs, keys, self.client_ca.as_deref(), None)
            }
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.stray {
            return Err(Error::BadSetting {
                setting: "tls add_pem_files / client_ca",
                value: "a rustls server_config".into(),
                reason: "they go with pem_files, not with a config of your own",
            });
        }
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

/// The key each pair of PEM files last loaded into, cluster-wide.
#[derive(Debug, Default)]
struct LastGood(Mutex<HashMap<Pair, Arc<CertifiedKey>>>);

impl LastGood {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Pair, Arc<CertifiedKey>>> {
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
/// certificate renewed or not. The ticket keys are ours (`tickets.rs`):
/// rotated every 6 hours, the previous one kept to decrypt (a ticket stays
/// good for 6 to 12 hours), and carried to a hot upgrade's new process
/// over its private channel, so a ticket made before the upgrade is
/// resumed after it. The cache of sessions (TLS 1.2 session ids) stays in
/// the process.
#[derive(Default)]
struct Resumption(OnceLock<Shared>);

/// The name the ticket keys travel under in a hot upgrade.
const TICKET_KEYS: &str = "tls-ticket-keys";

impl Resumption {
    fn get(&self, worker: &cluster_core::Worker) -> Shared {
        self.0
            .get_or_init(|| Shared {
                cache: ServerSessionMemoryCache::new(SESSION_CACHE),
                ticketer: ticket_keys(worker).map(|k| k as Arc<dyn ProducesTickets>),
            })
            .clone()
    }
}

/// The keys the old process handed on (a hot upgrade), else new ones; both
/// handed on at the next upgrade.
fn ticket_keys(worker: &cluster_core::Worker) -> Option<Arc<TicketKeys>> {
    let carried = cluster_net::upgrade::carried(worker, TICKET_KEYS).and_then(|bytes| {
        let keys = TicketKeys::from_bytes(&bytes, ROTATION);
        if keys.is_none() {
            tracing::warn!("the TLS ticket keys the old process handed on are malformed; new ones");
        }
        keys
    });
    let keys = match carried {
        Some(keys) => {
            tracing::debug!("TLS session ticket keys taken over from the old process");
            keys
        }
        None => match TicketKeys::new(ROTATION) {
            Some(keys) => keys,
            None => {
                tracing::warn!("no TLS session tickets (no randomness for a key; sessions are resumed from the cluster's cache only)");
                return None;
            }
        },
    };
    let keys = Arc::new(keys);
    let handed = Arc::clone(&keys);
    cluster_net::upgrade::carry(worker, TICKET_KEYS, move || handed.to_bytes());
    Some(keys)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// One pair's chain and key, checked to match.
fn load_pair(pair: &Pair) -> Result<Arc<CertifiedKey>, Error> {
    let Pair { cert, key } = pair;
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
    CertifiedKey::from_der(chain, private, &provider())
        .map(Arc::new)
        .map_err(|e| Error::Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source: e,
        })
}

/// The rustls config serving `keys` (one per pair, the first the default)
/// by server name, with the cluster's resumption state if given.
fn server_config(
    pairs: &[Pair],
    keys: Vec<Arc<CertifiedKey>>,
    client_ca: Option<&Path>,
    shared: Option<Shared>,
) -> Result<Arc<ServerConfig>, Error> {
    let mut by_name = HashMap::new();
    for (pair, key) in pairs.iter().zip(&keys) {
        for name in names(key) {
            if by_name.contains_key(&name) {
                tracing::debug!(%name, cert = %pair.cert.display(), "a name an earlier certificate serves");
            }
            by_name.entry(name).or_insert_with(|| Arc::clone(key));
        }
    }
    let (Some(first), Some(default)) = (pairs.first(), keys.into_iter().next()) else {
        return Err(Error::BadSetting {
            setting: "tls pem_files",
            value: "none".into(),
            reason: "at least one certificate",
        });
    };
    let resolver = ByName { by_name, default };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            cert: first.cert.clone(),
            key: first.key.clone(),
            source: e,
        })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if let Some(shared) = shared {
        config.session_storage = shared.cache;
        if let Some(ticketer) = shared.ticketer {
            config.ticketer = ticketer;
        }
    }
    Ok(Arc::new(config))
}

/// A verifier requiring client certificates signed by a CA of `path`.
fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let bad = |reason: String| Error::TlsPem {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CA CERTIFICATE in the file".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// The DNS names (lower case) of a key's certificate: its subject
/// alternative names.
fn names(key: &CertifiedKey) -> Vec<String> {
    let Some(leaf) = key.cert.first() else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(leaf) {
        Ok(cert) => cert
            .valid_dns_names()
            .map(str::to_ascii_lowercase)
            .collect(),
        Err(e) => {
            tracing::debug!(error = ?e, "a certificate whose names could not be read");
            Vec::new()
        }
    }
}

/// Picks the certificate by the name the client asks for (SNI): that
/// name's, else the wildcard's of its parent (`*.example.com` for
/// `a.example.com`), else the default.
#[derive(Debug)]
struct ByName {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for ByName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = hello.server_name().and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        Some(Arc::clone(found.unwrap_or(&self.default)))
    }
}
