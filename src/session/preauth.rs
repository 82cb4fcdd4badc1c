//! The pre-auth phase: the protocol machine fed with the client's bytes,
//! its answers written back, logins attempted, and the server-side TLS
//! handshakes (implicit, or after STARTTLS). Everything here runs under the
//! session's pre-auth deadline.

use super::io::{write_until, PREAUTH_READ_SIZE};
use super::login::{attempt, Asker, Backend, LoginCause, LoginError};
use super::record::{Outcome, SessionRecord, TlsHandshake};
use super::reuse::ParkTicket;
use super::{Session, SessionContext};
use crate::auth::Credentials;
use crate::directory::DirectoryError;
use crate::login::{
    check_user_name, ClientAddress, Compression, LoginFailure, PreAuth, PreAuthEvent,
};
use crate::metrics::{LoginOutcome, Phase};
use crate::tls::{MaybeTls, TlsStream};
use crate::transport::{Connector, Stream};
use tokio::time::{timeout_at, Instant};
use zeroize::Zeroize;

/// How long a goodbye may take once the pre-auth deadline has passed.
const GOODBYE_WRITE: std::time::Duration = std::time::Duration::from_millis(100);
/// After SIGTERM, how long a session not logged in yet may still send its
/// next command before it hears `* BYE` / `-ERR`: a login on its way when
/// the server stops (a restart, a handover to a new process) is served.
pub(super) const SHUTDOWN_LAST_CALL: std::time::Duration = std::time::Duration::from_secs(1);

/// How the pre-auth phase ended.
pub(super) enum PreAuthEnd<S, P, B> {
    /// The session is over (logout, error, timeout, limits).
    Closed,
    /// The client asked for STARTTLS: the stream and machine come back.
    StartTls(S, P),
    /// Logged in: relay between these two.
    LoggedIn(LoggedIn<S, B>),
}

/// A logged-in session, ready to relay.
pub(super) struct LoggedIn<S, B> {
    pub client: S,
    pub backend: B,
    /// The login answer and back-end bytes that followed it.
    pub to_client: Vec<u8>,
    /// Client bytes pipelined after the login.
    pub to_backend: Vec<u8>,
    /// On `connection_cache` listeners: what parking the back end needs.
    pub park: Option<Box<ParkTicket>>,
    /// Set when the back-end leg is compressed: the deflate bytes already
    /// read past the `COMPRESS` answer.
    pub compressed: Option<Vec<u8>>,
}

impl<S, B> LoggedIn<S, B> {
    /// The same session with its client stream wrapped by `wrap`.
    pub fn with_client<T>(self, wrap: impl FnOnce(S) -> T) -> LoggedIn<T, B> {
        LoggedIn {
            client: wrap(self.client),
            backend: self.backend,
            to_client: self.to_client,
            to_backend: self.to_backend,
            park: self.park,
            compressed: self.compressed,
        }
    }
}

