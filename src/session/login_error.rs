//! How a login attempt fails: what the client is told, how it is counted,
//! and the cause, typed, for the log line.

use crate::directory::DirectoryError;
use crate::login::{BackendFault, BadUserName, LoginFailure};
use crate::metrics::LoginOutcome;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a login attempt failed, for the log.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoginCause {
    #[error("unknown user")]
    UnknownUser,
    #[error(transparent)]
    Directory(DirectoryError),
    #[error("resolving {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("resolving {host}: timed out after {after:?}")]
    ResolveTimeout { host: String, after: Duration },
    #[error("{host}: no address")]
    NoAddress { host: String },
    #[error("connecting to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {address}: timed out after {after:?}")]
    ConnectTimeout {
        address: SocketAddr,
        after: Duration,
    },
    #[error("back end {address}: {source}")]
    Tls {
        address: SocketAddr,
        source: BackendTlsError,
    },
    #[error("back end {address}: {fault}")]
    Fault {
        address: SocketAddr,
        fault: BackendFault,
    },
    #[error("back end {address}: connection closed during login")]
    Closed { address: SocketAddr },
    #[error("back end {address}: {source}")]
    Io {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("back end {address}: login timed out after {after:?}")]
    LoginTimeout {
        address: SocketAddr,
        after: Duration,
    },
    #[error("back end {address} refused the login")]
    Refused { address: SocketAddr },
    #[error("pre-auth time ran out during login")]
    PreAuthTimeout,
    #[error(transparent)]
    BadUserName(#[from] BadUserName),
    #[error("max_sessions_per_user_address sessions of this user from this address already")]
    UserAddressCap,
    #[error("route to {value} refused: {why}")]
    RouteRefused { value: String, why: &'static str },
    #[error("bearer token refused: {0}")]
    Token(crate::auth::oauth::TokenFailure),
    #[error("bearer token not checked: {0}")]
    TokenCheck(String),
}

/// Why a TLS session with a back end could not be set up.
#[derive(Debug, thiserror::Error)]
pub(super) enum BackendTlsError {
    #[error("no TLS client config")]
    NotConfigured,
    #[error("`{host}` cannot be checked against a certificate")]
    BadName { host: String },
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("STARTTLS inside TLS")]
    AlreadyTls,
}

/// A failed login: what the client is told, how it is counted, and why.
#[derive(Debug)]
pub(super) struct LoginError {
    pub failure: LoginFailure,
    pub outcome: LoginOutcome,
    pub cause: LoginCause,
}

impl LoginError {
    /// The back end failed (down, slow, misbehaving): a temporary failure.
    pub(super) fn backend(cause: LoginCause) -> Self {
        Self {
            failure: LoginFailure::Unavailable,
            outcome: LoginOutcome::BackendUnavailable,
            cause,
        }
    }

    /// The pre-auth deadline passed while logging in.
    pub fn preauth_timeout() -> Self {
        Self::backend(LoginCause::PreAuthTimeout)
    }

    /// The user has `max_sessions_per_user_address` sessions from this
    /// address already: a temporary failure, before any lookup.
    pub fn user_address_cap() -> Self {
        Self {
            failure: LoginFailure::Unavailable,
            outcome: LoginOutcome::UserAddressCap,
            cause: LoginCause::UserAddressCap,
        }
    }

    /// A user name no directory is asked about: failed like an unknown user.
    pub fn bad_user_name(why: BadUserName) -> Self {
        Self {
            failure: LoginFailure::AuthFailed,
            outcome: LoginOutcome::UnknownUser,
            cause: LoginCause::BadUserName(why),
        }
    }

    pub(super) fn route_refused(value: String, why: &'static str) -> Self {
        Self::backend(LoginCause::RouteRefused { value, why })
    }
}
