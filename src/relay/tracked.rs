//! The tracked path, for listeners with the connection cache: copies like
//! [`super::copy`] but shows every byte to an [`Inspector`] (the IMAP
//! tracker, through the session layer) before it goes on, so the session can end with the client's `LOGOUT`
//! answered here and the back-end session kept (parked) for the user's next
//! login.
//!
//! Client bytes wait only for the end of their command line (at most
//! `max_line`, then the tracker lets everything through); server bytes are
//! held only while they might start the answer to our own command. When the
//! tracker parks, the up direction sends our neutral command (`UNSELECT` or
//! `NOOP`) instead of the `LOGOUT` and stops; the down direction stops at
//! that command's answer, which the client never sees. Neither direction
//! closes its peer's write side then: the caller answers the client's
//! `LOGOUT` and keeps the back end.
//!
//! This module must never decide what is parkable (the inspector does), know
//! a protocol, nor hold a parked session (the session layer's cache does).

use super::inspect::{ClientStep, Inspector, ServerStep};
use super::{RelayEnd, RelayMethod, RelaySettings, RelayStats, Shared};
use crate::transport::Stream;
use std::cell::{Cell, RefCell};
use std::io;
use std::time::Duration;
use tokio::time::Instant;

/// How long the back end may take to answer our neutral command.
pub const NEUTRAL_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// How a tracked relay ended.
#[derive(Debug)]
pub struct TrackedEnd {
    /// Totals and why it ended ([`RelayEnd::Closed`] when parked).
    pub stats: RelayStats,
    /// Set when the client's `LOGOUT` was taken here: the client's tag, and
    /// whether the back end is clean (our command answered `OK`, nothing
    /// else pending) so the session can be parked.
    pub logout: Option<Logout>,
}

/// The client's `LOGOUT`, taken here.
#[derive(Debug)]
pub struct Logout {
    /// Its tag, for our tagged `OK`.
    pub tag: String,
    /// The back end is in a neutral state and may be parked.
    pub backend_clean: bool,
}

struct Parking {
    logout: RefCell<Option<String>>,
    since: Cell<Option<Instant>>,
    clean: Cell<bool>,
    wake: tokio::sync::Notify,
}

/// Relays `client` ⇄ `backend` through `tracker`; `pipelined` are client
/// bytes that came with the login (they go through the tracker first).
pub async fn relay<A: Stream, B: Stream, I: Inspector>(
    client: &A,
    backend: &B,
    tracker: &RefCell<I>,
    pipelined: Vec<u8>,
    settings: RelaySettings,
) -> TrackedEnd {
    let shared = Shared::new(client, backend);
    let parking = Parking {
        logout: RefCell::new(None),
        since: Cell::new(None),
        clean: Cell::new(false),
        wake: tokio::sync::Notify::new(),
    };
    let up = up(&shared, tracker, &parking, pipelined, settings.buffer_size);
    let down = down(&shared, tracker, &parking, settings.buffer_size);
    // Pinned here and polled through references: one copy of each
    // direction in the session's state.
    tokio::pin!(up, down);
    let clock = tokio::time::sleep_until(shared.last_activity.get() + settings.idle_timeout);
    tokio::pin!(clock);
    let both = async { tokio::join!(up.as_mut(), down.as_mut()) };
    let idle = std::future::poll_fn(|cx| {
        super::poll_idle(clock.as_mut(), &shared, settings.idle_timeout, cx)
    });
    let end = tokio::select! {
        _ = both => shared.error.get().map_or(RelayEnd::Closed, RelayEnd::Error),
        () = idle => RelayEnd::IdleTimeout,
        () = answer_watchdog(&parking) => {
            shared.abort(io::ErrorKind::TimedOut);
            RelayEnd::Error(io::ErrorKind::TimedOut)
        }
    };
    let logout = parking.logout.take().map(|tag| Logout {
        tag,
        backend_clean: end == RelayEnd::Closed && parking.clean.get(),
    });
    TrackedEnd {
        stats: RelayStats {
            client_to_backend: shared.client_to_backend.get(),
            backend_to_client: shared.backend_to_client.get(),
            end,
            method: RelayMethod::Copy,
        },
        logout,
    }
}

