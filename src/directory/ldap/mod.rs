//! The LDAP directory: a per-worker pool of bound connections (ldap3 on the
//! worker's tokio runtime), failover across servers in order, reconnect with
//! backoff, and a bounded time for every lookup.
//!
//! A lookup escapes the key into the filter (RFC 4515) and reads the one
//! entry found (`entry.rs`): the host (rewritten by [`HostRewrite`]), the
//! optional port and the optional back-end login name; several entries or
//! values are an error unless `ambiguous = "first"`. Inactive or unknown users are simply not
//! found by the configured filter, which the proxy answers exactly like a
//! wrong password. Trouble with the servers is a [`DirectoryError`].

mod config;
mod entry;
pub mod query;
pub mod watch;

pub use config::{LdapKind, KIND};
pub use entry::Ambiguity;

use super::host_rewrite::HostRewrite;
use super::name_form::KeyFormat;
use super::{
    Directory, DirectoryError, Lookup, LookupFuture, LookupRequest, Route, ServerFailures,
};
use crate::auth::Secret;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, SearchEntry};
use query::{QuerySpec, Scope};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How errors name this kind.
const KIND_NAME: &str = "LDAP";
/// Longest pause between reconnection attempts while every server is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after every server failed.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A lookup may take this many `timeout`s in all: connect (+ bind), the
/// search, and one retry of the search on a fresh connection.
const LOOKUP_TIMEOUTS: u32 = 3;

/// Everything needed to build an LDAP directory on a worker.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// What to search.
    pub query: QuerySpec,
    /// How login names become keys.
    pub key: KeyFormat,
    /// `host` rewriting.
    pub hosts: HostRewrite,
    /// Simple bind DN, if not anonymous.
    pub bind_dn: Option<String>,
    /// Its password (read from `bind_password_file`).
    pub bind_password: Option<Secret>,
    /// StartTLS on `ldap://` connections.
    pub starttls: bool,
    /// CA certificates (PEM) for `ldaps://` and StartTLS (the runtime builds
    /// the client config from it).
    pub ca_file: Option<std::path::PathBuf>,
    /// Bound on connect, bind, and each search.
    pub timeout: Duration,
    /// Connections per worker (each multiplexes concurrent searches).
    pub pool_size: usize,
    /// What several entries or values for one user mean.
    pub ambiguous: Ambiguity,
    /// A filter (with `%s`) that finds users whose mailbox is being moved:
    /// they get a temporary failure instead of "no such user".
    pub hold_filter: Option<String>,
    /// Keep a content-sync search open and report every change (RFC 4533).
    pub watch: bool,
}

/// One worker's LDAP directory.
pub struct LdapDirectory {
    settings: Arc<LdapSettings>,
    tls: Option<Arc<rustls::ClientConfig>>,
    attributes: Vec<String>,
    connections: RefCell<Vec<Option<Ldap>>>,
    next: Cell<usize>,
    connecting: tokio::sync::Mutex<()>,
    retry_at: Cell<Option<Instant>>,
    backoff: Cell<Duration>,
    /// Whether the last lookup reached a server (read by `/readyz`).
    health: Arc<AtomicBool>,
}

