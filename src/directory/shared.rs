//! The process-wide layer of the route cache, behind every worker's own
//! LRU: what one worker looked up, every worker can use. A worker consults
//! it only on a miss of its own (so a local hit never touches it), and it
//! makes one directory lookup per user per TTL per process: the first
//! worker that misses both layers leads the lookup, the others wait for
//! its answer (single flight across workers), and whatever any worker last
//! saw is there to serve stale when the directory fails.
//!
//! It is a small sharded map rather than a crate: [`SHARDS`] LRUs (the
//! worker cache's own `Entries`, with its entry and byte bounds split
//! between them), each behind a `std::sync::Mutex` held for a map
//! operation only, never across an await; waiting for another worker's
//! lookup uses a `tokio::sync::watch` channel, which wakes tasks on any
//! thread. A concurrent map crate would add lock-free reads this layer does
//! not need (it is off the hot path) and would not give the LRU and byte
//! bound the worker caches already have.
//!
//! Invalidations reach it like the worker caches: each shard applies the
//! shared log's new entries the next time it is used.
//!
//! This module owns the shared entries and the cross-worker single flight;
//! it never calls a directory (the worker that leads does).

use super::entries::{Entries, Entry};
use super::{CacheSettings, DirectoryError, Invalidations, Route};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// Shards of the shared layer.
pub const SHARDS: usize = 16;

/// A lookup's outcome as waiting workers get it.
pub type Outcome = Option<Result<Option<Route>, DirectoryError>>;

struct Shard {
    entries: Entries,
    in_flight: HashMap<String, watch::Receiver<Outcome>>,
    /// The invalidation generation this shard has applied.
    seen: u64,
}

/// The process's route cache layer.
pub struct SharedRoutes {
    shards: Vec<Mutex<Shard>>,
    settings: CacheSettings,
    invalidations: Arc<Invalidations>,
}

/// What a worker that missed its own cache does next.
pub(super) enum Begin {
    /// A fresh entry: use it (and keep a copy).
    Fresh(Entry),
    /// Another worker is looking the user up: wait for its answer.
    Wait(watch::Receiver<Outcome>),
    /// Look the user up and hand the answer to [`Leader::finish`].
    Lead(Leader),
}

/// The right and duty to look one user up for the process; dropped without
/// [`Leader::finish`] (the client went away), it lets the next worker lead.
pub struct Leader {
    shared: Arc<SharedRoutes>,
    user: String,
    tx: Option<watch::Sender<Outcome>>,
}

impl SharedRoutes {
    /// An empty layer bounded by `settings` (entries and bytes for the
    /// whole process).
    pub fn new(settings: CacheSettings, invalidations: Arc<Invalidations>) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: Entries::new(
                        settings.capacity.div_ceil(SHARDS),
                        settings.max_bytes.div_ceil(SHARDS),
                    ),
                    in_flight: HashMap::new(),
                    seen: invalidations.generation(),
                })
            })
            .collect();
        Self {
            shards,
            settings,
            invalidations,
        }
    }

    /// The shard of `user`, with the invalidations since its last use
    /// applied.
    fn shard(&self, user: &str) -> MutexGuard<'_, Shard> {
        let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut shard = self.shards[hash as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let current = self.invalidations.generation();
        if current != shard.seen {
            match self.invalidations.users_since(shard.seen) {
                None => shard.entries.clear(),
                Some(users) if users.is_empty() => {}
                Some(users) => {
                    let invalidations = &self.invalidations;
                    shard
                        .entries
                        .remove_where(|key, entry| invalidations.names_match(&users, key, entry));
                }
            }
            shard.seen = current;
        }
        shard
    }

    /// A worker missed `user` in its own cache: a fresh entry, another
    /// worker's lookup to wait for, or the lead.
    pub(super) fn begin(self: &Arc<Self>, user: &str) -> Begin {
        let mut shard = self.shard(user);
        if let Some(entry) = shard.entries.get(user) {
            let ttl = if entry.route.is_some() {
                self.settings.ttl
            } else {
                self.settings.negative_ttl
            };
            if entry.fetched.elapsed() < ttl {
                return Begin::Fresh(entry.clone());
            }
        }
        if let Some(rx) = shard.in_flight.get(user) {
            return Begin::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        shard.in_flight.insert(user.to_owned(), rx);
        Begin::Lead(Leader {
            shared: self.clone(),
            user: user.to_owned(),
            tx: Some(tx),
        })
    }

    /// The newest answer any worker stored for `user`, if younger than
    /// `max_stale` (served when the directory fails).
    pub(super) fn stale(&self, user: &str) -> Option<Entry> {
        let shard = self.shard(user);
        let entry = shard.entries.peek(user)?;
        (entry.fetched.elapsed() < self.settings.max_stale).then(|| entry.clone())
    }

    /// Entries held now, in all shards.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Leader {
    /// Stores `answer`, the directory's answer as the leading worker
    /// stored it too (`None` after a failure, even when a stale route was
    /// served: the entry any worker saw last stays for stale-if-error), and
    /// hands `result` to the waiting workers.
    pub(super) fn finish(
        mut self,
        result: &Result<Option<Route>, DirectoryError>,
        answer: Option<Entry>,
    ) {
        let mut shard = self.shared.shard(&self.user);
        if let Some(entry) = answer {
            shard.entries.put(self.user.clone(), entry);
        }
        shard.in_flight.remove(&self.user);
        drop(shard);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(result.clone()));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Abandoned: waiters see the channel close and lead anew.
            self.shared.shard(&self.user).in_flight.remove(&self.user);
        }
    }
}
