//! The provider's signing keys, shared by every worker of the process: a
//! [`KeySet`] behind an `ArcSwap` (read without a lock on every check),
//! loaded from a JWKS file or URL, fetched again when older than
//! `jwks_refresh` and when a token names a `kid` the set lacks — at most
//! once per `jwks_min_refresh`, so tokens with made-up key ids cannot make
//! mailgate hammer the provider. One refresh runs at a time (an async
//! lock; the others wait for its result). A failed refresh keeps the keys
//! it had.

use super::fetch::{self, Endpoint, Request};
use super::jwks::{KeySet, MAX_JWKS_BYTES};
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document on disk (read again on refresh).
    File(PathBuf),
    /// A JWKS URL (the provider's `jwks_uri`).
    Url(Endpoint),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Url(e) => write!(
                f,
                "{}://{}:{}{}",
                if e.tls { "https" } else { "http" },
                e.host,
                e.port,
                e.path
            ),
        }
    }
}

/// How keys are refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Where from.
    pub source: KeySource,
    /// Fetched again when older than this.
    pub refresh: Duration,
    /// Never fetched twice within this (an unknown `kid` waits for it).
    pub min_refresh: Duration,
    /// Bound on one fetch.
    pub timeout: Duration,
}

/// The process's key set and its refresh state.
pub struct KeyStore {
    policy: KeyPolicy,
    tls: Option<Arc<rustls::ClientConfig>>,
    keys: ArcSwap<KeySet>,
    /// When the keys were last fetched (successfully or not), if ever.
    fetched: Mutex<Option<Instant>>,
    /// When the keys last changed or were confirmed.
    loaded: Mutex<Option<Instant>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// Why no keys could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing keys from {from}: {reason}")]
pub struct KeysUnavailable {
    from: String,
    reason: String,
}

impl KeyStore {
    /// A store with no keys yet; a key file is read at once (its errors
    /// are configuration errors), a URL at the first check.
    pub fn new(policy: KeyPolicy, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, String> {
        let store = Self {
            policy,
            tls,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetched: Mutex::new(None),
            loaded: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        };
        if let KeySource::File(path) = &store.policy.source {
            let set = read_file(path)?;
            store.install(set);
        }
        Ok(store)
    }

    /// The current keys, fetched first when there are none or they are
    /// older than `refresh` (a failed fetch keeps the old ones).
    pub async fn current(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        let stale = lock_time(&self.loaded).is_none_or(|at| at.elapsed() >= self.policy.refresh);
        if stale && self.may_fetch() {
            let _ = self.refresh().await;
        }
        let keys = self.keys.load_full();
        if keys.is_empty() {
            return Err(self.unavailable("no keys loaded yet".into()));
        }
        Ok(keys)
    }

    /// The keys again for a token whose `kid` `seen` lacks: fetched anew
    /// unless a fetch ran within `min_refresh` (then what is there).
    pub async fn after_unknown_kid(&self, seen: &Arc<KeySet>) -> Arc<KeySet> {
        let _guard = self.refreshing.lock().await;
        let now = self.keys.load_full();
        if !Arc::ptr_eq(&now, seen) {
            // Another check refreshed while this one waited.
            return now;
        }
        if self.may_fetch() {
            let _ = self.fetch_and_install().await;
        }
        self.keys.load_full()
    }

    /// Whether a fetch is allowed now (`min_refresh` since the last).
    fn may_fetch(&self) -> bool {
        lock_time(&self.fetched).is_none_or(|at| at.elapsed() >= self.policy.min_refresh)
    }

    async fn refresh(&self) -> Result<(), KeysUnavailable> {
        let _guard = self.refreshing.lock().await;
        if !self.may_fetch() {
            return Ok(());
        }
        self.fetch_and_install().await
    }

    async fn fetch_and_install(&self) -> Result<(), KeysUnavailable> {
        *self.fetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let set = match &self.policy.source {
            KeySource::File(path) => read_file(path),
            KeySource::Url(endpoint) => {
                let request = Request {
                    method: "GET",
                    authorization: None,
                    body: None,
                };
                let fetched = fetch::send(endpoint, self.tls.as_ref(), &request, MAX_JWKS_BYTES);
                match tokio::time::timeout(self.policy.timeout, fetched).await {
                    Ok(Ok(body)) => KeySet::parse(&body).map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {:?}", self.policy.timeout)),
                }
            }
        };
        match set {
            Ok(set) => {
                self.install(set);
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(source = %self.policy.source, reason, "signing keys not refreshed; the old ones stay");
                Err(self.unavailable(reason))
            }
        }
    }

    fn install(&self, set: KeySet) {
        let changed = *self.keys.load_full() != set;
        if changed {
            tracing::info!(source = %self.policy.source, keys = set.len(), "signing keys loaded");
            self.keys.store(Arc::new(set));
        }
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn unavailable(&self, reason: String) -> KeysUnavailable {
        KeysUnavailable {
            from: self.policy.source.to_string(),
            reason,
        }
    }
}

fn lock_time(at: &Mutex<Option<Instant>>) -> Option<Instant> {
    *at.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_file(path: &std::path::Path) -> Result<KeySet, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "{}: larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}
