//! One client connection's life: greeting and pre-auth, directory lookup,
//! back-end connect and login replay, then relay.
//!
//! This is the only place where protocol machines meet sockets. It owns the
//! time bounds (pre-auth timeout, connect and login timeouts) and writes the
//! single log line per session. It never logs a password: credentials travel
//! as [`crate::auth::Credentials`], whose password prints as `***`. The
//! back-end half of a login lives in `session/backend.rs`.

mod backend;
pub mod rate_limit;

use crate::config::{ImapBackendAuth, Pop3BackendAuth, Protocol, TlsMode};
use crate::directory::Directory;
use crate::imap::{ImapPreAuth, ImapSettings};
use crate::login::{ClientAddress, LoginFailure, PreAuth, PreAuthEvent};
use crate::metrics::registry::Registry;
use crate::metrics::{self, LoginOutcome, Recorder, SharedRecorder};
use crate::pop3::{Pop3PreAuth, Pop3Settings};
use crate::relay::{self, RelayEnd, RelaySettings};
use crate::runtime::transport::{Connector, Stream};
use crate::tls::{MaybeTls, TlsStream};
use arc_swap::ArcSwap;
use backend::{log_in, LoginError};
use rate_limit::LoginRateLimit;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// Read size while before login (commands are small; bounded by the limits).
const PREAUTH_READ_SIZE: usize = 4096;

/// Everything a session needs, shared by the sessions of one listener on one worker.
pub struct SessionContext {
    /// Protocol of the listener.
    pub protocol: Protocol,
    /// The listener, as metrics label it.
    pub listener: metrics::Listener,
    /// IMAP pre-auth settings.
    pub imap: Rc<ImapSettings>,
    /// POP3 pre-auth settings.
    pub pop3: Rc<Pop3Settings>,
    /// The directory (per worker).
    pub directory: Rc<dyn Directory>,
    /// Back-end port when a route names none.
    pub backend_port: u16,
    /// Back-end TCP connect bound.
    pub connect_timeout: Duration,
    /// Back-end greeting + login bound.
    pub login_timeout: Duration,
    /// IMAP back-end login method.
    pub imap_auth: ImapBackendAuth,
    /// POP3 back-end login method.
    pub pop3_auth: Pop3BackendAuth,
    /// Pass the client's address to back ends that accept it.
    pub forward_client_address: bool,
    /// Client connect → login bound.
    pub preauth_timeout: Duration,
    /// Relay settings.
    pub relay: RelaySettings,
    /// TLS mode of the listener.
    pub tls_mode: TlsMode,
    /// The listener's TLS config (swapped on reload).
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// Bound on a TLS handshake.
    pub handshake_timeout: Duration,
    /// TLS towards back ends.
    pub backend_tls_mode: TlsMode,
    /// The TLS client config for back ends.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    /// This worker's recorder; `None` when metrics are off.
    pub metrics: Option<SharedRecorder>,
    /// This worker's relaying sessions.
    pub registry: Arc<Registry>,
    /// This worker's failed-login counts per client address; `None` when
    /// the limit is off.
    pub login_limit: Option<Rc<RefCell<LoginRateLimit>>>,
}

impl SessionContext {
    /// Records into this worker's recorder, if metrics are on.
    fn record(&self, f: impl FnOnce(&mut Recorder)) {
        if let Some(recorder) = &self.metrics {
            metrics::with(recorder, f);
        }
    }

    /// Whether logins from `peer` are refused for now.
    fn login_limited(&self, peer: SocketAddr) -> bool {
        self.login_limit.as_ref().is_some_and(|limit| {
            limit
                .borrow_mut()
                .is_limited(peer.ip(), std::time::Instant::now())
        })
    }

    /// Counts a failed login from `peer` towards its limit.
    fn login_failed_from(&self, peer: SocketAddr) {
        if let Some(limit) = &self.login_limit {
            limit
                .borrow_mut()
                .record_failure(peer.ip(), std::time::Instant::now());
        }
    }
}

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
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError => "relay_error",
            Outcome::ClosedBeforeLogin => "closed_before_login",
            Outcome::PreAuthTimeout => "preauth_timeout",
            Outcome::ClientError => "client_error",
            Outcome::TlsFailed => "tls_failed",
        }
    }
}

