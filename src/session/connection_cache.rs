//! The connection cache (up-imapproxy's job): back-end IMAP sessions kept
//! open after a client's `LOGOUT` on a `connection_cache` listener, handed
//! to the same user's next login with the same password on the same route,
//! so webmail's page views cost the back end no login. The process keeps
//! one, behind a lock ([`super::parking_lot`]): a session parked by one
//! worker can be taken by any other.
//!
//! A parked session is keyed by (identity, route) — the name the back end
//! logged in as, after every transformation of the typed name, compared
//! exactly (a back end may tell `Carol@…` and `carol@…` apart), and the
//! back end's `host:port` — and holds an HMAC-SHA256 of identity, route and
//! password under a per-process random key, never the password; a login
//! takes it only if its own MAC verifies (constant time). Bounds:
//! `ttl` since parking, `max_age` since the back-end login (a session taken
//! and parked again keeps its login time, so a changed password ends it
//! within `max_age` however often it is used), `max_per_user` per key,
//! `max` per process (the oldest goes first). A sweep every second drops
//! expired sessions, sessions the back end closed or wrote to (a parked
//! session must be silent), and sessions of users invalidated since their
//! back-end login (admin `invalidate` or `kick`, a change of the user's
//! directory entry seen by the watch, a reload).
//!
//! This module owns parked sessions; it never reads or writes their streams
//! beyond a non-blocking peek (the session layer runs the health `NOOP`).

use crate::directory::Invalidations;
use crate::login::BackendGreeting;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// How often parked sessions are checked for expiry and liveness.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Bounds of the cache (`[connection_cache]`).
#[derive(Debug, Clone, Copy)]
pub struct CacheBounds {
    /// A parked session is dropped this long after parking.
    pub ttl: Duration,
    /// Parked sessions per (user, route).
    pub max_per_user: usize,
    /// Parked sessions in the process.
    pub max: usize,
    /// A session parked longer than this must answer a `NOOP` before reuse.
    pub check_after: Duration,
    /// A session whose back-end login is older than this is not parked.
    pub max_age: Duration,
}

/// When a back-end session logged in, kept for its whole life (through
/// parking and reuse).
#[derive(Debug, Clone, Copy)]
pub struct LoginStamp {
    /// When the back-end login started.
    pub at: Instant,
    /// The invalidation generation read before the credentials were sent:
    /// an invalidation after it (of the user, or of everyone) retires the
    /// session.
    pub generation: u64,
}

impl LoginStamp {
    /// A stamp for a login starting now.
    pub fn now(invalidations: &Invalidations) -> Self {
        Self {
            at: Instant::now(),
            generation: invalidations.generation(),
        }
    }
}

/// The per-process key for password MACs.
pub struct PasswordKey(ring::hmac::Key);

impl PasswordKey {
    /// A fresh random key.
    pub fn random() -> Result<Self, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).map(Self)
    }

    /// The MAC of `password` for `identity` on `route`.
    pub fn sign(&self, identity: &str, route: &str, password: &[u8]) -> Vec<u8> {
        let message = Self::message(identity, route, password);
        ring::hmac::sign(&self.0, &message).as_ref().to_vec()
    }

    /// Whether `mac` is the MAC of `password` for `identity` on `route`
    /// (constant time).
    pub fn verify(&self, identity: &str, route: &str, password: &[u8], mac: &[u8]) -> bool {
        let message = Self::message(identity, route, password);
        ring::hmac::verify(&self.0, &message, mac).is_ok()
    }

    /// The three fields, each after its length, so no two (identity,
    /// route, password) triples give the same bytes; wiped when dropped
    /// (it holds the password).
    fn message(identity: &str, route: &str, password: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut message = Zeroizing::new(Vec::with_capacity(
            24 + identity.len() + route.len() + password.len(),
        ));
        for field in [identity.as_bytes(), route.as_bytes(), password] {
            message.extend_from_slice(&(field.len() as u64).to_be_bytes());
            message.extend_from_slice(field);
        }
        message
    }
}

