//! OAuth 2.0 logins (OAUTHBEARER, XOAUTH2) end to end: real clients (curl,
//! Python's imaplib) through mailgate to a real Dovecot whose oauth2 passdb
//! asks a real HTTP provider (`support/oauth_idp.py`), routed by a real
//! slapd where routing matters; and mailgate's own check of the token
//! (`[oauth] verify`) before a lookup or a back-end connection.

mod support;

use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use support::oauth::{claims, now, Provider, SigningKey, AUDIENCE, ISSUER};
use support::run_client;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

/// Alice's and Bob's Dovecot, its passdb asking `provider` for tokens.
fn dovecot(provider: &Provider) -> Dovecot {
    Dovecot::start_with(
        &[
            TestUser {
                name: ALICE.into(),
                password: ALICE_PW.into(),
                messages: alice_messages(),
            },
            TestUser {
                name: BOB.into(),
                password: BOB_PW.into(),
                messages: vec![mailgate::simulated_backend::message(7, 900)],
            },
        ],
        &provider.dovecot_passdb(),
    )
}

/// mailgate in front of `dovecot` (static map) with `oauth` as `[oauth]`
/// and the admin listener (its address is the last one).
fn mailgate(dovecot: &Dovecot, oauth: &str) -> Mailgate {
    mailgate_logging(dovecot, oauth, "debug")
}

fn mailgate_logging(dovecot: &Dovecot, oauth: &str, level: &str) -> Mailgate {
    let extra = format!("[admin]\naddress = \"127.0.0.1:0\"\n\n[oauth]\n{oauth}\n");
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", &extra);
    Mailgate::start_with_env(&config, "*@example.org  127.0.0.1\n", level, &[])
}

/// The value of the sample `series` (name and labels as written).
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn curl_fetch(url: &str, user: &str, token: &str) -> Vec<u8> {
    run_client(Command::new("curl").args([
        "-sS",
        "--max-time",
        "60",
        url,
        "--user",
        &format!("{user}:"),
        "--oauth2-bearer",
        token,
    ]))
}

const PYTHON_IMAP: &str = r#"
import imaplib, sys
host, port, user, token, mechanism, expected_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
expected = open(expected_path, 'rb').read()
if mechanism == 'OAUTHBEARER':
    message = 'n,a=%s,\x01auth=Bearer %s\x01\x01' % (user, token)
else:
    message = 'user=%s\x01auth=Bearer %s\x01\x01' % (user, token)
m = imaplib.IMAP4(host, port)
typ, _ = m.authenticate(mechanism, lambda _: message.encode())
assert typ == 'OK', typ
typ, data = m.select('INBOX')
assert typ == 'OK', data
typ, data = m.fetch('2', '(BODY.PEEK[])')
assert typ == 'OK', data
assert data[0][1] == expected, 'fetched body differs'
m.logout()
print('ok')
"#;

fn python_imap(addr: SocketAddr, user: &str, token: &str, mechanism: &str, expected: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let expected_path = dir.path().join("expected");
    std::fs::write(&expected_path, expected).unwrap();
    let out = run_client(Command::new("python3").args([
        "-c",
        PYTHON_IMAP,
        &addr.ip().to_string(),
        &addr.port().to_string(),
        user,
        token,
        mechanism,
        expected_path.to_str().unwrap(),
    ]));
    assert_eq!(String::from_utf8_lossy(&out).trim(), "ok");
}

