//! `kind = "http"` against a real HTTP auth server (Python's `http.server`,
//! answering as nginx's documented `auth_http` example does) and a real
//! Dovecot: routing, what is sent, keep-alive, `Auth-Wait`, `WAIT`,
//! rewrites, and a server that hangs, answers garbage or is down.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use serde_json::json;
use std::time::{Duration, Instant};
use support::auth_http::AuthHttp;
use support::stack::*;
use support::{Dovecot, Mailgate};

fn dovecot() -> Dovecot {
    Dovecot::start(&directory_users())
}

/// The auth server's users: Alice and Bob on Dovecot, Carol on a box that
/// does not listen, "rewrite" logged in as Bob with Bob's password.
fn auth_config(dovecot: &Dovecot, wait: u64) -> serde_json::Value {
    let ports = json!({"imap": dovecot.imap.port(), "pop3": dovecot.pop3.port()});
    let closed = support::closed_port_held();
    json!({
        "users": {
            ALICE: {"password": ALICE_PW, "server": "127.0.0.1", "ports": ports},
            BOB: {"password": BOB_PW, "server": "127.0.0.1", "ports": ports},
            CAROL: {"password": CAROL_PW, "server": "127.0.0.1",
                    "ports": {"imap": closed, "pop3": closed}},
            "rewrite@example.org": {"password": "front-pw", "server": "127.0.0.1",
                                    "ports": ports, "user": BOB, "pass": BOB_PW},
        },
        "slow_then": "rewrite@example.org",
        "wait": wait,
        "secret": "s3cret-key",
    })
}

fn directory(url: &str, extra: &str) -> String {
    format!(
        "kind = \"http\"\nurl = \"{url}\"\ntimeout = \"1s\"\n{extra}\n\
         [directory.headers]\nX-Auth-Key = \"s3cret-key\"\n"
    )
}

fn mailgate(dovecot: &Dovecot, directory: &str, workers: usize) -> Mailgate {
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace("kind = \"static\"\nmap = \"users.map\"\n", directory)
        .replace("workers = 2", &format!("workers = {workers}"));
    Mailgate::start(&config, "")
}

fn imap_login(mg: &Mailgate, user: &str, password: &str) -> (String, String) {
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let r = c.login(user, password).unwrap();
    (r.status, r.text)
}

#[test]
fn an_auth_http_server_routes_imap_and_pop3_as_it_routes_nginx() {
    let dovecot = dovecot();
    let auth = AuthHttp::start(&auth_config(&dovecot, 0));
    let mg = mailgate(&dovecot, &directory(&auth.url(), ""), 1);

    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    assert_eq!(
        c.fetch_message(1).unwrap(),
        alice_messages()[0],
        "byte-exact"
    );
    let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
    assert!(p.login(BOB, BOB_PW).unwrap().starts_with("+OK"));
    let (status, text) = imap_login(&mg, CAROL, CAROL_PW);
    assert_eq!(status, "NO", "Carol's box is down: {text}");
    assert!(text.starts_with("[UNAVAILABLE]"), "{text}");

    // What was sent: nginx's headers, the name and password escaped as
    // nginx escapes them, the configured extra header.
    let requests = auth.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let first = &requests[0]["headers"];
    assert_eq!(requests[0]["path"], "/mail/auth");
    assert_eq!(first["Host"], format!("127.0.0.1:{}", auth.port));
    assert_eq!(first["Auth-Method"], "plain");
    assert_eq!(first["Auth-User"], ALICE);
    assert_eq!(first["Auth-Pass"], ALICE_PW);
    assert_eq!(first["Auth-Protocol"], "imap");
    assert_eq!(first["Auth-Login-Attempt"], "1");
    assert_eq!(first["Client-IP"], "127.0.0.1");
    assert_eq!(first["X-Auth-Key"], "s3cret-key");
    let second = &requests[1]["headers"];
    assert_eq!(second["Auth-Protocol"], "pop3");
    assert_eq!(
        second["Auth-Pass"], "s3cr%20et\"\\%C3%A9",
        "Bob's password, escaped"
    );
    // Keep-alive: one worker, one connection for every request.
    let ports: std::collections::BTreeSet<_> =
        requests.iter().map(|r| r["peer_port"].as_u64()).collect();
    assert_eq!(ports.len(), 1, "one kept connection: {requests:?}");
}

#[test]
fn a_refusal_waits_auth_wait_and_the_connection_may_try_again() {
    let dovecot = dovecot();
    let auth = AuthHttp::start(&auth_config(&dovecot, 2));
    let mg = mailgate(&dovecot, &directory(&auth.url(), ""), 2);
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let asked = Instant::now();
    let r = c.login(ALICE, "wrong").unwrap();
    let waited = asked.elapsed();
    assert_eq!(r.status, "NO");
    assert!(r.text.starts_with("[AUTHENTICATIONFAILED]"), "{}", r.text);
    assert!(
        waited >= Duration::from_millis(1900),
        "Auth-Wait 2 honoured: {waited:?}"
    );
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok(), "second try");
    let requests = auth.requests();
    assert_eq!(requests[1]["headers"]["Auth-Login-Attempt"], "2");
    assert!(
        mg.log()
            .contains("HTTP refused the login: Invalid login or password"),
        "{}",
        mg.log()
    );
    assert!(!mg.log().contains("wrong"), "no password in the log");
}

