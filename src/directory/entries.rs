//! The cache's store: an LRU bounded by entry count and by bytes, found and
//! negative entries alike, so that a flood of made-up user names (each a
//! negative entry keyed by what the client typed) cannot grow a worker's
//! memory past the budget.

use super::Route;
use lru::LruCache;
use std::num::NonZeroUsize;
use tokio::time::Instant;

/// Bytes counted per entry besides its strings (the LRU node, the key and
/// route headers, the timestamp).
pub const ENTRY_OVERHEAD: usize = 128;

/// One cached answer.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The route; `None` for "no such user".
    pub route: Option<Route>,
    /// When the directory gave it.
    pub fetched: Instant,
}

impl Entry {
    fn cost(&self, key: &str) -> usize {
        let route = self.route.as_ref().map_or(0, |r| {
            r.host.len() + r.login_user.as_ref().map_or(0, String::len)
        });
        ENTRY_OVERHEAD + key.len() + route
    }
}

/// The LRU and its byte count.
pub(super) struct Entries {
    lru: LruCache<String, Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl Entries {
    /// At most `capacity` entries and `max_bytes` bytes (both at least one
    /// entry's worth).
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("at least one");
        Self {
            lru: LruCache::new(capacity),
            bytes: 0,
            max_bytes,
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
        self.bytes += entry.cost(&key);
        if let Some((old_key, old)) = self.lru.push(key, entry) {
            self.bytes -= old.cost(&old_key);
        }
        while self.bytes > self.max_bytes && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((k, e)) => self.bytes -= e.cost(&k),
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
                self.bytes -= e.cost(&key);
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
