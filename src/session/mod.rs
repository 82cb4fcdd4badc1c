//! One client connection's life: greeting and pre-auth, directory lookup,
//! back-end connect and login replay, then relay.
//!
//! This is the only place where protocol machines meet sockets. It owns the
//! time bounds (pre-auth timeout, connect and login timeouts) and writes the
//! single log line per session. It never logs a password: credentials travel
//! as [`crate::auth::Credentials`], whose password prints as `***`.
//!
//! One file per phase: `preauth.rs` runs the pre-auth machine (and the TLS
//! handshakes), `login.rs` a login attempt (lookup, connect, back-end login),
//! `relay.rs` the relay, `record.rs` the log line and gauges, `context.rs`
//! what a session knows. Each phase is boxed and awaited in turn here, so the
//! long-lived session future holds none of the pre-auth state while it relays.

pub mod backend_offers;
pub mod connection_cache;
mod context;
mod io;
mod login;
mod login_error;
pub mod parking_lot;
mod preauth;
pub mod rate_limit;
mod record;
mod relay;
mod reuse;
mod tracking;

pub use context::{BackendPolicy, ListenerContext, SessionContext, WorkerShared};
pub use record::{write_session_end_as_text, Outcome, TlsHandshake};

use crate::config::TlsMode;
use crate::login::PreAuth;
use crate::tls::MaybeTls;
use crate::transport::Connector;
use preauth::{drive, tls_handshake, LoggedIn, PreAuthEnd};
use record::{Gauge, GaugeKind, SessionRecord};
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use tokio::time::Instant;

/// What the runtime holds for a session while it lives (its admission: the
/// worker's session count, connection caps); dropped when the session ends.
pub trait Ticket: 'static {
    /// The session logged in: it no longer counts as a pre-auth connection.
    fn logged_in(&self);
    /// The session completed a command before login (it is not idle).
    fn progressed(&self);
    /// Resolves when the session must close before login: a newcomer took
    /// its pre-auth place.
    fn evicted(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
    /// Counts the session for the user `canonical` names (called only when
    /// the cap is on) from its address; `false` when
    /// `max_sessions_per_user_address` refuses it.
    fn claim_user(&self, canonical: &dyn Fn() -> String) -> bool;
    /// The login failed: the session no longer counts for its user.
    fn release_user(&self);
}

/// Where a client connected from, and to.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// The client's address (a PROXY header's source, else the peer).
    pub peer: SocketAddr,
    /// The address the client connected to, when a PROXY header named it
    /// (else the socket's own local address is used).
    pub local: Option<SocketAddr>,
}

/// Runs one client connection to its end.
///
/// `ticket` is kept until the session ends: passing it in, rather than
/// wrapping this future in another that holds it, keeps one copy of the
/// session's state per task instead of two.
pub fn run<C: Connector, T: Ticket>(
    ctx: Rc<SessionContext>,
    connector: C,
    client: C::Stream,
    endpoints: Endpoints,
    ticket: T,
) -> impl Future<Output = ()> {
    // What the future keeps for the session's whole life is what it
    // captures here and the relay's state: it is a plain function returning
    // an `async move` block, because an `async fn` would hold its arguments
    // twice (as arguments and as the locals they move into) and every local
    // it ever had (the pre-auth `Session`, the logged-in parts) beside the
    // relay.
    let mut record = SessionRecord::new(endpoints.peer, ctx.listener.protocol);
    let local = endpoints.local;
    async move {
        // Boxed, and over before the relay starts: an idle relayed session
        // holds none of the pre-auth phase's state, only the relay's.
        let logged_in = Box::pin(preauth(
            &ctx,
            &connector,
            client,
            local,
            &ticket,
            &mut record,
        ))
        .await;
        if let Some(logged_in) = logged_in {
            ticket.logged_in();
            relay::relay_session(&ctx, logged_in, &mut record).await;
        }
        record.finish(&ctx);
    }
}

/// The pre-auth phase up to a login: the session to relay, if it logged in.
async fn preauth<C: Connector>(
    ctx: &SessionContext,
    connector: &C,
    client: C::Stream,
    local: Option<SocketAddr>,
    ticket: &dyn Ticket,
    record: &mut SessionRecord,
) -> Option<Box<Relayable<C::Stream>>> {
    let session = Session {
        ctx,
        connector,
        deadline: Instant::now() + ctx.listener.preauth_timeout,
        ticket,
        local,
    };
    let machines = ctx.listener.machines.clone();
    let machine = |tls| machines.preauth(tls);
    session.serve(client, machine, record).await.map(Box::new)
}

