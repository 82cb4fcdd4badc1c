//! TLS towards clients with rustls: server configs per listener (certificate
//! chosen by SNI, ALPN `imap`/`pop3`, session tickets and a session cache for
//! resumption), their reload on SIGHUP, and [`TlsStream`], which runs a rustls
//! connection over any [`crate::runtime::transport::Stream`].
//!
//! There is no kernel TLS on the hosts this was measured on, so records are
//! encrypted and decrypted in user space; `TlsStream` keeps the seam for
//! kTLS (rustls can export the traffic secrets after the handshake).

mod resolver;
mod stream;

pub use stream::{MaybeTls, TlsStream};

use crate::config::{Config, Protocol, TlsMode};
use resolver::SniResolver;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// One server config per listener (`None` for plaintext listeners).
/// Errors carry the listener index and a reason naming the file.
pub fn server_configs(
    config: &Config,
    base_dir: &Path,
) -> Result<Vec<Option<Arc<rustls::ServerConfig>>>, (usize, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| (0, format!("session tickets: {e}")))?;
    let mut named = Vec::new();
    if let Some(tls) = &config.tls {
        for entry in &tls.certificates {
            let key = certified_key(
                &base_dir.join(&entry.cert),
                &base_dir.join(&entry.key),
                &provider,
            )
            .map_err(|e| (0, format!("[[tls.certificates]] {:?}: {e}", entry.names)))?;
            named.push((entry.names.clone(), Arc::new(key)));
        }
    }
    let mut out = Vec::with_capacity(config.listen.len());
    for (index, listen) in config.listen.iter().enumerate() {
        if listen.tls_mode() == TlsMode::None {
            out.push(None);
            continue;
        }
        let global = config.tls.as_ref();
        let cert = listen
            .cert
            .as_ref()
            .or(global.and_then(|t| t.cert.as_ref()));
        let key = listen.key.as_ref().or(global.and_then(|t| t.key.as_ref()));
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err((
                index,
                "a TLS listener needs a certificate: `cert` and `key` in [tls] or in this [[listen]]".into(),
            ));
        };
        let default = certified_key(&base_dir.join(cert), &base_dir.join(key), &provider)
            .map_err(|e| (index, e))?;
        let resolver = SniResolver::new(Arc::new(default), &named);
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| (index, e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        server.alpn_protocols = vec![match listen.protocol {
            Protocol::Imap => b"imap".to_vec(),
            Protocol::Pop3 => b"pop3".to_vec(),
        }];
        server.ticketer = ticketer.clone();
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        out.push(Some(Arc::new(server)));
    }
    Ok(out)
}

/// Reads a PEM chain (leaf first) and its key.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in it", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(certified)
}

/// A client config trusting the CA certificates (PEM) in `path`.
pub fn client_config(path: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
