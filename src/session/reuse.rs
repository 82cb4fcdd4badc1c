//! The connection cache as a session uses it: at login, a parked back-end
//! session of the same user, route and password instead of a back-end login
//! (checked with a `NOOP` when it has been parked a while); at the client's
//! `LOGOUT`, the answer from here and the back-end session parked.
//!
//! This module owns the session side of the cache: what is carried from
//! login to logout ([`ParkTicket`]) and the cache's worker-local instance.
//! It never keeps a password: only its MAC under the process's key.

use super::connection_cache::{BackendSession, ConnectionCache, LoginStamp, Miss, SWEEP_EVERY};
use super::SessionContext;
use crate::directory::Route;
use crate::login::BackendGreeting;
use crate::metrics::{self, CacheEvent, SharedRecorder};
use crate::relay::tracked::Logout;
use crate::transport::Stream;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::Duration;
use tokio::time::timeout;

/// Bound on the health `NOOP` of a session parked longer than
/// `check_after`, and on the bytes read for its answer.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const HEALTH_CHECK_BYTES: usize = 4096;
/// Bound on writing our `LOGOUT` answer to the client, and our own
/// `LOGOUT` to a back end that is retired instead of parked.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a session on a `connection_cache` listener carries from its login
/// to its `LOGOUT`, to park its back-end session.
pub(super) struct ParkTicket {
    /// The user as typed.
    pub user: String,
    /// `host:port` of the route.
    pub route: String,
    /// MAC of the password.
    pub mac: Vec<u8>,
    /// The login reused a parked session.
    pub reused: bool,
    /// What the back end said at login, to say again to the next client.
    pub greeting: BackendGreeting,
    /// The name the back end knows the user by, exactly as logged in with
    /// (the cache key).
    pub identity: String,
    /// The back end's address.
    pub address: SocketAddr,
    /// When the back-end session logged in (not when it was last parked).
    pub logged_in: LoginStamp,
}

/// The cache key of `route`.
pub(super) fn route_key(route: &Route, default_port: u16) -> String {
    format!("{}:{}", route.host, route.port.unwrap_or(default_port))
}

type Cache<S> = RefCell<ConnectionCache<S>>;

/// This worker's cache for streams of type `S`, built (with its sweeper
/// task) on first use.
fn cache<S: AsRawFd + 'static>(ctx: &SessionContext) -> Rc<Cache<S>> {
    let mut slot = ctx.worker.connection_cache.borrow_mut();
    if let Some(any) = slot.as_ref() {
        if let Ok(cache) = any.clone().downcast::<Cache<S>>() {
            return cache;
        }
    }
    let setup = &ctx.worker.cache_setup;
    let cache = Rc::new(RefCell::new(ConnectionCache::new(
        setup.bounds,
        setup.key.clone(),
        setup.invalidations.clone(),
    )));
    tokio::task::spawn_local(sweep(Rc::downgrade(&cache), ctx.worker.metrics.clone()));
    *slot = Some(cache.clone());
    cache
}

/// Every [`SWEEP_EVERY`]: drops what expired, died or was invalidated, and
/// counts it; ends with the worker.
async fn sweep<S: AsRawFd + 'static>(cache: Weak<Cache<S>>, recorder: Option<SharedRecorder>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(cache) = cache.upgrade() else {
            return;
        };
        let mut cache = cache.borrow_mut();
        cache.sweep();
        let dropped = std::mem::take(&mut cache.dropped);
        let parked = cache.len();
        if let Some(recorder) = &recorder {
            metrics::with(recorder, |r| {
                r.cache_event(CacheEvent::Expired, dropped.expired);
                r.cache_event(CacheEvent::Unhealthy, dropped.unhealthy);
                r.cache_event(CacheEvent::Invalidated, dropped.invalidated);
                r.cache_event(CacheEvent::Evicted, dropped.evicted);
                r.parked_sessions = parked as i64;
            });
        }
    }
}

fn record_parked<S: AsRawFd + 'static>(ctx: &SessionContext, cache: &ConnectionCache<S>) {
    let parked = cache.len() as i64;
    let evicted = cache.dropped.evicted;
    ctx.record(|r| {
        r.parked_sessions = parked;
        r.cache_event(CacheEvent::Evicted, evicted);
    });
}

