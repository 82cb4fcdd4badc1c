use super::*;
use crate::oauth::jwks::KeySet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

const NOW: u64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signer of one key type, and its public JWK.
enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
}

impl Signer {
    fn ed25519() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn p256() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ed(_) => "EdDSA",
            Signer::Ec(_) => "ES256",
        }
    }

    fn jwk(&self, kid: &str) -> String {
        match self {
            Signer::Ed(k) => format!(
                r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"{}"}}"#,
                b64(k.public_key().as_ref())
            ),
            Signer::Ec(k) => {
                let point = k.public_key().as_ref();
                format!(
                    r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"{}","y":"{}"}}"#,
                    b64(&point[1..33]),
                    b64(&point[33..])
                )
            }
        }
    }

    fn sign(&self, kid: &str, claims: &str) -> String {
        let header = format!(r#"{{"alg":"{}","kid":"{kid}","typ":"JWT"}}"#, self.alg());
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = match self {
            Signer::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Ec(k) => k
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn policy() -> JwtPolicy {
    JwtPolicy {
        issuer: Some("https://idp.example.org/realms/mail".into()),
        audiences: vec!["mail".into()],
        user_claim: "email".into(),
        leeway: Duration::from_secs(60),
    }
}

fn claims(extra: &str) -> String {
    format!(
        r#"{{"iss":"https://idp.example.org/realms/mail","aud":["account","mail"],"email":"ann@example.org","exp":{},"nbf":{}{extra}}}"#,
        NOW + 300,
        NOW - 10
    )
}

fn check(token: &str, keys: &KeySet, user: &str, now: u64) -> Result<Verified, TokenFailure> {
    let jwt = Jwt::parse(token.as_bytes())?;
    jwt.check_signature(keys)?;
    jwt.check_claims(&policy(), user, now)
}

#[test]
fn eddsa_and_es256_tokens_verify_and_name_their_user() {
    for signer in [Signer::ed25519(), Signer::p256()] {
        let keys =
            KeySet::parse(format!(r#"{{"keys":[{}]}}"#, signer.jwk("k1")).as_bytes()).unwrap();
        let token = signer.sign("k1", &claims(""));
        assert_eq!(
            check(&token, &keys, "ann@example.org", NOW),
            Ok(Verified {
                expires_at: NOW + 300
            }),
            "{}",
            signer.alg()
        );
        assert_eq!(
            check(&token, &keys, "bob@example.org", NOW),
            Err(TokenFailure::User)
        );
    }
}

#[test]
fn a_token_signed_by_another_key_or_tampered_with_is_refused() {
    let (ours, theirs) = (Signer::ed25519(), Signer::ed25519());
    let keys = KeySet::parse(format!(r#"{{"keys":[{}]}}"#, ours.jwk("k1")).as_bytes()).unwrap();
    let forged = theirs.sign("k1", &claims(""));
    assert_eq!(
        check(&forged, &keys, "ann@example.org", NOW),
        Err(TokenFailure::BadSignature)
    );
    let unknown = ours.sign("k2", &claims(""));
    assert_eq!(
        check(&unknown, &keys, "ann@example.org", NOW),
        Err(TokenFailure::UnknownKey)
    );
    // The payload swapped for another user's, the signature kept.
    let token = ours.sign("k1", &claims(""));
    let parts: Vec<&str> = token.split('.').collect();
    let other = claims("").replace("ann@", "bob@");
    let tampered = format!("{}.{}.{}", parts[0], b64(other.as_bytes()), parts[2]);
    assert_eq!(
        check(&tampered, &keys, "bob@example.org", NOW),
        Err(TokenFailure::BadSignature)
    );
}

#[test]
fn time_claims_are_checked_with_leeway_at_the_boundary() {
    let signer = Signer::ed25519();
    let keys = KeySet::parse(format!(r#"{{"keys":[{}]}}"#, signer.jwk("k")).as_bytes()).unwrap();
    let token = signer.sign("k", &claims(""));
    let exp = NOW + 300;
    assert!(check(&token, &keys, "ann@example.org", exp + 60).is_ok());
    assert_eq!(
        check(&token, &keys, "ann@example.org", exp + 61),
        Err(TokenFailure::Expired)
    );
    let nbf = NOW - 10;
    assert!(check(&token, &keys, "ann@example.org", nbf - 60).is_ok());
    assert_eq!(
        check(&token, &keys, "ann@example.org", nbf - 61),
        Err(TokenFailure::NotYetValid)
    );
    let no_exp = signer.sign("k", r#"{"email":"ann@example.org"}"#);
    assert_eq!(
        check(&no_exp, &keys, "ann@example.org", NOW),
        Err(TokenFailure::Malformed)
    );
}

#[test]
fn issuer_and_audience_must_match_the_policy() {
    let signer = Signer::p256();
    let keys = KeySet::parse(format!(r#"{{"keys":[{}]}}"#, signer.jwk("k")).as_bytes()).unwrap();
    let other_iss = claims("").replace("realms/mail", "realms/other");
    assert_eq!(
        check(&signer.sign("k", &other_iss), &keys, "ann@example.org", NOW),
        Err(TokenFailure::Issuer)
    );
    let other_aud = claims("").replace(r#"["account","mail"]"#, r#""account""#);
    assert_eq!(
        check(&signer.sign("k", &other_aud), &keys, "ann@example.org", NOW),
        Err(TokenFailure::Audience)
    );
    let single_aud = claims("").replace(r#"["account","mail"]"#, r#""mail""#);
    assert!(check(
        &signer.sign("k", &single_aud),
        &keys,
        "ann@example.org",
        NOW
    )
    .is_ok());
}

#[test]
fn malformed_tokens_and_unaccepted_algorithms_are_named() {
    for bad in ["", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.AA"] {
        assert!(
            matches!(Jwt::parse(bad.as_bytes()), Err(TokenFailure::Malformed)),
            "{bad}"
        );
    }
    let header = |alg: &str| b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes());
    for alg in ["none", "HS256"] {
        let token = format!("{}.{}.", header(alg), b64(claims("").as_bytes()));
        assert!(matches!(
            Jwt::parse(token.as_bytes()),
            Err(TokenFailure::Algorithm)
        ));
    }
}

#[test]
fn an_rs256_token_verifies_against_modulus_and_exponent() {
    // A 2048-bit key made by openssl (ring cannot generate RSA keys),
    // as PKCS#1 DER.
    let dir = tempfile::tempdir().unwrap();
    let (pem, der) = (dir.path().join("rsa.pem"), dir.path().join("rsa.der"));
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
    let pair = signature::RsaKeyPair::from_der(&std::fs::read(&der).unwrap()).unwrap();
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = format!(
        r#"{{"keys":[{{"kty":"RSA","kid":"r","alg":"RS256","n":"{}","e":"{}"}}]}}"#,
        b64(&public.n),
        b64(&public.e)
    );
    let keys = KeySet::parse(jwk.as_bytes()).unwrap();
    let header = b64(br#"{"alg":"RS256","kid":"r"}"#);
    let input = format!("{header}.{}", b64(claims("").as_bytes()));
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = format!("{input}.{}", b64(&sig));
    assert!(check(&token, &keys, "ann@example.org", NOW).is_ok());
}