#[test]
fn auth_user_and_auth_pass_reach_the_back_end_and_wait_asks_again() {
    let dovecot = dovecot();
    let auth = AuthHttp::start(&auth_config(&dovecot, 0));
    let mg = mailgate(&dovecot, &directory(&auth.url(), ""), 1);
    let (status, text) = imap_login(&mg, "rewrite@example.org", "front-pw");
    assert_eq!(status, "OK", "{text}");
    // WAIT first, then the same answer.
    let (status, text) = imap_login(&mg, "slow-then-ok@example.org", "front-pw");
    assert_eq!(status, "OK", "{text}");
    assert_eq!(
        dovecot.logins_of(BOB, 2),
        2,
        "logged in as Bob with Bob's password: {}",
        dovecot.log()
    );
    assert_eq!(auth.requests().len(), 3, "WAIT asked again once");
}

#[test]
fn a_server_that_hangs_answers_garbage_or_is_down_is_a_temporary_failure() {
    let dovecot = dovecot();
    let auth = AuthHttp::start(&auth_config(&dovecot, 0));
    let mg = mailgate(&dovecot, &directory(&auth.url(), ""), 2);
    for (user, logged) in [
        ("hang@example.org", "HTTP lookup timed out after 1s"),
        (
            "garbage@example.org",
            "answered unusably: not an HTTP status line",
        ),
        ("noserver@example.org", "Auth-Status OK without Auth-Server"),
    ] {
        let (status, text) = imap_login(&mg, user, "pw");
        assert_eq!(status, "NO", "{user}");
        assert!(text.starts_with("[UNAVAILABLE]"), "{user}: {text}");
        let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
        let answer = p.login(user, "pw").unwrap();
        assert!(answer.starts_with("-ERR [SYS/TEMP]"), "{user}: {answer}");
        assert!(mg.log().contains(logged), "{user}: {}", mg.log());
    }
    // Still serving after all that.
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    drop(mg);

    let down = format!("http://127.0.0.1:{}/auth", support::closed_port_held());
    let mg = mailgate(&dovecot, &directory(&down, ""), 1);
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert_eq!(status, "NO");
    assert!(text.starts_with("[UNAVAILABLE]"), "{text}");
    assert!(
        mg.log().contains("HTTP directory unreachable"),
        "{}",
        mg.log()
    );
}

#[test]
fn the_route_cache_wraps_auth_http_when_turned_on_but_never_keeps_a_refusal() {
    let dovecot = dovecot();
    let auth = AuthHttp::start(&auth_config(&dovecot, 0));
    // Off by default: every login asks.
    let mg = mailgate(&dovecot, &directory(&auth.url(), ""), 1);
    for _ in 0..2 {
        assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    }
    assert_eq!(auth.requests().len(), 2);
    drop(mg);
    let cached = directory(&auth.url(), "[directory.cache]\nenabled = true\n");
    let mg = mailgate(&dovecot, &cached, 1);
    // A wrong password first: refused, and not remembered.
    assert_eq!(imap_login(&mg, ALICE, "wrong").0, "NO");
    for _ in 0..3 {
        let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
        assert_eq!(status, "OK", "{text}\n{}", mg.log());
    }
    // Routes with the directory's own password are not cached either.
    for _ in 0..2 {
        assert_eq!(imap_login(&mg, "rewrite@example.org", "front-pw").0, "OK");
    }
    assert_eq!(
        auth.requests().len(),
        2 + 1 + 1 + 2,
        "the refusal, one lookup for Alice's three logins, each rewrite asked"
    );
}

#[test]
fn an_https_auth_server_is_verified_against_the_ca_file() {
    let dovecot = dovecot();
    let ca = mailgate_testkit::certs::TestCa::new();
    let (cert, key) = ca.issue("auth", &["localhost"], &["127.0.0.1"]);
    let auth = AuthHttp::start_tls(&auth_config(&dovecot, 0), &cert, &key);
    let ca_file = format!("ca_file = \"{}\"", ca.ca().display());
    let mg = mailgate(&dovecot, &directory(&auth.https_url(), &ca_file), 1);
    for _ in 0..2 {
        assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    }
    assert_eq!(auth.requests().len(), 2);
    drop(mg);
    // Another CA: the server is not trusted, nothing is sent.
    let other = mailgate_testkit::certs::TestCa::new();
    let other_file = format!("ca_file = \"{}\"", other.ca().display());
    let mg = mailgate(&dovecot, &directory(&auth.https_url(), &other_file), 1);
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "{text}"
    );
    assert!(mg.log().contains("TLS"), "{}", mg.log());
    assert_eq!(
        auth.requests().len(),
        2,
        "no request to an untrusted server"
    );
}