impl std::fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKey(***)")
    }
}

/// A logged-in back-end session that can be parked.
pub struct BackendSession<S> {
    /// The back-end stream, logged in, no mailbox selected, silent.
    pub stream: S,
    /// Its address.
    pub address: SocketAddr,
    /// The name the back end knows the user by.
    pub identity: String,
    /// What the back end said at login (the client gets it again).
    pub greeting: BackendGreeting,
    /// When it logged in.
    pub logged_in: LoginStamp,
}

impl<S> BackendSession<S> {
    /// The same session over `f(stream)` (the stream moved between a
    /// worker's reactor and the parking lot).
    pub fn map_stream<T, E>(
        self,
        f: impl FnOnce(S) -> Result<T, E>,
    ) -> Result<BackendSession<T>, E> {
        Ok(BackendSession {
            stream: f(self.stream)?,
            address: self.address,
            identity: self.identity,
            greeting: self.greeting,
            logged_in: self.logged_in,
        })
    }
}

/// A parked session: the back-end session and what decides its reuse.
pub struct Parked<S> {
    /// The session.
    pub session: BackendSession<S>,
    /// The name its last client typed (invalidations may name it).
    user: String,
    mac: Vec<u8>,
    parked_at: Instant,
}

/// Whether two MACs are equal, in a time that does not depend on where
/// they differ (no early exit).
fn same_mac(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl<S> Parked<S> {
    /// The MAC it was parked with (the taking login's own, since it matched).
    pub fn mac(&self) -> &[u8] {
        &self.mac
    }

    /// Whether it has been parked longer than `after` (then it must answer
    /// a `NOOP` before reuse).
    pub fn parked_longer_than(&self, after: Duration) -> bool {
        self.parked_at.elapsed() > after
    }
}

/// Why a login found no session to reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Nothing parked for this user and route.
    Empty,
    /// Parked sessions, none with this password.
    WrongPassword,
}

/// The cache: parked sessions of stream type `S`.
pub struct ConnectionCache<S> {
    bounds: CacheBounds,
    key: Arc<PasswordKey>,
    invalidations: Arc<Invalidations>,
    parked: HashMap<(String, String), VecDeque<Parked<S>>>,
    count: usize,
    /// Dropped in sweeps, by reason; read (and reset) by the caller.
    pub dropped: Dropped,
}

/// Sessions dropped by sweeps since the caller last looked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Past `ttl`.
    pub expired: u64,
    /// Closed by the back end, or it wrote something.
    pub unhealthy: u64,
    /// The user was invalidated (admin, mailbox move).
    pub invalidated: u64,
    /// Pushed out by `max` or `max_per_user`.
    pub evicted: u64,
}

impl<S: AsRawFd> ConnectionCache<S> {
    /// An empty cache.
    pub fn new(
        bounds: CacheBounds,
        key: Arc<PasswordKey>,
        invalidations: Arc<Invalidations>,
    ) -> Self {
        Self {
            bounds,
            key,
            invalidations,
            parked: HashMap::new(),
            count: 0,
            dropped: Dropped::default(),
        }
    }

    /// The bounds.
    pub fn bounds(&self) -> CacheBounds {
        self.bounds
    }

    /// New bounds (a reload); what exceeds them goes at the next park.
    pub fn set_bounds(&mut self, bounds: CacheBounds) {
        self.bounds = bounds;
    }

    /// Drops every parked session (the server stops).
    pub fn clear(&mut self) {
        self.parked.clear();
        self.count = 0;
    }

    /// Sessions parked now.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `session` may still be parked (or reused): its back-end
    /// login is younger than `max_age` and neither `user` nor the session's
    /// identity was invalidated since.
    pub fn retired<T>(&self, user: &str, session: &BackendSession<T>) -> bool {
        let stamp = session.logged_in;
        stamp.at.elapsed() >= self.bounds.max_age
            || self.invalidations.invalidated_since(stamp.generation, user)
            || self
                .invalidations
                .invalidated_since(stamp.generation, &session.identity)
    }

