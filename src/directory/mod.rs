//! Where a user's mailbox lives: the `Directory` trait and its implementations.
//!
//! A directory maps a login name to a [`Route`]: the back-end host (and
//! optionally port and back-end login name). It never sees passwords: a route
//! is not a credential, the back end decides whether the password is right.
//! Implementations are created once per worker; lookups must not block the
//! worker's thread (the static map is in memory; network directories are async).
//! Directories are built by the runtime (one per worker, with its cache) from
//! the settings types defined here; nothing here reads the configuration.

pub mod cache;
pub mod changes;
mod entries;
pub mod host_rewrite;
pub mod http;
pub mod kind;
pub mod ldap;
pub mod name_form;
pub mod shared;
pub mod sql;
pub(crate) mod static_map;

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
    /// Password to log in with at the back end, when the directory checked
    /// the client's and gives another (an auth_http server's `Auth-Pass`).
    /// Such a route answers one login only: it is never cached or shared.
    pub login_password: Option<crate::auth::Secret>,
}

impl Route {
    /// A route to `host` (on the protocol's port unless `port`).
    pub fn to(host: impl Into<String>, port: Option<u16>) -> Self {
        Self {
            host: host.into(),
            port,
            login_user: None,
            login_password: None,
        }
    }
}

/// What a lookup is asked with. Most kinds read only `user`; a directory
/// that also authenticates (an auth_http server) is told the rest, as
/// nginx's mail proxy tells it.
#[derive(Debug, Clone, Copy)]
pub struct LookupRequest<'a> {
    /// The name as the client typed it.
    pub user: &'a str,
    /// The client's password, for directories that check it.
    pub password: Option<&'a crate::auth::Secret>,
    /// The listener's protocol (`imap`, `pop3`, `managesieve`).
    pub protocol: &'a str,
    /// Where the client connects from.
    pub client: Option<std::net::IpAddr>,
    /// Which login of this connection this is (1 for the first).
    pub attempt: u32,
}

impl<'a> LookupRequest<'a> {
    /// A request that names the user only.
    pub fn user(user: &'a str) -> Self {
        Self {
            user,
            password: None,
            protocol: "imap",
            client: None,
            attempt: 1,
        }
    }
}

/// A lookup's answer and who gave it (for the latency metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The route; `None` when the user is unknown (or inactive).
    pub route: Option<Route>,
    /// Who answered.
    pub served_by: ServedBy,
}

impl Lookup {
    /// An answer from the directory itself (no cache in between).
    pub fn direct(route: Option<Route>) -> Self {
        Self {
            route,
            served_by: ServedBy::Directory,
        }
    }
}

/// Who answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// The directory, with no cache in front of it.
    Directory,
    /// A fresh cache entry.
    CacheHit,
    /// A fresh entry of the process-wide layer (another worker's lookup).
    SharedHit,
    /// The cache, after asking the directory (or waiting for another
    /// session's lookup of the same user, or serving a stale entry).
    CacheMiss,
}

/// Why a lookup could not be answered (as opposed to "no such user"); the
/// client gets a temporary failure. Every message names the kind of
/// directory (`LDAP`, `SQL`, …) and, where one is at fault, the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The whole lookup (connect, bind, query, one retry) ran out of time.
    #[error("{kind} lookup timed out after {after:?}")]
    Timeout {
        /// The kind of directory.
        kind: &'static str,
        /// The bound that ran out.
        after: std::time::Duration,
    },
    /// Every server failed a moment ago; lookups wait for the backoff.
    #[error("{kind} directory unreachable: every server failed recently; waiting {wait:?} before reconnecting")]
    BackingOff {
        /// The kind of directory.
        kind: &'static str,
        /// Until the next attempt.
        wait: std::time::Duration,
    },
    /// No server could be connected to (or bound to).
    #[error("{kind} directory unreachable: {failures}")]
    Unreachable {
        /// The kind of directory.
        kind: &'static str,
        /// Each server tried and why it failed.
        failures: ServerFailures,
    },
    /// The directory's entry for a user cannot be used as it is (several
    /// entries or values, a host or port that does not parse).
    #[error("{kind} entry of {user:?} unusable: {detail}")]
    BadEntry {
        /// The kind of directory.
        kind: &'static str,
        /// The user looked up.
        user: String,
        /// What is wrong, with the values.
        detail: String,
    },
    /// The user's mailbox is being moved (`hold_filter` matches): try again
    /// later. Never answered from a stale cache entry.
    #[error("{user:?} is held while the mailbox moves")]
    Held {
        /// The user looked up.
        user: String,
    },
    /// The directory checked the login and refused it (an auth_http
    /// server's `Auth-Status`): answered like a wrong password, after
    /// `wait` when the server asks for one. About this login only: never
    /// cached, never handed to another login of the same user.
    #[error("{kind} refused the login: {reason}")]
    Refused {
        /// The kind of directory.
        kind: &'static str,
        /// What the server said (logged, never shown to the client).
        reason: String,
        /// How long to wait before answering (`Auth-Wait`).
        wait: Option<std::time::Duration>,
    },
    /// A query failed on a connected server.
    #[error("{kind} query failed: {detail}")]
    Query {
        /// The kind of directory.
        kind: &'static str,
        /// What the client library or server said, with what was asked.
        detail: String,
    },
}

impl DirectoryError {
    /// Whether this is the directory's answer about the user (served as
    /// is), rather than trouble reaching it (a stale route may be served).
    pub fn is_answer(&self) -> bool {
        matches!(
            self,
            DirectoryError::Held { .. } | DirectoryError::Refused { .. }
        )
    }
}

/// Each server tried and why it failed, in failover order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFailures(pub Vec<(String, String)>);

impl std::fmt::Display for ServerFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (server, why)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{server}: {why}")?;
        }
        Ok(())
    }
}

/// The boxed future a lookup returns (workers are single-threaded, so not `Send`).
pub type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Lookup, DirectoryError>> + 'a>>;

/// A source of routes.
pub trait Directory {
    /// Looks up `request.user` as typed by the client.
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a>;

    /// Looks up `user` with nothing else known of the login.
    fn lookup<'a>(&'a self, user: &'a str) -> LookupFuture<'a> {
        self.lookup_for(LookupRequest::user(user))
    }
}

impl<D: Directory + ?Sized> Directory for std::rc::Rc<D> {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        (**self).lookup_for(request)
    }
}

impl<D: Directory + ?Sized> Directory for std::sync::Arc<D> {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        (**self).lookup_for(request)
    }
}
