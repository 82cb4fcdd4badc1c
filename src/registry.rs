//! The relaying sessions of one worker, for `GET /sessions` and kicking a
//! user's sessions after a mailbox move.
//!
//! An entry is removed before its session's sockets are closed (the guard is
//! dropped first), so a kick that finds an entry under the lock always shuts
//! down the session's own sockets, never a reused descriptor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A session's user by each of its names.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// As the client typed it (the session record's, shared).
    pub user: &'a Arc<str>,
    /// As the back end knows it (shared likewise).
    pub identity: &'a Arc<str>,
    /// The directory's lookup key, lower-cased (what a directory watch
    /// reports and invalidations are reduced to).
    pub canonical: &'a str,
}

/// One relaying session.
///
/// Its names are shared (`Arc<str>`) with the name index and with each
/// other where they are equal (the common case: one login name, lower
/// case), so an idle session's entry holds one small string, not six.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// Login name, as the client typed it.
    pub user: Arc<str>,
    /// The name the back end knows the user by (lower-cased).
    identity: Arc<str>,
    /// The directory's lookup key (lower-cased).
    canonical: Arc<str>,
    /// Client address.
    pub client: SocketAddr,
    /// Back-end address.
    pub backend: SocketAddr,
    /// When the relay started.
    pub since: SystemTime,
    client_fd: RawFd,
    backend_fd: RawFd,
    /// Said to the client when the server closes the session (`* BYE …`
    /// for IMAP; nothing for POP3, which has no unsolicited answers).
    goodbye: &'static [u8],
}

/// `name` lower-cased, sharing `like`'s allocation when that is equal, or
/// `name`'s own (`shared`) when it is lower case already.
fn lowered(name: &str, shared: Option<&Arc<str>>, like: &Arc<str>) -> Arc<str> {
    let upper = if name.is_ascii() {
        name.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        name.chars().any(char::is_uppercase)
    };
    if upper {
        let lower = name.to_lowercase();
        if *lower == **like {
            like.clone()
        } else {
            lower.into()
        }
    } else if name == &**like {
        like.clone()
    } else {
        shared.cloned().unwrap_or_else(|| name.into())
    }
}

/// The sessions under one name: nearly always one, so without a `Vec`.
#[derive(Debug)]
enum Ids {
    One(u64),
    Many(Vec<u64>),
}

impl Ids {
    fn add(&mut self, id: u64) {
        match self {
            Ids::One(first) => *self = Ids::Many(vec![*first, id]),
            Ids::Many(ids) => ids.push(id),
        }
    }

    /// Takes `id` out; `true` when none is left.
    fn remove(&mut self, id: u64) -> bool {
        match self {
            Ids::One(only) => *only == id,
            Ids::Many(ids) => {
                ids.retain(|&i| i != id);
                ids.is_empty()
            }
        }
    }

    fn as_slice(&self) -> &[u64] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }
}

/// One side of a relaying session: its address and its socket.
#[derive(Debug, Clone, Copy)]
pub struct Leg {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Our socket to it (shut down, never closed, by a kick).
    pub fd: RawFd,
}

/// A worker's registry, shared with the admin thread.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    next: u64,
    /// Boxed: the table's spare buckets (up to half of them after it
    /// grows) then cost a pointer each rather than a whole entry.
    entries: HashMap<u64, Box<SessionEntry>>,
    /// Each lower-cased name (identity, typed name, canonical name) → the
    /// sessions under it: a directory watch asks about every user in a full
    /// refresh, and most have no session here.
    by_name: HashMap<Arc<str>, Ids>,
}

impl Sessions {
    /// The entry's distinct lower-cased names (at most three: identity,
    /// typed name, canonical name), without a `Vec` to hold them.
    fn names(entry: &SessionEntry) -> impl Iterator<Item = Arc<str>> {
        let identity = entry.identity.clone();
        let typed = lowered(&entry.user, Some(&entry.user), &entry.identity);
        let typed = (typed != identity).then_some(typed);
        let canonical = entry.canonical.clone();
        let canonical =
            (canonical != identity && Some(&canonical) != typed.as_ref()).then_some(canonical);
        std::iter::once(identity).chain(typed).chain(canonical)
    }

    fn insert(&mut self, entry: SessionEntry) -> u64 {
        self.next += 1;
        let id = self.next;
        for name in Self::names(&entry) {
            self.by_name
                .entry(name)
                .and_modify(|ids| ids.add(id))
                .or_insert(Ids::One(id));
        }
        self.entries.insert(id, Box::new(entry));
        id
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        for name in Self::names(&entry) {
            if self
                .by_name
                .get_mut(&name)
                .is_some_and(|ids| ids.remove(id))
            {
                self.by_name.remove(&name);
            }
        }
    }

    /// Sessions under `name` (any of their names, any case).
    fn named(&self, name: &str) -> impl Iterator<Item = &SessionEntry> {
        self.by_name
            .get(&*name.to_lowercase())
            .map(Ids::as_slice)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id).map(|e| &**e))
    }

    /// Sessions under any of `names`, each once.
    fn named_any(&self, names: &[&str]) -> Vec<&SessionEntry> {
        let mut ids: Vec<u64> = names
            .iter()
            .filter_map(|n| self.by_name.get(&*n.to_lowercase()))
            .flat_map(Ids::as_slice)
            .copied()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.entries.get(id).map(|e| &**e))
            .collect()
    }
}

/// Removes the entry when the relay ends.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut sessions) = self.registry.inner.lock() {
            sessions.remove(self.id);
        }
    }
}

