//! Per-address login-failure limit: after `max_failures` failed logins
//! (wrong password or unknown user) from one client address within
//! `window`, further logins from that address are refused with a temporary
//! failure until the window that started with the first failure has passed.
//! The refused attempts never reach the directory or a back end, so a
//! password-guessing client costs neither LDAP queries nor Dovecot logins.
//!
//! One limiter per process ([`LoginFailures`]): `SO_REUSEPORT` spreads one
//! address's connections over the workers, and a limit per worker would
//! let an address make `workers × max_failures` failures. It is touched at
//! login only (a check, and a count per failure), under the lock of one of
//! [`SHARDS`] tables chosen by the address, so workers rarely meet there.
//! IPv6 clients are counted per /64, the smallest block a client usually
//! controls. Each table is an LRU bounded by its share of `capacity`
//! addresses: a flood of distinct addresses evicts the oldest entries
//! instead of growing memory.

use lru::LruCache;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Addresses remembered per process.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// Tables of [`LoginFailures`], each behind its own lock.
pub const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
}

/// The failure counts of one table.
#[derive(Debug)]
pub struct LoginRateLimit {
    max_failures: u32,
    window: Duration,
    table: LruCache<IpAddr, Failures>,
}

impl LoginRateLimit {
    /// `None` when `max_failures` is 0 (the limit is off).
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Option<Self> {
        if max_failures == 0 || window.is_zero() {
            return None;
        }
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Some(Self {
            max_failures,
            window,
            table: LruCache::new(capacity),
        })
    }

    /// Whether a login from `address` is refused at `now`.
    pub fn is_limited(&mut self, address: IpAddr, now: Instant) -> bool {
        let key = key(address);
        match self.table.peek(&key) {
            Some(f) if now.saturating_duration_since(f.window_start) >= self.window => {
                self.table.pop(&key);
                false
            }
            Some(f) => f.count >= self.max_failures,
            None => false,
        }
    }

    /// Counts a failed login from `address` at `now`.
    pub fn record_failure(&mut self, address: IpAddr, now: Instant) {
        let key = key(address);
        let window = self.window;
        match self.table.get_mut(&key) {
            Some(f) if now.saturating_duration_since(f.window_start) < window => {
                f.count = f.count.saturating_add(1);
            }
            _ => {
                self.table.put(
                    key,
                    Failures {
                        count: 1,
                        window_start: now,
                    },
                );
            }
        }
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

use crate::netaddr::client_key as key;

/// The failure counts of the process, shared by every worker.
#[derive(Debug)]
pub struct LoginFailures {
    shards: Vec<std::sync::Mutex<LoginRateLimit>>,
}

impl LoginFailures {
    /// `None` when `max_failures` is 0 (the limit is off); `capacity`
    /// addresses in all.
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> Option<Self> {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| {
                LoginRateLimit::new(max_failures, window, per_shard).map(std::sync::Mutex::new)
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { shards })
    }

    fn shard(&self, address: IpAddr) -> std::sync::MutexGuard<'_, LoginRateLimit> {
        let bits = match key(address) {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64,
        };
        let mixed = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        self.shards[mixed as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login from `address` is refused at `now`.
    pub fn is_limited(&self, address: IpAddr, now: Instant) -> bool {
        self.shard(address).is_limited(address, now)
    }

    /// Counts a failed login from `address` at `now`.
    pub fn record_failure(&self, address: IpAddr, now: Instant) {
        self.shard(address).record_failure(address, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_after_max_failures_within_the_window() {
        let mut limit = LoginRateLimit::new(3, Duration::from_secs(60), 100).unwrap();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert!(!limit.is_limited(a, t0), "attempt {i} must pass");
            limit.record_failure(a, t0 + Duration::from_secs(i));
        }
        assert!(limit.is_limited(a, t0 + Duration::from_secs(10)));
        assert!(
            !limit.is_limited(ip("192.0.2.2"), t0),
            "other addresses pass"
        );
        assert!(
            !limit.is_limited(a, t0 + Duration::from_secs(60)),
            "the window that began with the first failure has passed"
        );
        assert_eq!(limit.tracked(), 0, "an expired entry is dropped");
    }

    #[test]
    fn failures_spread_over_windows_do_not_add_up() {
        let mut limit = LoginRateLimit::new(2, Duration::from_secs(10), 100).unwrap();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        limit.record_failure(a, t0);
        limit.record_failure(a, t0 + Duration::from_secs(11));
        assert!(!limit.is_limited(a, t0 + Duration::from_secs(12)));
        limit.record_failure(a, t0 + Duration::from_secs(12));
        assert!(limit.is_limited(a, t0 + Duration::from_secs(13)));
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let mut limit = LoginRateLimit::new(1, Duration::from_secs(60), 100).unwrap();
        let t0 = Instant::now();
        limit.record_failure(ip("2001:db8:1:2::1"), t0);
        assert!(limit.is_limited(ip("2001:db8:1:2:ffff::9"), t0));
        assert!(!limit.is_limited(ip("2001:db8:1:3::1"), t0));
        limit.record_failure(ip("::ffff:192.0.2.7"), t0);
        assert!(limit.is_limited(ip("192.0.2.7"), t0));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut limit = LoginRateLimit::new(1, Duration::from_secs(60), 4).unwrap();
        let t0 = Instant::now();
        for i in 0..100u8 {
            limit.record_failure(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert_eq!(limit.tracked(), 4);
        assert!(limit.is_limited(ip("10.0.0.99"), t0));
        assert!(!limit.is_limited(ip("10.0.0.0"), t0), "evicted");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(LoginRateLimit::new(0, Duration::from_secs(60), 10).is_none());
        assert!(LoginFailures::new(0, Duration::from_secs(60), 10).is_none());
    }

    #[test]
    fn failures_counted_on_any_thread_add_up_to_one_limit() {
        let limit =
            std::sync::Arc::new(LoginFailures::new(30, Duration::from_secs(60), 1000).unwrap());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        assert!(!limit.is_limited(a, t0));
                        limit.record_failure(a, t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(limit.is_limited(a, t0), "30 failures from three workers");
        assert!(!limit.is_limited(ip("192.0.2.2"), t0));
    }
}
