//! `[oauth]`: OAuth 2.0 logins (OAUTHBEARER, XOAUTH2). The table's
//! presence offers the mechanisms on every listener (after TLS where
//! login needs TLS); `verify` says whether mailgate checks tokens itself
//! before they cost a lookup and a back-end login. Maps the table into
//! [`OAuthSettings`]; reads the introspection client's secret file.

use super::load::Locator;
use super::ConfigError;
use crate::auth::oauth::BearerMechanism;
use crate::login::OAuthOffer;
use crate::oauth::fetch::Endpoint;
use crate::oauth::{
    IntrospectionPolicy, JwtPolicy, KeyPolicy, KeySource, OAuthSettings, VerifySettings,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default and largest `max_token` (bytes): JWTs from real providers run
/// to a few KiB; a back end's line limit caps what can be replayed.
pub const DEFAULT_MAX_TOKEN: usize = 16 * 1024;
/// Largest `max_token` accepted.
pub const MAX_MAX_TOKEN: usize = 64 * 1024;

/// `[oauth]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Mechanisms offered: `oauthbearer`, `xoauth2` (default both).
    #[serde(default = "default_mechanisms")]
    pub mechanisms: Vec<String>,
    /// Longest token accepted, bytes.
    #[serde(default = "default_max_token")]
    pub max_token: usize,
    /// `none` (the back end checks), `jwt` or `introspection`.
    #[serde(default)]
    pub verify: VerifyMode,
    /// `jwt`: the provider's JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// `jwt`: the provider's JWKS URL (`jwks_uri`).
    pub jwks_url: Option<String>,
    /// `jwt`: keys are fetched again when older than this.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// `jwt`: never fetched twice within this (a token with an unknown
    /// `kid` waits for it).
    #[serde(default = "default_jwks_min_refresh", with = "humantime_serde")]
    pub jwks_min_refresh: Duration,
    /// `jwt`: the `iss` tokens must carry.
    pub issuer: Option<String>,
    /// `jwt`: `aud` must name one of these (none: not checked).
    #[serde(default)]
    pub audience: Vec<String>,
    /// The claim that names the user (`jwt` default `email`,
    /// `introspection` default `username`).
    pub user_claim: Option<String>,
    /// Allowed clock difference for `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// `introspection`: the RFC 7662 endpoint.
    pub introspection_url: Option<String>,
    /// `introspection`: mailgate's client id there.
    pub client_id: Option<String>,
    /// `introspection`: file holding the client secret.
    pub client_secret_file: Option<toml::Spanned<PathBuf>>,
    /// Tokens accepted lately, kept (0: none): the next login with the
    /// same token is not checked again.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    /// Longest a token stays accepted without another check.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Bound on one request to the provider.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// CA certificates (PEM) for https URLs.
    pub ca_file: Option<PathBuf>,
}

/// `verify`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// The back end checks each token.
    #[default]
    None,
    /// Signature and claims, against the provider's keys.
    Jwt,
    /// RFC 7662 introspection.
    Introspection,
}

