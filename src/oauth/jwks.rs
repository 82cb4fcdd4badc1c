//! JSON Web Key Sets (RFC 7517) as an identity provider publishes its
//! signing keys: parsed and bounded, without I/O. Only public signature
//! keys mailgate can verify with are kept (RSA, P-256, P-384, Ed25519);
//! others (encryption keys, symmetric keys, unknown types) are skipped, so
//! a provider that adds one does not break logins.

use serde::Deserialize;

/// Largest key set document read (bytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document.
pub const MAX_KEYS: usize = 64;
/// Longest RSA modulus accepted (bytes: 8192 bits, what ring verifies).
const MAX_RSA_MODULUS: usize = 1024;

/// A JWS signature algorithm mailgate verifies (RFC 7518, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Keycloak's default).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519 (`EdDSA`).
    EdDsa,
}

impl Algorithm {
    /// The algorithm named `name` as a JOSE header writes it; `none` and
    /// the HMAC algorithms are not among them (a shared secret would let
    /// anyone who verifies also sign).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Algorithm::Rs256,
            "RS384" => Algorithm::Rs384,
            "RS512" => Algorithm::Rs512,
            "PS256" => Algorithm::Ps256,
            "PS384" => Algorithm::Ps384,
            "PS512" => Algorithm::Ps512,
            "ES256" => Algorithm::Es256,
            "ES384" => Algorithm::Es384,
            "EdDSA" => Algorithm::EdDsa,
            _ => return None,
        })
    }

    /// The ring verification algorithm for this JWS algorithm.
    fn ring(self) -> &'static dyn ring::signature::VerificationAlgorithm {
        use ring::signature as s;
        match self {
            Algorithm::Rs256 => &s::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Rs384 => &s::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::Rs512 => &s::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::Ps256 => &s::RSA_PSS_2048_8192_SHA256,
            Algorithm::Ps384 => &s::RSA_PSS_2048_8192_SHA384,
            Algorithm::Ps512 => &s::RSA_PSS_2048_8192_SHA512,
            Algorithm::Es256 => &s::ECDSA_P256_SHA256_FIXED,
            Algorithm::Es384 => &s::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDsa => &s::ED25519,
        }
    }
}

/// A public key's material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// P-256 point, uncompressed (`04 || x || y`).
    P256(Vec<u8>),
    /// P-384 point, uncompressed.
    P384(Vec<u8>),
    /// Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether signatures of `algorithm` can be made with this key.
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            PublicKey::Rsa { .. } => matches!(
                algorithm,
                A::Rs256 | A::Rs384 | A::Rs512 | A::Ps256 | A::Ps384 | A::Ps512
            ),
            PublicKey::P256(_) => algorithm == A::Es256,
            PublicKey::P384(_) => algorithm == A::Es384,
            PublicKey::Ed25519(_) => algorithm == A::EdDsa,
        }
    }

    /// Whether `signature` signs `message` with this key under `algorithm`.
    pub fn verifies(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(algorithm) {
            return false;
        }
        match self {
            PublicKey::Rsa { n, e } => ring::signature::RsaPublicKeyComponents { n, e }
                .verify(rsa_parameters(algorithm), message, signature)
                .is_ok(),
            PublicKey::P256(point) | PublicKey::P384(point) | PublicKey::Ed25519(point) => {
                ring::signature::UnparsedPublicKey::new(algorithm.ring(), point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

fn rsa_parameters(algorithm: Algorithm) -> &'static ring::signature::RsaParameters {
    use ring::signature as s;
    match algorithm {
        Algorithm::Rs384 => &s::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::Rs512 => &s::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::Ps256 => &s::RSA_PSS_2048_8192_SHA256,
        Algorithm::Ps384 => &s::RSA_PSS_2048_8192_SHA384,
        Algorithm::Ps512 => &s::RSA_PSS_2048_8192_SHA512,
        _ => &s::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// One signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// Its `alg`, when the set pins one.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: PublicKey,
}

/// The keys a provider signs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// Why a key set document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("key set larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("not a JSON Web Key Set: {0}")]
    NotJwks(String),
    /// No key mailgate can verify with.
    #[error("no usable signature key (RSA, EC P-256/P-384, Ed25519)")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document; keys that cannot sign what mailgate verifies
    /// are skipped, at most [`MAX_KEYS`] kept.
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let document: Document =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let keys: Vec<Jwk> = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
            .filter_map(usable)
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// The keys that may have signed a token with `kid` and `algorithm`:
    /// the key with that `kid`, or without one every key of a fitting type.
    pub fn candidates(&self, kid: Option<&str>, algorithm: Algorithm) -> Vec<&Jwk> {
        self.keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.is_none_or(|a| a == algorithm) && k.key.fits(algorithm))
            .collect()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key `raw` describes, when it is a signature key mailgate can use.
fn usable(raw: RawKey) -> Option<Jwk> {
    if raw.usage.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(Algorithm::parse(name)?),
    };
    let field = |v: &Option<String>| v.as_deref().and_then(base64url);
    let key = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let (n, e) = (field(&raw.n)?, field(&raw.e)?);
            if n.len() > MAX_RSA_MODULUS || e.len() > 8 {
                return None;
            }
            PublicKey::Rsa { n, e }
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let size = if curve == "P-256" { 32 } else { 48 };
            let (x, y) = (field(&raw.x)?, field(&raw.y)?);
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if size == 32 {
                PublicKey::P256(point)
            } else {
                PublicKey::P384(point)
            }
        }
        ("OKP", Some("Ed25519")) => {
            let x = field(&raw.x)?;
            if x.len() != 32 {
                return None;
            }
            PublicKey::Ed25519(x)
        }
        _ => return None,
    };
    if alg.is_some_and(|a| !key.fits(a)) {
        return None;
    }
    Some(Jwk {
        kid: raw.kid,
        alg,
        key,
    })
}

/// Base64url without padding (RFC 7515 §2), as JOSE writes it.
pub fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_supported_kind_are_kept_and_others_skipped() {
        let p256_x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let p256_y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let json = format!(
            r#"{{"keys":[
              {{"kty":"RSA","kid":"r","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}},
              {{"kty":"EC","kid":"e","crv":"P-256","x":"{p256_x}","y":"{p256_y}"}},
              {{"kty":"OKP","kid":"o","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
              {{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}},
              {{"kty":"oct","kid":"h","k":"c2VjcmV0"}},
              {{"kty":"EC","kid":"short","crv":"P-256","x":"AAAA","y":"AAAA"}},
              "not an object"
            ]}}"#
        );
        let set = KeySet::parse(json.as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.candidates(Some("r"), Algorithm::Rs256).len(), 1);
        assert!(
            set.candidates(Some("r"), Algorithm::Ps256).is_empty(),
            "pinned to RS256"
        );
        assert_eq!(set.candidates(None, Algorithm::Es256).len(), 1);
        assert_eq!(set.candidates(Some("o"), Algorithm::EdDsa).len(), 1);
        assert!(set.candidates(Some("h"), Algorithm::Rs256).is_empty());
    }

    #[test]
    fn documents_are_bounded_and_must_hold_a_usable_key() {
        assert_eq!(
            KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]),
            Err(JwksError::TooLarge)
        );
        assert_eq!(
            KeySet::parse(br#"{"keys":[{"kty":"oct","k":"x"}]}"#),
            Err(JwksError::NoUsableKey)
        );
        assert!(matches!(KeySet::parse(b"[]"), Err(JwksError::NotJwks(_))));
        assert_eq!(Algorithm::parse("none"), None);
        assert_eq!(Algorithm::parse("HS256"), None);
    }
}
