//! The process's one parking lot for the connection cache: every worker
//! parks its webmail back-end sessions here and takes them from here, so a
//! user's page views cost one back-end login whichever worker the kernel's
//! `SO_REUSEPORT` hash hands each connection to, and `max_per_user` and
//! `max` bound the process, not each worker.
//!
//! A parked session waits as a [`DetachedStream`] (its socket off any
//! reactor, with its TLS state); the worker that takes it puts it on its
//! own reactor. The lock is held for map operations and one HMAC only —
//! never across I/O: the health `NOOP` runs after the take, on the taking
//! worker. One thread sweeps every [`SWEEP_EVERY`] (a non-blocking peek per
//! parked session, under the lock) and counts what it dropped.
//!
//! This module owns the lot and its process-wide figures (the parked gauge
//! and the sweeps' drops, in a recorder of its own that the metrics merge
//! with the workers'); it never reads or writes a parked stream beyond the
//! sweep's peek.

use super::connection_cache::{
    BackendSession, CacheBounds, ConnectionCache, Miss, Parked, PasswordKey, SWEEP_EVERY,
};
use crate::directory::Invalidations;
use crate::metrics::{self, CacheEvent, SharedRecorder};
use crate::tls::DetachedStream;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The process-wide cache of parked back-end sessions.
pub struct ParkingLot {
    cache: Mutex<ConnectionCache<DetachedStream>>,
    recorder: SharedRecorder,
}

impl ParkingLot {
    /// An empty lot; its sweeper is started with [`ParkingLot::sweep_every_second`].
    pub fn new(
        bounds: CacheBounds,
        key: Arc<PasswordKey>,
        invalidations: Arc<Invalidations>,
    ) -> Self {
        Self {
            cache: Mutex::new(ConnectionCache::new(bounds, key, invalidations)),
            recorder: SharedRecorder::default(),
        }
    }

    /// The lot's own figures (merged with the workers' by the metrics).
    pub fn recorder(&self) -> SharedRecorder {
        self.recorder.clone()
    }

    fn lock(&self) -> MutexGuard<'_, ConnectionCache<DetachedStream>> {
        // A panic under the lock leaves the map consistent (every operation
        // changes it in one step): carry on with it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the gauge and the evictions; called with the lock held so
    /// the gauge follows the map's order of changes.
    fn publish(&self, cache: &mut ConnectionCache<DetachedStream>) {
        let dropped = std::mem::take(&mut cache.dropped);
        let parked = cache.len() as i64;
        metrics::with(&self.recorder, |r| {
            r.cache_event(CacheEvent::Expired, dropped.expired);
            r.cache_event(CacheEvent::Unhealthy, dropped.unhealthy);
            r.cache_event(CacheEvent::Invalidated, dropped.invalidated);
            r.cache_event(CacheEvent::Evicted, dropped.evicted);
            r.parked_sessions = parked;
        });
    }

    /// New bounds, from a reloaded configuration.
    pub fn set_bounds(&self, bounds: CacheBounds) {
        self.lock().set_bounds(bounds);
    }

    /// See [`ConnectionCache::take`]; with it, whether the session has
    /// been parked longer than `check_after` (it must then answer a `NOOP`
    /// before reuse), read under the same lock.
    pub fn take(
        &self,
        identity: &str,
        route: &str,
        password: &[u8],
    ) -> Result<(Parked<DetachedStream>, bool), Miss> {
        let mut cache = self.lock();
        let check_after = cache.bounds().check_after;
        let taken = cache.take(identity, route, password);
        self.publish(&mut cache);
        taken.map(|parked| {
            let due = parked.parked_longer_than(check_after);
            (parked, due)
        })
    }

    /// See [`ConnectionCache::forget_other_passwords`].
    pub fn forget_other_passwords(&self, identity: &str, route: &str, password: &[u8]) -> Vec<u8> {
        let mut cache = self.lock();
        let mac = cache.forget_other_passwords(identity, route, password);
        self.publish(&mut cache);
        mac
    }

    /// See [`ConnectionCache::retired`].
    pub fn retired<T>(&self, user: &str, session: &BackendSession<T>) -> bool {
        self.lock().retired(user, session)
    }

    /// See [`ConnectionCache::park`].
    pub fn park(
        &self,
        user: &str,
        route: &str,
        mac: Vec<u8>,
        session: BackendSession<DetachedStream>,
    ) {
        let mut cache = self.lock();
        cache.park(user, route, mac, session);
        self.publish(&mut cache);
    }

