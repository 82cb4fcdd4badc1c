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

/// One relaying session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// Login name, as the client typed it.
    pub user: String,
    /// The name the back end knows the user by (lower-cased).
    pub identity: String,
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
    next: Mutex<u64>,
    entries: Mutex<HashMap<u64, SessionEntry>>,
}

/// Removes the entry when the relay ends.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.registry.entries.lock() {
            entries.remove(&self.id);
        }
    }
}

impl Registry {
    /// Registers a relaying session; keep the guard until the relay ends,
    /// declared after the streams so that it drops first.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        identity: &str,
        client: Leg,
        backend: Leg,
        goodbye: &'static [u8],
    ) -> Registration {
        let id = {
            let mut next = self.next.lock().expect("registry lock");
            *next += 1;
            *next
        };
        let entry = SessionEntry {
            user: user.to_owned(),
            identity: identity.to_lowercase(),
            client: client.addr,
            backend: backend.addr,
            since: SystemTime::now(),
            client_fd: client.fd,
            backend_fd: backend.fd,
            goodbye,
        };
        self.entries
            .lock()
            .expect("registry lock")
            .insert(id, entry);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// Sessions of `user` (all when `None`).
    pub fn list(&self, user: Option<&str>) -> Vec<SessionEntry> {
        let entries = self.entries.lock().expect("registry lock");
        entries
            .values()
            .filter(|e| user.is_none_or(|u| e.user.eq_ignore_ascii_case(u)))
            .cloned()
            .collect()
    }

    /// Shuts down the sockets of every session of `user`; their relays end
    /// and the clients reconnect (to the mailbox's new box). The count.
    pub fn kick(&self, user: &str) -> usize {
        let entries = self.entries.lock().expect("registry lock");
        let mut kicked = 0;
        for entry in entries
            .values()
            .filter(|e| e.user.eq_ignore_ascii_case(user))
        {
            close(entry, b"");
            kicked += 1;
        }
        kicked
    }

    /// Shuts down the sessions of the user the back end knows as
    /// `identity` (or who typed it) whose back end `still_right` rejects:
    /// the mailbox moved (or the user is gone: reject every back end). The
    /// count.
    pub fn kick_moved(&self, identity: &str, still_right: impl Fn(SocketAddr) -> bool) -> usize {
        let entries = self.entries.lock().expect("registry lock");
        let mut kicked = 0;
        for entry in entries.values().filter(|e| {
            (e.identity.eq_ignore_ascii_case(identity) || e.user.eq_ignore_ascii_case(identity))
                && !still_right(e.backend)
        }) {
            close(entry, b"");
            kicked += 1;
        }
        kicked
    }

    /// Says goodbye to every session's client and shuts its sockets down
    /// (the server is stopping and the grace period is over). The count.
    pub fn close_all(&self) -> usize {
        let entries = self.entries.lock().expect("registry lock");
        for entry in entries.values() {
            close(entry, entry.goodbye);
        }
        entries.len()
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
