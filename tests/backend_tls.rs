//! TLS from mailgate to the back end (`[backend] tls = "implicit" |
//! "starttls"`), against a real Dovecot with TLS, verifying its certificate
//! against `ca_file` and the route's address.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use support::certs::TestCa;
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

struct Setup {
    dovecot: Dovecot,
    imaps: u16,
    pop3s: u16,
    ca: TestCa,
}

fn dovecot_with_tls() -> Setup {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("dovecot", &["localhost"], &["127.0.0.1"]);
    let extra = |ports: &[u16]| {
        format!(
            "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n\
             service imap-login {{\n  inet_listener imaps {{\n    port = {}\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3s {{\n    port = {}\n  }}\n}}\n",
            cert.display(),
            key.display(),
            ports[0],
            ports[1]
        )
    };
    let users = [TestUser {
        name: ALICE.into(),
        password: ALICE_PW.into(),
        messages: alice_messages(),
    }];
    let (dovecot, ports) = Dovecot::start_with_ports(&users, 2, extra);
    let (imaps, pop3s) = (ports[0], ports[1]);
    Setup {
        dovecot,
        imaps,
        pop3s,
        ca,
    }
}

fn mailgate(imap_port: u16, pop3_port: u16, tls: &str, ca: &std::path::Path) -> Mailgate {
    let backend = format!("tls = \"{tls}\"\nca_file = \"{}\"", ca.display());
    let config = support::mailgate::config(imap_port, pop3_port, &backend, "");
    Mailgate::start(&config, "*@example.org 127.0.0.1\n")
}

fn check_login_and_fetch(mg: &Mailgate) {
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let r = c.login(ALICE, ALICE_PW).unwrap();
    assert!(r.is_ok(), "{r:?}\n{}", mg.log());
    let body = c
        .fetch_message(3)
        .unwrap_or_else(|e| panic!("{e}\n{}", mg.log()));
    assert!(body == alice_messages()[2]);
    let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
    assert_eq!(
        p.login(ALICE, ALICE_PW).unwrap(),
        "+OK Logged in.",
        "{}",
        mg.log()
    );
    assert_eq!(p.retrieve(1).unwrap(), alice_messages()[0]);
}

#[test]
fn implicit_tls_to_the_back_end() {
    let s = dovecot_with_tls();
    let mg = mailgate(s.imaps, s.pop3s, "implicit", &s.ca.ca());
    check_login_and_fetch(&mg);
}

#[test]
fn starttls_to_the_back_end() {
    let s = dovecot_with_tls();
    let mg = mailgate(
        s.dovecot.imap.port(),
        s.dovecot.pop3.port(),
        "starttls",
        &s.ca.ca(),
    );
    check_login_and_fetch(&mg);
    // Dovecot saw TLS sessions.
    let log = s.dovecot.log();
    assert!(
        log.lines()
            .any(|l| l.contains("imap-login: Info: Login:") && l.contains("TLS")),
        "{log}"
    );
}

#[test]
fn an_untrusted_back_end_certificate_is_a_temporary_failure() {
    let s = dovecot_with_tls();
    let other = TestCa::new();
    for (mode, imap, pop3) in [
        ("implicit", s.imaps, s.pop3s),
        ("starttls", s.dovecot.imap.port(), s.dovecot.pop3.port()),
    ] {
        let mg = mailgate(imap, pop3, mode, &other.ca());
        let mut c = ImapClient::connect(mg.addr(0)).unwrap();
        let r = c.login(ALICE, ALICE_PW).unwrap();
        assert_eq!(r.status, "NO", "{mode}");
        assert!(r.text.starts_with("[UNAVAILABLE]"), "{mode}: {}", r.text);
        assert!(mg.log().contains("TLS handshake"), "{mode}: {}", mg.log());
    }
}