    /// The MAC to park a session of `identity` on `route` with.
    pub fn mac(&self, identity: &str, route: &str, password: &[u8]) -> Vec<u8> {
        self.key.sign(identity, route, password)
    }

    /// Parks `session` (of its identity) on `route` after a client that
    /// typed `user`; `mac` from [`Self::mac`].
    pub fn park(&mut self, user: &str, route: &str, mac: Vec<u8>, session: BackendSession<S>) {
        let key = (session.identity.clone(), route.to_owned());
        let parked = Parked {
            session,
            user: user.to_owned(),
            mac,
            parked_at: Instant::now(),
        };
        let queue = self.parked.entry(key).or_default();
        queue.push_back(parked);
        self.count += 1;
        if queue.len() > self.bounds.max_per_user {
            queue.pop_front();
            self.count -= 1;
            self.dropped.evicted += 1;
        }
        while self.count > self.bounds.max {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .parked
            .iter()
            .filter_map(|(k, q)| q.front().map(|p| (k.clone(), p.parked_at)))
            .min_by_key(|(_, at)| *at)
            .map(|(k, _)| k);
        if let Some(key) = oldest {
            self.remove_front(&key);
            self.dropped.evicted += 1;
        }
    }

    fn remove_front(&mut self, key: &(String, String)) {
        if let Some(queue) = self.parked.get_mut(key) {
            if queue.pop_front().is_some() {
                self.count -= 1;
            }
            if queue.is_empty() {
                self.parked.remove(key);
            }
        }
    }

    /// A parked session of `identity` on `route` whose MAC `password`
    /// verifies (the newest first). A user's sessions under another password
    /// stay: a wrong password must not cost the right one its session.
    pub fn take(
        &mut self,
        identity: &str,
        route: &str,
        password: &[u8],
    ) -> Result<Parked<S>, Miss> {
        let key = (identity.to_owned(), route.to_owned());
        self.sweep_key(&key);
        let Some(queue) = self.parked.get_mut(&key) else {
            return Err(Miss::Empty);
        };
        // One MAC for the login, compared with each parked one.
        let mac = self.key.sign(identity, route, password);
        let Some(i) = queue.iter().rposition(|p| same_mac(&mac, &p.mac)) else {
            return Err(Miss::WrongPassword);
        };
        let parked = queue.remove(i).ok_or(Miss::Empty)?;
        self.count -= 1;
        if queue.is_empty() {
            self.parked.remove(&key);
        }
        Ok(parked)
    }

    /// After the back end accepted `password` for `identity` on `route`:
    /// sessions parked under another password go (the password changed).
    /// The MAC of this password, to park the new session with.
    pub fn forget_other_passwords(
        &mut self,
        identity: &str,
        route: &str,
        password: &[u8],
    ) -> Vec<u8> {
        let mac = self.key.sign(identity, route, password);
        let key = (identity.to_owned(), route.to_owned());
        if let Some(queue) = self.parked.get_mut(&key) {
            let before = queue.len();
            queue.retain(|p| same_mac(&mac, &p.mac));
            let gone = before - queue.len();
            self.count -= gone;
            self.dropped.evicted += gone as u64;
            if queue.is_empty() {
                self.parked.remove(&key);
            }
        }
        mac
    }

    /// Drops what is expired, unhealthy or invalidated, everywhere.
    pub fn sweep(&mut self) {
        let keys: Vec<_> = self.parked.keys().cloned().collect();
        for key in keys {
            self.sweep_key(&key);
        }
    }

    fn sweep_key(&mut self, key: &(String, String)) {
        let Some(queue) = self.parked.get_mut(key) else {
            return;
        };
        let (ttl, max_age) = (self.bounds.ttl, self.bounds.max_age);
        let invalidations = &self.invalidations;
        let dropped = &mut self.dropped;
        let before = queue.len();
        queue.retain(|p| {
            let stamp = p.session.logged_in;
            if p.parked_at.elapsed() >= ttl || stamp.at.elapsed() >= max_age {
                dropped.expired += 1;
                false
            } else if invalidations.invalidated_since(stamp.generation, &key.0)
                || invalidations.invalidated_since(stamp.generation, &p.user)
            {
                dropped.invalidated += 1;
                false
            } else if !silent(&p.session.stream) {
                dropped.unhealthy += 1;
                false
            } else {
                true
            }
        });
        self.count -= before - queue.len();
        if queue.is_empty() {
            self.parked.remove(key);
        }
    }
}

/// Whether the socket is open and has nothing to read: a parked session's
/// back end has nothing to say unless it is closing (`* BYE`, EOF).
fn silent(stream: &impl AsRawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: recv(2) with MSG_PEEK | MSG_DONTWAIT on a descriptor this
    // cache owns (the parked stream is alive for the call), into one byte
    // of this stack frame; nothing is consumed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Small bounds: 2 per user, 3 in all.
    pub(in crate::session) fn bounds() -> CacheBounds {
        CacheBounds {
            ttl: Duration::from_secs(300),
            max_per_user: 2,
            max: 3,
            check_after: Duration::from_secs(30),
            max_age: Duration::from_secs(3600),
        }
    }

    /// A connected pair: ours (parked) and the "back end".
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (ours, listener.accept().unwrap().0)
    }