impl LdapDirectory {
    /// A directory that connects on first use; `tls` is the client config
    /// built from `settings.ca_file`, if any.
    pub fn new(settings: Arc<LdapSettings>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let attributes = settings.query.attributes();
        Self {
            connections: RefCell::new(vec![None; settings.pool_size.max(1)]),
            settings,
            tls,
            attributes,
            next: Cell::new(0),
            connecting: tokio::sync::Mutex::new(()),
            retry_at: Cell::new(None),
            backoff: Cell::new(FIRST_BACKOFF),
            health: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Publishes reachability to `health` (true until a lookup fails to
    /// reach any server, true again after the next success).
    pub fn with_health(mut self, health: Arc<AtomicBool>) -> Self {
        self.health = health;
        self
    }

    async fn lookup_route(&self, user: &str) -> Result<Option<Route>, DirectoryError> {
        let key = self.settings.key.key(user);
        let filter = query::filter_for(&self.settings.query.filter, &key);
        let slot = self.next.get() % self.settings.pool_size.max(1);
        self.next.set(self.next.get().wrapping_add(1));
        // A pooled connection may have died (server restarted): one retry on
        // a fresh connection before giving up.
        let mut last_error = None;
        for _attempt in 0..2 {
            let mut ldap = match self.connection(slot).await {
                Ok(ldap) => ldap,
                Err(e) => {
                    self.health.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            };
            match self.search(&mut ldap, &filter).await {
                Ok(entries) if entries.is_empty() && self.settings.hold_filter.is_some() => {
                    self.health.store(true, Ordering::Relaxed);
                    return self.held(&mut ldap, user, &key).await;
                }
                Ok(entries) => {
                    self.health.store(true, Ordering::Relaxed);
                    return entry::route_from(&self.settings, user, entries);
                }
                Err(e) => {
                    self.connections.borrow_mut()[slot] = None;
                    last_error = Some(e);
                }
            }
        }
        self.health.store(false, Ordering::Relaxed);
        Err(last_error.expect("the loop ran and failed at least once"))
    }

    /// A user the main filter does not find: held (a mailbox being moved)
    /// when the hold filter finds them, else unknown.
    async fn held(
        &self,
        ldap: &mut Ldap,
        user: &str,
        key: &str,
    ) -> Result<Option<Route>, DirectoryError> {
        let Some(hold) = &self.settings.hold_filter else {
            return Ok(None);
        };
        let entries = self.search(ldap, &query::filter_for(hold, key)).await?;
        if entries.is_empty() {
            Ok(None)
        } else {
            Err(DirectoryError::Held {
                user: user.to_owned(),
            })
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        filter: &str,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let q = &self.settings.query;
        let scope = match q.scope {
            Scope::Base => ldap3::Scope::Base,
            Scope::One => ldap3::Scope::OneLevel,
            Scope::Sub => ldap3::Scope::Subtree,
        };
        let failed = |e: ldap3::LdapError| DirectoryError::Query {
            kind: KIND_NAME,
            detail: format!("search of {}: {e}", q.base),
        };
        let result = ldap
            .with_timeout(self.settings.timeout)
            .search(&q.base, scope, filter, &self.attributes)
            .await
            .map_err(failed)?;
        let (entries, _) = result.success().map_err(failed)?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// The pooled connection in `slot`, connecting (with failover) if needed.
    async fn connection(&self, slot: usize) -> Result<Ldap, DirectoryError> {
        if let Some(ldap) = self.live(slot) {
            return Ok(ldap);
        }
        let _guard = self.connecting.lock().await;
        if let Some(ldap) = self.live(slot) {
            return Ok(ldap);
        }
        if let Some(at) = self.retry_at.get() {
            let now = Instant::now();
            if now < at {
                return Err(DirectoryError::BackingOff {
                    kind: KIND_NAME,
                    wait: at - now,
                });
            }
        }
        let mut errors = ServerFailures::default();
        for server in &self.settings.query.servers {
            match self.connect(server).await {
                Ok(ldap) => {
                    self.retry_at.set(None);
                    self.backoff.set(FIRST_BACKOFF);
                    self.connections.borrow_mut()[slot] = Some(ldap.clone());
                    return Ok(ldap);
                }
                Err(e) => {
                    tracing::warn!(server, "LDAP server unusable: {e}");
                    errors.0.push((server.clone(), e));
                }
            }
        }
        let backoff = self.backoff.get();
        self.retry_at.set(Some(Instant::now() + backoff));
        self.backoff.set((backoff * 2).min(MAX_BACKOFF));
        Err(DirectoryError::Unreachable {
            kind: KIND_NAME,
            failures: errors,
        })
    }

    fn live(&self, slot: usize) -> Option<Ldap> {
        let mut connections = self.connections.borrow_mut();
        let slot = &mut connections[slot];
        if slot.as_mut().is_some_and(|ldap| !ldap.is_closed()) {
            return slot.clone();
        }
        *slot = None;
        None
    }

    async fn connect(&self, server: &str) -> Result<Ldap, String> {
        connect(&self.settings, self.tls.as_ref(), server).await
    }
}

impl Directory for LdapDirectory {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        let user = request.user;
        Box::pin(async move {
            // Bound the whole lookup: connect + bind + search (+ one retry).
            let limit = self.settings.timeout * LOOKUP_TIMEOUTS;
            match tokio::time::timeout(limit, self.lookup_route(user)).await {
                Ok(result) => result.map(Lookup::direct),
                Err(_) => Err(DirectoryError::Timeout {
                    kind: KIND_NAME,
                    after: limit,
                }),
            }
        })
    }
}

/// A connection to `server`, bound as configured (StartTLS and TLS roots
/// from `tls`): what lookups and the watcher share.
pub(super) async fn connect(
    s: &LdapSettings,
    tls: Option<&Arc<rustls::ClientConfig>>,
    server: &str,
) -> Result<Ldap, String> {
    let mut conn_settings = LdapConnSettings::new()
        .set_conn_timeout(s.timeout)
        .set_starttls(s.starttls && server.starts_with("ldap://"));
    if let Some(tls) = tls {
        conn_settings = conn_settings.set_config(tls.clone());
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, server)
        .await
        .map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    if let (Some(dn), Some(password)) = (&s.bind_dn, &s.bind_password) {
        let password =
            std::str::from_utf8(password.expose()).map_err(|_| "bind password is not UTF-8")?;
        ldap.with_timeout(s.timeout)
            .simple_bind(dn, password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("bind as {dn}: {e}"))?;
    }
    Ok(ldap)
}