fn default_mechanisms() -> Vec<String> {
    BearerMechanism::ALL
        .iter()
        .map(|m| m.label().to_owned())
        .collect()
}
fn default_max_token() -> usize {
    DEFAULT_MAX_TOKEN
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}
fn default_jwks_min_refresh() -> Duration {
    Duration::from_secs(10)
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_cache_capacity() -> usize {
    10_000
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `[oauth]` validated into settings; `span` is the table's, for errors.
pub(super) fn build(
    config: &OAuthConfig,
    span: std::ops::Range<usize>,
    at: &mut Locator<'_>,
    base_dir: &Path,
) -> Result<OAuthSettings, ConfigError> {
    let invalid = |key: &str, reason: String| at.invalid(Some(span.clone()), key, reason);
    let mut mechanisms = Vec::new();
    for name in &config.mechanisms {
        let mechanism = BearerMechanism::parse(name.as_bytes()).ok_or_else(|| {
            invalid(
                "oauth.mechanisms",
                format!("`{name}` is not a bearer-token mechanism (oauthbearer, xoauth2)"),
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(invalid(
            "oauth.mechanisms",
            "empty: name oauthbearer and/or xoauth2, or remove [oauth]".into(),
        ));
    }
    if config.max_token == 0 || config.max_token > MAX_MAX_TOKEN {
        return Err(invalid(
            "oauth.max_token",
            format!("must be 1 to {MAX_MAX_TOKEN} bytes"),
        ));
    }
    let endpoint = |key: &str, url: &str| Endpoint::parse(url).map_err(|e| invalid(key, e));
    let verify = match config.verify {
        VerifyMode::None => VerifySettings::None,
        VerifyMode::Jwt => {
            let source = match (&config.jwks_file, &config.jwks_url) {
                (Some(file), None) => KeySource::File(base_dir.join(file)),
                (None, Some(url)) => KeySource::Url(endpoint("oauth.jwks_url", url)?),
                _ => {
                    return Err(invalid(
                        "oauth.verify",
                        "`jwt` needs exactly one of jwks_file and jwks_url".into(),
                    ))
                }
            };
            if config.jwks_refresh < config.jwks_min_refresh {
                return Err(invalid(
                    "oauth.jwks_refresh",
                    "shorter than jwks_min_refresh".into(),
                ));
            }
            VerifySettings::Jwt {
                keys: KeyPolicy {
                    source,
                    refresh: config.jwks_refresh,
                    min_refresh: config.jwks_min_refresh,
                    timeout: config.timeout,
                },
                policy: JwtPolicy {
                    issuer: config.issuer.clone(),
                    audiences: config.audience.clone(),
                    user_claim: config.user_claim.clone().unwrap_or_else(|| "email".into()),
                    leeway: config.leeway,
                },
            }
        }
        VerifyMode::Introspection => {
            let (Some(url), Some(client_id), Some(secret_file)) = (
                &config.introspection_url,
                &config.client_id,
                &config.client_secret_file,
            ) else {
                return Err(invalid(
                    "oauth.verify",
                    "`introspection` needs introspection_url, client_id and client_secret_file"
                        .into(),
                ));
            };
            let client_secret = crate::directory::kind::read_secret_file(
                "oauth.client_secret_file",
                secret_file,
                base_dir,
            )
            .map_err(|i| at.invalid(i.span, &i.key, i.reason))?;
            VerifySettings::Introspection(IntrospectionPolicy {
                endpoint: endpoint("oauth.introspection_url", url)?,
                client_id: client_id.clone(),
                client_secret,
                user_claim: config
                    .user_claim
                    .clone()
                    .unwrap_or_else(|| "username".into()),
                leeway: config.leeway,
                timeout: config.timeout,
            })
        }
    };
    let ca_file = config.ca_file.as_ref().map(|f| base_dir.join(f));
    if verify.endpoint().is_some_and(|e| e.tls) && ca_file.is_none() {
        return Err(invalid(
            "oauth.ca_file",
            "an https URL needs `ca_file` (the CA the provider's certificate chains to)".into(),
        ));
    }
    at.locate("oauth", Some(span.clone()));
    at.locate("oauth.ca_file", Some(span));
    Ok(OAuthSettings {
        offer: OAuthOffer {
            mechanisms,
            max_token: config.max_token,
        },
        verify,
        ca_file,
        cache_capacity: config.cache_capacity,
        cache_ttl: config.cache_ttl,
    })
}

/// A listener's `oauth = true` needs `[oauth]`.
pub(super) fn check_listeners(config: &super::Config, at: &Locator<'_>) -> Result<(), ConfigError> {
    for (index, listen) in config.listen.iter().enumerate() {
        if let (Some(on), None) = (&listen.oauth, &config.oauth) {
            if *on.get_ref() {
                return Err(at.invalid(
                    Some(on.span()),
                    &format!("listen[{index}].oauth"),
                    "no [oauth] table: add one (its keys say how tokens are checked)".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;
    use std::path::Path;

    const BASE: &str = "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n\n[directory]\nkind = \"ldap\"\nurl = \"ldap://127.0.0.1/ou=People,dc=example,dc=org?mail,host?sub?(mail=%s)\"\n\n";

    fn load(oauth: &str) -> Result<crate::config::Loaded, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("jwks.json"), "{\"keys\":[]}").unwrap();
        parse_str(&format!("{BASE}{oauth}"), Path::new("t.toml"), dir.path())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn oauth_defaults_offer_both_mechanisms_and_check_nothing() {
        let loaded = load("[oauth]\n").unwrap();
        let settings = loaded.oauth.unwrap();
        assert_eq!(settings.offer.mechanisms.len(), 2);
        assert_eq!(settings.offer.max_token, super::DEFAULT_MAX_TOKEN);
        assert_eq!(settings.verify, crate::oauth::VerifySettings::None);
        assert!(load("").unwrap().oauth.is_none());
    }

    #[test]
    fn each_verify_mode_names_what_it_lacks() {
        let err = load("[oauth]\nverify = \"jwt\"\n").unwrap_err();
        assert!(
            err.contains("oauth.verify") && err.contains("jwks_file"),
            "{err}"
        );
        let err =
            load("[oauth]\nverify = \"jwt\"\njwks_url = \"https://idp/certs\"\n").unwrap_err();
        assert!(err.contains("oauth.ca_file"), "{err}");
        assert!(load("[oauth]\nverify = \"jwt\"\njwks_file = \"jwks.json\"\n").is_ok());
        let err =
            load("[oauth]\nverify = \"introspection\"\nintrospection_url = \"http://idp/i\"\n")
                .unwrap_err();
        assert!(err.contains("client_secret_file"), "{err}");
        let ok = load("[oauth]\nverify = \"introspection\"\nintrospection_url = \"http://idp/i\"\nclient_id = \"mg\"\nclient_secret_file = \"secret\"\n").unwrap();
        match ok.oauth.unwrap().verify {
            crate::oauth::VerifySettings::Introspection(p) => {
                assert_eq!(p.client_secret.expose(), b"s3cret");
                assert_eq!(p.user_claim, "username");
            }
            other => panic!("{other:?}"),
        }
        let err = load("[oauth]\nmechanisms = [\"plain\"]\n").unwrap_err();
        assert!(err.contains("oauth.mechanisms"), "{err}");
        let err = load("[oauth]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn a_listener_may_turn_oauth_off_but_not_on_without_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let with = |key: &str, table: &str| {
            let text = BASE.replace(
                "address = \"127.0.0.1:0\"\n",
                &format!("address = \"127.0.0.1:0\"\n{key}"),
            );
            parse_str(&format!("{text}{table}"), Path::new("t.toml"), dir.path())
        };
        assert!(with("", "[oauth]\n").unwrap().oauth_offer(0).is_some());
        assert!(with("oauth = false\n", "[oauth]\n")
            .unwrap()
            .oauth_offer(0)
            .is_none());
        assert!(with("oauth = true\n", "[oauth]\n")
            .unwrap()
            .oauth_offer(0)
            .is_some());
        assert!(with("oauth = false\n", "")
            .unwrap()
            .oauth_offer(0)
            .is_none());
        let err = with("oauth = true\n", "").unwrap_err().to_string();
        assert!(
            err.contains("listen[0].oauth") && err.contains("[oauth]"),
            "{err}"
        );
    }

    #[test]
    fn max_token_is_bounded_at_both_ends() {
        let at = |n: usize| load(&format!("[oauth]\nmax_token = {n}\n"));
        assert!(at(0).is_err());
        assert!(at(1).is_ok());
        assert!(at(super::MAX_MAX_TOKEN).is_ok());
        assert!(at(super::MAX_MAX_TOKEN + 1)
            .unwrap_err()
            .contains("oauth.max_token"));
    }
}
