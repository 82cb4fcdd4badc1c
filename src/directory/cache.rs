//! A per-worker LRU cache in front of any directory: short TTL, negative TTL,
//! single-flight, stale-if-error, and invalidation by user from any thread.
//!
//! Each worker has its own cache, so lookups take no lock shared across cores.
//! Invalidations (mailbox moves, from the admin interface) go through a shared
//! [`Invalidations`] log: a worker checks one atomic generation number per
//! lookup and only locks the log when it changed. A cached route is never a
//! credential: the back end still checks every password.

use super::entries::{Entries, Entry};
use super::name_form::KeyFormat;
use super::shared::{Begin, SharedRoutes};
use super::{Directory, DirectoryError, Lookup, LookupFuture, LookupRequest, Route, ServedBy};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Cache bounds and lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Entries per worker, and in the process-wide layer.
    pub capacity: usize,
    /// Bytes per worker and in the process-wide layer (keys and routes,
    /// found and negative entries alike; a worker in front of the
    /// process-wide layer counts its keys only, the routes are the layer's).
    pub max_bytes: usize,
    /// How long a found route is used without asking again.
    pub ttl: Duration,
    /// How long "no such user" is remembered.
    pub negative_ttl: Duration,
    /// How old an entry may be and still be served when the directory fails.
    pub max_stale: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_bytes: 32 * 1024 * 1024,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            max_stale: Duration::from_secs(3600),
        }
    }
}

/// Counters of one worker's cache.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from a fresh positive entry.
    pub hits: u64,
    /// Answered from a fresh negative entry.
    pub negative_hits: u64,
    /// Went to the directory.
    pub misses: u64,
    /// Waited for another session's lookup of the same user.
    pub coalesced: u64,
    /// Directory failed; a stale entry was served.
    pub stale: u64,
    /// Directory failed and nothing usable was cached.
    pub errors: u64,
    /// Answered from a fresh entry of the process-wide layer.
    pub shared_hits: u64,
}

impl CacheStats {
    /// Adds `other` (another worker's counters) into `self`.
    pub fn add(&mut self, other: &CacheStats) {
        self.hits += other.hits;
        self.negative_hits += other.negative_hits;
        self.misses += other.misses;
        self.coalesced += other.coalesced;
        self.stale += other.stale;
        self.errors += other.errors;
        self.shared_hits += other.shared_hits;
    }
}

/// Counters readable from other threads (the admin interface): relaxed
/// atomics owned by one worker, so incrementing them contends with nobody.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
    shared_hits: AtomicU64,
}

impl CacheCounters {
    /// The current values.
    pub fn snapshot(&self) -> CacheStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            negative_hits: get(&self.negative_hits),
            misses: get(&self.misses),
            coalesced: get(&self.coalesced),
            stale: get(&self.stale),
            errors: get(&self.errors),
            shared_hits: get(&self.shared_hits),
        }
    }

    fn store(&self, s: &CacheStats) {
        let set = |a: &AtomicU64, v| a.store(v, Ordering::Relaxed);
        set(&self.hits, s.hits);
        set(&self.negative_hits, s.negative_hits);
        set(&self.misses, s.misses);
        set(&self.coalesced, s.coalesced);
        set(&self.stale, s.stale);
        set(&self.errors, s.errors);
        set(&self.shared_hits, s.shared_hits);
    }
}

/// Invalidation requests, shared by every worker's cache.
///
/// A user has several names: what the client typed (`Carol7@Example.org`),
/// the directory's lookup key after the configured transformations
/// (`default_domain`, `query_key`, `strip_domain`, `lower_case`: `carol7`),
/// which is what a directory watch reports, and the name the back end logs
/// in as. Every name is reduced to its canonical form — the lookup key,
/// lower-cased — both when it is invalidated and when it is asked about, so
/// an invalidation by any of them reaches routes, sessions and parked
/// sessions known under any other.
#[derive(Debug, Default)]
pub struct Invalidations {
    generation: AtomicU64,
    /// The generation of the last "forget everything".
    cleared: AtomicU64,
    recent: Mutex<VecDeque<(u64, String)>>,
    /// How a typed name becomes the lookup key (replaced at reload).
    form: std::sync::RwLock<KeyFormat>,
}

