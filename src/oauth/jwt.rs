//! A JSON Web Token (RFC 7519) in compact JWS form checked without I/O:
//! its signature against a [`KeySet`], then its claims against a
//! [`JwtPolicy`] and the user the client logs in as. The clock is a
//! parameter; fetching keys is the caller's.

use super::jwks::{base64url, Algorithm, KeySet};
use crate::auth::oauth::TokenFailure;
use serde::Deserialize;
use std::time::Duration;

/// What a token's claims must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPolicy {
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` must name one of these, when any is set.
    pub audiences: Vec<String>,
    /// The claim that names the user (`email`, `preferred_username`, …).
    pub user_claim: String,
    /// Allowed clock difference for `exp` and `nbf`.
    pub leeway: Duration,
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Jwt {
    /// The signing algorithm the header names.
    pub algorithm: Algorithm,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// What a valid token says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Jwt {
    /// Splits and decodes `token`: three base64url parts, a JSON header
    /// naming an accepted algorithm, a JSON object of claims.
    pub fn parse(token: &[u8]) -> Result<Self, TokenFailure> {
        let text = std::str::from_utf8(token).map_err(|_| TokenFailure::Malformed)?;
        let mut parts = text.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenFailure::Malformed);
        };
        let decode = |part: &str| base64url(part).ok_or(TokenFailure::Malformed);
        let parsed: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenFailure::Malformed)?;
        let algorithm = Algorithm::parse(&parsed.alg).ok_or(TokenFailure::Algorithm)?;
        let claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenFailure::Malformed)?;
        Ok(Self {
            algorithm,
            kid: parsed.kid,
            signing_input: text.as_bytes()[..header.len() + 1 + payload.len()].to_vec(),
            signature: decode(signature)?,
            claims,
        })
    }

    /// Checks the signature with the keys that fit the token's `kid` and
    /// algorithm: [`TokenFailure::UnknownKey`] when none does (the caller
    /// may fetch the keys again), [`TokenFailure::BadSignature`] when none
    /// verifies.
    pub fn check_signature(&self, keys: &KeySet) -> Result<(), TokenFailure> {
        let candidates = keys.candidates(self.kid.as_deref(), self.algorithm);
        if candidates.is_empty() {
            return Err(TokenFailure::UnknownKey);
        }
        let verifies = candidates.iter().any(|k| {
            k.key
                .verifies(self.algorithm, &self.signing_input, &self.signature)
        });
        if verifies {
            Ok(())
        } else {
            Err(TokenFailure::BadSignature)
        }
    }

    /// Checks the claims for a login as `user` at `now` (seconds since the
    /// Unix epoch): `exp` (required), `nbf`, `iss`, `aud`, the user claim.
    pub fn check_claims(
        &self,
        policy: &JwtPolicy,
        user: &str,
        now: u64,
    ) -> Result<Verified, TokenFailure> {
        let leeway = policy.leeway.as_secs();
        let time = |name: &str| match self.claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(TokenFailure::Malformed),
        };
        let expires_at = time("exp")?.ok_or(TokenFailure::Malformed)?;
        if now > expires_at.saturating_add(leeway) {
            return Err(TokenFailure::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TokenFailure::NotYetValid);
        }
        if let Some(issuer) = &policy.issuer {
            if self.claims.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
                return Err(TokenFailure::Issuer);
            }
        }
        if !policy.audiences.is_empty() && !audience_matches(self.claims.get("aud"), policy) {
            return Err(TokenFailure::Audience);
        }
        match self.claims.get(&policy.user_claim).and_then(|v| v.as_str()) {
            Some(named) if named == user => Ok(Verified { expires_at }),
            _ => Err(TokenFailure::User),
        }
    }
}

/// `aud` (a string or an array of strings) names a configured audience.
fn audience_matches(aud: Option<&serde_json::Value>, policy: &JwtPolicy) -> bool {
    let wanted = |a: &str| policy.audiences.iter().any(|w| w == a);
    match aud {
        Some(serde_json::Value::String(a)) => wanted(a),
        Some(serde_json::Value::Array(list)) => list.iter().filter_map(|v| v.as_str()).any(wanted),
        _ => false,
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
