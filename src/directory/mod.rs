//! Where a user's mailbox lives: the `Directory` trait and its implementations.
//!
//! A directory maps a login name to a [`Route`]: the back-end host (and
//! optionally port and back-end login name). It never sees passwords: a route
//! is not a credential, the back end decides whether the password is right.
//! Implementations are created once per worker; lookups must not block the
//! worker's thread (the static map is in memory; network directories are async).

pub mod cache;
pub mod host_rewrite;
pub mod ldap;
mod static_map;

pub use cache::{CacheCounters, CacheSettings, CacheStats, CachedDirectory, Invalidations};
pub use host_rewrite::HostRewrite;
pub use ldap::LdapDirectory;
pub use static_map::{StaticMap, StaticMapError};

use std::future::Future;
use std::pin::Pin;

/// Where to send one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host name or IP literal of the back end.
    pub host: String,
    /// Port, when the directory names one; else the protocol's configured port.
    pub port: Option<u16>,
    /// Name to log in with at the back end, when it differs from the client's.
    pub login_user: Option<String>,
}

/// Why a lookup could not be answered (as opposed to "no such user").
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    /// The directory service failed or timed out; the client gets a temporary failure.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// The boxed future a lookup returns (workers are single-threaded, so not `Send`).
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Route>, DirectoryError>> + 'a>>;

/// A source of routes. `Ok(None)` means the user is unknown (or inactive).
pub trait Directory {
    /// Looks up `user` as typed by the client.
    fn lookup<'a>(&'a self, user: &'a str) -> LookupFuture<'a>;

    /// For caches: whether the lookup that completed last was answered from
    /// the cache (read right after awaiting a lookup, before yielding).
    fn last_lookup_cached(&self) -> Option<bool> {
        None
    }
}
