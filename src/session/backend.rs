//! The back-end half of a login: directory lookup, connect (with failover
//! over the resolved addresses), optional TLS, and the login exchange driven
//! by the sans-I/O machines of `imap::backend` / `pop3::backend`.

use super::{write, SessionContext, PREAUTH_READ_SIZE};
use crate::auth::Credentials;
use crate::config::{Protocol, TlsMode};
use crate::directory::Route;
use crate::imap::ImapBackendLogin;
use crate::login::{
    BackendEvent, BackendGreeting, BackendLogin, BackendOutcome, ClientAddress, LoginFailure,
};
use crate::metrics::LoginOutcome;
use crate::pop3::Pop3BackendLogin;
use crate::runtime::transport::{Connector, Stream};
use crate::tls::{MaybeTls, TlsStream};
use std::net::{IpAddr, SocketAddr};
use tokio::time::{timeout, Instant};

/// A logged-in back-end connection.
pub(super) struct Backend<S> {
    pub(super) stream: MaybeTls<S>,
    pub(super) address: SocketAddr,
    pub(super) greeting: BackendGreeting,
    pub(super) leftover: Vec<u8>,
}

/// A failed login: what the client is told and why (for the log).
#[derive(Debug)]
pub(super) struct LoginError {
    pub(super) failure: LoginFailure,
    pub(super) reason: String,
    /// How it is counted.
    pub(super) outcome: LoginOutcome,
}

impl LoginError {
    /// The back end failed (down, slow, misbehaving).
    pub(super) fn temporary(reason: impl Into<String>) -> Self {
        Self {
            failure: LoginFailure::Unavailable,
            reason: reason.into(),
            outcome: LoginOutcome::BackendUnavailable,
        }
    }
}

pub(super) async fn log_in<C: Connector>(
    ctx: &SessionContext,
    connector: &C,
    credentials: &Credentials,
    client_address: Option<ClientAddress>,
) -> Result<Backend<C::Stream>, LoginError> {
    let lookup_started = Instant::now();
    let looked_up = ctx.directory.lookup(&credentials.user).await;
    let lookup_time = lookup_started.elapsed();
    let phase = match ctx.directory.last_lookup_cached() {
        Some(true) => "directory_cache_hit",
        Some(false) => "directory_cache_miss",
        None => "directory_lookup",
    };
    ctx.record(|r| r.phase(phase, lookup_time));
    let route = match looked_up {
        Ok(Some(route)) => route,
        Ok(None) => {
            return Err(LoginError {
                failure: LoginFailure::AuthFailed,
                reason: "unknown user".into(),
                outcome: LoginOutcome::UnknownUser,
            })
        }
        Err(e) => {
            return Err(LoginError {
                outcome: LoginOutcome::DirectoryUnavailable,
                ..LoginError::temporary(e.to_string())
            })
        }
    };
    let connect_started = Instant::now();
    let (stream, address) = connect(ctx, connector, &route).await?;
    let connect_time = connect_started.elapsed();
    ctx.record(|r| r.phase("backend_connect", connect_time));
    let login_started = Instant::now();
    let login_user = route.login_user.as_deref().unwrap_or(&credentials.user);
    let password = credentials.password.clone();
    let starttls = ctx.backend_tls_mode == TlsMode::Starttls;
    let exchange = async {
        let stream = match ctx.backend_tls_mode {
            TlsMode::Implicit => {
                MaybeTls::Tls(Box::new(backend_handshake(ctx, stream, &route.host).await?))
            }
            _ => MaybeTls::Plain(stream),
        };
        match ctx.protocol {
            Protocol::Imap => {
                let mut machine = ImapBackendLogin::new(login_user, password, ctx.imap_auth);
                if let Some(client) = client_address {
                    machine = machine.with_client_address(client);
                }
                if starttls {
                    machine = machine.with_starttls();
                }
                backend_login(ctx, stream, &route.host, machine).await
            }
            Protocol::Pop3 => {
                let mut machine = Pop3BackendLogin::new(login_user, password, ctx.pop3_auth);
                if let Some(client) = client_address {
                    machine = machine.with_client_address(client);
                }
                if starttls {
                    machine = machine.with_starttls();
                }
                backend_login(ctx, stream, &route.host, machine).await
            }
        }
    };
    let (stream, outcome) = match timeout(ctx.login_timeout, exchange).await {
        Ok(Ok((stream, outcome))) => (stream, outcome),
        Ok(Err(reason)) => {
            return Err(LoginError::temporary(format!(
                "back end {address}: {reason}"
            )))
        }
        Err(_) => {
            return Err(LoginError::temporary(format!(
                "back end {address}: login timed out"
            )))
        }
    };
    let login_time = login_started.elapsed();
    ctx.record(|r| r.phase("backend_login", login_time));
    match outcome {
        BackendOutcome::LoggedIn { greeting, leftover } => Ok(Backend {
            stream,
            address,
            greeting,
            leftover,
        }),
        BackendOutcome::Rejected(failure) => Err(LoginError {
            failure,
            reason: format!("back end {address} refused the login"),
            outcome: match failure {
                LoginFailure::InUse => LoginOutcome::InUse,
                LoginFailure::Unavailable => LoginOutcome::BackendUnavailable,
                LoginFailure::AuthFailed => LoginOutcome::BadPassword,
            },
        }),
        BackendOutcome::Unavailable(reason) => Err(LoginError::temporary(format!(
            "back end {address}: {reason}"
        ))),
    }
}

