//! Connection caps, applied when a connection is accepted and before it
//! costs anything else: connections open in all ([`Admission`] counts every
//! worker's), connections from one client address (IPv4 address, IPv6 /64),
//! and connections not logged in yet. A connection over a cap gets a
//! one-line refusal and is closed; a connection within them gets an
//! [`Admitted`] that gives its places back when the session ends.
//!
//! The counts are shared by the workers — one atomic update per cap and a
//! short lock on one of [`SHARDS`] per-address tables per connection, about
//! a hundred nanoseconds next to the tens of microseconds an accept and a
//! close cost — so the caps are exact instead of split unevenly over
//! workers by `SO_REUSEPORT`'s hashing.

use crate::config::Limits;
use crate::metrics::Refusal;
use crate::netaddr::{client_key, Network};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Per-address tables, each behind its own lock.
pub const SHARDS: usize = 16;
/// Descriptors kept out of the connection budget: listeners, LDAP
/// connections, the admin listener, log files, spares.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The caps themselves; replaced whole when the configuration is reloaded.
#[derive(Debug)]
struct Caps {
    max_total: usize,
    max_preauth: usize,
    max_per_address: usize,
    exempt: Vec<Network>,
}

impl Caps {
    /// The caps of `limits`; `max_connections = 0` takes what
    /// `descriptors` (the process's descriptor limit) leaves after the
    /// reserve and `max_pipes` pipes, two descriptors per session.
    fn new(limits: &Limits, descriptors: u64, max_pipes: usize) -> Self {
        let max_total = match limits.max_connections {
            0 => {
                let spare = descriptors
                    .saturating_sub(RESERVED_DESCRIPTORS)
                    .saturating_sub(2 * max_pipes as u64);
                usize::try_from(spare / 2).unwrap_or(usize::MAX).max(1)
            }
            n => n,
        };
        let max_preauth = match limits.max_preauth_connections {
            0 => (max_total / 4).max(1),
            n => n,
        };
        Self {
            max_total,
            max_preauth,
            max_per_address: limits.max_connections_per_address,
            exempt: limits.exempt_networks.clone(),
        }
    }
}

/// The caps and what is open against them.
#[derive(Debug)]
pub struct Admission {
    caps: arc_swap::ArcSwap<Caps>,
    total: AtomicUsize,
    preauth: AtomicUsize,
    per_address: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

impl Admission {
    /// The caps of `limits`; `max_connections = 0` takes what
    /// `descriptors` (the process's descriptor limit) leaves after the
    /// reserve and `max_pipes` pipes, two descriptors per session.
    pub fn new(limits: &Limits, descriptors: u64, max_pipes: usize) -> Self {
        Self {
            caps: arc_swap::ArcSwap::from_pointee(Caps::new(limits, descriptors, max_pipes)),
            total: AtomicUsize::new(0),
            preauth: AtomicUsize::new(0),
            per_address: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// New caps (a reloaded configuration): connections already open stay
    /// and count against them.
    pub fn set_caps(&self, limits: &Limits, descriptors: u64, max_pipes: usize) {
        self.caps
            .store(Arc::new(Caps::new(limits, descriptors, max_pipes)));
    }

    /// The cap on connections in all.
    pub fn max_total(&self) -> usize {
        self.caps.load().max_total
    }

    /// The cap on connections not logged in yet.
    pub fn max_preauth(&self) -> usize {
        self.caps.load().max_preauth
    }

    /// Takes a place for a connection from `peer`, or says which cap
    /// refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let caps = self.caps.load();
        if !take(&self.total, caps.max_total) {
            return Err(Refusal::TooManyConnections);
        }
        if !take(&self.preauth, caps.max_preauth) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyPreAuth);
        }
        let mut admitted = Admitted {
            admission: self.clone(),
            address: None,
            preauth: true,
        };
        if caps.max_per_address > 0 && !caps.exempt.iter().any(|n| n.contains(peer)) {
            let key = client_key(peer);
            let mut table = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
            let count = table.entry(key).or_default();
            if *count >= caps.max_per_address {
                drop(table);
                return Err(Refusal::TooManyFromAddress); // `admitted` gives back the rest
            }
            *count += 1;
            admitted.address = Some(key);
        }
        Ok(admitted)
    }