impl Registry {
    /// Registers a relaying session; keep the guard until the relay ends,
    /// declared after the streams so that it drops first.
    pub fn register(
        self: &Arc<Self>,
        names: Names<'_>,
        client: Leg,
        backend: Leg,
        goodbye: &'static [u8],
    ) -> Registration {
        let user = names.user.clone();
        let identity = lowered(names.identity, Some(names.identity), &user);
        let canonical = lowered(names.canonical, None, &identity);
        let entry = SessionEntry {
            user,
            identity,
            canonical,
            client: client.addr,
            backend: backend.addr,
            since: SystemTime::now(),
            client_fd: client.fd,
            backend_fd: backend.fd,
            goodbye,
        };
        let id = self.inner.lock().expect("registry lock").insert(entry);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Sessions of `user` (all when `None`).
    pub fn list(&self, user: Option<&str>) -> Vec<SessionEntry> {
        let sessions = self.inner.lock().expect("registry lock");
        sessions
            .entries
            .values()
            .filter(|e| user.is_none_or(|u| e.user.eq_ignore_ascii_case(u)))
            .map(|e| SessionEntry::clone(e))
            .collect()
    }

    /// Shuts down the sockets of every session known under any of `names`
    /// (a name as typed and its canonical form); their relays end and the
    /// clients reconnect (to the mailbox's new box). The count.
    pub fn kick(&self, names: &[&str]) -> usize {
        let sessions = self.inner.lock().expect("registry lock");
        let found = sessions.named_any(names);
        for entry in &found {
            close(entry, b"");
        }
        found.len()
    }

    /// Shuts down the sessions of the user the back end knows as
    /// `identity` (or who typed it) whose back end `still_right` rejects:
    /// the mailbox moved (or the user is gone: reject every back end). The
    /// back ends of the sessions ended.
    pub fn kick_moved(
        &self,
        identity: &str,
        mut still_right: impl FnMut(SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let sessions = self.inner.lock().expect("registry lock");
        let mut ended = Vec::new();
        for entry in sessions.named(identity) {
            if !still_right(entry.backend) {
                close(entry, b"");
                ended.push(entry.backend);
            }
        }
        ended
    }

    /// Says goodbye to every session's client and shuts its sockets down
    /// (the server is stopping and the grace period is over). The count.
    pub fn close_all(&self) -> usize {
        let sessions = self.inner.lock().expect("registry lock");
        for entry in sessions.entries.values() {
            close(entry, entry.goodbye);
        }
        sessions.entries.len()
    }
}

/// Writes `goodbye` to the client if its socket takes it at once, then shuts
/// both sockets down. Called under the registry lock.
fn close(entry: &SessionEntry, goodbye: &[u8]) {
    if !goodbye.is_empty() {
        // SAFETY: the entry exists, so its session has not closed its sockets
        // yet (entries are removed before the streams drop, under the lock
        // the caller holds): the descriptor is the session's own; `goodbye`
        // is a live buffer.
        unsafe {
            libc::send(
                entry.client_fd,
                goodbye.as_ptr().cast(),
                goodbye.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }
    for fd in [entry.client_fd, entry.backend_fd] {
        // SAFETY: as above, the descriptors are the session's own.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    fn leg(socket: &std::net::TcpStream) -> Leg {
        Leg {
            addr: socket.peer_addr().unwrap(),
            fd: socket.as_raw_fd(),
        }
    }

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let theirs = listener.accept().unwrap().0;
        (ours, theirs)
    }

    #[test]
    fn sessions_are_found_by_identity_or_typed_name_until_they_end() {
        let registry = Arc::new(Registry::default());
        let (client, _c) = pair();
        let (backend, _b) = pair();
        let (user, identity) = ("Alice".into(), "alice@example.org".into());
        let names = Names {
            user: &user,
            identity: &identity,
            canonical: "uid-17",
        };
        let registration = registry.register(names, leg(&client), leg(&backend), b"");
        let old = backend.peer_addr().unwrap();
        assert!(registry.kick_moved("bob@example.org", |_| false).is_empty());
        assert!(registry
            .kick_moved("ALICE@example.org", |_| true)
            .is_empty());
        assert_eq!(registry.kick_moved("UID-17", |_| false), vec![old]);
        assert_eq!(registry.kick(&["alice", "nobody"]), 1, "one session, once");
        drop(registration);
        assert!(registry.kick_moved("alice", |_| false).is_empty());
        let sessions = registry.inner.lock().unwrap();
        assert!(sessions.entries.is_empty() && sessions.by_name.is_empty());
    }

    #[test]
    fn one_name_is_stored_once_and_many_sessions_share_its_index_entry() {
        let registry = Arc::new(Registry::default());
        let (client, _c) = pair();
        let (backend, _b) = pair();
        let (user, identity) = ("carol@example.org".into(), "Carol@Example.org".into());
        let names = Names {
            user: &user,
            identity: &identity,
            canonical: "carol@example.org",
        };
        let first = registry.register(names, leg(&client), leg(&backend), b"");
        let second = registry.register(names, leg(&client), leg(&backend), b"");
        {
            let sessions = registry.inner.lock().unwrap();
            assert_eq!(sessions.by_name.len(), 1);
            let entry = sessions.entries.values().next().unwrap();
            assert!(Arc::ptr_eq(&entry.user, &entry.identity));
            assert!(Arc::ptr_eq(&entry.identity, &entry.canonical));
            let ids = sessions.by_name.values().next().unwrap().as_slice();
            assert_eq!(ids.len(), 2);
        }
        drop(first);
        assert_eq!(registry.list(Some("CAROL@example.org")).len(), 1);
        drop(second);
        let sessions = registry.inner.lock().unwrap();
        assert!(sessions.entries.is_empty() && sessions.by_name.is_empty());
    }
}
