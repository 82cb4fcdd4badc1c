//! OAuth 2.0 test parts: a provider on loopback (`oauth_idp.py`, Python's
//! `http.server`) that answers Dovecot's oauth2 passdb (tokeninfo and
//! introspection) and serves a JWKS, and signing keys that mint JWTs
//! (Ed25519, P-256, RSA through ring). Stopped when dropped.

use super::terminate;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The running provider.
pub struct Provider {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: std::process::Child,
    log: PathBuf,
    dir: tempfile::TempDir,
    tokens: serde_json::Map<String, serde_json::Value>,
}

impl Provider {
    /// Starts the provider with no tokens and an empty key set.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("tokens.json"), "{}").unwrap();
        std::fs::write(dir.path().join("jwks.json"), "{\"keys\":[]}").unwrap();
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.log");
        std::fs::write(&log, "").unwrap();
        let args = [
            dir.path().as_os_str(),
            port_file.as_os_str(),
            log.as_os_str(),
        ];
        let (child, port) = super::start_python_server("oauth_idp.py", &args, &port_file);
        Self {
            port,
            child,
            log,
            dir,
            tokens: serde_json::Map::new(),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Makes `token` valid at the provider, naming `user` in `username`
    /// and `email`.
    pub fn issue(&mut self, token: &str, user: &str) {
        self.tokens.insert(
            token.to_owned(),
            serde_json::json!({"username": user, "email": user, "exp": now() + 3600}),
        );
        let text = serde_json::Value::Object(self.tokens.clone()).to_string();
        std::fs::write(self.dir.path().join("tokens.json"), text).unwrap();
    }

    /// Publishes `keys` as the provider's JWKS.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let jwks = serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() });
        let path = self.dir.path().join("jwks.json");
        std::fs::write(path.with_extension("tmp"), jwks.to_string()).unwrap();
        std::fs::rename(path.with_extension("tmp"), path).unwrap();
    }

    /// The JWKS file (what `jwks_file` names).
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// Requests so far, one `METHOD PATH` each.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many requests went to `path`.
    pub fn asked(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.ends_with(&format!(" {path}")))
            .count()
    }

    /// Dovecot's oauth2 passdb configuration file for this provider
    /// (introspection, as Dovecot 2.3 does it: tokeninfo GET, then POST).
    pub fn dovecot_passdb(&self) -> String {
        let conf = self.dir.path().join("dovecot-oauth2.conf.ext");
        std::fs::write(
            &conf,
            format!(
                "tokeninfo_url = {}?access_token=\nintrospection_url = {}\nintrospection_mode = post\n\
                 force_introspection = yes\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n",
                self.url("/tokeninfo"),
                self.url("/introspect")
            ),
        )
        .unwrap();
        format!(
            "auth_mechanisms = plain login oauthbearer xoauth2\n\
             passdb {{\n  driver = oauth2\n  mechanisms = oauthbearer xoauth2\n  args = {}\n}}\n",
            conf.display()
        )
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key with a `kid`: Ed25519 (the default), P-256 or RSA-2048.
pub struct SigningKey {
    /// Its key id.
    pub kid: String,
    pair: Pair,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(ring::signature::EcdsaKeyPair),
    Rsa(ring::signature::RsaKeyPair),
}

impl SigningKey {
    /// A fresh Ed25519 key (`EdDSA`).
    pub fn new(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate");
        Self {
            kid: kid.to_owned(),
            pair: Pair::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse")),
        }
    }

    /// A fresh P-256 key (`ES256`).
    pub fn p256(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("generate");
        let pair =
            ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("parse");
        Self {
            kid: kid.to_owned(),
            pair: Pair::P256(pair),
        }
    }

    /// A fresh RSA-2048 key (`RS256`, Keycloak's default), made by openssl
    /// (ring cannot generate RSA keys).
    pub fn rsa(kid: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pem, der) = (dir.path().join("k.pem"), dir.path().join("k.der"));
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "RSA".as_ref(),
            "-pkeyopt".as_ref(),
            "rsa_keygen_bits:2048".as_ref(),
            "-out".as_ref(),
            pem.as_os_str(),
        ]);
        run(&[
            "rsa".as_ref(),
            "-in".as_ref(),
            pem.as_os_str(),
            "-traditional".as_ref(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            der.as_os_str(),
        ]);
        let pair = ring::signature::RsaKeyPair::from_der(&std::fs::read(&der).expect("key"))
            .expect("parse");
        Self {
            kid: kid.to_owned(),
            pair: Pair::Rsa(pair),
        }
    }

    /// The JWS algorithm it signs with.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ed25519(_) => "EdDSA",
            Pair::P256(_) => "ES256",
            Pair::Rsa(_) => "RS256",
        }
    }

    /// Its public JWK.
    pub fn jwk(&self) -> serde_json::Value {
        match &self.pair {
            Pair::Ed25519(k) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                "kid": self.kid, "x": b64(k.public_key().as_ref()),
            }),
            Pair::P256(k) => {
                let point = k.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                    "kid": self.kid, "x": b64(&point[1..33]), "y": b64(&point[33..]),
                })
            }
            Pair::Rsa(k) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": b64(&public.n), "e": b64(&public.e),
                })
            }
        }
    }

    /// A JWT with `claims`, signed by this key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::P256(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Pair::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
                sig
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    /// A token for `user` as an identity provider issues it (`iss`,
    /// `aud`, `email`, valid for an hour).
    pub fn token_for(&self, user: &str) -> String {
        self.sign(&claims(user, now() + 3600))
    }
}

/// The claims of a token for `user` expiring at `exp`.
pub fn claims(user: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": ["account", AUDIENCE], "azp": "thunderbird",
        "email": user, "preferred_username": user, "exp": exp, "iat": exp - 3600,
    })
}

/// The issuer the tests' tokens name.
pub const ISSUER: &str = "https://idp.example.org/realms/mail";
/// The audience the tests' tokens name.
pub const AUDIENCE: &str = "mail";