    /// The table `key` lives in: the address bits (an IPv6 key is its /64)
    /// mixed by a multiplicative hash.
    fn shard(&self, key: IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let bits = match key {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64,
        };
        let mixed = bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.per_address[mixed as usize % SHARDS]
    }

    /// Connections open, and of those not logged in yet.
    pub fn open(&self) -> (usize, usize) {
        (
            self.total.load(Ordering::Relaxed),
            self.preauth.load(Ordering::Relaxed),
        )
    }
}

/// Increments `count` if it is below `max`.
fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// A connection's places under the caps, given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    address: Option<IpAddr>,
    preauth: bool,
}

impl Admitted {
    /// The session logged in: it no longer counts against the pre-auth cap.
    pub fn logged_in(&mut self) {
        if std::mem::take(&mut self.preauth) {
            self.admission.preauth.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.logged_in();
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(key) = self.address {
            let mut table = self
                .admission
                .shard(key)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(count) = table.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    table.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, preauth: usize, per_address: usize) -> Arc<Admission> {
        let limits = Limits {
            max_connections: total,
            max_preauth_connections: preauth,
            max_connections_per_address: per_address,
            exempt_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..Limits::default()
        };
        Arc::new(Admission::new(&limits, 20_000, 1024))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_cap_admits_up_to_its_value_and_frees_on_drop() {
        let a = admission(3, 3, 100);
        let held: Vec<_> = (0..3)
            .map(|i| a.admit(ip(&format!("192.0.2.{i}"))).unwrap())
            .collect();
        assert_eq!(
            a.admit(ip("192.0.2.9")).unwrap_err(),
            Refusal::TooManyConnections
        );
        drop(held);
        assert_eq!(a.open(), (0, 0));
        assert!(a.admit(ip("192.0.2.9")).is_ok());
    }

    #[test]
    fn logging_in_frees_the_preauth_place_only() {
        let a = admission(10, 2, 100);
        let mut first = a.admit(ip("192.0.2.1")).unwrap();
        let _second = a.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(
            a.admit(ip("192.0.2.3")).unwrap_err(),
            Refusal::TooManyPreAuth
        );
        first.logged_in();
        first.logged_in();
        assert_eq!(a.open(), (2, 1));
        let _third = a.admit(ip("192.0.2.3")).unwrap();
        assert_eq!(a.open(), (3, 2));
    }

    #[test]
    fn one_address_is_capped_by_ipv4_address_and_ipv6_64_unless_exempt() {
        let a = admission(100, 100, 2);
        let _held = [
            a.admit(ip("192.0.2.1")).unwrap(),
            a.admit(ip("192.0.2.1")).unwrap(),
        ];
        assert_eq!(
            a.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        assert!(a.admit(ip("192.0.2.2")).is_ok(), "another address");
        let _v6 = [
            a.admit(ip("2001:db8:0:1::1")).unwrap(),
            a.admit(ip("2001:db8:0:1::2")).unwrap(),
        ];
        assert_eq!(
            a.admit(ip("2001:db8:0:1:ffff::9")).unwrap_err(),
            Refusal::TooManyFromAddress,
            "same /64"
        );
        let exempt: Vec<_> = (0..5).map(|_| a.admit(ip("10.1.2.3")).unwrap()).collect();
        assert_eq!(exempt.len(), 5);
        // Held: two IPv4, two IPv6, five exempt (the 192.0.2.2 one was let go).
        assert_eq!(a.open().0, 2 + 2 + 5, "refusals gave their places back");
    }

    #[test]
    fn the_automatic_cap_follows_the_descriptor_limit() {
        let limits = Limits::default();
        let a = Admission::new(&limits, 20_000, 1024);
        assert_eq!(a.max_total(), (20_000 - 256 - 2048) / 2);
        assert_eq!(a.max_preauth(), a.max_total() / 4);
    }
}