#[test]
fn bearer_tokens_log_in_through_mailgate_with_curl_and_imaplib_and_fetch_byte_exact() {
    let mut provider = Provider::start();
    provider.issue("alice-token-1", ALICE);
    let dovecot = dovecot(&provider);
    let mg = mailgate(&dovecot, "");
    let messages = alice_messages();
    // curl (OAUTHBEARER with SASL-IR, host and port fields), IMAP and POP3.
    for (n, expected) in messages.iter().enumerate().take(2) {
        let url = format!("imap://{}/INBOX;MAILINDEX={}", mg.addr(0), n + 1);
        assert!(
            curl_fetch(&url, ALICE, "alice-token-1") == *expected,
            "IMAP message {}",
            n + 1
        );
        let url = format!("pop3://{}/{}", mg.addr(1), n + 1);
        assert!(
            curl_fetch(&url, ALICE, "alice-token-1") == *expected,
            "POP3 message {}",
            n + 1
        );
    }
    // Python's imaplib with both mechanisms (the message after a `+`).
    for mechanism in ["OAUTHBEARER", "XOAUTH2"] {
        python_imap(mg.addr(0), ALICE, "alice-token-1", mechanism, &messages[1]);
    }
    // The same token straight to Dovecot: the proxy changed nothing.
    let url = format!("imap://{}/INBOX;MAILINDEX=1", dovecot.imap);
    assert!(curl_fetch(&url, ALICE, "alice-token-1") == messages[0]);
    let text = mg.metrics();
    assert!(
        sample(
            &text,
            "mailgate_login_mechanisms_total{mechanism=\"oauthbearer\",result=\"ok\"}"
        ) >= 5,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mailgate_login_mechanisms_total{mechanism=\"xoauth2\",result=\"ok\"}"
        ),
        1
    );
    // A token Dovecot's provider does not know: refused by the back end,
    // the client hears the error exchange then NO, curl its login-denied
    // code (67).
    let status = Command::new("curl")
        .args([
            "-sS",
            &format!("imap://{}/INBOX;MAILINDEX=1", mg.addr(0)),
            "--user",
            &format!("{ALICE}:"),
            "--oauth2-bearer",
            "forged",
        ])
        .output()
        .unwrap()
        .status;
    assert_eq!(status.code(), Some(67));
    assert!(
        !mg.log().contains("alice-token-1") && !mg.log().contains("forged"),
        "tokens never reach the log"
    );
}

/// An IMAP connection to `addr` past its greeting.
fn greeted(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    (stream, reader)
}

/// One raw OAUTHBEARER attempt on a fresh IMAP connection: the lines the
/// server answered (the error challenge and the NO, or the OK).
fn raw_oauthbearer(addr: SocketAddr, message: &[u8]) -> Vec<String> {
    let (mut stream, mut reader) = greeted(addr);
    let b64 = base64::engine::general_purpose::STANDARD.encode(message);
    write!(stream, "a AUTHENTICATE OAUTHBEARER {b64}\r\n").unwrap();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end().to_owned();
        if line.starts_with("+ ") {
            stream.write_all(b"AQ==\r\n").unwrap();
        }
        let done = line.starts_with("a ");
        lines.push(line);
        if done {
            break;
        }
    }
    lines
}

fn oauthbearer(user: &str, token: &str) -> Vec<u8> {
    format!("n,a={user},\x01auth=Bearer {token}\x01\x01").into_bytes()
}

fn jwt_config(provider: &Provider) -> String {
    format!(
        "verify = \"jwt\"\njwks_file = \"{}\"\njwks_min_refresh = \"0s\"\nissuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\nuser_claim = \"email\"\n",
        provider.jwks_path().display()
    )
}

/// A provider publishing one key, a token of Alice's signed with it (and
/// known to the provider), and Dovecot asking that provider.
fn jwt_fixture() -> (Provider, SigningKey, String, Dovecot) {
    let mut provider = Provider::start();
    let key = SigningKey::new("k1");
    provider.publish(&[&key]);
    let good = key.token_for(ALICE);
    provider.issue(&good, ALICE);
    let dovecot = dovecot(&provider);
    (provider, key, good, dovecot)
}