/// A parked session of `identity` (the back-end login name; `user` is what
/// the client typed) on `route` whose MAC `password` verifies and that is
/// (still) healthy; `None` (counted) otherwise.
pub(super) async fn take<S: Stream + 'static>(
    ctx: &SessionContext,
    (user, identity): (&str, &str),
    route: &str,
    password: &[u8],
) -> Option<(BackendSession<S>, ParkTicket)> {
    let cache = cache::<S>(ctx);
    let taken = cache.borrow_mut().take(identity, route, password);
    record_parked(ctx, &cache.borrow());
    let parked = match taken {
        Ok(parked) => parked,
        Err(miss) => {
            let event = match miss {
                Miss::Empty => CacheEvent::MissEmpty,
                Miss::WrongPassword => CacheEvent::MissWrongPassword,
            };
            ctx.record(|r| r.cache_event(event, 1));
            return None;
        }
    };
    let check_after = cache.borrow().bounds().check_after;
    let mac = parked.mac().to_vec();
    if parked.parked_longer_than(check_after) && !healthy(&parked.session.stream).await {
        ctx.record(|r| r.cache_event(CacheEvent::MissUnhealthy, 1));
        return None;
    }
    ctx.record(|r| r.cache_event(CacheEvent::Hit, 1));
    let session = parked.session;
    let ticket = ParkTicket {
        user: user.to_owned(),
        route: route.to_owned(),
        mac,
        reused: true,
        greeting: session.greeting.clone(),
        identity: session.identity.clone(),
        address: session.address,
        logged_in: session.logged_in,
    };
    Some((session, ticket))
}

/// After a fresh back-end login that `password` passed: sessions parked
/// under an older password go; the ticket to park this one later.
pub(super) fn fresh<S: Stream + 'static>(
    ctx: &SessionContext,
    user: &str,
    route: &str,
    password: &[u8],
    login: (&BackendGreeting, &str, SocketAddr, LoginStamp),
) -> ParkTicket {
    let (greeting, identity, address, logged_in) = login;
    let cache = cache::<S>(ctx);
    let mut cache = cache.borrow_mut();
    let mac = cache.forget_other_passwords(identity, route, password);
    record_parked(ctx, &cache);
    ParkTicket {
        user: user.to_owned(),
        route: route.to_owned(),
        mac,
        reused: false,
        greeting: greeting.clone(),
        identity: identity.to_owned(),
        address,
        logged_in,
    }
}

/// `NOOP` on a session parked a while: healthy if answered `OK` in time.
async fn healthy<S: Stream>(stream: &S) -> bool {
    let check = async {
        let (res, _) = stream.write_all(b"mgh NOOP\r\n".to_vec()).await;
        res.ok()?;
        let mut seen = Vec::new();
        loop {
            let (res, buf) = stream.read(Vec::with_capacity(512)).await;
            let n = res.ok().filter(|&n| n > 0)?;
            seen.extend_from_slice(&buf[..n]);
            if seen.len() > HEALTH_CHECK_BYTES {
                return None;
            }
            // Untagged lines may come first; our answer ends the check and
            // nothing may follow it.
            if let Some(at) = find_line(&seen, b"mgh ") {
                let line = &seen[at..];
                let end = line.iter().position(|&b| b == b'\n')?;
                return Some(line.starts_with(b"mgh OK") && at + end + 1 == seen.len());
            }
        }
    };
    timeout(HEALTH_CHECK_TIMEOUT, check)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Where a complete line starting with `prefix` begins in `bytes`.
fn find_line(bytes: &[u8], prefix: &[u8]) -> Option<usize> {
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..].iter().position(|&b| b == b'\n')? + start;
        if bytes[start..].starts_with(prefix) {
            return Some(start);
        }
        start = end + 1;
    }
    None
}

/// The client's `LOGOUT` was taken by the tracked relay: answer it, and
/// park the back end if it is clean and not retired; whether it was parked.
pub(super) async fn logout<C: Stream, S: Stream + 'static>(
    ctx: &SessionContext,
    client: &C,
    backend: S,
    logout: Logout,
    ticket: ParkTicket,
) -> bool {
    let answer = format!(
        "* BYE Logging out\r\n{} OK Logout completed.\r\n",
        logout.tag
    );
    let _ = timeout(GOODBYE_TIMEOUT, client.write_all(answer.into_bytes())).await;
    if !logout.backend_clean {
        ctx.record(|r| r.cache_event(CacheEvent::Unclean, 1));
        return false;
    }
    let cache = cache::<S>(ctx);
    let session = BackendSession {
        stream: backend,
        address: ticket.address,
        identity: ticket.identity,
        greeting: ticket.greeting,
        logged_in: ticket.logged_in,
    };
    if cache.borrow().retired(&ticket.user, &session) {
        // Its password may have changed since: log it out for good.
        ctx.record(|r| r.cache_event(CacheEvent::Retired, 1));
        let bye = session.stream.write_all(b"mgq LOGOUT\r\n".to_vec());
        let _ = timeout(GOODBYE_TIMEOUT, bye).await;
        return false;
    }
    let mut cache = cache.borrow_mut();
    cache.park(&ticket.user, &ticket.route, ticket.mac, session);
    ctx.record(|r| r.cache_event(CacheEvent::Parked, 1));
    record_parked(ctx, &cache);
    true
}
