//! The one log line per session, and the gauges a session holds while it is
//! in a phase.

use super::SessionContext;
use crate::config::Protocol;
use crate::login::AddressText;
use crate::metrics::RelayMethod;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::time::Instant;

/// How a session ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in and relayed until both sides closed.
    Relayed,
    /// Relay ended by the idle timeout.
    IdleTimeout,
    /// Relay ended by a socket error.
    RelayError,
    /// Closed before login (LOGOUT/QUIT, too many failures, limits, EOF).
    ClosedBeforeLogin,
    /// Pre-auth timeout.
    PreAuthTimeout,
    /// A socket error before login.
    ClientError,
    /// The TLS handshake failed or timed out.
    TlsFailed,
    /// Closed before login because the server is stopping.
    ServerShutdown,
    /// Closed before login: at the pre-auth cap, a newcomer took its place.
    Evicted,
}

impl Outcome {
    /// Label in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError => "relay_error",
            Outcome::ClosedBeforeLogin => "closed_before_login",
            Outcome::PreAuthTimeout => "preauth_timeout",
            Outcome::ClientError => "client_error",
            Outcome::TlsFailed => "tls_failed",
            Outcome::ServerShutdown => "server_shutdown",
            Outcome::Evicted => "evicted",
        }
    }
}

/// How the client's TLS session was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsHandshake {
    /// A full handshake.
    Full,
    /// A resumed session (ticket or session id).
    Resumed,
}

impl TlsHandshake {
    /// Label in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsHandshake::Full => "full",
            TlsHandshake::Resumed => "resumed",
        }
    }
}

/// The record logged when a session ends.
#[derive(Debug)]
pub(super) struct SessionRecord {
    pub peer: SocketAddr,
    pub protocol: Protocol,
    /// Shared with the registry's entry (`Arc`): an idle session keeps its
    /// login name once.
    pub user: Option<Arc<str>>,
    /// The name the back end knows the user by (the route's login user);
    /// the same allocation as `user` when equal.
    pub identity: Option<Arc<str>>,
    pub backend: Option<SocketAddr>,
    pub failed_logins: u32,
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub started: Instant,
    pub outcome: Outcome,
    /// Set when the client used TLS.
    pub tls: Option<TlsHandshake>,
    /// Set once relaying.
    pub relay: Option<RelayMethod>,
    /// On `connection_cache` listeners: `new` (a back-end login) or
    /// `reused` (a parked session); `parked` is appended when the session
    /// was parked at its end.
    pub backend_session: Option<&'static str>,
    /// Bytes on the wire to and from the back end, when the leg was
    /// compressed (the counts above are the uncompressed bytes).
    pub wire: Option<crate::compress::WireBytes>,
}

impl SessionRecord {
    pub fn new(peer: SocketAddr, protocol: Protocol) -> Self {
        Self {
            peer,
            protocol,
            user: None,
            identity: None,
            backend: None,
            failed_logins: 0,
            client_to_backend: 0,
            backend_to_client: 0,
            started: Instant::now(),
            outcome: Outcome::ClosedBeforeLogin,
            tls: None,
            relay: None,
            backend_session: None,
            wire: None,
        }
    }

    /// Counts the session's end and writes its log line.
    pub fn finish(&self, ctx: &SessionContext) {
        ctx.record(|r| {
            r.session_end(ctx.listener.label, self.started.elapsed());
            if let (Some(backend), Some(method)) = (self.backend, self.relay) {
                let plain = (self.client_to_backend, self.backend_to_client);
                match self.wire {
                    None => r.relayed(backend, plain.0, plain.1, method),
                    Some(w) => {
                        r.relayed(backend, w.sent, w.received, method);
                        let wire = (w.sent, w.received);
                        r.compressed(backend, crate::metrics::CompressedBytes { wire, plain });
                    }
                }
            }
        });
        if let Some(backend_session) = self.backend_session {
            tracing::info!(
                target: "mailgate::session",
                client = %AddressText(self.peer),
                user = self.user.as_deref().unwrap_or("-"),
                backend_session,
                "connection cache"
            );
        }
        tracing::info!(
            target: "mailgate::session",
            client = %AddressText(self.peer),
            protocol = %self.protocol,
            tls = self.tls.map_or("none", TlsHandshake::as_str),
            relay = self.relay.map_or("-", RelayMethod::as_str),
            // A string field is written quoted and escaped (`Debug`), so a
            // user name with a line break cannot forge a log line.
            user = self.user.as_deref().unwrap_or("-"),
            backend = %AddressText(self.backend),
            failed_logins = self.failed_logins,
            bytes_up = self.client_to_backend,
            bytes_down = self.backend_to_client,
            duration_ms = self.started.elapsed().as_millis() as u64,
            outcome = self.outcome.as_str(),
            "session end"
        );
    }
}

/// Which session gauge a [`Gauge`] holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GaugeKind {
    /// `mailgate_sessions{phase="preauth"}`.
    PreAuth,
    /// `mailgate_sessions{phase="relaying"}`.
    Relaying,
}

/// Counts a session in one phase's gauge until dropped, however the phase
/// ends.
pub(super) struct Gauge<'a> {
    ctx: &'a SessionContext,
    kind: GaugeKind,
}

impl<'a> Gauge<'a> {
    pub fn enter(ctx: &'a SessionContext, kind: GaugeKind) -> Self {
        ctx.record(|r| *Self::slot(r, kind) += 1);
        Self { ctx, kind }
    }

    fn slot(r: &mut crate::metrics::Recorder, kind: GaugeKind) -> &mut i64 {
        match kind {
            GaugeKind::PreAuth => &mut r.preauth_sessions,
            GaugeKind::Relaying => &mut r.relaying_sessions,
        }
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        let kind = self.kind;
        self.ctx.record(|r| *Self::slot(r, kind) -= 1);
    }
}
