//! One login attempt's back-end half: directory lookup, connect (with
//! failover over the resolved addresses), optional TLS, and the login
//! exchange driven by the sans-I/O machines of `imap::backend` /
//! `pop3::backend`. Every failure is a [`LoginError`]: what the client is
//! told, how it is counted, and why (for the log).

use super::connection_cache::LoginStamp;
use super::io::{write_secret, PREAUTH_READ_SIZE};
pub(super) use super::login_error::{BackendTlsError, LoginCause, LoginError};
use super::reuse::{self, ParkTicket};
use super::Session;
use crate::auth::Credentials;
use crate::config::TlsMode;
use crate::directory::{DirectoryError, LookupRequest, Route, ServedBy};
use crate::login::{
    BackendEvent, BackendGreeting, BackendLogin, BackendLoginRequest, BackendOutcome,
    ClientAddress, Compression, LoginFailure,
};
use crate::metrics::{LoginOutcome, Phase};
use crate::oauth::{CheckError, TokenChecker};
use crate::tls::{MaybeTls, TlsStream};
use crate::transport::{Connector, Stream};
use std::net::{IpAddr, SocketAddr};
use tokio::time::{timeout, Instant};
use zeroize::Zeroize;

/// A logged-in back-end connection.
pub(super) struct Backend<S> {
    pub stream: MaybeTls<S>,
    pub address: SocketAddr,
    /// The name the back end knows the user by.
    pub identity: String,
    pub greeting: BackendGreeting,
    pub leftover: Vec<u8>,
    /// On `connection_cache` listeners: what parking this session needs.
    pub park: Option<Box<ParkTicket>>,
}

/// Who is logging in, for the directory (an auth_http server is told).
pub(super) struct Asker {
    /// Where the client connects from.
    pub peer: IpAddr,
    /// Which login of this connection this is (1 for the first).
    pub attempt: u32,
}