/// The record logged when a session ends.
#[derive(Debug)]
struct SessionRecord {
    peer: SocketAddr,
    protocol: Protocol,
    user: Option<String>,
    backend: Option<SocketAddr>,
    failed_logins: u32,
    client_to_backend: u64,
    backend_to_client: u64,
    started: Instant,
    outcome: Outcome,
    /// `full` or `resumed` when the client used TLS.
    tls: Option<&'static str>,
    /// `splice` or `copy` once relaying.
    relay: Option<&'static str>,
}

impl SessionRecord {
    fn log(&self) {
        tracing::info!(
            target: "mailgate::session",
            client = %self.peer,
            protocol = %self.protocol,
            tls = self.tls.unwrap_or("none"),
            relay = self.relay.unwrap_or("-"),
            user = self.user.as_deref().unwrap_or("-"),
            backend = %self.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            failed_logins = self.failed_logins,
            bytes_up = self.client_to_backend,
            bytes_down = self.backend_to_client,
            duration_ms = self.started.elapsed().as_millis() as u64,
            outcome = self.outcome.as_str(),
            "session end"
        );
    }
}

/// Runs one client connection to its end.
///
/// `held` is kept until the session ends (the worker's session count): passing
/// it in, rather than wrapping this future in another that holds it, keeps
/// one copy of the session's state per task instead of two.
pub async fn run<C: Connector, H: 'static>(
    ctx: Rc<SessionContext>,
    connector: C,
    client: C::Stream,
    peer: SocketAddr,
    held: H,
) {
    let _held = held;
    let mut record = SessionRecord {
        peer,
        protocol: ctx.protocol,
        user: None,
        backend: None,
        failed_logins: 0,
        client_to_backend: 0,
        backend_to_client: 0,
        started: Instant::now(),
        outcome: Outcome::ClosedBeforeLogin,
        tls: None,
        relay: None,
    };
    let deadline = Instant::now() + ctx.preauth_timeout;
    ctx.record(|r| r.preauth_sessions += 1);
    match ctx.protocol {
        Protocol::Imap => {
            let machine = |tls| ImapPreAuth::with_tls(ctx.imap.clone(), tls);
            serve(&ctx, &connector, client, machine, deadline, &mut record).await
        }
        Protocol::Pop3 => {
            let machine = |tls| Pop3PreAuth::with_tls(ctx.pop3.clone(), tls);
            serve(&ctx, &connector, client, machine, deadline, &mut record).await
        }
    }
    ctx.record(|r| {
        if record.relay.is_none() {
            r.preauth_sessions -= 1;
        }
        r.session_end(ctx.listener, record.started.elapsed());
        if let Some(backend) = record.backend {
            r.relayed(
                backend,
                record.client_to_backend,
                record.backend_to_client,
                record.relay == Some("splice"),
            );
        }
    });
    record.log();
}

/// Pre-auth in plaintext or TLS (implicit, or after STARTTLS), then login and relay.
async fn serve<C: Connector, P: PreAuth>(
    ctx: &SessionContext,
    connector: &C,
    client: C::Stream,
    new_machine: impl FnOnce(bool) -> P,
    deadline: Instant,
    record: &mut SessionRecord,
) {
    // Every phase is boxed and awaited here, one after the other, so the
    // long-lived session future holds none of the pre-auth state (buffers,
    // machines, timers) while it relays.
    if ctx.tls_mode == TlsMode::Implicit {
        let Some(client) = Box::pin(tls_handshake(ctx, client, deadline, record)).await else {
            return;
        };
        let end = Box::pin(drive(
            ctx,
            connector,
            client,
            new_machine(true),
            deadline,
            record,
        ))
        .await;
        if let PreAuthEnd::LoggedIn(session) = end {
            Box::pin(relay_session(ctx, session, record)).await;
        }
        return;
    }
    let end = Box::pin(drive(
        ctx,
        connector,
        client,
        new_machine(false),
        deadline,
        record,
    ))
    .await;
    let (client, mut machine) = match end {
        PreAuthEnd::Closed => return,
        PreAuthEnd::LoggedIn(session) => {
            return Box::pin(relay_session(ctx, session, record)).await
        }
        PreAuthEnd::StartTls(client, machine) => (client, machine),
    };
    let Some(client) = Box::pin(tls_handshake(ctx, client, deadline, record)).await else {
        return;
    };
    machine.tls_started();
    let end = Box::pin(drive(ctx, connector, client, machine, deadline, record)).await;
    if let PreAuthEnd::LoggedIn(session) = end {
        Box::pin(relay_session(ctx, session, record)).await;
    }
}

