//! The connection cache as a session uses it: at login, a parked back-end
//! session of the same user, route and password instead of a back-end login
//! (checked with a `NOOP` when it has been parked a while); at the client's
//! `LOGOUT`, the answer from here and the back-end session parked.
//!
//! The sessions go to and come from the process's parking lot
//! ([`super::parking_lot`]): a session parked on one worker is taken on
//! whichever worker the next login lands, and moved onto its reactor.
//!
//! This module owns the session side of the cache: what is carried from
//! login to logout ([`ParkTicket`]). It never keeps a password: only its
//! MAC under the process's key.

use super::connection_cache::{BackendSession, LoginStamp, Miss};
use super::SessionContext;
use crate::directory::Route;
use crate::login::BackendGreeting;
use crate::metrics::CacheEvent;
use crate::relay::tracked::Logout;
use crate::tls::{DetachedStream, MaybeTls};
use crate::transport::{Connector, Detach, Stream};
use std::net::SocketAddr;
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

/// A parked session of `identity` (the back-end login name; `user` is what
/// the client typed) on `route` whose MAC `password` verifies and that is
/// (still) healthy, on this worker's reactor; `None` (counted) otherwise.
pub(super) async fn take<C: Connector>(
    ctx: &SessionContext,
    connector: &C,
    (user, identity): (&str, &str),
    route: &str,
    password: &[u8],
) -> Option<(BackendSession<MaybeTls<C::Stream>>, ParkTicket)> {
    let lot = &ctx.worker.parking;
    let taken = lot.take(identity, route, password);
    let (parked, due) = match taken {
        Ok(taken) => taken,
        Err(miss) => {
            let event = match miss {
                Miss::Empty => CacheEvent::MissEmpty,
                Miss::WrongPassword => CacheEvent::MissWrongPassword,
            };
            ctx.record(|r| r.cache_event(event, 1));
            return None;
        }
    };
    let mac = parked.mac().to_vec();
    let session = match parked.session.map_stream(|s| s.attach(connector)) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(error = %e, "a parked session could not join this worker: closed");
            ctx.record(|r| r.cache_event(CacheEvent::MissUnhealthy, 1));
            return None;
        }
    };
    if due && !healthy(&session.stream).await {
        ctx.record(|r| r.cache_event(CacheEvent::MissUnhealthy, 1));
        return None;
    }
    ctx.record(|r| r.cache_event(CacheEvent::Hit, 1));
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
pub(super) fn fresh(
    ctx: &SessionContext,
    user: &str,
    route: &str,
    password: &[u8],
    login: (&BackendGreeting, &str, SocketAddr, LoginStamp),
) -> ParkTicket {
    let (greeting, identity, address, logged_in) = login;
    let mac = ctx
        .worker
        .parking
        .forget_other_passwords(identity, route, password);
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
pub(super) async fn logout<C: Stream, S: Stream + Detach>(
    ctx: &SessionContext,
    client: &C,
    backend: MaybeTls<S>,
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
    let lot = &ctx.worker.parking;
    let session = BackendSession {
        stream: backend,
        address: ticket.address,
        identity: ticket.identity,
        greeting: ticket.greeting,
        logged_in: ticket.logged_in,
    };
    if lot.retired(&ticket.user, &session) {
        // Its password may have changed since: log it out for good.
        ctx.record(|r| r.cache_event(CacheEvent::Retired, 1));
        let bye = session.stream.write_all(b"mgq LOGOUT\r\n".to_vec());
        let _ = timeout(GOODBYE_TIMEOUT, bye).await;
        return false;
    }
    let session = match session.map_stream(DetachedStream::detach) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(error = %e, "a back-end session could not be parked: closed");
            return false;
        }
    };
    lot.park(&ticket.user, &ticket.route, ticket.mac, session);
    ctx.record(|r| r.cache_event(CacheEvent::Parked, 1));
    true
}