    fn cache() -> ConnectionCache<TcpStream> {
        ConnectionCache::new(
            bounds(),
            Arc::new(PasswordKey::random().unwrap()),
            Arc::new(Invalidations::default()),
        )
    }

    fn park(c: &mut ConnectionCache<TcpStream>, user: &str, password: &str) -> TcpStream {
        let (ours, theirs) = pair();
        let addr = ours.peer_addr().unwrap();
        let mac = c.mac(user, "box1:143", password.as_bytes());
        let session = BackendSession {
            stream: ours,
            address: addr,
            identity: user.into(),
            greeting: BackendGreeting::default(),
            logged_in: LoginStamp::now(&c.invalidations),
        };
        c.park(user, "box1:143", mac, session);
        theirs
    }

    #[test]
    fn only_the_right_password_takes_a_session_and_a_wrong_one_leaves_it() {
        let mut c = cache();
        let _backend = park(&mut c, "Alice", "pw");
        assert!(matches!(
            c.take("Alice", "box1:143", b"nope"),
            Err(Miss::WrongPassword)
        ));
        assert!(matches!(
            c.take("Alice", "box2:143", b"pw"),
            Err(Miss::Empty)
        ));
        assert_eq!(c.len(), 1);
        assert!(
            matches!(c.take("alice", "box1:143", b"pw"), Err(Miss::Empty)),
            "another identity: a back end may tell names apart by case"
        );
        assert!(c.take("Alice", "box1:143", b"pw").is_ok());
        assert!(c.is_empty());
    }

    #[test]
    fn bounds_per_user_and_in_all_push_the_oldest_out() {
        let mut c = cache();
        let _b: Vec<_> = (0..3).map(|_| park(&mut c, "a", "pw")).collect();
        assert_eq!((c.len(), c.dropped.evicted), (2, 1));
        let _d: Vec<_> = ["b", "c"].iter().map(|u| park(&mut c, u, "pw")).collect();
        assert_eq!((c.len(), c.dropped.evicted), (3, 2));
    }