/// Server-side TLS handshake, bounded by the handshake timeout and the
/// pre-auth deadline. `None` when it failed (the reason is in the record).
async fn tls_handshake<S: Stream>(
    ctx: &SessionContext,
    client: S,
    deadline: Instant,
    record: &mut SessionRecord,
) -> Option<Box<TlsStream<S>>> {
    let config = ctx.tls.as_ref()?.load_full();
    let conn = match rustls::ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(client = %record.peer, "TLS setup failed: {e}");
            record.outcome = Outcome::TlsFailed;
            return None;
        }
    };
    let stream = Box::new(TlsStream::new(client, conn));
    let started = Instant::now();
    let limit = deadline.min(started + ctx.handshake_timeout);
    match timeout_at(limit, stream.handshake()).await {
        Ok(Ok(())) => {
            let resumed = stream.resumed();
            record.tls = Some(if resumed { "resumed" } else { "full" });
            let phase = if resumed {
                "tls_handshake_resumed"
            } else {
                "tls_handshake_full"
            };
            let took = started.elapsed();
            ctx.record(|r| r.phase(phase, took));
            Some(stream)
        }
        Ok(Err(e)) => {
            tracing::debug!(client = %record.peer, "TLS handshake failed: {e}");
            record.outcome = Outcome::TlsFailed;
            None
        }
        Err(_) => {
            tracing::debug!(client = %record.peer, "TLS handshake timed out");
            record.outcome = Outcome::TlsFailed;
            None
        }
    }
}

async fn write<S: Stream>(stream: &S, bytes: Vec<u8>) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream.write_all(bytes).await.0
}

/// How the pre-auth phase ended.
enum PreAuthEnd<S, P, B> {
    /// The session is over (logout, error, timeout, limits).
    Closed,
    /// The client asked for STARTTLS: the stream and machine come back.
    StartTls(S, P),
    /// Logged in: relay between these two.
    LoggedIn(LoggedIn<S, B>),
}

/// A logged-in session, ready to relay.
struct LoggedIn<S, B> {
    client: S,
    backend: B,
    /// The login answer and back-end bytes that followed it.
    to_client: Vec<u8>,
    /// Client bytes pipelined after the login.
    to_backend: Vec<u8>,
}