    /// Sessions parked now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops what expired, died or was invalidated, and counts it.
    pub fn sweep(&self) {
        let mut cache = self.lock();
        cache.sweep();
        self.publish(&mut cache);
    }

    /// Closes every parked session (the server stops).
    pub fn clear(&self) {
        let mut cache = self.lock();
        cache.clear();
        self.publish(&mut cache);
    }

    /// Starts the sweeper thread: a sweep every [`SWEEP_EVERY`] until the
    /// lot is dropped.
    pub fn sweep_every_second(lot: &Arc<Self>) -> std::io::Result<()> {
        let lot: Weak<Self> = Arc::downgrade(lot);
        std::thread::Builder::new()
            .name("mailgate-parking".into())
            .spawn(move || loop {
                std::thread::sleep(SWEEP_EVERY);
                match lot.upgrade() {
                    Some(lot) => lot.sweep(),
                    None => return,
                }
            })
            .map(drop)
    }
}

impl std::fmt::Debug for ParkingLot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingLot")
            .field("parked", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::BackendGreeting;
    use crate::session::connection_cache::tests::bounds;
    use crate::session::connection_cache::LoginStamp;
    use crate::tls::MaybeTls;
    use crate::transport::{Connector, EpollConnector, EpollStream};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn lot() -> Arc<ParkingLot> {
        Arc::new(ParkingLot::new(
            bounds(),
            Arc::new(PasswordKey::random().unwrap()),
            Arc::new(Invalidations::default()),
        ))
    }

    /// Parks, from a thread of its own (one "worker"), a session of
    /// `user` whose back end is `backend`'s next connection.
    fn park_from_a_thread(lot: &Arc<ParkingLot>, user: &'static str, backend: &TcpListener) {
        let address = backend.local_addr().unwrap();
        let lot = lot.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let stream = EpollConnector.connect(address).await.unwrap();
                let stream = DetachedStream::detach(MaybeTls::Plain(stream)).unwrap();
                let mac = lot.forget_other_passwords(user, "box1:143", b"pw");
                let session = BackendSession {
                    stream,
                    address,
                    identity: user.into(),
                    greeting: BackendGreeting::default(),
                    logged_in: LoginStamp::now(&Invalidations::default()),
                };
                lot.park(user, "box1:143", mac, session);
            });
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_session_parked_on_one_thread_is_taken_and_used_on_another() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let lot = lot();
        park_from_a_thread(&lot, "alice", &backend);
        let (mut theirs, _) = backend.accept().unwrap();
        assert_eq!(lot.len(), 1);
        assert_eq!(lot.recorder().lock().unwrap().parked_sessions, 1);
        lot.sweep();
        assert_eq!(lot.len(), 1, "a silent session survives the sweep");
        let (taken, _) = lot.take("alice", "box1:143", b"pw").ok().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stream: MaybeTls<EpollStream> =
                taken.session.stream.attach(&EpollConnector).unwrap();
            let (res, _) =
                crate::transport::Stream::write_all(&stream, b"a NOOP\r\n".to_vec()).await;
            res.unwrap();
        });
        let mut line = [0u8; 8];
        std::io::Read::read_exact(&mut theirs, &mut line).unwrap();
        assert_eq!(&line, b"a NOOP\r\n", "the same connection, bytes intact");
        assert!(lot.is_empty());
        assert_eq!(lot.recorder().lock().unwrap().parked_sessions, 0);
    }

    #[test]
    fn max_bounds_the_process_whichever_thread_parked() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let lot = lot();
        for user in ["a", "b", "c", "d"] {
            park_from_a_thread(&lot, user, &backend);
        }
        assert_eq!(lot.len(), bounds().max);
        assert!(
            matches!(lot.take("a", "box1:143", b"pw"), Err(Miss::Empty)),
            "the oldest went"
        );
        let evicted = lot.recorder().lock().unwrap().connection_cache[&CacheEvent::Evicted];
        assert_eq!(evicted, 1);
        // The sweeper thread finds a closed back end and drops it.
        let accepted: Vec<TcpStream> = (0..4).map(|_| backend.accept().unwrap().0).collect();
        drop(accepted);
        std::thread::sleep(Duration::from_millis(50));
        lot.sweep();
        assert!(lot.is_empty());
    }
}
