//! TLS with rustls: server configs built from certificate files (certificate
//! chosen by SNI, ALPN `imap`/`pop3`, session tickets and a session cache for
//! resumption), client configs that trust a CA file, and [`TlsStream`], which
//! runs a rustls connection over any [`crate::transport::Stream`] through
//! rustls's unbuffered API (`records`: the states and the buffers, released
//! when empty, so a quiet session holds none).
//!
//! It is handed file paths and a protocol, never the configuration; it knows
//! no session. There is no kernel TLS on the hosts this was measured on, so
//! records are encrypted and decrypted in user space; `TlsStream` keeps the
//! seam for kTLS (rustls can export the traffic secrets after the handshake).

mod detached;
mod records;
mod resolver;
mod stream;

pub use detached::DetachedStream;
pub use stream::{MaybeTls, TlsStream};

use crate::protocols::Protocol;
use resolver::SniResolver;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A listener's server config, swapped in place on reload: running sessions
/// keep the config they started with.
pub type SwappableServerConfig = Arc<arc_swap::ArcSwap<rustls::ServerConfig>>;

/// Server sessions remembered for resumption by session id, per listener.
pub const SESSION_CACHE_SIZE: usize = 4096;

/// A certificate chain (PEM, leaf first) and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The chain.
    pub cert: PathBuf,
    /// The key.
    pub key: PathBuf,
}

/// A certificate served to clients asking for one of `names` by SNI
/// (`mail.example.org`, `*.example.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCertificate {
    /// Server names.
    pub names: Vec<String>,
    /// Its files.
    pub files: CertificateFiles,
}

/// What a TLS listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// Protocol, for ALPN.
    pub protocol: Protocol,
    /// The certificate for clients without SNI or with an unknown name.
    pub default: CertificateFiles,
    /// Certificates chosen by SNI name.
    pub named: Vec<NamedCertificate>,
}

/// Why a TLS config could not be built; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// PEM that does not parse.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What rustls-pemfile said.
        source: std::io::Error,
    },
    /// A file without the expected PEM section.
    #[error("{path}: no {what} in it")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
    },
    /// rustls refused a certificate, a key or the pair.
    #[error("{path}: {source}")]
    Refused {
        /// The file (the key file for a pair that does not match).
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// rustls refused to build the config itself.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// One session-ticket key set for the whole process (every listener shares it,
/// so a ticket from one worker resumes on another).
pub fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsConfigError> {
    rustls::crypto::ring::Ticketer::new().map_err(TlsConfigError::Setup)
}

/// A server config for one TLS listener.
pub fn server_config(
    settings: &ServerTlsSettings,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut named = Vec::with_capacity(settings.named.len());
    for entry in &settings.named {
        let key = certified_key(&entry.files, &provider)?;
        named.push((entry.names.clone(), Arc::new(key)));
    }
    let default = certified_key(&settings.default, &provider)?;
    let resolver = SniResolver::new(Arc::new(default), &named);
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![settings.protocol.as_str().as_bytes().to_vec()];
    server.ticketer = ticketer;
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    Ok(Arc::new(server))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a PEM chain (leaf first) and its key, and checks that they match.
fn certified_key(
    files: &CertificateFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsConfigError> {
    let pem_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsConfigError::Pem { path, source }
    };
    let pem = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(pem_error(&files.cert))?;
    if chain.is_empty() {
        return Err(TlsConfigError::Missing {
            path: files.cert.clone(),
            what: "certificate",
        });
    }
    let pem = read(&files.key)?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(pem_error(&files.key))?
        .ok_or_else(|| TlsConfigError::Missing {
            path: files.key.clone(),
            what: "private key",
        })?;
    let refused = |source| TlsConfigError::Refused {
        path: files.key.clone(),
        source,
    };
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(refused)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(refused)?;
    Ok(certified)
}

/// A client config trusting the CA certificates (PEM) in `path`.
pub fn client_config(path: &Path) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let pem = read(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|source| TlsConfigError::Pem {
            path: path.to_owned(),
            source,
        })?;
        roots.add(cert).map_err(|source| TlsConfigError::Refused {
            path: path.to_owned(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::Missing {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Test configs: a server with a certificate for `localhost` issued by
/// `ca`, and a client that trusts `ca`.
#[cfg(test)]
pub(crate) fn test_configs(
    ca: &mailgate_testkit::certs::TestCa,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (cert, key) = ca.issue("server", &["localhost"], &[]);
    let settings = ServerTlsSettings {
        protocol: Protocol::Imap,
        default: CertificateFiles { cert, key },
        named: Vec::new(),
    };
    let server = server_config(&settings, ticketer().unwrap()).unwrap();
    (server, client_config(&ca.ca()).unwrap())
}
