//! What a change from the directory watch does: the user's cached route is
//! dropped on every worker, and (with `kick_on_move`) the user's sessions on
//! a back end that is no longer theirs are ended, as `admin kick` ends them,
//! counted and logged with the old and the new back end.

use crate::directory::changes::{Change, WatchStatus};
use crate::directory::{Invalidations, Route};
use crate::registry::Registry;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Applies watch changes to the caches and sessions.
pub struct Moves {
    /// Every worker's invalidations.
    pub invalidations: Arc<Invalidations>,
    /// Every worker's sessions.
    pub registries: Vec<Arc<Registry>>,
    /// End sessions that are on the wrong back end.
    pub kick_on_move: bool,
    /// Where kicks are counted.
    pub status: Arc<WatchStatus>,
}

impl Moves {
    /// Applies one change (called on the watch's thread).
    pub fn apply(&self, change: Change) {
        match change {
            Change::Resync => self.invalidations.invalidate_all(),
            Change::Route { identity, route } => {
                self.invalidations.invalidate(&identity);
                if self.kick_on_move {
                    // Resolved only if the user has a session here.
                    let mut addresses = None;
                    self.kick(&identity, &route.host, |backend| {
                        addresses
                            .get_or_insert_with(|| addresses_of(&route))
                            .contains(&backend.ip())
                    });
                }
            }
            Change::Gone { identity } => {
                self.invalidations.invalidate(&identity);
                if self.kick_on_move {
                    self.kick(&identity, "-", |_| false);
                }
            }
        }
    }

    fn kick(&self, identity: &str, new: &str, mut still_right: impl FnMut(SocketAddr) -> bool) {
        let old: Vec<SocketAddr> = self
            .registries
            .iter()
            .flat_map(|registry| registry.kick_moved(identity, &mut still_right))
            .collect();
        if !old.is_empty() {
            self.status
                .kicked
                .fetch_add(old.len() as u64, Ordering::Relaxed);
            let distinct: HashSet<String> = old.iter().map(ToString::to_string).collect();
            tracing::info!(
                user = identity,
                kicked = old.len(),
                old = ?distinct,
                new,
                "mailbox moved: sessions on the old back end ended"
            );
        }
    }
}

/// The addresses a route's host stands for (resolved here, on the watch's
/// thread; a name that does not resolve stands for none).
fn addresses_of(route: &Route) -> HashSet<IpAddr> {
    if let Ok(ip) = route.host.parse::<IpAddr>() {
        return HashSet::from([ip]);
    }
    (route.host.as_str(), 0)
        .to_socket_addrs()
        .map(|found| found.map(|a| a.ip()).collect())
        .unwrap_or_default()
}