/// A logged-in session; its client speaks plaintext or TLS (one type for
/// both, so that the relay is compiled, and sized, once).
type Relayable<S> = LoggedIn<MaybeTls<S>, MaybeTls<S>>;

/// What every phase of one session is handed.
struct Session<'a, C> {
    ctx: &'a SessionContext,
    connector: &'a C,
    /// End of the pre-auth time (connect → login).
    deadline: Instant,
    /// The session's admission.
    ticket: &'a dyn Ticket,
    /// Where the client connected to, when a PROXY header said so.
    local: Option<SocketAddr>,
}

impl<C: Connector> Session<'_, C> {
    /// Pre-auth in plaintext or TLS (implicit, or after STARTTLS) up to a
    /// login: the session to relay, if it logged in.
    async fn serve<P: PreAuth>(
        &self,
        client: C::Stream,
        new_machine: impl FnOnce(bool) -> P,
        record: &mut SessionRecord,
    ) -> Option<Relayable<C::Stream>> {
        let _gauge = Gauge::enter(self.ctx, GaugeKind::PreAuth);
        let fd = client.as_raw_fd();
        let handshake =
            |client, record| Box::pin(tls_handshake(self.ctx, client, self.deadline, record));
        if self.ctx.listener.tls_mode == TlsMode::Implicit {
            let handshake = handshake(client, &mut *record);
            let Some(shook) = self.unless_evicted(handshake, None).await else {
                return evicted(record);
            };
            let client = shook?;
            let work = Box::pin(drive(self, client, new_machine(true), record));
            let Some(end) = self.unless_evicted(work, None).await else {
                return evicted(record);
            };
            return logged_in(end).map(|s| s.with_client(MaybeTls::Tls));
        }
        let work = Box::pin(drive(self, client, new_machine(false), record));
        let Some(end) = self.unless_evicted(work, Some(fd)).await else {
            return evicted(record);
        };
        match end {
            PreAuthEnd::StartTls(client, mut machine) => {
                let handshake = handshake(client, &mut *record);
                let Some(shook) = self.unless_evicted(handshake, None).await else {
                    return evicted(record);
                };
                let client = shook?;
                machine.tls_started();
                let work = Box::pin(drive(self, client, machine, record));
                let Some(end) = self.unless_evicted(work, None).await else {
                    return evicted(record);
                };
                logged_in(end).map(|s| s.with_client(MaybeTls::Tls))
            }
            end => logged_in(end).map(|s| s.with_client(MaybeTls::Plain)),
        }
    }

    /// `work`'s output, or `None` when the session was evicted first (then
    /// `plaintext`, the client's socket while it speaks plaintext, hears
    /// why before `work` and the socket are dropped).
    async fn unless_evicted<F: Future>(
        &self,
        work: F,
        plaintext: Option<RawFd>,
    ) -> Option<F::Output> {
        tokio::pin!(work);
        tokio::select! {
            biased;
            done = &mut work => Some(done),
            () = self.ticket.evicted() => {
                if let Some(fd) = plaintext {
                    // Like Dovecot's "Connection queue full".
                    goodbye(fd, self.ctx.listener.spec.queue_full);
                }
                None
            }
        }
    }
}

/// The logged-in session a pre-auth phase ended with, if any.
fn logged_in<S, P, B>(end: PreAuthEnd<S, P, B>) -> Option<LoggedIn<S, B>> {
    match end {
        PreAuthEnd::LoggedIn(session) => Some(session),
        _ => None,
    }
}

/// Notes an eviction; nothing to relay.
fn evicted<T>(record: &mut SessionRecord) -> Option<T> {
    record.outcome = Outcome::Evicted;
    None
}

/// One line to a socket that is about to be closed: best effort, never
/// waiting (the client may not read).
fn goodbye(fd: RawFd, line: &[u8]) {
    // SAFETY: `fd` is the client's socket, still owned by the session's
    // pre-auth future, which is alive for this call.
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    crate::transport::send_now(socket, line);
}
