//! Connection caps, applied when a connection is accepted and before it
//! costs anything else: connections open in all ([`Admission`] counts every
//! worker's), connections not logged in yet, and of those, the ones from
//! one client address (IPv4 address, IPv6 /64). Logged-in sessions are not
//! capped per address: thousands of users may share one carrier-grade NAT
//! address. A connection over a cap gets a one-line refusal and is closed;
//! a connection within them gets an [`Admitted`] that gives its places back
//! when the session ends.
//!
//! At `max_preauth_connections` a newcomer is not refused: it takes the
//! place of the pre-auth connection that has waited longest without
//! completing a command, from the address that holds the most pre-auth
//! places (addresses in `exempt_networks` last), and that connection is
//! told to close ([`Admitted::evicted`]). A crowd of slow strangers thus
//! evicts itself, never an honest client that logs in at once (Dovecot's
//! login processes do the same: "Connection queue full").
//!
//! The counts are shared by the workers: one atomic update per cap and a
//! short lock on the pre-auth lot per connection (admission, login, close),
//! about a hundred nanoseconds next to the tens of microseconds an accept
//! and a close cost, so the caps are exact instead of split unevenly over
//! workers by `SO_REUSEPORT`'s hashing. An eviction scans the lot's
//! addresses (a few thousand at most: the pre-auth cap bounds them).

use crate::config::Limits;
use crate::metrics::Refusal;
use crate::netaddr::{client_key, Network};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Descriptors kept out of the connection budget: listeners, LDAP
/// connections, the admin listener, log files, spares.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The caps themselves; replaced whole when the configuration is reloaded.
#[derive(Debug)]
struct Caps {
    max_total: usize,
    max_preauth: usize,
    max_per_address: usize,
    max_per_user_address: usize,
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
            max_per_address: limits.max_preauth_per_address,
            max_per_user_address: limits.max_sessions_per_user_address,
            exempt: limits.exempt_networks.clone(),
        }
    }
}

/// One connection not logged in yet, as the lot sees it.
#[derive(Debug)]
struct Waiting {
    /// When it was admitted or last completed a command, in nanoseconds
    /// after the admission's epoch.
    since: AtomicU64,
    /// Its pre-auth place is given back (logged in, closed) or taken over
    /// (evicted): whoever sets this first settles the place.
    released: AtomicBool,
    /// Told to close.
    evicted: AtomicBool,
    wake: tokio::sync::Notify,
}

/// The pre-auth connections by client address.
#[derive(Debug, Default)]
struct Lot {
    by_address: HashMap<IpAddr, Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    exempt: bool,
    waiting: Vec<Arc<Waiting>>,
}

impl Queue {
    /// The `since` of the connection here idle longest.
    fn oldest(&self) -> u64 {
        self.waiting
            .iter()
            .map(|w| w.since.load(Ordering::Relaxed))
            .min()
            .unwrap_or(u64::MAX)
    }
}

impl Lot {
    fn remove(&mut self, key: IpAddr, waiting: &Arc<Waiting>) {
        if let Some(queue) = self.by_address.get_mut(&key) {
            queue.waiting.retain(|w| !Arc::ptr_eq(w, waiting));
            if queue.waiting.is_empty() {
                self.by_address.remove(&key);
            }
        }
    }

    /// Takes the place of the connection that waited longest without
    /// completing a command, from the address with the most places
    /// (non-exempt addresses first); `false` when there is none.
    fn evict_one(&mut self) -> bool {
        loop {
            // Ties between addresses go to the one idle longest.
            let Some(key) = self
                .by_address
                .iter()
                .max_by_key(|(_, q)| (!q.exempt, q.waiting.len(), Reverse(q.oldest())))
                .map(|(key, _)| *key)
            else {
                return false;
            };
            let queue = self.by_address.get_mut(&key).expect("just found");
            let oldest = queue
                .waiting
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.since.load(Ordering::Relaxed))
                .map(|(i, _)| i)
                .expect("queues are never empty");
            let victim = queue.waiting.swap_remove(oldest);
            if queue.waiting.is_empty() {
                self.by_address.remove(&key);
            }
            // One that is giving its place back right now is skipped.
            if !victim.released.swap(true, Ordering::AcqRel) {
                victim.evicted.store(true, Ordering::Release);
                victim.wake.notify_one();
                return true;
            }
        }
    }
}

