//! OAuth 2.0 logins next to password logins, and what checking a JWT costs
//! next to a TLS handshake's signature (benchmarks, not tests: run them
//! explicitly):
//!
//!   cargo test --release --test perf_oauth -- --ignored --nocapture
//!
//! `bearer_logins_next_to_plain`: a real Dovecot whose oauth2 passdb asks
//! the tests' Python provider, 20 users; three mailgates in front of it,
//! one with `[oauth] verify = "none"`, two with `verify = "jwt"` (a key
//! file holding an Ed25519, a P-256 and an RSA-2048 key), one of them with
//! its cache of accepted tokens off (`cache_capacity = 0`: every login
//! checks its signature; with the cache, each user's first login does and
//! the next 19 of the storm find their token accepted). Per mechanism, storms
//! of 400 logins (`AUTHENTICATE … <initial response>`, then `LOGOUT`)
//! from 4 clients, 3 rounds, medians: mailgate's CPU per login and the
//! median login latency; ratios to `AUTHENTICATE PLAIN` on the same
//! mailgate, measured in the same rounds.
//!
//! `jwt_check_next_to_tls_signatures`: in one process, the time one JWT
//! check takes (parse, signature, claims) per algorithm, next to the
//! signature a TLS handshake costs mailgate (ECDSA P-256 and RSA-2048
//! signing, as a server with such a certificate) and a client's ECDSA
//! P-256 verification.

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::oauth::{Provider, SigningKey, AUDIENCE, ISSUER};
use support::{cpu_ticks, Dovecot, Mailgate, TestUser};

const USERS: usize = 20;
const THREADS: usize = 4;
const LOGINS_PER_THREAD: usize = 100;
const ROUNDS: usize = 3;

fn user(i: usize) -> String {
    format!("user{i}@example.org")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One `AUTHENTICATE` with an initial response, then `LOGOUT`.
fn login(addr: SocketAddr, mechanism: &str, response: &str) -> Duration {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    write!(stream, "a AUTHENTICATE {mechanism} {response}\r\n").unwrap();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "{mechanism}: closed before an answer"
        );
        if line.starts_with("a ") {
            assert!(line.starts_with("a OK"), "{mechanism}: {line}");
            break;
        }
    }
    let took = start.elapsed();
    stream.write_all(b"b LOGOUT\r\n").unwrap();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line.starts_with("b ") {
            break;
        }
    }
    took
}