/// Invalidations remembered for lagging workers; older ones clear a whole cache.
const INVALIDATIONS_KEPT: usize = 4096;

impl Invalidations {
    /// Invalidations of names in `form`'s canonical form.
    pub fn with_form(form: KeyFormat) -> Self {
        let invalidations = Self::default();
        invalidations.set_form(form);
        invalidations
    }

    /// The transformations of a reloaded configuration.
    pub fn set_form(&self, form: KeyFormat) {
        *self.form.write().unwrap_or_else(|p| p.into_inner()) = form;
    }

    /// The canonical form of `name`: its lookup key, lower-cased.
    pub fn canonical(&self, name: &str) -> String {
        let form = self.form.read().unwrap_or_else(|p| p.into_inner());
        form.key(name).to_lowercase()
    }

    /// Drops `user`'s cached route on every worker (at its next lookup),
    /// and retires its sessions; `user` may be any of its names.
    pub fn invalidate(&self, user: &str) {
        let canonical = self.canonical(user);
        let lower = user.to_lowercase();
        let mut recent = self.recent.lock().expect("invalidation log poisoned");
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        if canonical != lower {
            recent.push_back((generation, canonical));
        }
        recent.push_back((generation, lower));
        while recent.len() > INVALIDATIONS_KEPT {
            recent.pop_front();
        }
        self.generation.store(generation, Ordering::Release);
    }

    /// Drops every cached route on every worker (at its next lookup).
    pub fn invalidate_all(&self) {
        let mut recent = self.recent.lock().expect("invalidation log poisoned");
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        recent.clear();
        self.cleared.store(generation, Ordering::Release);
        self.generation.store(generation, Ordering::Release);
    }

    /// The current generation (to ask [`Self::invalidated_since`] later).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `user` (or everyone) was invalidated after generation `seen`
    /// (when the log no longer reaches back that far: yes).
    pub fn invalidated_since(&self, seen: u64, user: &str) -> bool {
        if self.generation() == seen {
            return false;
        }
        match self.since(seen) {
            None => true,
            Some(users) => {
                let canonical = self.canonical(user);
                users
                    .iter()
                    .any(|u| u.eq_ignore_ascii_case(user) || *u == canonical)
            }
        }
    }

    /// Users invalidated after `seen`, or `None` when the log no longer
    /// reaches back that far (the caller then forgets everything).
    pub(super) fn users_since(&self, seen: u64) -> Option<Vec<String>> {
        self.since(seen)
    }

    /// Whether the cache entry under `key` belongs to one of `users` (by
    /// the typed name, its canonical form, or the route's login name).
    pub(super) fn names_match(&self, users: &[String], key: &str, entry: &Entry) -> bool {
        let login = entry.route.as_ref().and_then(|r| r.login_user.as_deref());
        let (lower, canonical) = (key.to_lowercase(), self.canonical(key));
        users.iter().any(|u| {
            *u == lower || *u == canonical || login.is_some_and(|l| l.eq_ignore_ascii_case(u))
        })
    }

    fn since(&self, seen: u64) -> Option<Vec<String>> {
        let recent = self.recent.lock().expect("invalidation log poisoned");
        if self.cleared.load(Ordering::Acquire) > seen {
            return None;
        }
        match recent.front() {
            Some((first, _)) if *first > seen + 1 => None,
            _ => Some(
                recent
                    .iter()
                    .filter(|(g, _)| *g > seen)
                    .map(|(_, u)| u.clone())
                    .collect(),
            ),
        }
    }
}

type Shared = Option<Result<Option<Route>, DirectoryError>>;

/// The caching wrapper.
pub struct CachedDirectory<D> {
    inner: D,
    settings: CacheSettings,
    entries: RefCell<Entries>,
    in_flight: RefCell<HashMap<String, watch::Receiver<Shared>>>,
    invalidations: std::sync::Arc<Invalidations>,
    seen_generation: Cell<u64>,
    stats: Cell<CacheStats>,
    counters: Option<std::sync::Arc<CacheCounters>>,
    /// The process-wide layer consulted on a miss of this one.
    shared: Option<std::sync::Arc<SharedRoutes>>,
}