/// Runs the pre-auth machine on `client` until the session ends, the client
/// asks for STARTTLS, or a login succeeds. The caller relays (after dropping
/// this future, so no pre-auth state stays alive while the session idles).
async fn drive<C: Connector, S: Stream, P: PreAuth>(
    ctx: &SessionContext,
    connector: &C,
    client: S,
    mut machine: P,
    deadline: Instant,
    record: &mut SessionRecord,
) -> PreAuthEnd<S, P, MaybeTls<C::Stream>> {
    let mut buf = Vec::with_capacity(PREAUTH_READ_SIZE);
    loop {
        let event = machine.poll();
        let protocol_errors = machine.take_protocol_errors();
        if protocol_errors > 0 {
            ctx.record(|r| r.protocol_errors(ctx.listener, protocol_errors));
        }
        if write(&client, machine.take_output()).await.is_err() {
            record.outcome = Outcome::ClientError;
            return PreAuthEnd::Closed;
        }
        match event {
            PreAuthEvent::Close => return PreAuthEnd::Closed,
            PreAuthEvent::StartTls => return PreAuthEnd::StartTls(client, machine),
            PreAuthEvent::NeedInput => match timeout_at(deadline, client.read(buf)).await {
                Err(_elapsed) => {
                    record.outcome = Outcome::PreAuthTimeout;
                    machine.timed_out();
                    let _ = write(&client, machine.take_output()).await;
                    return PreAuthEnd::Closed;
                }
                Ok((Ok(0), _)) => return PreAuthEnd::Closed,
                Ok((Ok(n), b)) => {
                    machine.receive(&b[..n]);
                    buf = b;
                }
                Ok((Err(_), _)) => {
                    record.outcome = Outcome::ClientError;
                    return PreAuthEnd::Closed;
                }
            },
            PreAuthEvent::Login(credentials) => {
                record.user = Some(credentials.user.clone());
                if ctx.login_limited(record.peer) {
                    record.failed_logins += 1;
                    let latency = record.started.elapsed();
                    ctx.record(|r| r.login(ctx.listener, LoginOutcome::RateLimited, latency));
                    tracing::info!(client = %record.peer, user = %credentials.user, "login refused: too many failed logins from this address");
                    machine.login_failed(LoginFailure::Unavailable);
                    continue;
                }
                let client_address = ctx
                    .forward_client_address
                    .then(|| client.local_addr().ok())
                    .flatten()
                    .map(|local| ClientAddress {
                        peer: record.peer,
                        local,
                    });
                // Boxed phases keep the session task small while it idles.
                let attempt = timeout_at(
                    deadline,
                    Box::pin(log_in(ctx, connector, &credentials, client_address)),
                )
                .await;
                match attempt.unwrap_or_else(|_| {
                    Err(LoginError::temporary("pre-auth time ran out during login"))
                }) {
                    Ok(backend) => {
                        let latency = record.started.elapsed();
                        ctx.record(|r| r.login(ctx.listener, LoginOutcome::Ok, latency));
                        record.backend = Some(backend.address);
                        let logged_in = machine.login_succeeded(&backend.greeting);
                        let mut to_client = logged_in.to_client;
                        to_client.extend_from_slice(&backend.leftover);
                        // Returning ends this future: the read buffer, the
                        // back-end greeting and input and the password are
                        // freed before the relay starts.
                        return PreAuthEnd::LoggedIn(LoggedIn {
                            client,
                            backend: backend.stream,
                            to_client,
                            to_backend: logged_in.to_backend,
                        });
                    }
                    Err(e) => {
                        record.failed_logins += 1;
                        let outcome = e.outcome;
                        if matches!(
                            outcome,
                            LoginOutcome::BadPassword | LoginOutcome::UnknownUser
                        ) {
                            ctx.login_failed_from(record.peer);
                        }
                        let latency = record.started.elapsed();
                        ctx.record(|r| r.login(ctx.listener, outcome, latency));
                        if e.failure == LoginFailure::Unavailable {
                            tracing::warn!(client = %record.peer, user = %credentials.user, reason = %e.reason, "login failed: temporary failure");
                        } else {
                            tracing::debug!(client = %record.peer, user = %credentials.user, reason = %e.reason, "login failed");
                        }
                        machine.login_failed(e.failure);
                    }
                }
            }
        }
    }
}

async fn relay_session<S: Stream, B: Stream>(
    ctx: &SessionContext,
    session: LoggedIn<S, B>,
    record: &mut SessionRecord,
) {
    let LoggedIn {
        client,
        backend,
        to_client,
        to_backend,
    } = session;
    record.client_to_backend = to_backend.len() as u64;
    record.backend_to_client = to_client.len() as u64;
    record.relay = Some("copy");
    ctx.record(|r| {
        r.preauth_sessions -= 1;
        r.relaying_sessions += 1;
    });
    let _relaying = RelayingGauge(ctx);
    // Declared after the streams: dropped (unregistered) before they close.
    let _registration = match (record.user.as_deref(), record.backend) {
        (Some(user), Some(backend_addr)) => Some(ctx.registry.register(
            user,
            record.peer,
            backend_addr,
            client.as_raw_fd(),
            backend.as_raw_fd(),
        )),
        _ => None,
    };
    // Boxed: the two write futures are large and done in a moment; inline
    // they would size this future (alive for the whole session) for good.
    let first =
        Box::pin(async { tokio::join!(write(&client, to_client), write(&backend, to_backend)) })
            .await;
    if first.0.is_err() || first.1.is_err() {
        record.outcome = Outcome::RelayError;
        return;
    }
    let stats = relay::relay(&client, &backend, ctx.relay).await;
    record.relay = Some(stats.method.as_str());
    record.client_to_backend += stats.client_to_backend;
    record.backend_to_client += stats.backend_to_client;
    record.outcome = match stats.end {
        RelayEnd::Closed => Outcome::Relayed,
        RelayEnd::IdleTimeout => Outcome::IdleTimeout,
        RelayEnd::Error(_) => Outcome::RelayError,
    };
}

/// Counts a relaying session until dropped.
struct RelayingGauge<'a>(&'a SessionContext);

impl Drop for RelayingGauge<'_> {
    fn drop(&mut self) {
        self.0.record(|r| r.relaying_sessions -= 1);
    }
}
