//! Choosing the certificate by SNI: exact name, then `*.parent` wildcard, then
//! the listener's default (also for clients that send no SNI).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    pub(super) fn new(
        default: Arc<CertifiedKey>,
        named: &[(Vec<String>, Arc<CertifiedKey>)],
    ) -> Self {
        let mut by_name = HashMap::new();
        for (names, key) in named {
            for name in names {
                by_name.insert(name.to_ascii_lowercase(), key.clone());
            }
        }
        Self { default, by_name }
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.by_name.get(&name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.by_name.get(&format!("*.{parent}")).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            hello
                .server_name()
                .and_then(|name| self.lookup(name))
                .unwrap_or_else(|| self.default.clone()),
        )
    }
}