    #[test]
    fn a_session_the_back_end_closed_or_wrote_to_is_dropped() {
        let mut c = cache();
        let closed = park(&mut c, "a", "pw");
        drop(closed);
        let mut chatty = park(&mut c, "b", "pw");
        std::io::Write::write_all(&mut chatty, b"* BYE idle\r\n").unwrap();
        let _quiet = park(&mut c, "c", "pw");
        std::thread::sleep(Duration::from_millis(50));
        c.sweep();
        assert_eq!((c.len(), c.dropped.unhealthy), (1, 2));
        assert!(c.take("c", "box1:143", b"pw").is_ok());
    }

    #[test]
    fn an_invalidated_user_loses_its_parked_sessions() {
        let invalidations = Arc::new(Invalidations::default());
        let mut c = ConnectionCache::new(
            bounds(),
            Arc::new(PasswordKey::random().unwrap()),
            invalidations.clone(),
        );
        let _a = park(&mut c, "a@x", "pw");
        let _b = park(&mut c, "b@x", "pw");
        invalidations.invalidate("A@x");
        c.sweep();
        assert_eq!((c.len(), c.dropped.invalidated), (1, 1));
    }

    #[test]
    fn a_new_password_drops_sessions_parked_under_the_old_one() {
        let mut c = cache();
        let _old = park(&mut c, "a", "old");
        c.forget_other_passwords("a", "box1:143", b"new");
        assert!(c.is_empty());
    }

    #[test]
    fn the_password_key_prints_nothing() {
        let key = PasswordKey::random().unwrap();
        assert_eq!(format!("{key:?}"), "PasswordKey(***)");
        let mac = key.sign("a", "r", b"pw");
        assert!(key.verify("a", "r", b"pw", &mac) && !key.verify("a", "r", b"pW", &mac));
        assert!(!key.verify("A", "r", b"pw", &mac), "another identity");
        assert!(!key.verify("a", "r2", b"pw", &mac), "another route");
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let mac = key.sign("ab", "c", b"pw");
        assert!(!key.verify("a", "bc", b"pw", &mac));
    }

    fn session(
        c: &ConnectionCache<TcpStream>,
        user: &str,
    ) -> (BackendSession<TcpStream>, TcpStream) {
        let (ours, theirs) = pair();
        let session = BackendSession {
            address: ours.peer_addr().unwrap(),
            stream: ours,
            identity: user.into(),
            greeting: BackendGreeting::default(),
            logged_in: LoginStamp::now(&c.invalidations),
        };
        (session, theirs)
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_retired_max_age_after_its_login_however_often_it_was_parked() {
        let mut c = cache();
        let (first, _backend) = session(&c, "a");
        let max_age = bounds().max_age;
        tokio::time::advance(max_age - Duration::from_secs(1)).await;
        assert!(!c.retired("a", &first), "younger than max_age");
        // Taken and parked again (a fresh park time), still its login's age.
        let mac = c.mac("a", "box1:143", b"pw");
        c.park("a", "box1:143", mac, first);
        let again = c.take("a", "box1:143", b"pw").ok().unwrap().session;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.retired("a", &again), "max_age reached");
        let mac = c.mac("a", "box1:143", b"pw");
        c.park("a", "box1:143", mac, again);
        c.sweep();
        assert_eq!((c.len(), c.dropped.expired), (0, 1));
    }

    #[test]
    fn an_invalidation_after_the_login_retires_a_session_in_use() {
        let invalidations = Arc::new(Invalidations::default());
        let c: ConnectionCache<TcpStream> = ConnectionCache::new(
            bounds(),
            Arc::new(PasswordKey::random().unwrap()),
            invalidations.clone(),
        );
        invalidations.invalidate("a@x");
        let (in_use, _backend) = session(&c, "a@x");
        assert!(!c.retired("a@x", &in_use), "invalidated before its login");
        invalidations.invalidate("b@x");
        assert!(!c.retired("a@x", &in_use), "another user");
        invalidations.invalidate("A@X");
        assert!(c.retired("a@x", &in_use));
        let (later, _backend) = session(&c, "a@x");
        invalidations.invalidate_all();
        assert!(c.retired("a@x", &later), "everyone (a reload)");
    }
}