/// The caps and what is open against them.
#[derive(Debug)]
pub struct Admission {
    caps: arc_swap::ArcSwap<Caps>,
    total: AtomicUsize,
    preauth: AtomicUsize,
    lot: Mutex<Lot>,
    epoch: Instant,
    /// Sessions per (canonical user, client address key), when
    /// `max_sessions_per_user_address` is on.
    per_user_address: Mutex<HashMap<(String, IpAddr), usize>>,
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
            lot: Mutex::new(Lot::default()),
            epoch: Instant::now(),
            per_user_address: Mutex::new(HashMap::new()),
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

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lot(&self) -> std::sync::MutexGuard<'_, Lot> {
        self.lot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a connection from `peer` (evicting a pre-auth
    /// connection at the pre-auth cap), or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admitted, Refusal> {
        let caps = self.caps.load();
        if !take(&self.total, caps.max_total) {
            return Err(Refusal::TooManyConnections);
        }
        let key = client_key(peer);
        let exempt = caps.exempt.iter().any(|n| n.contains(peer));
        let mut lot = self.lot();
        let here = lot.by_address.get(&key).map_or(0, |q| q.waiting.len());
        if !exempt && caps.max_per_address > 0 && here >= caps.max_per_address {
            drop(lot);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::TooManyFromAddress);
        }
        // At the cap, the evicted connection's place is handed over.
        let mut evicted = false;
        if !take(&self.preauth, caps.max_preauth) {
            if !lot.evict_one() {
                drop(lot);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::TooManyPreAuth);
            }
            evicted = true;
        }
        let waiting = Arc::new(Waiting {
            since: AtomicU64::new(self.now()),
            released: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        let queue = lot.by_address.entry(key).or_default();
        queue.exempt = exempt;
        queue.waiting.push(waiting.clone());
        drop(lot);
        Ok(Admitted {
            admission: self.clone(),
            key,
            exempt,
            waiting,
            evicted_another: evicted,
            claim: Mutex::new(None),
        })
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
    key: IpAddr,
    exempt: bool,
    waiting: Arc<Waiting>,
    evicted_another: bool,
    /// The user this session counts for under
    /// `max_sessions_per_user_address`.
    claim: Mutex<Option<String>>,
}

impl Admitted {
    /// The session logged in: it no longer counts as a pre-auth connection
    /// (nor against its address).
    pub fn logged_in(&self) {
        if !self.waiting.released.swap(true, Ordering::AcqRel) {
            self.admission.preauth.fetch_sub(1, Ordering::AcqRel);
            self.admission.lot().remove(self.key, &self.waiting);
        }
    }

    /// The session completed a command: it is not idle.
    pub fn progressed(&self) {
        let now = self.admission.now();
        self.waiting.since.store(now, Ordering::Relaxed);
    }

    /// Counts this session for the user `canonical` names from its
    /// address, unless that user already has `max_sessions_per_user_address`
    /// sessions from there (then `false`). A session counts for one user at
    /// a time; exempt addresses and a cap of 0 are not counted.
    pub fn claim_user(&self, canonical: &dyn Fn() -> String) -> bool {
        let cap = self.admission.caps.load().max_per_user_address;
        if cap == 0 || self.exempt {
            return true;
        }
        let user = &canonical();
        self.release_user();
        let mut counts = self
            .admission
            .per_user_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = counts.entry((user.to_owned(), self.key)).or_default();
        if *count >= cap {
            if *count == 0 {
                counts.remove(&(user.to_owned(), self.key));
            }
            return false;
        }
        *count += 1;
        *self.claim.lock().unwrap_or_else(|p| p.into_inner()) = Some(user.to_owned());
        true
    }

    /// Gives back this session's place under `max_sessions_per_user_address`
    /// (its login failed, or it ends).
    pub fn release_user(&self) {
        let Some(user) = self.claim.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut counts = self
            .admission
            .per_user_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (user, self.key);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Whether this admission took an evicted connection's place.
    pub fn evicted_another(&self) -> bool {
        self.evicted_another
    }

    /// Resolves when a newcomer took this connection's pre-auth place: the
    /// session must close.
    pub fn evicted(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async move {
            while !self.waiting.evicted.load(Ordering::Acquire) {
                self.waiting.wake.notified().await;
            }
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.release_user();
        self.logged_in();
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, preauth: usize, per_address: usize) -> Arc<Admission> {
        let limits = Limits {
            max_connections: total,
            max_preauth_connections: preauth,
            max_preauth_per_address: per_address,
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
        let first = a.admit(ip("192.0.2.1")).unwrap();
        let _second = a.admit(ip("192.0.2.2")).unwrap();
        first.logged_in();
        first.logged_in();
        assert_eq!(a.open(), (2, 1));
        let third = a.admit(ip("192.0.2.3")).unwrap();
        assert!(!third.evicted_another());
        assert_eq!(a.open(), (3, 2));
    }

    /// Whether `admitted` was told to close (without waiting).
    fn was_evicted(admitted: &Admitted) -> bool {
        admitted.waiting.evicted.load(Ordering::Acquire)
    }

    #[test]
    fn at_the_preauth_cap_a_newcomer_evicts_the_longest_idle_of_the_busiest_address() {
        let a = admission(100, 4, 100);
        // Two from the crowd's address, one from another, admitted in turn.
        let crowd_old = a.admit(ip("192.0.2.9")).unwrap();
        let crowd_new = a.admit(ip("192.0.2.9")).unwrap();
        let single = a.admit(ip("192.0.2.1")).unwrap();
        let exempt = a.admit(ip("10.0.0.1")).unwrap();
        exempt.progressed();
        // The oldest of the crowd completed a command since: it is fresher.
        crowd_old.progressed();
        let newcomer = a.admit(ip("198.51.100.7")).unwrap();
        assert!(newcomer.evicted_another());
        assert!(was_evicted(&crowd_new), "the crowd's longest idle goes");
        assert!(!was_evicted(&crowd_old) && !was_evicted(&single) && !was_evicted(&exempt));
        assert_eq!(a.open(), (5, 4), "the place was handed over");
        // Its close gives back only its total place.
        drop(crowd_new);
        assert_eq!(a.open(), (4, 4));
        // Next: the crowd's address and the single one hold one each; the
        // one idle longest goes (the single one, admitted earlier).
        let _next = a.admit(ip("198.51.100.8")).unwrap();
        assert!(was_evicted(&single) && !was_evicted(&crowd_old));
        // Exempt addresses go last.
        let _more = a.admit(ip("198.51.100.9")).unwrap();
        assert!(was_evicted(&crowd_old) && !was_evicted(&exempt));
    }

    #[tokio::test]
    async fn an_evicted_connection_hears_it_and_one_logged_in_cannot_be_evicted() {
        let a = admission(100, 1, 100);
        let logged_in = a.admit(ip("192.0.2.1")).unwrap();
        logged_in.logged_in();
        let waiting = a.admit(ip("192.0.2.2")).unwrap();
        let newcomer = a.admit(ip("192.0.2.3")).unwrap();
        waiting.evicted().await;
        assert!(!was_evicted(&logged_in) && !was_evicted(&newcomer));
        assert_eq!(a.open(), (3, 1));
    }

    #[test]
    fn one_address_is_capped_in_preauth_connections_by_ipv4_address_and_ipv6_64_unless_exempt() {
        let a = admission(100, 100, 2);
        let held = [
            a.admit(ip("192.0.2.1")).unwrap(),
            a.admit(ip("192.0.2.1")).unwrap(),
        ];
        assert_eq!(
            a.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        assert!(a.admit(ip("192.0.2.2")).is_ok(), "another address");
        // Logged-in sessions do not count against their address (NAT).
        for admitted in &held {
            admitted.logged_in();
        }
        let _more = [
            a.admit(ip("192.0.2.1")).unwrap(),
            a.admit(ip("192.0.2.1")).unwrap(),
        ];
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
        // Held: four IPv4, two IPv6, five exempt (the 192.0.2.2 one was let go).
        assert_eq!(a.open().0, 4 + 2 + 5, "refusals gave their places back");
    }

    #[test]
    fn a_user_gets_max_sessions_per_user_address_from_one_address_and_more_from_others() {
        let limits = Limits {
            max_sessions_per_user_address: 2,
            exempt_networks: vec!["10.0.0.0/8".parse().unwrap()],
            ..Limits::default()
        };
        let a = Arc::new(Admission::new(&limits, 20_000, 1024));
        let nat: Vec<_> = (0..3).map(|_| a.admit(ip("192.0.2.1")).unwrap()).collect();
        assert!(nat[0].claim_user(&|| "alice".into()) && nat[1].claim_user(&|| "alice".into()));
        assert!(!nat[2].claim_user(&|| "alice".into()), "cap + 1");
        assert!(
            nat[2].claim_user(&|| "bob".into()),
            "another user behind the same address"
        );
        let elsewhere = a.admit(ip("192.0.2.2")).unwrap();
        assert!(elsewhere.claim_user(&|| "alice".into()), "another address");
        // A failed login gives the place back; so does the session's end.
        nat[0].release_user();
        let again = a.admit(ip("192.0.2.1")).unwrap();
        assert!(again.claim_user(&|| "alice".into()));
        drop(nat);
        assert!(a
            .admit(ip("192.0.2.1"))
            .unwrap()
            .claim_user(&|| "alice".into()));
        let exempt: Vec<_> = (0..3).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert!(exempt.iter().all(|e| e.claim_user(&|| "alice".into())));
    }

    #[test]
    fn the_automatic_cap_follows_the_descriptor_limit() {
        let limits = Limits::default();
        let a = Admission::new(&limits, 20_000, 1024);
        assert_eq!(a.max_total(), (20_000 - 256 - 2048) / 2);
        assert_eq!(a.max_preauth(), a.max_total() / 4);
    }
}