/// Fires [`NEUTRAL_ANSWER_TIMEOUT`] after our command went out, if its
/// answer has not ended the relay by then.
async fn answer_watchdog(parking: &Parking) {
    loop {
        match parking.since.get() {
            Some(since) => {
                tokio::time::sleep_until(since + NEUTRAL_ANSWER_TIMEOUT).await;
                return;
            }
            None => parking.wake.notified().await,
        }
    }
}

async fn read_more<S: Stream>(from: &S, kept: &mut Vec<u8>, size: usize) -> io::Result<usize> {
    from.readable().await?;
    let (res, buf) = from.read(Vec::with_capacity(size)).await;
    let n = res?;
    kept.extend_from_slice(&buf[..n]);
    Ok(n)
}

async fn send<S: Stream>(to: &S, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let (res, _) = to.write_all(bytes.to_vec()).await;
    res
}

async fn up<A: Stream, B: Stream, I: Inspector>(
    shared: &Shared<'_, A, B>,
    tracker: &RefCell<I>,
    parking: &Parking,
    pipelined: Vec<u8>,
    size: usize,
) {
    let mut kept = pipelined;
    // Pipelined bytes are looked at before anything is read.
    let mut read_first = kept.is_empty();
    loop {
        if read_first {
            match read_more(shared.client, &mut kept, size).await {
                Ok(0) => {
                    let _ = shared.backend.close_write().await;
                    return;
                }
                Ok(_) => {}
                Err(e) => return shared.abort(e.kind()),
            }
        }
        read_first = true;
        let step = tracker.borrow_mut().client(&kept);
        match step {
            ClientStep::Forward(n) => {
                if let Err(e) = send(shared.backend, &kept[..n]).await {
                    return shared.abort(e.kind());
                }
                kept.drain(..n);
                shared
                    .client_to_backend
                    .set(shared.client_to_backend.get() + n as u64);
            }
            ClientStep::Park {
                forward,
                logout_tag,
                internal,
            } => {
                let mut out = kept[..forward].to_vec();
                out.extend_from_slice(&internal);
                if let Err(e) = send(shared.backend, &out).await {
                    return shared.abort(e.kind());
                }
                shared
                    .client_to_backend
                    .set(shared.client_to_backend.get() + forward as u64);
                *parking.logout.borrow_mut() = Some(logout_tag);
                parking.since.set(Some(Instant::now()));
                parking.wake.notify_one();
                return;
            }
        }
        shared.last_activity.set(Instant::now());
    }
}

async fn down<A: Stream, B: Stream, I: Inspector>(
    shared: &Shared<'_, A, B>,
    tracker: &RefCell<I>,
    parking: &Parking,
    size: usize,
) {
    let mut kept = Vec::new();
    loop {
        match read_more(shared.backend, &mut kept, size).await {
            Ok(0) => {
                // The back end is gone; with a LOGOUT taken here the
                // client's answer comes from the caller.
                if parking.logout.borrow().is_none() {
                    let _ = shared.client.close_write().await;
                }
                return;
            }
            Ok(_) => {}
            Err(e) => return shared.abort(e.kind()),
        }
        let step = tracker.borrow_mut().server(&kept);
        let (forward, done) = match step {
            ServerStep::Forward(n) => (n, None),
            ServerStep::Internal { forward, len, ok } => {
                // Anything after our answer was not asked for: not clean.
                (forward, Some(ok && kept.len() == forward + len))
            }
        };
        if let Err(e) = send(shared.client, &kept[..forward]).await {
            return shared.abort(e.kind());
        }
        shared
            .backend_to_client
            .set(shared.backend_to_client.get() + forward as u64);
        shared.last_activity.set(Instant::now());
        if let Some(clean) = done {
            parking.clean.set(clean);
            return;
        }
        kept.drain(..forward);
    }
}