/// Server-side TLS handshake, bounded by the handshake timeout and the
/// pre-auth deadline. `None` when it failed (the reason is in the record).
pub(super) async fn tls_handshake<S: Stream>(
    ctx: &SessionContext,
    client: S,
    deadline: Instant,
    record: &mut SessionRecord,
) -> Option<Box<TlsStream<S>>> {
    let config = ctx.listener.tls.as_ref()?.load_full();
    let conn = match rustls::server::UnbufferedServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(client = %record.peer, "TLS setup failed: {e}");
            record.outcome = Outcome::TlsFailed;
            return None;
        }
    };
    let stream = Box::new(TlsStream::new(client, conn));
    let started = Instant::now();
    let limit = deadline.min(started + ctx.listener.handshake_timeout);
    match timeout_at(limit, stream.handshake()).await {
        Ok(Ok(())) => {
            let (kind, phase) = if stream.resumed() {
                (TlsHandshake::Resumed, Phase::TlsHandshakeResumed)
            } else {
                (TlsHandshake::Full, Phase::TlsHandshakeFull)
            };
            record.tls = Some(kind);
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

/// Runs the pre-auth machine on `client` until the session ends, the client
/// asks for STARTTLS, or a login succeeds. The caller relays (after dropping
/// this future, so no pre-auth state stays alive while the session idles).
pub(super) async fn drive<C: Connector, S: Stream, P: PreAuth>(
    session: &Session<'_, C>,
    client: S,
    mut machine: P,
    record: &mut SessionRecord,
) -> PreAuthEnd<S, P, MaybeTls<C::Stream>> {
    let ctx = session.ctx;
    let mut buf = Vec::with_capacity(PREAUTH_READ_SIZE);
    let mut shutdown = ctx.worker.shutdown.clone();
    // Set at SIGTERM: until then the client may still send its next
    // command (a login then completes and drains like any session).
    let mut last_call: Option<Instant> = None;
    loop {
        let event = machine.poll();
        let protocol_errors = machine.take_protocol_errors();
        if protocol_errors > 0 {
            ctx.record(|r| r.protocol_errors(ctx.listener.label, protocol_errors));
        }
        let output = machine.take_output();
        if !output.is_empty() {
            // An answer: the client completed a command (or was greeted).
            session.ticket.progressed();
        }
        if let Err(e) = write_until(&client, output, session.deadline).await {
            record.outcome = if e.kind() == std::io::ErrorKind::TimedOut {
                Outcome::PreAuthTimeout
            } else {
                Outcome::ClientError
            };
            return PreAuthEnd::Closed;
        }
        let credentials = match event {
            PreAuthEvent::Close => return PreAuthEnd::Closed,
            PreAuthEvent::StartTls => return PreAuthEnd::StartTls(client, machine),
            PreAuthEvent::NeedInput => {
                let until = last_call.map_or(session.deadline, |at| at.min(session.deadline));
                // The read stays the same across SIGTERM: dropping one in
                // flight could lose bytes it already took (io_uring).
                let read = client.read(buf);
                tokio::pin!(read);
                let woke = tokio::select! {
                    done = timeout_at(until, &mut read) => Some(done),
                    _ = shutdown.wait_for(|stop| *stop), if last_call.is_none() => None,
                };
                let read = match woke {
                    Some(done) => done,
                    None => {
                        let at = Instant::now() + SHUTDOWN_LAST_CALL;
                        last_call = Some(at);
                        timeout_at(at.min(session.deadline), &mut read).await
                    }
                };
                if read.is_err() && last_call.is_some_and(|at| at <= session.deadline) {
                    record.outcome = Outcome::ServerShutdown;
                    machine.shutting_down();
                    let _ = write_until(&client, machine.take_output(), session.deadline).await;
                    return PreAuthEnd::Closed;
                }
                match read {
                    Err(_elapsed) => {
                        record.outcome = Outcome::PreAuthTimeout;
                        machine.timed_out();
                        // The deadline has passed: a goodbye only if the
                        // socket takes it at once.
                        let grace = Instant::now() + GOODBYE_WRITE;
                        let _ = write_until(&client, machine.take_output(), grace).await;
                        return PreAuthEnd::Closed;
                    }
                    Ok((Ok(0), _)) => return PreAuthEnd::Closed,
                    Ok((Ok(n), mut b)) => {
                        machine.receive(&b[..n]);
                        // The bytes may hold a password: wiped (capacity
                        // kept for the next read) before anything else.
                        // Only these `n` bytes: every read is wiped as
                        // it arrives, so the rest of the capacity holds
                        // nothing this session read (wiping all 4 KiB
                        // cost ~4 % of a login's user-space instructions).
                        b[..n].zeroize();
                        b.clear();
                        buf = b;
                    }
                    Ok((Err(_), _)) => {
                        record.outcome = Outcome::ClientError;
                        return PreAuthEnd::Closed;
                    }
                }
                continue;
            }
            PreAuthEvent::Login(credentials) => credentials,
        };
        let Some(backend) = log_in(session, &client, &mut machine, credentials, record).await
        else {
            continue;
        };
        let logged_in = machine.login_succeeded(&backend.greeting);
        ctx.listener.machines.learned(&backend.greeting);
        let compression = backend.greeting.compression;
        if compression != Compression::Off {
            ctx.record(|r| r.backend_compression(compression));
        }
        let mut to_client = logged_in.to_client;
        // After `COMPRESS`, what followed its answer is deflate: the
        // relay's inflater takes it.
        let compressed = match compression {
            Compression::Deflate => Some(backend.leftover),
            _ => {
                to_client.extend_from_slice(&backend.leftover);
                None
            }
        };
        // Returning ends this future: the read buffer, the back-end greeting
        // and input and the password are freed before the relay starts.
        return PreAuthEnd::LoggedIn(LoggedIn {
            client,
            backend: backend.stream,
            to_client,
            to_backend: logged_in.to_backend,
            park: backend.park,
            compressed,
        });
    }
}

/// One login attempt with what the machine presented, counted and logged;
/// the logged-in back end, or `None` after telling the machine why not.
async fn log_in<C: Connector, S: Stream, P: PreAuth>(
    session: &Session<'_, C>,
    client: &S,
    machine: &mut P,
    credentials: Credentials,
    record: &mut SessionRecord,
) -> Option<Backend<C::Stream>> {
    let ctx = session.ctx;
    let label = ctx.listener.label;
    let asked = Instant::now();
    // Written quoted and escaped: a string field, never `%` (Display).
    let user = credentials.user.as_str();
    record.user = Some(credentials.user.as_str().into());
    if ctx.login_limited(record.peer) {
        record.failed_logins += 1;
        let latency = record.started.elapsed();
        ctx.record(|r| r.login(label, LoginOutcome::RateLimited, latency));
        ctx.record(|r| r.mechanism(credentials.method(), false));
        tracing::info!(client = %record.peer, user, "login refused: too many failed logins from this address");
        machine.login_failed(LoginFailure::Unavailable);
        return None;
    }
    // Only when something tells the back end or compression asks whether
    // the back end is on this host (a getsockname per login, unless the
    // listener is bound to one address).
    let told = ctx.backend.forward_client_address
        || ctx.backend.proxy_protocol
        || ctx.listener.compress.is_some();
    let client_address = told
        .then(|| {
            session
                .local
                .or_else(|| ctx.listener.fixed_local_address())
                .or_else(|| client.local_addr().ok())
        })
        .flatten()
        .map(|local| ClientAddress {
            peer: record.peer,
            local,
        });
    forced_panic(&credentials.user);
    let result = if let Err(why) = check_user_name(&credentials.user) {
        Err(LoginError::bad_user_name(why))
    } else if !session
        .ticket
        .claim_user(&|| ctx.worker.invalidations.canonical(user))
    {
        Err(LoginError::user_address_cap())
    } else {
        // Boxed phases keep the session task small while it idles.
        let asker = Asker {
            peer: record.peer.ip(),
            attempt: record.failed_logins + 1,
        };
        let login = Box::pin(attempt(session, &credentials, client_address, asker));
        timeout_at(session.deadline, login)
            .await
            .unwrap_or(Err(LoginError::preauth_timeout()))
    };
    let latency = record.started.elapsed();
    let method = credentials.method();
    ctx.record(|r| r.mechanism(method, result.is_ok()));
    match result {
        Ok(backend) => {
            ctx.record(|r| r.login(label, LoginOutcome::Ok, latency));
            record.backend_session =
                backend
                    .park
                    .as_ref()
                    .map(|p| if p.reused { "reused" } else { "new" });
            record.backend = Some(backend.address);
            record.identity = Some(match &record.user {
                Some(user) if **user == *backend.identity => user.clone(),
                _ => backend.identity.as_str().into(),
            });
            Some(backend)
        }
        Err(e) => {
            session.ticket.release_user();
            record.failed_logins += 1;
            if matches!(
                e.outcome,
                LoginOutcome::BadPassword | LoginOutcome::UnknownUser | LoginOutcome::BadToken
            ) {
                ctx.login_failed_from(record.peer);
            }
            ctx.record(|r| r.login(label, e.outcome, latency));
            if e.failure == LoginFailure::Unavailable {
                tracing::warn!(client = %record.peer, user, method, reason = e.cause.to_string(), "login failed: temporary failure");
            } else {
                tracing::debug!(client = %record.peer, user, method, reason = e.cause.to_string(), "login failed");
                // Every refused login is answered at the same moment after
                // it was asked, whatever refused it: timing tells nothing
                // (a directory that checked the password may ask for more).
                let delay = match &e.cause {
                    LoginCause::Directory(DirectoryError::Refused {
                        wait: Some(wait), ..
                    }) => ctx.listener.failure_delay.max(*wait),
                    _ => ctx.listener.failure_delay,
                };
                let answer_at = (asked + delay).min(session.deadline);
                tokio::time::sleep_until(answer_at).await;
            }
            machine.login_failed(e.failure);
            None
        }
    }
}

/// Test builds only: a login as the user named by `MAILGATE_TEST_PANIC_USER`
/// panics inside its session, so a test can check that a panicking session
/// leaves its worker and the other sessions running.
#[cfg(debug_assertions)]
fn forced_panic(user: &str) {
    if std::env::var_os("MAILGATE_TEST_PANIC_USER").is_some_and(|u| u == user) {
        panic!("forced by MAILGATE_TEST_PANIC_USER");
    }
}

#[cfg(not(debug_assertions))]
fn forced_panic(_user: &str) {}