#[test]
fn with_verify_jwt_a_bad_token_is_refused_before_any_lookup_or_back_end() {
    let (provider, key, good, dovecot) = jwt_fixture();
    let mg = mailgate(&dovecot, &jwt_config(&provider));
    let ok = raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, &good));
    assert!(ok.last().unwrap().starts_with("a OK"), "{ok:?}");
    assert_eq!(dovecot.logins_of(ALICE, 1), 1);
    let before = mg.metrics();
    let asked_before = provider.requests().len();
    let stranger = SigningKey::new("k1");
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "expired",
            oauthbearer(ALICE, &key.sign(&claims(ALICE, now() - 600))),
        ),
        (
            "bad_signature",
            oauthbearer(ALICE, &stranger.token_for(ALICE)),
        ),
        ("user", oauthbearer(ALICE, &key.token_for(BOB))),
        (
            "malformed GS2 header",
            format!("x,a={ALICE},\x01auth=Bearer {good}\x01\x01").into_bytes(),
        ),
    ];
    for (why, message) in &cases {
        let lines = raw_oauthbearer(mg.addr(0), message);
        assert_eq!(lines.len(), 2, "{why}: {lines:?}");
        assert!(
            lines[0].starts_with("+ eyJ"),
            "{why}: the error challenge first: {lines:?}"
        );
        let json = base64::engine::general_purpose::STANDARD
            .decode(&lines[0][2..])
            .unwrap();
        assert!(String::from_utf8_lossy(&json).contains("invalid_token"));
        assert_eq!(
            lines[1], "a NO [AUTHENTICATIONFAILED] Authentication failed.",
            "{why}"
        );
    }
    let after = mg.metrics();
    for reason in ["expired", "bad_signature", "user"] {
        let series = format!("mailgate_oauth_token_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&after, &series), 1, "{series}");
    }
    // Nothing behind mailgate was asked: no lookup, no back-end connection,
    // no Dovecot login, no request to the provider.
    for phase in ["directory_lookup", "backend_connect"] {
        let series = format!("mailgate_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        assert_eq!(
            sample(&before, &series),
            sample(&after, &series),
            "{series}"
        );
    }
    assert_eq!(dovecot.logins_of(ALICE, 2), 1);
    assert_eq!(
        provider.requests().len(),
        asked_before,
        "{:?}",
        provider.requests()
    );
    assert_eq!(
        sample(
            &after,
            "mailgate_phase_duration_seconds_count{phase=\"token_check\"}"
        ),
        4,
        "the good token and three bad ones were checked"
    );
}

#[test]
fn a_new_signing_key_is_picked_up_without_a_restart() {
    let mut provider = Provider::start();
    let old = SigningKey::new("2026-11");
    provider.publish(&[&old]);
    let dovecot = dovecot(&provider);
    let mg = mailgate(&dovecot, &jwt_config(&provider));
    let first = old.token_for(ALICE);
    provider.issue(&first, ALICE);
    assert!(raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, &first))
        .last()
        .unwrap()
        .starts_with("a OK"));
    // The provider rotates: a new kid in the key set, tokens signed with it.
    let new = SigningKey::new("2026-12");
    provider.publish(&[&old, &new]);
    let second = new.token_for(ALICE);
    provider.issue(&second, ALICE);
    let lines = raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, &second));
    assert!(lines.last().unwrap().starts_with("a OK"), "{lines:?}");
    assert!(mg.log().contains("signing keys loaded"), "{}", mg.log());
}

