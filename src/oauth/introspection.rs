//! RFC 7662 token introspection: the provider says whether a token is
//! active and whom it names. The request is a form POST with the client's
//! credentials (HTTP Basic, RFC 7662 §2.1); the answer's `active`, `exp`
//! and user claim decide. (Active answers are remembered by the token
//! checker, `accepted.rs`, so a client's next login costs no request.)

use super::fetch::{self, Endpoint, Request};
use super::jwt::Verified;
use crate::auth::oauth::TokenFailure;
use crate::auth::Secret;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// Largest introspection answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// How to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionPolicy {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The client id mailgate authenticates as.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The answer's claim that names the user (`username`, `email`, …).
    pub user_claim: String,
    /// Allowed clock difference for `exp`.
    pub leeway: Duration,
    /// Bound on one request.
    pub timeout: Duration,
}

/// What a failed introspection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionError {
    /// The token is refused.
    Refused(TokenFailure),
    /// The endpoint could not be asked.
    Unavailable(String),
}

/// The process's introspection client.
pub struct Introspector {
    policy: IntrospectionPolicy,
    tls: Option<Arc<rustls::ClientConfig>>,
    authorization: Secret,
}

impl Introspector {
    /// A client for `policy`.
    pub fn new(policy: IntrospectionPolicy, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let mut credentials = Zeroizing::new(Vec::new());
        form_into(&mut credentials, policy.client_id.as_bytes());
        credentials.push(b':');
        form_into(&mut credentials, policy.client_secret.expose());
        let encoded = Zeroizing::new(crate::auth::encode_base64(&credentials));
        let mut authorization = b"Basic ".to_vec();
        authorization.extend_from_slice(encoded.as_bytes());
        let authorization = Secret::new(authorization);
        Self {
            policy,
            tls,
            authorization,
        }
    }

    /// Whether `token` is active and names `user`.
    pub async fn check(&self, user: &str, token: &Secret) -> Result<Verified, IntrospectionError> {
        let now = unix_now();
        let mut body = b"token=".to_vec();
        form_into(&mut body, token.expose());
        body.extend_from_slice(b"&token_type_hint=access_token");
        let body = Secret::new(body);
        let request = Request {
            method: "POST",
            authorization: Some(&self.authorization),
            body: Some(&body),
        };
        let asked = fetch::send(
            &self.policy.endpoint,
            self.tls.as_ref(),
            &request,
            MAX_ANSWER,
        );
        let answer = match tokio::time::timeout(self.policy.timeout, asked).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(IntrospectionError::Unavailable(e.to_string())),
            Err(_) => {
                return Err(IntrospectionError::Unavailable(format!(
                    "no answer within {:?}",
                    self.policy.timeout
                )))
            }
        };
        judge(&answer, &self.policy, user, now).map_err(IntrospectionError::Refused)
    }
}

/// An introspection answer judged for a login as `user` at `now`.
pub fn judge(
    answer: &[u8],
    policy: &IntrospectionPolicy,
    user: &str,
    now: u64,
) -> Result<Verified, TokenFailure> {
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(answer).map_err(|_| TokenFailure::Malformed)?;
    if claims.get("active").and_then(|v| v.as_bool()) != Some(true) {
        return Err(TokenFailure::Inactive);
    }
    let expires_at = match claims.get("exp") {
        // RFC 7662 makes `exp` optional: without one, the cache bound rules.
        None => u64::MAX,
        Some(v) => v.as_u64().ok_or(TokenFailure::Malformed)?,
    };
    if now > expires_at.saturating_add(policy.leeway.as_secs()) {
        return Err(TokenFailure::Expired);
    }
    match claims.get(&policy.user_claim).and_then(|v| v.as_str()) {
        Some(named) if named == user => Ok(Verified { expires_at }),
        _ => Err(TokenFailure::User),
    }
}

/// Appends `value` `application/x-www-form-urlencoded` (and as RFC 6749
/// §2.3.1 encodes client credentials): unreserved bytes as they are, every
/// other byte `%XX`. Written straight into `out`, which the caller wipes
/// (it may hold a token or a secret).
fn form_into(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IntrospectionPolicy {
        IntrospectionPolicy {
            endpoint: Endpoint::parse("http://127.0.0.1:1/i").unwrap(),
            client_id: "mailgate".into(),
            client_secret: Secret::new(b"s".to_vec()),
            user_claim: "username".into(),
            leeway: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn an_answer_must_be_active_current_and_name_the_user() {
        let p = policy();
        let ok = br#"{"active":true,"username":"ann","exp":1000}"#;
        assert_eq!(judge(ok, &p, "ann", 900), Ok(Verified { expires_at: 1000 }));
        assert_eq!(judge(ok, &p, "bob", 900), Err(TokenFailure::User));
        assert_eq!(judge(ok, &p, "ann", 1061), Err(TokenFailure::Expired));
        assert!(judge(ok, &p, "ann", 1060).is_ok());
        assert_eq!(
            judge(br#"{"active":false}"#, &p, "ann", 0),
            Err(TokenFailure::Inactive)
        );
        assert_eq!(judge(b"<html>", &p, "ann", 0), Err(TokenFailure::Malformed));
        let no_exp = br#"{"active":true,"username":"ann"}"#;
        assert_eq!(judge(no_exp, &p, "ann", 0).unwrap().expires_at, u64::MAX);
    }

    #[test]
    fn form_values_keep_unreserved_bytes_and_escape_the_rest() {
        let mut out = Vec::new();
        form_into(&mut out, b"aZ9-._~ +/=\xff");
        assert_eq!(out, b"aZ9-._~%20%2B%2F%3D%FF");
    }
}