/// Client-side TLS handshake with a back end, verifying its certificate
/// against `[backend] ca_file` and the route's host name (or IP address).
async fn backend_handshake<S: Stream>(
    ctx: &SessionContext,
    stream: S,
    host: &str,
) -> Result<TlsStream<S>, String> {
    let config = ctx.backend_tls.clone().ok_or("no TLS client config")?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` cannot be checked against a certificate: {e}"))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let tls = TlsStream::new(stream, conn);
    tls.handshake()
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(tls)
}

async fn connect<C: Connector>(
    ctx: &SessionContext,
    connector: &C,
    route: &Route,
) -> Result<(C::Stream, SocketAddr), LoginError> {
    let port = route.port.unwrap_or(ctx.backend_port);
    let addresses: Vec<SocketAddr> = match route.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((route.host.as_str(), port));
            match timeout(ctx.connect_timeout, lookup).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => {
                    return Err(LoginError::temporary(format!(
                        "resolving {}: {e}",
                        route.host
                    )))
                }
                Err(_) => {
                    return Err(LoginError::temporary(format!(
                        "resolving {}: timed out",
                        route.host
                    )))
                }
            }
        }
    };
    let mut last_error = format!("{}: no address", route.host);
    for address in addresses {
        match timeout(ctx.connect_timeout, connector.connect(address)).await {
            Ok(Ok(stream)) => return Ok((stream, address)),
            Ok(Err(e)) => last_error = format!("connecting to {address}: {e}"),
            Err(_) => {
                last_error = format!(
                    "connecting to {address}: timed out after {:?}",
                    ctx.connect_timeout
                )
            }
        }
    }
    Err(LoginError::temporary(last_error))
}

async fn backend_login<S: Stream, B: BackendLogin>(
    ctx: &SessionContext,
    mut stream: MaybeTls<S>,
    host: &str,
    mut machine: B,
) -> Result<(MaybeTls<S>, BackendOutcome), String> {
    let mut buf = Vec::with_capacity(PREAUTH_READ_SIZE);
    loop {
        let event = machine.poll();
        if let Err(e) = write(&stream, machine.take_output()).await {
            return Ok((stream, BackendOutcome::Unavailable(format!("writing: {e}"))));
        }
        match event {
            BackendEvent::Done(outcome) => return Ok((stream, outcome)),
            BackendEvent::StartTls => {
                let MaybeTls::Plain(plain) = stream else {
                    return Err("STARTTLS inside TLS".into());
                };
                stream = MaybeTls::Tls(Box::new(backend_handshake(ctx, plain, host).await?));
                machine.tls_started();
            }
            BackendEvent::NeedInput => {
                let (res, b) = stream.read(buf).await;
                match res {
                    Ok(0) => {
                        return Ok((
                            stream,
                            BackendOutcome::Unavailable("connection closed during login".into()),
                        ))
                    }
                    Ok(n) => machine.receive(&b[..n]),
                    Err(e) => {
                        return Ok((stream, BackendOutcome::Unavailable(format!("reading: {e}"))))
                    }
                }
                buf = b;
            }
        }
    }
}
