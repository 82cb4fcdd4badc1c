//! OAuth 2.0 bearer tokens checked at the front (`[oauth] verify`), before
//! a token costs a directory lookup or a back-end connection.
//!
//! Owns the token checker shared by every worker of the process: with
//! `verify = "jwt"` the provider's signing keys (a JWKS file or URL,
//! refreshed on a schedule and when a token names an unknown `kid`) and
//! the claim policy; with `verify = "introspection"` an RFC 7662
//! endpoint; in both modes a bounded cache of the tokens accepted lately.
//! The SASL messages themselves are [`crate::auth::oauth`]'s; what the
//! client hears is the protocol machines'. This module never logs a token
//! and keeps none: the cache is keyed by the token's SHA-256.

pub mod accepted;
pub mod fetch;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod keys;

pub use introspection::{IntrospectionPolicy, Introspector};
pub use jwks::{Algorithm, KeySet};
pub use jwt::{Jwt, JwtPolicy, Verified};
pub use keys::{KeyPolicy, KeySource, KeyStore};

use crate::auth::oauth::TokenFailure;
use crate::auth::Secret;
use crate::login::OAuthOffer;
use std::path::PathBuf;
use std::sync::Arc;

/// `[oauth]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// What listeners offer (mechanisms, token bound).
    pub offer: OAuthOffer,
    /// How tokens are checked at the front.
    pub verify: VerifySettings,
    /// CA certificates (PEM) an https key or introspection URL must chain to.
    pub ca_file: Option<PathBuf>,
    /// Tokens accepted lately, kept at most (0: none).
    pub cache_capacity: usize,
    /// Longest a token stays accepted without another check.
    pub cache_ttl: std::time::Duration,
}

/// How tokens are checked at the front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifySettings {
    /// Not at all: the back end checks each token.
    None,
    /// As JWTs, against the provider's signing keys.
    Jwt {
        /// Where the keys come from and how often.
        keys: KeyPolicy,
        /// What the claims must say.
        policy: JwtPolicy,
    },
    /// By asking the provider (RFC 7662).
    Introspection(IntrospectionPolicy),
}

impl VerifySettings {
    /// The URL the checker fetches from, if any (https needs `ca_file`).
    pub fn endpoint(&self) -> Option<&fetch::Endpoint> {
        match self {
            VerifySettings::None => None,
            VerifySettings::Jwt { keys, .. } => match &keys.source {
                KeySource::Url(endpoint) => Some(endpoint),
                KeySource::File(_) => None,
            },
            VerifySettings::Introspection(p) => Some(&p.endpoint),
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Refused: a failed login.
    Refused(TokenFailure),
    /// Could not be checked: a temporary failure.
    Unavailable(String),
}

/// The process's token checker (`verify = "jwt"` or `"introspection"`).
pub struct TokenChecker {
    mode: Mode,
    accepted: accepted::Accepted,
}

enum Mode {
    Jwt { keys: KeyStore, policy: JwtPolicy },
    Introspection(Introspector),
}

impl TokenChecker {
    /// The checker `settings` ask for (`None` with `verify = "none"`); a
    /// key file is read here. `tls` is the client config for https URLs.
    pub fn build(
        settings: &OAuthSettings,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Option<Arc<Self>>, String> {
        let mode = match &settings.verify {
            VerifySettings::None => return Ok(None),
            VerifySettings::Jwt { keys, policy } => Mode::Jwt {
                keys: KeyStore::new(keys.clone(), tls)?,
                policy: policy.clone(),
            },
            VerifySettings::Introspection(policy) => {
                Mode::Introspection(Introspector::new(policy.clone(), tls))
            }
        };
        let accepted = accepted::Accepted::new(settings.cache_capacity, settings.cache_ttl);
        Ok(Some(Arc::new(Self { mode, accepted })))
    }

    /// Whether `token` may log in as `user` now: accepted lately, or
    /// checked (and then remembered).
    pub async fn check(&self, user: &str, token: &Secret) -> Result<Verified, CheckError> {
        let now = introspection::unix_now();
        if let Some(expires_at) = self.accepted.get(token.expose(), user, now) {
            return Ok(Verified { expires_at });
        }
        let verified = self.check_anew(user, token, now).await?;
        self.accepted
            .put(token.expose(), user, verified.expires_at, now);
        Ok(verified)
    }

    async fn check_anew(
        &self,
        user: &str,
        token: &Secret,
        now: u64,
    ) -> Result<Verified, CheckError> {
        match &self.mode {
            Mode::Jwt { keys, policy } => {
                let jwt = Jwt::parse(token.expose()).map_err(CheckError::Refused)?;
                let current = keys
                    .current()
                    .await
                    .map_err(|e| CheckError::Unavailable(e.to_string()))?;
                match jwt.check_signature(&current) {
                    Err(TokenFailure::UnknownKey) => {
                        let again = keys.after_unknown_kid(&current).await;
                        jwt.check_signature(&again)
                    }
                    checked => checked,
                }
                .map_err(CheckError::Refused)?;
                jwt.check_claims(policy, user, now)
                    .map_err(CheckError::Refused)
            }
            Mode::Introspection(introspector) => {
                introspector.check(user, token).await.map_err(|e| match e {
                    introspection::IntrospectionError::Refused(r) => CheckError::Refused(r),
                    introspection::IntrospectionError::Unavailable(why) => {
                        CheckError::Unavailable(why)
                    }
                })
            }
        }
    }
}