/// Looks `credentials.user` up, connects to the route and logs in there.
/// `client` is where the client connected from and to (told to the back
/// end as `[backend]` says: ID/XCLIENT, a PROXY header).
pub(super) async fn attempt<C: Connector>(
    session: &Session<'_, C>,
    credentials: &Credentials,
    client: Option<ClientAddress>,
    asker: Asker,
) -> Result<Backend<C::Stream>, LoginError> {
    let ctx = session.ctx;
    let client_address = client.filter(|_| ctx.backend.forward_client_address);
    // Before anything is sent: an invalidation from here on retires the
    // back-end session this login makes.
    let stamp = LoginStamp::now(&ctx.worker.invalidations);
    // A token is checked at the front (`[oauth] verify`) before anything
    // else is asked, and never handed to the directory.
    if let (Some(_), Some(checker)) = (&credentials.bearer, &ctx.worker.oauth) {
        check_token(session, checker, credentials).await?;
    }
    let bearer = credentials.bearer.as_ref();
    let request = LookupRequest {
        user: &credentials.user,
        password: bearer.is_none().then_some(&credentials.password),
        protocol: ctx.listener.spec.name,
        client: Some(asker.peer),
        attempt: asker.attempt,
    };
    let route = lookup(session, request).await?;
    // A bearer login is never parked nor served a parked session: a token
    // is not a password whose hash may stand for the user's next login.
    let cached =
        ctx.listener.connection_cache && ctx.listener.spec.connection_cache && bearer.is_none();
    let default_port = ctx.backend.port(ctx.listener.protocol);
    let route_key = cached.then(|| reuse::route_key(&route, default_port));
    let password = credentials.password.expose();
    // The name the back end logs in as: the cache's identity.
    let login_user = route.login_user.as_deref().unwrap_or(&credentials.user);
    if let Some(key) = &route_key {
        let who = (credentials.user.as_str(), login_user);
        let taken = reuse::take(ctx, session.connector, who, key, password).await;
        // Parked under an earlier configuration: checked against this one
        // (a session that fails is closed here, and a fresh login serves).
        if let Some((parked, ticket)) = taken.filter(|(p, _)| still_allowed(ctx, p)) {
            return Ok(Backend {
                stream: parked.stream,
                address: parked.address,
                identity: parked.identity,
                greeting: parked.greeting,
                leftover: Vec::new(),
                park: Some(Box::new(ticket)),
            });
        }
    }
    let started = Instant::now();
    let (stream, address) = connect(session, &route).await?;
    let mut header = client
        .filter(|_| ctx.backend.proxy_protocol)
        .map(|client| crate::proxy_header::v2(client.peer, client.local));
    // Ahead of a TLS handshake the header goes on its own; otherwise with
    // the login's first bytes (an early login's: one write for both).
    if ctx.backend.tls_mode == TlsMode::Implicit {
        if let Some(header) = header.take() {
            if let (Err(source), _) = stream.write_all(header).await {
                return Err(LoginError::backend(LoginCause::Connect { address, source }));
            }
        }
    }
    let took = started.elapsed();
    ctx.record(|r| r.phase(Phase::BackendConnect, took));
    // Compression saves VPN bytes only: a back end on this host is not
    // compressed (its leg stays spliced).
    let same_host =
        ctx.listener.compress.is_some() && on_this_host(&stream, address, client.as_ref());
    let started = Instant::now();
    let request = BackendLoginRequest {
        user: login_user,
        // The directory's own password for the user (`Auth-Pass`), if any.
        password: route
            .login_password
            .as_ref()
            .unwrap_or(&credentials.password)
            .clone(),
        // A route's own back-end password replaces a token too.
        bearer: bearer.filter(|_| route.login_password.is_none()).cloned(),
        auth: *ctx.backend.auth.get(ctx.listener.protocol),
        client_address,
        starttls: ctx.backend.tls_mode == TlsMode::Starttls,
        compress: ctx.listener.compress.is_some() && !same_host,
        offers: ctx
            .worker
            .backend_offers
            .get(ctx.listener.spec.name, address),
        early_login: ctx.backend.early_login,
    };
    let exchange = exchange(session, stream, header, address, &route.host, request);
    let limit = ctx.backend.login_timeout;
    let (stream, outcome) = match timeout(limit, exchange).await {
        Ok(Ok(done)) => done,
        Ok(Err(cause)) => return Err(LoginError::backend(cause.at(address))),
        Err(_) => {
            return Err(LoginError::backend(LoginCause::LoginTimeout {
                address,
                after: limit,
            }))
        }
    };
    let took = started.elapsed();
    ctx.record(|r| r.phase(Phase::BackendLogin, took));
    match outcome {
        BackendOutcome::LoggedIn {
            mut greeting,
            leftover,
        } => {
            if same_host {
                greeting.compression = Compression::SameHost;
            }
            let identity = login_user.to_owned();
            let park = route_key.map(|key| {
                reuse::fresh(
                    ctx,
                    &credentials.user,
                    &key,
                    password,
                    (&greeting, &identity, address, stamp),
                )
            });
            Ok(Backend {
                stream,
                address,
                identity,
                greeting,
                leftover,
                park: park.map(Box::new),
            })
        }
        BackendOutcome::Rejected(failure) => Err(LoginError {
            failure,
            outcome: match failure {
                LoginFailure::InUse => LoginOutcome::InUse,
                LoginFailure::Unavailable => LoginOutcome::BackendUnavailable,
                LoginFailure::AuthFailed => LoginOutcome::BadPassword,
            },
            cause: LoginCause::Refused { address },
        }),
        BackendOutcome::Unavailable(fault) => {
            Err(LoginError::backend(LoginCause::Fault { address, fault }))
        }
    }
}

/// Checks a bearer token with the process's checker, timed as a phase:
/// a refused token is a failed login that asked no one else, trouble
/// reaching the provider a temporary failure.
async fn check_token<C>(
    session: &Session<'_, C>,
    checker: &TokenChecker,
    credentials: &Credentials,
) -> Result<(), LoginError> {
    let ctx = session.ctx;
    let started = Instant::now();
    let checked = checker
        .check(&credentials.user, &credentials.password)
        .await;
    let took = started.elapsed();
    ctx.record(|r| r.phase(Phase::TokenCheck, took));
    match checked {
        Ok(_) => Ok(()),
        Err(CheckError::Refused(reason)) => {
            ctx.record(|r| r.token_failure(reason));
            Err(LoginError {
                failure: LoginFailure::AuthFailed,
                outcome: LoginOutcome::BadToken,
                cause: LoginCause::Token(reason),
            })
        }
        Err(CheckError::Unavailable(why)) => Err(LoginError {
            failure: LoginFailure::Unavailable,
            outcome: LoginOutcome::TokenCheckUnavailable,
            cause: LoginCause::TokenCheck(why),
        }),
    }
}