impl<D: Directory> CachedDirectory<D> {
    /// Wraps `inner`.
    pub fn new(
        inner: D,
        settings: CacheSettings,
        invalidations: std::sync::Arc<Invalidations>,
    ) -> Self {
        Self {
            inner,
            entries: RefCell::new(Entries::new(settings.capacity, settings.max_bytes)),
            settings,
            in_flight: RefCell::new(HashMap::new()),
            seen_generation: Cell::new(invalidations.generation.load(Ordering::Acquire)),
            invalidations,
            stats: Cell::new(CacheStats::default()),
            counters: None,
            shared: None,
        }
    }

    /// Consults `shared` (the process's layer) on a miss of this cache
    /// before asking the directory.
    /// This cache then points at the routes that layer holds (one copy of
    /// each route in the process) and counts only its own keys.
    pub fn with_shared(mut self, shared: std::sync::Arc<SharedRoutes>) -> Self {
        self.shared = Some(shared);
        self.entries = RefCell::new(Entries::index(
            self.settings.capacity,
            self.settings.max_bytes,
        ));
        self
    }

    /// Also publishes the counters for other threads (the admin interface).
    pub fn with_counters(mut self, counters: std::sync::Arc<CacheCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// This worker's counters.
    pub fn stats(&self) -> CacheStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
        if let Some(counters) = &self.counters {
            counters.store(&s);
        }
    }

