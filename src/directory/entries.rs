//! The cache's store: an LRU bounded by entry count and by bytes, found and
//! negative entries alike, so that a flood of made-up user names (each a
//! negative entry keyed by what the client typed) cannot grow memory past
//! the budget.
//!
//! A route is kept once in the process: entries share it (`Arc`), and a
//! store that only points at routes another store holds (a worker's layer
//! in front of the process-wide one: [`Entries::index`]) counts its keys,
//! not the routes.

use super::Route;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Arc;
use tokio::time::Instant;

/// Bytes counted per entry besides its strings (the LRU node, the key and
/// route headers, the timestamp).
pub const ENTRY_OVERHEAD: usize = 128;

/// One cached answer.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The route, shared by every store that holds it; `None` for "no
    /// such user".
    pub route: Option<Arc<Route>>,
    /// When the directory gave it.
    pub fetched: Instant,
}

impl Entry {
    /// The directory's answer, given now.
    pub fn now(route: Option<Route>) -> Self {
        Self {
            route: route.map(Arc::new),
            fetched: Instant::now(),
        }
    }

    /// The route as a lookup returns it.
    pub fn route(&self) -> Option<Route> {
        self.route.as_deref().cloned()
    }

    fn cost(&self, key: &str, routes_counted: bool) -> usize {
        let route = match (&self.route, routes_counted) {
            (Some(r), true) => r.host.len() + r.login_user.as_ref().map_or(0, String::len),
            _ => 0,
        };
        ENTRY_OVERHEAD + key.len() + route
    }
}

/// The LRU and its byte count.
pub(super) struct Entries {
    lru: LruCache<String, Entry>,
    bytes: usize,
    max_bytes: usize,
    /// Whether the routes' own bytes count here (false for an index into
    /// another store).
    routes_counted: bool,
}

impl Entries {
    /// At most `capacity` entries and `max_bytes` bytes (both at least one
    /// entry's worth), routes counted: the store that owns its routes.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        Self {
            lru: LruCache::new(capacity),
            bytes: 0,
            max_bytes,
            routes_counted: true,
        }
    }

    /// Like [`Entries::new`] for a store whose routes are held (and
    /// counted) by another: a key and a pointer per entry.
    pub fn index(capacity: usize, max_bytes: usize) -> Self {
        Self {
            routes_counted: false,
            ..Self::new(capacity, max_bytes)
        }
    }

    /// The entry for `key`, marked as recently used.
    pub fn get(&mut self, key: &str) -> Option<&Entry> {
        self.lru.get(key)
    }

    /// The entry for `key`, leaving the order alone.
    pub fn peek(&self, key: &str) -> Option<&Entry> {
        self.lru.peek(key)
    }

    /// Stores `entry`, evicting the least recently used entries beyond the
    /// bounds.
    pub fn put(&mut self, key: String, entry: Entry) {
        self.bytes += entry.cost(&key, self.routes_counted);
        if let Some((old_key, old)) = self.lru.push(key, entry) {
            self.bytes -= old.cost(&old_key, self.routes_counted);
        }
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((k, e)) => self.bytes -= e.cost(&k, self.routes_counted),
                None => break,
            }
        }
    }

    /// Removes the entries `doomed` picks.
    pub fn remove_where(&mut self, doomed: impl Fn(&str, &Entry) -> bool) {
        let keys: Vec<String> = self
            .lru
            .iter()
            .filter(|(k, e)| doomed(k, e))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(e) = self.lru.pop(&key) {
                self.bytes -= e.cost(&key, self.routes_counted);
            }
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.lru.clear();
        self.bytes = 0;
    }

    /// Bytes held by the entries.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lru.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negative() -> Entry {
        Entry {
            route: None,
            fetched: Instant::now(),
        }
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest_entries() {
        let key = |i: usize| format!("{i:0>100}");
        let per_entry = ENTRY_OVERHEAD + 100;
        let mut entries = Entries::new(1000, 10 * per_entry);
        for i in 0..10 {
            entries.put(key(i), negative());
        }
        assert_eq!(
            (entries.len(), entries.bytes()),
            (10, 10 * per_entry),
            "at the budget"
        );
        entries.put(key(10), negative());
        assert_eq!(entries.len(), 10, "one over: the oldest goes");
        assert!(entries.peek(&key(0)).is_none() && entries.peek(&key(10)).is_some());
        entries.put(key(10), negative());
        assert_eq!(entries.bytes(), 10 * per_entry, "replacing counts once");
        entries.remove_where(|k, _| k == key(5));
        assert_eq!(entries.bytes(), 9 * per_entry);
        entries.clear();
        assert_eq!((entries.len(), entries.bytes()), (0, 0));
    }

    #[test]
    fn the_entry_count_still_bounds() {
        let mut entries = Entries::new(3, usize::MAX);
        for i in 0..5 {
            entries.put(i.to_string(), negative());
        }
        assert_eq!(entries.len(), 3);
        assert_eq!(entries.bytes(), 3 * (ENTRY_OVERHEAD + 1));
    }
}
