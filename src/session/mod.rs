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

pub mod connection_cache;
mod context;
mod login;
mod login_error;
mod preauth;
pub mod rate_limit;
mod record;
mod relay;
mod reuse;

pub use context::{BackendPolicy, CacheSetup, ListenerContext, SessionContext, WorkerShared};
pub use record::{Outcome, TlsHandshake};

use crate::config::{Protocol, TlsMode};
use crate::imap::ImapPreAuth;
use crate::login::PreAuth;
use crate::pop3::Pop3PreAuth;
use crate::tls::MaybeTls;
use crate::transport::{Connector, Stream};
use preauth::{drive, tls_handshake, PreAuthEnd};
use record::{Gauge, GaugeKind, SessionRecord};
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::time::Instant;

/// What the runtime holds for a session while it lives (its admission: the
/// worker's session count, connection caps); dropped when the session ends.
pub trait Ticket: 'static {
    /// The session logged in: it no longer counts as a pre-auth connection.
    fn logged_in(&mut self);
}

/// Runs one client connection to its end.
///
/// `ticket` is kept until the session ends: passing it in, rather than
/// wrapping this future in another that holds it, keeps one copy of the
/// session's state per task instead of two.
pub async fn run<C: Connector, T: Ticket>(
    ctx: Rc<SessionContext>,
    connector: C,
    client: C::Stream,
    peer: SocketAddr,
    mut ticket: T,
) {
    let mut record = SessionRecord::new(peer, ctx.listener.protocol);
    let deadline = Instant::now() + ctx.listener.preauth_timeout;
    let session = Session {
        ctx: &ctx,
        connector: &connector,
        deadline,
    };
    match ctx.listener.protocol {
        Protocol::Imap => {
            let settings = ctx.listener.imap.clone();
            let machine = |tls| ImapPreAuth::with_tls(settings, tls);
            session
                .serve(client, machine, &mut record, &mut ticket)
                .await
        }
        Protocol::Pop3 => {
            let settings = ctx.listener.pop3.clone();
            let machine = |tls| Pop3PreAuth::with_tls(settings, tls);
            session
                .serve(client, machine, &mut record, &mut ticket)
                .await
        }
    }
    record.finish(&ctx);
}

/// What every phase of one session is handed.
struct Session<'a, C> {
    ctx: &'a SessionContext,
    connector: &'a C,
    /// End of the pre-auth time (connect → login).
    deadline: Instant,
}

impl<C: Connector> Session<'_, C> {
    /// Pre-auth in plaintext or TLS (implicit, or after STARTTLS), then
    /// login and relay.
    async fn serve<P: PreAuth, T: Ticket>(
        &self,
        client: C::Stream,
        new_machine: impl FnOnce(bool) -> P,
        record: &mut SessionRecord,
        ticket: &mut T,
    ) {
        let gauge = Gauge::enter(self.ctx, GaugeKind::PreAuth);
        let handshake =
            |client, record| Box::pin(tls_handshake(self.ctx, client, self.deadline, record));
        if self.ctx.listener.tls_mode == TlsMode::Implicit {
            let Some(client) = handshake(client, &mut *record).await else {
                return;
            };
            let end = Box::pin(drive(self, client, new_machine(true), record)).await;
            return self.relay_if_logged_in(end, gauge, record, ticket).await;
        }
        match Box::pin(drive(self, client, new_machine(false), record)).await {
            PreAuthEnd::StartTls(client, mut machine) => {
                let Some(client) = handshake(client, &mut *record).await else {
                    return;
                };
                machine.tls_started();
                let end = Box::pin(drive(self, client, machine, record)).await;
                self.relay_if_logged_in(end, gauge, record, ticket).await
            }
            end => self.relay_if_logged_in(end, gauge, record, ticket).await,
        }
    }

    /// Relays a logged-in session (counted as relaying from here on).
    async fn relay_if_logged_in<S: Stream, P, T: Ticket>(
        &self,
        end: PreAuthEnd<S, P, MaybeTls<C::Stream>>,
        preauth: Gauge<'_>,
        record: &mut SessionRecord,
        ticket: &mut T,
    ) {
        if let PreAuthEnd::LoggedIn(session) = end {
            drop(preauth);
            ticket.logged_in();
            Box::pin(relay::relay_session(self.ctx, session, record)).await;
        }
    }
}