/// Whether a parked back-end session still fits the back-end policy: its
/// address in `allowed_networks`, its port in `allowed_ports`, TLS towards
/// it if and only if `[backend] tls` asks for it.
fn still_allowed<S>(
    ctx: &super::SessionContext,
    parked: &super::connection_cache::BackendSession<MaybeTls<S>>,
) -> bool {
    let backend = &ctx.backend;
    let address = parked.address;
    let tls = matches!(parked.stream, MaybeTls::Tls(_));
    let allowed = backend.allowed_ports.contains(&address.port())
        && backend
            .allowed_networks
            .iter()
            .any(|n| n.contains(address.ip()))
        && tls == (backend.tls_mode != TlsMode::None);
    if !allowed {
        tracing::info!(backend = %address, "a parked session no longer fits [backend]: closed");
    }
    allowed
}

/// The user's route, with the lookup timed as a phase.
async fn lookup<C>(
    session: &Session<'_, C>,
    request: LookupRequest<'_>,
) -> Result<Route, LoginError> {
    let ctx = session.ctx;
    let started = Instant::now();
    let looked_up = ctx.worker.directory.lookup_for(request).await;
    let took = started.elapsed();
    match looked_up {
        Ok(lookup) => {
            let phase = match lookup.served_by {
                ServedBy::CacheHit | ServedBy::SharedHit => Phase::DirectoryCacheHit,
                ServedBy::CacheMiss => Phase::DirectoryCacheMiss,
                ServedBy::Directory => Phase::DirectoryLookup,
            };
            ctx.record(|r| r.phase(phase, took));
            lookup.route.ok_or(LoginError {
                failure: LoginFailure::AuthFailed,
                outcome: LoginOutcome::UnknownUser,
                cause: LoginCause::UnknownUser,
            })
        }
        // The directory checked the password and refused it.
        Err(e @ DirectoryError::Refused { .. }) => Err(LoginError {
            failure: LoginFailure::AuthFailed,
            outcome: LoginOutcome::BadPassword,
            cause: LoginCause::Directory(e),
        }),
        Err(e) => Err(LoginError {
            failure: LoginFailure::Unavailable,
            outcome: if matches!(e, DirectoryError::Held { .. }) {
                LoginOutcome::Held
            } else {
                LoginOutcome::DirectoryUnavailable
            },
            cause: LoginCause::Directory(e),
        }),
    }
}

/// A failure of the exchange before the back end's address is attached.
enum ExchangeError {
    Tls(BackendTlsError),
    Closed,
    Io(std::io::Error),
}

impl ExchangeError {
    fn at(self, address: SocketAddr) -> LoginCause {
        match self {
            ExchangeError::Tls(source) => LoginCause::Tls { address, source },
            ExchangeError::Closed => LoginCause::Closed { address },
            ExchangeError::Io(source) => LoginCause::Io { address, source },
        }
    }
}

/// Whether the back end at `address` (connected on `stream`) is on this
/// host: it is the address the client connected to, or the kernel chose
/// that same address as the connection's source (which it does for a
/// destination that is one of this host's own addresses, 127.0.0.1 as
/// much as a VPN address of the box).
fn on_this_host<S: Stream>(
    stream: &S,
    address: SocketAddr,
    client: Option<&ClientAddress>,
) -> bool {
    client.is_some_and(|c| c.local.ip() == address.ip())
        || stream
            .local_addr()
            .is_ok_and(|local| local.ip() == address.ip())
}

/// Optional TLS, then the protocol's login exchange with `host`; `header`
/// (a PROXY header not yet sent) goes first, in the login's first write.
async fn exchange<C: Connector>(
    session: &Session<'_, C>,
    stream: C::Stream,
    header: Option<Vec<u8>>,
    address: SocketAddr,
    host: &str,
    request: BackendLoginRequest<'_>,
) -> Result<(MaybeTls<C::Stream>, BackendOutcome), ExchangeError> {
    let ctx = session.ctx;
    let stream = match ctx.backend.tls_mode {
        TlsMode::Implicit => MaybeTls::Tls(Box::new(
            backend_handshake(session, stream, host)
                .await
                .map_err(ExchangeError::Tls)?,
        )),
        _ => MaybeTls::Plain(stream),
    };
    let remembered = request.offers;
    let mut machine = (ctx.listener.spec.backend_login)(request);
    let done = backend_login(session, stream, host, &mut machine, header).await;
    // Most logins learn what was remembered: the map is written on a change.
    if let Some(offers) = machine.offers().filter(|o| Some(*o) != remembered) {
        let protocol = ctx.listener.spec.name;
        ctx.worker.backend_offers.put(protocol, address, offers);
    }
    done
}