    fn apply_invalidations(&self) {
        let current = self.invalidations.generation.load(Ordering::Acquire);
        if current == self.seen_generation.get() {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        match self.invalidations.since(self.seen_generation.get()) {
            None => entries.clear(),
            // A user is named by what clients type (the key) or by the name
            // the back end knows (the route's login user, what the
            // directory watch reports).
            Some(users) if users.is_empty() => {}
            Some(users) => entries
                .remove_where(|key, entry| self.invalidations.names_match(&users, key, entry)),
        }
        self.seen_generation.set(current);
    }

    fn fresh(&self, user: &str) -> Option<Option<Route>> {
        let mut entries = self.entries.borrow_mut();
        let entry = entries.get(user)?;
        let age = entry.fetched.elapsed();
        let ttl = if entry.route.is_some() {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        };
        (age < ttl).then(|| entry.route())
    }

    /// What this worker, or failing that any worker, last saw of `user`,
    /// if younger than `max_stale`.
    fn stale(&self, user: &str) -> Option<Option<Route>> {
        let local = self
            .entries
            .borrow()
            .peek(user)
            .filter(|e| e.fetched.elapsed() < self.settings.max_stale)
            .map(|e| (e.fetched, e.route()));
        let shared = self
            .shared
            .as_ref()
            .and_then(|s| s.stale(user))
            .map(|e| (e.fetched, e.route()));
        // The newer of the two.
        match (local, shared) {
            (Some(l), Some(s)) => Some(if s.0 > l.0 { s.1 } else { l.1 }),
            (l, s) => l.or(s).map(|(_, route)| route),
        }
    }

    async fn lookup_cached(&self, request: LookupRequest<'_>) -> Result<Lookup, DirectoryError> {
        let (result, served_by) = self.lookup_inner(request).await;
        result.map(|route| Lookup { route, served_by })
    }

    async fn lookup_inner(
        &self,
        request: LookupRequest<'_>,
    ) -> (Result<Option<Route>, DirectoryError>, ServedBy) {
        let user = request.user;
        self.apply_invalidations();
        loop {
            if let Some(route) = self.fresh(user) {
                self.count(|s| {
                    if route.is_some() {
                        s.hits += 1
                    } else {
                        s.negative_hits += 1
                    }
                });
                return (Ok(route), ServedBy::CacheHit);
            }
            let waiting = self.in_flight.borrow().get(user).cloned();
            let Some(mut rx) = waiting else { break };
            self.count(|s| s.coalesced += 1);
            let outcome = match rx.wait_for(Option::is_some).await {
                Ok(result) => result.clone(),
                // The leading lookup was abandoned (its client went away): lead anew.
                Err(_) => None,
            };
            if let Some(result) = outcome {
                return (result, ServedBy::CacheMiss);
            }
        }
        let (tx, rx) = watch::channel(None);
        self.in_flight.borrow_mut().insert(user.to_owned(), rx);
        let _leader = InFlightGuard {
            cache: &self.in_flight,
            user,
        };
        let (result, served_by) = self.resolve(request).await;
        if !is_personal(&result) {
            let _ = tx.send(Some(result.clone()));
        }
        // (An answer about this login only is not handed on: the sessions
        // waiting for it see the channel close and ask for themselves.)
        (result, served_by)
    }

    /// This worker leads `user`'s lookup: the process-wide layer, another
    /// worker's lookup, or the directory (this worker leading for the
    /// process).
    async fn resolve(
        &self,
        request: LookupRequest<'_>,
    ) -> (Result<Option<Route>, DirectoryError>, ServedBy) {
        let user = request.user;
        let leader = loop {
            let Some(shared) = &self.shared else {
                break None;
            };
            match shared.begin(user) {
                Begin::Fresh(entry) => {
                    let route = entry.route();
                    // Its age comes along: the TTL runs from the lookup.
                    self.entries.borrow_mut().put(user.to_owned(), entry);
                    self.count(|s| s.shared_hits += 1);
                    return (Ok(route), ServedBy::SharedHit);
                }
                Begin::Wait(mut rx) => {
                    self.count(|s| s.coalesced += 1);
                    match rx.wait_for(Option::is_some).await {
                        // Not stored here: it may be a stale route; the
                        // layer holds the fresh ones.
                        Ok(outcome) => {
                            let result = outcome.clone().expect("waited for Some");
                            return (result, ServedBy::CacheMiss);
                        }
                        // That worker's client went away: lead anew.
                        Err(_) => continue,
                    }
                }
                Begin::Lead(leader) => break Some(leader),
            }
        };
        self.count(|s| s.misses += 1);
        let mut stored = None;
        let result = match self.inner.lookup_for(request).await.map(|l| l.route) {
            Ok(Some(route)) if route.login_password.is_some() => Ok(Some(route)),
            Ok(route) => {
                // One copy of the route, here and in the process's layer.
                let entry = Entry::now(route.clone());
                self.entries
                    .borrow_mut()
                    .put(user.to_owned(), entry.clone());
                stored = Some(entry);
                Ok(route)
            }
            Err(e) if e.is_answer() => Err(e),
            Err(e) => match self.stale(user) {
                Some(route) => {
                    self.count(|s| s.stale += 1);
                    tracing::warn!(user, error = %e, "directory failed; serving a stale cached route");
                    Ok(route)
                }
                None => {
                    self.count(|s| s.errors += 1);
                    Err(e)
                }
            },
        };
        // An answer about this login only is abandoned, not finished: the
        // workers waiting for it ask for themselves.
        if let Some(leader) = leader.filter(|_| !is_personal(&result)) {
            leader.finish(&result, stored);
        }
        (result, ServedBy::CacheMiss)
    }
}

/// Removes the in-flight marker however the leading lookup ends.
struct InFlightGuard<'a> {
    cache: &'a RefCell<HashMap<String, watch::Receiver<Shared>>>,
    user: &'a str,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.cache.borrow_mut().remove(self.user);
    }
}

impl<D: Directory> Directory for CachedDirectory<D> {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        Box::pin(self.lookup_cached(request))
    }
}

/// Whether `result` answers one login rather than the user: a directory
/// that checked the password refused it, or gave a password of its own.
/// Such an answer is neither stored nor handed to another login.
fn is_personal(result: &Result<Option<Route>, DirectoryError>) -> bool {
    match result {
        Ok(Some(route)) => route.login_password.is_some(),
        Ok(None) => false,
        Err(e) => matches!(e, DirectoryError::Refused { .. }),
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
