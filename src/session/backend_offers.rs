//! What each back end announced on this worker's earlier logins
//! ([`BackendOffers`]), handed to the next login to it so that a protocol
//! whose login would ask every time (POP3's `CAPA`) or wait for the
//! greeting first (the login then goes on connect) can skip the round
//! trip.
//!
//! Per worker, without a lock: a worker that has not met a back end yet
//! asks it once. The memory starts empty at every reload and is bounded
//! ([`MAX_REMEMBERED_BACKENDS`] back ends, then it starts over). A stale
//! entry costs a round trip, never a wrong answer: the protocol re-asks
//! when a login made on it is refused, and what it learns replaces the
//! entry.
//!
//! Owns the map. Must never decide anything about a login itself.

use crate::login::BackendOffers;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Back ends remembered at most; at the cap the memory starts over (a
/// directory naming more back ends than this is not a cluster this
/// serves well anyway).
pub const MAX_REMEMBERED_BACKENDS: usize = 4096;

/// One worker's memory of back ends' offers, by protocol and address.
#[derive(Debug, Default)]
pub struct RememberedOffers {
    offers: RefCell<HashMap<(&'static str, SocketAddr), BackendOffers>>,
}

impl RememberedOffers {
    /// What `protocol`'s last login to `backend` learned, if any.
    pub fn get(&self, protocol: &'static str, backend: SocketAddr) -> Option<BackendOffers> {
        self.offers.borrow().get(&(protocol, backend)).copied()
    }

    /// Remembers what a login to `backend` learned.
    pub fn put(&self, protocol: &'static str, backend: SocketAddr, offers: BackendOffers) {
        let mut map = self.offers.borrow_mut();
        if map.len() >= MAX_REMEMBERED_BACKENDS && !map.contains_key(&(protocol, backend)) {
            map.clear();
        }
        map.insert((protocol, backend), offers);
    }

    /// Back ends remembered (for tests).
    pub fn len(&self) -> usize {
        self.offers.borrow().len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn offers_are_kept_per_protocol_and_address_and_replaced() {
        let memory = RememberedOffers::default();
        assert_eq!(memory.get("pop3", at(110)), None);
        memory.put("pop3", at(110), BackendOffers(1));
        memory.put("imap", at(110), BackendOffers(2));
        assert_eq!(memory.get("pop3", at(110)), Some(BackendOffers(1)));
        assert_eq!(memory.get("imap", at(110)), Some(BackendOffers(2)));
        assert_eq!(memory.get("pop3", at(111)), None);
        memory.put("pop3", at(110), BackendOffers(0));
        assert_eq!(memory.get("pop3", at(110)), Some(BackendOffers(0)));
    }

    #[test]
    fn at_the_cap_the_memory_starts_over() {
        let memory = RememberedOffers::default();
        for port in 0..MAX_REMEMBERED_BACKENDS as u16 {
            memory.put("pop3", at(port), BackendOffers(1));
        }
        assert_eq!(memory.len(), MAX_REMEMBERED_BACKENDS);
        // One already known is replaced in place.
        memory.put("pop3", at(0), BackendOffers(3));
        assert_eq!(memory.len(), MAX_REMEMBERED_BACKENDS);
        // One more starts over with just it.
        memory.put("pop3", at(60000), BackendOffers(1));
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.get("pop3", at(0)), None);
        assert_eq!(memory.get("pop3", at(60000)), Some(BackendOffers(1)));
    }
}