#[test]
fn each_token_lands_on_its_users_box() {
    use support::slapd::{Options, Person, Slapd, PEOPLE};
    let mut provider = Provider::start();
    provider.issue("alice-token", ALICE);
    provider.issue("bob-token", BOB);
    let one = |user: &str, password: &str| {
        Dovecot::start_with(
            &[TestUser {
                name: user.into(),
                password: password.into(),
                messages: vec![],
            }],
            &provider.dovecot_passdb(),
        )
    };
    let (box1, box2) = (one(ALICE, ALICE_PW), one(BOB, BOB_PW));
    let slapd = Slapd::start(
        &[
            Person {
                mail: ALICE,
                host: "box1",
                status: "active",
            },
            Person {
                mail: BOB,
                host: "box2",
                status: "active",
            },
        ],
        Options::default(),
    )
    .unwrap();
    let directory = format!(
        "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\n\
         [directory.hosts]\nbox1 = \"127.0.0.1:{}\"\nbox2 = \"127.0.0.1:{}\"\n",
        slapd.url(),
        box1.imap.port(),
        box2.imap.port()
    );
    let config = support::mailgate::config(box1.imap.port(), box1.pop3.port(), "", "\n[oauth]\n")
        .replace("kind = \"static\"\nmap = \"users.map\"\n", &directory);
    let mg = Mailgate::start(&config, "");
    for (user, token) in [(ALICE, "alice-token"), (BOB, "bob-token")] {
        let lines = raw_oauthbearer(mg.addr(0), &oauthbearer(user, token));
        assert!(
            lines.last().unwrap().starts_with("a OK"),
            "{user}: {lines:?}"
        );
    }
    assert_eq!((box1.logins_of(ALICE, 1), box2.logins_of(BOB, 1)), (1, 1));
    assert_eq!((box1.logins_of(BOB, 0), box2.logins_of(ALICE, 0)), (0, 0));
}