/// A storm of logins, the `i`-th user's response from `response(i)`:
/// (CPU ms per login, median latency ms).
fn storm(mg: &Mailgate, mechanism: &'static str, responses: &[String]) -> (f64, f64) {
    let addr = mg.addr(0);
    let before = cpu_ticks(mg.pid());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let responses = responses.to_vec();
            std::thread::spawn(move || {
                (0..LOGINS_PER_THREAD)
                    .map(|i| login(addr, mechanism, &responses[(t + i) % USERS]))
                    .collect::<Vec<Duration>>()
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    latencies.sort();
    let logins = THREADS * LOGINS_PER_THREAD;
    let ticks = cpu_ticks(mg.pid()) - before;
    (
        ticks as f64 * 10.0 / logins as f64,
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bearer_logins_next_to_plain() {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let mut provider = Provider::start();
    let keys = [
        SigningKey::new("ed"),
        SigningKey::p256("es"),
        SigningKey::rsa("rs"),
    ];
    provider.publish(&keys.iter().collect::<Vec<_>>());
    let users = TestUser::all_with_password(&names, "pw");
    let oauthbearer =
        |u: &str, t: &str| b64(format!("n,a={u},\x01auth=Bearer {t}\x01\x01").as_bytes());
    let mut rows: Vec<(&str, &'static str, &'static str, Vec<String>)> = vec![(
        "none",
        "PLAIN (password)",
        "PLAIN",
        names
            .iter()
            .map(|n| b64(format!("\0{n}\0pw").as_bytes()))
            .collect(),
    )];
    let opaque: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // A b64token: letters, digits and -._~+/ only.
            let token = format!("opaque-token-{i}");
            provider.issue(&token, n);
            token
        })
        .collect();
    rows.push((
        "none",
        "OAUTHBEARER, opaque token",
        "OAUTHBEARER",
        names
            .iter()
            .zip(&opaque)
            .map(|(n, t)| oauthbearer(n, t))
            .collect(),
    ));
    rows.push((
        "none",
        "XOAUTH2, opaque token",
        "XOAUTH2",
        names
            .iter()
            .zip(&opaque)
            .map(|(n, t)| b64(format!("user={n}\x01auth=Bearer {t}\x01\x01").as_bytes()))
            .collect(),
    ));
    let mut jwt_rows = Vec::new();
    for (key, label) in keys.iter().zip([
        "OAUTHBEARER, EdDSA JWT",
        "OAUTHBEARER, ES256 JWT",
        "OAUTHBEARER, RS256 JWT",
    ]) {
        let responses: Vec<String> = names
            .iter()
            .map(|n| {
                let token = key.token_for(n);
                provider.issue(&token, n);
                oauthbearer(n, &token)
            })
            .collect();
        jwt_rows.push((label, responses));
    }
    for verify in ["jwt", "jwt, cache off"] {
        rows.push((verify, "PLAIN (password)", "PLAIN", rows[0].3.clone()));
        for (label, responses) in &jwt_rows {
            rows.push((verify, label, "OAUTHBEARER", responses.clone()));
        }
    }
    let dovecot = Dovecot::start_with(&users, &provider.dovecot_passdb());
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let start = |oauth: &str| {
        let config = support::mailgate::config(
            dovecot.imap.port(),
            dovecot.pop3.port(),
            "",
            &format!("\n[oauth]\n{oauth}"),
        )
        .replace("workers = 2", &format!("workers = {workers}"));
        Mailgate::start_with_env(&config, "*@example.org 127.0.0.1\n", "warn", &[])
    };
    let none = start("verify = \"none\"\n");
    let jwt_config = format!(
        "verify = \"jwt\"\njwks_file = \"{}\"\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\n",
        provider.jwks_path().display()
    );
    let jwt = start(&jwt_config);
    let jwt_uncached = start(&format!("{jwt_config}cache_capacity = 0\n"));
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..ROUNDS {
        for (i, (verify, _, mechanism, responses)) in rows.iter().enumerate() {
            let mg = match *verify {
                "none" => &none,
                "jwt" => &jwt,
                _ => &jwt_uncached,
            };
            eprintln!("{verify}: {}", rows[i].1);
            let (c, p) = storm(mg, mechanism, responses);
            cpu[i].push(c);
            p50[i].push(p);
        }
    }
    println!(
        "\n# Bearer logins next to PLAIN, {USERS} users, {workers} workers, storms of {} logins from {THREADS} clients, medians of {ROUNDS} rounds\n",
        THREADS * LOGINS_PER_THREAD
    );
    println!(
        "| `verify` | login | CPU ms per login | × PLAIN on the same mailgate | login p50 ms |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let medians: Vec<(f64, f64)> = cpu
        .into_iter()
        .zip(p50)
        .map(|(c, p)| (median(c), median(p)))
        .collect();
    for (i, (verify, label, _, _)) in rows.iter().enumerate() {
        let baseline = rows
            .iter()
            .position(|r| r.0 == *verify && r.2 == "PLAIN")
            .map_or(1.0, |b| medians[b].0);
        println!(
            "| {verify} | {label} | {:.3} | {:.2} | {:.2} |",
            medians[i].0,
            medians[i].0 / baseline,
            medians[i].1
        );
    }
}

/// Nanoseconds per call of `f`, over enough calls to take ~0.3 s.
fn time_per_call(mut f: impl FnMut()) -> f64 {
    let mut calls = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            f();
        }
        let took = start.elapsed();
        if took > Duration::from_millis(300) {
            return took.as_nanos() as f64 / f64::from(calls);
        }
        calls *= 2;
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn jwt_check_next_to_tls_signatures() {
    use mailgate::oauth::{Jwt, JwtPolicy, KeySet};
    use ring::signature::{self, EcdsaKeyPair, KeyPair};
    let keys = [
        SigningKey::new("ed"),
        SigningKey::p256("es"),
        SigningKey::rsa("rs"),
    ];
    let jwks = serde_json::json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    let set = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let policy = JwtPolicy {
        issuer: Some(ISSUER.into()),
        audiences: vec![AUDIENCE.into()],
        user_claim: "email".into(),
        leeway: Duration::from_secs(60),
    };
    let now = support::oauth::now();
    let mut rows: Vec<(String, f64)> = Vec::new();
    for key in &keys {
        let token = key.token_for("user1@example.org");
        let ns = time_per_call(|| {
            let jwt = Jwt::parse(token.as_bytes()).unwrap();
            jwt.check_signature(&set).unwrap();
            jwt.check_claims(&policy, "user1@example.org", now).unwrap();
        });
        rows.push((
            format!("JWT check, {} ({} bytes)", key.alg(), token.len()),
            ns,
        ));
    }
    let rng = ring::rand::SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let p256 = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let transcript = [7u8; 130];
    let p256_sign = time_per_call(|| {
        let _ = p256.sign(&rng, &transcript).unwrap();
    });
    let sig = p256.sign(&rng, &transcript).unwrap();
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        p256.public_key().as_ref().to_vec(),
    );
    let p256_verify = time_per_call(|| public.verify(&transcript, sig.as_ref()).unwrap());
    let rsa = SigningKey::rsa("tls");
    let rsa_sign = time_per_call(|| {
        let _ = rsa.sign(&serde_json::json!({}));
    });
    rows.push((
        "TLS server signature, ECDSA P-256 (mailgate's handshake)".into(),
        p256_sign,
    ));
    rows.push((
        "TLS server signature, RSA-2048 (as a JWT, incl. encoding)".into(),
        rsa_sign,
    ));
    rows.push(("TLS client verification, ECDSA P-256".into(), p256_verify));
    println!("\n# One JWT check next to a TLS handshake's signature, one core\n");
    println!("| operation | µs | × ECDSA P-256 handshake signature |");
    println!("| --- | --- | --- |");
    for (name, ns) in &rows {
        println!("| {name} | {:.1} | {:.2} |", ns / 1e3, ns / p256_sign);
    }
}