/// Client-side TLS handshake with a back end, verifying its certificate
/// against `[backend] ca_file` and the route's host name (or IP address).
async fn backend_handshake<C, S: Stream>(
    session: &Session<'_, C>,
    stream: S,
    host: &str,
) -> Result<TlsStream<S>, BackendTlsError> {
    let config = session
        .ctx
        .backend
        .tls
        .clone()
        .ok_or(BackendTlsError::NotConfigured)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        BackendTlsError::BadName {
            host: host.to_owned(),
        }
    })?;
    let conn = rustls::client::UnbufferedClientConnection::new(config, name)
        .map_err(BackendTlsError::Setup)?;
    let tls = TlsStream::new(stream, conn);
    tls.handshake().await.map_err(BackendTlsError::Handshake)?;
    Ok(tls)
}

/// Connects to the route's addresses in turn; the first that answers.
async fn connect<C: Connector>(
    session: &Session<'_, C>,
    route: &Route,
) -> Result<(C::Stream, SocketAddr), LoginError> {
    let ctx = session.ctx;
    let port = route
        .port
        .unwrap_or(ctx.backend.port(ctx.listener.protocol));
    if !ctx.backend.allowed_ports.contains(&port) {
        let value = format!("{}:{port}", route.host);
        return Err(LoginError::route_refused(
            value,
            "port not in [backend] allowed_ports",
        ));
    }
    let after = ctx.backend.connect_timeout;
    let host = route.host.clone();
    let addresses: Vec<SocketAddr> = match route.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((route.host.as_str(), port));
            match timeout(after, lookup).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(source)) => {
                    return Err(LoginError::backend(LoginCause::Resolve { host, source }))
                }
                Err(_) => {
                    return Err(LoginError::backend(LoginCause::ResolveTimeout {
                        host,
                        after,
                    }))
                }
            }
        }
    };
    let allowed = |a: &SocketAddr| {
        ctx.backend
            .allowed_networks
            .iter()
            .any(|n| n.contains(a.ip()))
    };
    let (addresses, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addresses.into_iter().partition(allowed);
    if addresses.is_empty() {
        if let Some(first) = refused.first() {
            let value = format!("{host} ({first})");
            return Err(LoginError::route_refused(
                value,
                "address not in [backend] allowed_networks",
            ));
        }
    }
    let mut last = LoginCause::NoAddress { host };
    for address in addresses {
        match timeout(after, session.connector.connect(address)).await {
            Ok(Ok(stream)) => return Ok((stream, address)),
            Ok(Err(source)) => last = LoginCause::Connect { address, source },
            Err(_) => last = LoginCause::ConnectTimeout { address, after },
        }
    }
    Err(LoginError::backend(last))
}

/// Drives a back-end login machine to its outcome; `header` goes ahead
/// of its first bytes, in the same write.
async fn backend_login<C, S: Stream, B: BackendLogin>(
    session: &Session<'_, C>,
    mut stream: MaybeTls<S>,
    host: &str,
    machine: &mut B,
    mut header: Option<Vec<u8>>,
) -> Result<(MaybeTls<S>, BackendOutcome), ExchangeError> {
    let mut buf = Vec::with_capacity(PREAUTH_READ_SIZE);
    loop {
        let event = machine.poll();
        let mut output = machine.take_output();
        if let Some(mut first) = header.take() {
            first.extend_from_slice(&output);
            output.zeroize();
            output = first;
        }
        write_secret(&stream, output)
            .await
            .map_err(ExchangeError::Io)?;
        match event {
            BackendEvent::Done(outcome) => return Ok((stream, outcome)),
            BackendEvent::StartTls => {
                let MaybeTls::Plain(plain) = stream else {
                    return Err(ExchangeError::Tls(BackendTlsError::AlreadyTls));
                };
                let tls = backend_handshake(session, plain, host)
                    .await
                    .map_err(ExchangeError::Tls)?;
                stream = MaybeTls::Tls(Box::new(tls));
                machine.tls_started();
            }
            BackendEvent::NeedInput => {
                let (res, b) = stream.read(buf).await;
                match res {
                    Ok(0) => return Err(ExchangeError::Closed),
                    Ok(n) => machine.receive(&b[..n]),
                    Err(e) => return Err(ExchangeError::Io(e)),
                }
                buf = b;
            }
        }
    }
}
