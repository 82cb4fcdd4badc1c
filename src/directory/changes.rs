//! What a directory's change feed reports (LDAP's content-sync watch
//! today): changes to users' entries, the feed's state for `/metrics` and
//! the admin interface, and how its first contact went. The runtime applies
//! the changes (cached routes dropped, sessions on the wrong box ended).

use super::Route;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// A change to one user's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Added or modified (or reported in a refresh): the user's route now.
    Route {
        /// The user as they log in (the value of the attribute the filter
        /// compares with the login, e.g. `mail`), lower-cased.
        identity: String,
        /// Where the entry routes now.
        route: Route,
    },
    /// Deleted, or no longer matched by the filter (de-activated, held).
    Gone {
        /// As in [`Change::Route`].
        identity: String,
    },
    /// The watch (re)connected and may have missed changes: forget every
    /// cached route.
    Resync,
}

/// What the rest of the process reads of the watch.
#[derive(Debug, Default)]
pub struct WatchStatus {
    /// Whether the content-sync search is open.
    pub up: AtomicBool,
    /// Changes reported since start.
    pub changes: AtomicU64,
    /// Sessions ended because their mailbox moved.
    pub kicked: AtomicU64,
}

/// How the watch's first connection went (reported once at start).
#[derive(Debug)]
pub enum FirstContact {
    /// The content-sync search is open and its refresh is done.
    Up,
    /// The server refused the watch: `syncprov` is not loaded, or a server
    /// limit cut the search.
    Refused(String),
    /// No server could be reached; the watch keeps trying.
    Unreachable(String),
}
