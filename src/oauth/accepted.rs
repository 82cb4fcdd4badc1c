//! Tokens accepted lately, so that a client's next login with the same
//! token (a mail client reconnecting, a webmail page view) costs a hash
//! and a lookup instead of a signature check or an introspection request.
//! One bounded LRU for the process, keyed by the token's SHA-256 and the
//! user it was accepted for — never the token itself — each entry good
//! until the token's `exp` and for at most `ttl`. A capacity of 0 keeps
//! nothing.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

type Key = ([u8; 32], String);

/// The process's accepted tokens.
pub struct Accepted {
    entries: Option<Mutex<lru::LruCache<Key, u64>>>,
    ttl: Duration,
}

impl Accepted {
    /// Keeps at most `capacity` tokens, each at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(lru::LruCache::new(c))),
            ttl,
        }
    }

    /// Until when `token` stays accepted for `user`, if it was accepted
    /// and that time is after `now` (seconds since the Unix epoch).
    pub fn get(&self, token: &[u8], user: &str, now: u64) -> Option<u64> {
        let entries = self.entries.as_ref()?;
        let key = (sha256(token), user.to_owned());
        let mut entries = entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(&until) if now < until => Some(until),
            Some(_) => {
                entries.pop(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers that `token` was accepted for `user` until `expires_at`
    /// (kept until then, and at most `ttl` from `now`).
    pub fn put(&self, token: &[u8], user: &str, expires_at: u64, now: u64) {
        let Some(entries) = &self.entries else { return };
        let until = expires_at.min(now.saturating_add(self.ttl.as_secs()));
        let key = (sha256(token), user.to_owned());
        entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, until);
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_remembered_for_its_user_until_its_exp_and_the_ttl() {
        let accepted = Accepted::new(2, Duration::from_secs(100));
        accepted.put(b"t1", "ann", 1_050, 1_000);
        assert_eq!(accepted.get(b"t1", "ann", 1_049), Some(1_050));
        assert_eq!(accepted.get(b"t1", "ann", 1_050), None, "expired");
        assert_eq!(accepted.get(b"t1", "bob", 1_000), None, "another user");
        accepted.put(b"t2", "ann", 5_000, 1_000);
        assert_eq!(
            accepted.get(b"t2", "ann", 1_099),
            Some(1_100),
            "bounded by the ttl"
        );
        assert_eq!(accepted.get(b"t2", "ann", 1_100), None);
        let off = Accepted::new(0, Duration::from_secs(100));
        off.put(b"t", "ann", 5_000, 1_000);
        assert_eq!(off.get(b"t", "ann", 1_000), None);
    }

    #[test]
    fn the_cache_is_bounded_by_its_capacity() {
        let accepted = Accepted::new(2, Duration::from_secs(100));
        for token in [&b"a"[..], b"b", b"c"] {
            accepted.put(token, "u", 2_000, 1_000);
        }
        assert_eq!(accepted.get(b"a", "u", 1_000), None, "the oldest went");
        assert!(accepted.get(b"c", "u", 1_000).is_some());
    }
}