#[test]
fn with_verify_introspection_the_provider_is_asked_once_per_token() {
    let mut provider = Provider::start();
    provider.issue("alice-token", ALICE);
    let dovecot = dovecot(&provider);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "mailgate-secret\n").unwrap();
    let mg = mailgate(
        &dovecot,
        &format!(
            "verify = \"introspection\"\nintrospection_url = \"{}\"\nclient_id = \"mailgate\"\nclient_secret_file = \"{}\"\n",
            provider.url("/mg-introspect"),
            secret.display()
        ),
    );
    for _ in 0..3 {
        let lines = raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, "alice-token"));
        assert!(lines.last().unwrap().starts_with("a OK"), "{lines:?}");
    }
    assert_eq!(
        provider.asked("/mg-introspect"),
        1,
        "{:?}",
        provider.requests()
    );
    // An unknown token: inactive, refused without Dovecot being asked.
    let dovecot_asked = provider.asked("/introspect");
    let lines = raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, "unknown"));
    assert_eq!(
        lines.last().unwrap(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    assert_eq!(provider.asked("/introspect"), dovecot_asked);
    assert_eq!(
        sample(
            &mg.metrics(),
            "mailgate_oauth_token_failures_total{reason=\"inactive\"}"
        ),
        1
    );
}

#[test]
fn a_back_end_without_the_mechanism_is_a_temporary_failure_that_names_the_fix() {
    let dovecot = Dovecot::start(&directory_users());
    let mg = mailgate(&dovecot, "");
    let lines = raw_oauthbearer(mg.addr(0), &oauthbearer(ALICE, "t0k"));
    assert_eq!(
        lines,
        ["a NO [UNAVAILABLE] Temporary failure, try again later."]
    );
    mg.wait_for_log("auth_mechanisms", Duration::from_secs(10));
}

#[test]
fn hostile_bearer_input_gets_a_clear_answer_never_a_hang() {
    let dovecot = Dovecot::start(&directory_users());
    let mg = mailgate(&dovecot, "max_token = 64\n");
    // Over-long token: the error exchange, then NO.
    let long = oauthbearer(ALICE, &"t".repeat(65));
    let lines = raw_oauthbearer(mg.addr(0), &long);
    assert_eq!(
        lines.last().unwrap(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed."
    );
    // Garbage base64 as the initial response: BAD.
    let (mut stream, mut reader) = greeted(mg.addr(0));
    let mut line = String::new();
    stream
        .write_all(b"a AUTHENTICATE OAUTHBEARER !!notbase64!!\r\n")
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "a BAD Invalid base64 data.\r\n");
    // A token split over continuation lines: the first line is the whole
    // response (refused), the rest are commands (BAD), never joined.
    stream.write_all(b"b AUTHENTICATE OAUTHBEARER\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "+ \r\n");
    let half = base64::engine::general_purpose::STANDARD.encode(b"n,a=x,\x01auth=Bearer ab");
    stream
        .write_all(format!("{half}\r\nY2QBAQ==\r\n").as_bytes())
        .unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("+ eyJ"), "{line}");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(
        line,
        "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    // A line past the bound closes the connection with BAD [TOOBIG].
    let huge = "A".repeat(64 * 1024);
    stream
        .write_all(format!("c AUTHENTICATE OAUTHBEARER {huge}\r\n").as_bytes())
        .unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    assert!(rest.contains("BAD [TOOBIG]"), "{rest}");
}

#[test]
fn managesieve_takes_a_bearer_token_to_pigeonhole() {
    let mut provider = Provider::start();
    provider.issue("alice-sieve-token", ALICE);
    let (dovecot, sieve) = support::sieve::dovecot_with_sieve(
        &[TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages: vec![],
        }],
        &provider.dovecot_passdb(),
    );
    let extra = "[[listen]]\nprotocol = \"managesieve\"\naddress = \"127.0.0.1:0\"\ntls = \"none\"\n\n[oauth]\n";
    let config = support::mailgate::config(
        dovecot.imap.port(),
        dovecot.pop3.port(),
        &format!("managesieve_port = {}", sieve.port()),
        extra,
    );
    let mg = Mailgate::start(&config, "*@example.org  127.0.0.1\n");
    let mut stream = TcpStream::connect(mg.addr(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let read_until_status = |reader: &mut BufReader<TcpStream>| {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "closed after {lines:?}"
            );
            let status =
                line.starts_with("OK") || line.starts_with("NO") || line.starts_with("BYE");
            lines.push(line);
            if status {
                return lines;
            }
        }
    };
    let greeting = read_until_status(&mut reader).concat();
    assert!(
        greeting.contains("\"SASL\" \"PLAIN LOGIN OAUTHBEARER XOAUTH2\""),
        "{greeting}"
    );
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(oauthbearer(ALICE, "alice-sieve-token"));
    write!(stream, "AUTHENTICATE \"OAUTHBEARER\" \"{b64}\"\r\n").unwrap();
    let answer = read_until_status(&mut reader).concat();
    assert!(answer.starts_with("OK"), "{answer}");
    stream.write_all(b"LISTSCRIPTS\r\n").unwrap();
    let listed = read_until_status(&mut reader).concat();
    assert!(
        listed.ends_with("OK \"Listscripts completed.\"\r\n"),
        "{listed}"
    );
}

#[test]
fn no_bearer_path_puts_a_token_in_the_log() {
    let (provider, key, good, dovecot) = jwt_fixture();
    let expired = key.sign(&claims(ALICE, now() - 600));
    let messages = |token: &str| {
        [
            oauthbearer(ALICE, token),
            format!("user={ALICE}\x01auth=Bearer {token}\x01\x01").into_bytes(),
        ]
    };
    for oauth in ["", &jwt_config(&provider)] {
        let mg = mailgate_logging(&dovecot, oauth, "trace");
        for token in [good.as_str(), expired.as_str(), "unknown-token"] {
            raw_oauthbearer(mg.addr(0), &messages(token)[0]);
            // XOAUTH2 after a continuation.
            let (mut stream, mut reader) = greeted(mg.addr(0));
            let mut line = String::new();
            stream.write_all(b"x AUTHENTICATE XOAUTH2\r\n").unwrap();
            reader.read_line(&mut line).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&messages(token)[1]);
            write!(stream, "{b64}\r\n").unwrap();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 || line.starts_with("x ") {
                    break;
                }
                if line.starts_with("+ ") {
                    stream.write_all(b"\r\n").unwrap();
                }
            }
        }
        let log = mg.log();
        assert!(log.contains("TRACE"), "trace logging is on:\n{log}");
        for token in [good.as_str(), expired.as_str(), "unknown-token"] {
            let signature = token.rsplit('.').next().unwrap();
            assert!(!log.contains(signature), "a token is in the log");
            for message in messages(token) {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&message);
                assert!(!log.contains(&b64), "a bearer message is in the log");
            }
        }
    }
}
