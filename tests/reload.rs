//! `SIGHUP` re-reads the whole configuration against a real Dovecot: a map
//! edit reroutes the next login while a relaying session keeps running,
//! limits change for new connections, listeners come and go, and a broken
//! file — or a new listener that cannot be bound — changes nothing.

mod support;

use mailgate::check_client::ImapClient;
use std::io::Read;
use support::stack::*;
use support::{free_port, Dovecot, Mailgate};

struct Setup {
    dovecot: Dovecot,
    mailgate: Mailgate,
    /// A port nothing listens on.
    closed: u16,
}

fn config(dovecot: &Dovecot, extra: &str) -> String {
    support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "") + extra
}

/// alice routed to a closed port, bob to Dovecot.
fn start() -> Setup {
    let dovecot = Dovecot::start(&directory_users());
    let closed = support::closed_port_held();
    let map = format!("{ALICE} 127.0.0.1:{closed}\n{BOB} 127.0.0.1\n");
    let mailgate = Mailgate::start(&config(&dovecot, ""), &map);
    Setup {
        dovecot,
        mailgate,
        closed,
    }
}

fn login(mailgate: &Mailgate, user: &str, password: &str) -> (ImapClient, String) {
    let mut c = ImapClient::connect(mailgate.addr(0)).unwrap();
    let r = c.login(user, password).unwrap();
    (c, format!("{} {}", r.status, r.text))
}

#[test]
fn a_map_edit_reroutes_the_next_login_while_a_relaying_session_keeps_running() {
    let s = start();
    let (_, answer) = login(&s.mailgate, ALICE, ALICE_PW);
    assert!(answer.starts_with("NO [UNAVAILABLE]"), "{answer}");
    let (mut bob, answer) = login(&s.mailgate, BOB, BOB_PW);
    assert!(answer.starts_with("OK"), "{answer}");
    assert!(bob.command("SELECT INBOX").unwrap().is_ok());

    s.mailgate.rewrite(
        &config(&s.dovecot, ""),
        &format!("{ALICE} 127.0.0.1\n{BOB} 127.0.0.1\n"),
    );
    let line = s.mailgate.reload(1);
    assert!(line.contains("configuration reloaded"), "{line}");
    let (mut alice, answer) = login(&s.mailgate, ALICE, ALICE_PW);
    assert!(
        answer.starts_with("OK"),
        "the edit rerouted alice: {answer}"
    );
    assert_eq!(alice.fetch_message(1).unwrap(), alice_messages()[0]);
    // The session relaying since before the reload goes on.
    assert!(bob.command("NOOP").unwrap().is_ok());
    assert!(bob.command("SELECT INBOX").unwrap().is_ok());
}

#[test]
fn limits_change_for_new_connections() {
    let s = start();
    let _first = ImapClient::connect(s.mailgate.addr(0)).unwrap();
    let _second = ImapClient::connect(s.mailgate.addr(0)).unwrap();
    s.mailgate.rewrite(
        &config(&s.dovecot, "[limits]\nmax_preauth_per_address = 2\n"),
        &format!("{ALICE} 127.0.0.1:{}\n{BOB} 127.0.0.1\n", s.closed),
    );
    assert!(s.mailgate.reload(1).contains("configuration reloaded"));
    let mut third = std::net::TcpStream::connect(s.mailgate.addr(0)).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(
        answer.starts_with("* BYE [UNAVAILABLE] Too many connections"),
        "{answer:?}"
    );
}

#[test]
fn a_broken_file_or_a_listener_change_changes_nothing() {
    let s = start();
    let fixed_map = format!("{ALICE} 127.0.0.1\n{BOB} 127.0.0.1\n");
    // A config that does not parse: logged with its line, old config kept.
    s.mailgate.rewrite(
        &(config(&s.dovecot, "") + "[limits]\nmax_line = \"long\"\n"),
        &fixed_map,
    );
    let line = s.mailgate.reload(1);
    assert!(
        line.contains("reload failed") && line.contains("max_line"),
        "{line}"
    );
    // A map that does not parse: the same.
    s.mailgate
        .rewrite(&config(&s.dovecot, ""), &format!("{ALICE} 127.0.0.1:0\n"));
    let line = s.mailgate.reload(2);
    assert!(
        line.contains("reload failed") && line.contains("users.map"),
        "{line}"
    );
    // A good map with a new listener that cannot be bound (the port is
    // taken, without SO_REUSEPORT): refused whole.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let with_taken = config(&s.dovecot, "")
        + &format!(
            "[[listen]]\nprotocol = \"imap\"\naddress = \"{}\"\n",
            taken.local_addr().unwrap()
        );
    s.mailgate.rewrite(&with_taken, &fixed_map);
    let line = s.mailgate.reload(3);
    assert!(
        line.contains("cannot listen on") && line.contains("nothing was reloaded"),
        "{line}"
    );
    // alice still goes to the closed port: none of the three took effect.
    let (_, answer) = login(&s.mailgate, ALICE, ALICE_PW);
    assert!(answer.starts_with("NO [UNAVAILABLE]"), "{answer}");
    // The same good map without the listener change is taken.
    s.mailgate.rewrite(&config(&s.dovecot, ""), &fixed_map);
    assert!(s.mailgate.reload(4).contains("configuration reloaded"));
    let (_, answer) = login(&s.mailgate, ALICE, ALICE_PW);
    assert!(answer.starts_with("OK"), "{answer}");
}

#[test]
fn a_listener_added_by_a_reload_serves_and_a_removed_one_closes_while_its_sessions_go_on() {
    let s = start();
    let old_imap = s.mailgate.addr(0);
    let (mut bob, answer) = login(&s.mailgate, BOB, BOB_PW);
    assert!(answer.starts_with("OK"), "{answer}");
    assert!(bob.command("SELECT INBOX").unwrap().is_ok());
    // The IMAP listener moves to another port; POP3 stays.
    let port = free_port();
    let moved = config(&s.dovecot, "").replacen(
        "address = \"127.0.0.1:0\"",
        &format!("address = \"127.0.0.1:{port}\""),
        1,
    );
    s.mailgate
        .rewrite(&moved, &format!("{ALICE} 127.0.0.1\n{BOB} 127.0.0.1\n"));
    let line = s.mailgate.reload(1);
    assert!(line.contains("configuration reloaded"), "{line}");
    let log = s.mailgate.log();
    assert!(
        log.contains("listeners changed") && log.contains("added=1 removed=1"),
        "{log}"
    );
    // The new listener serves, with the new map.
    let mut alice = ImapClient::connect(format!("127.0.0.1:{port}").parse().unwrap()).unwrap();
    assert!(alice.login(ALICE, ALICE_PW).unwrap().is_ok());
    // The old one takes no new connection...
    match std::net::TcpStream::connect(old_imap) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        Ok(mut c) => {
            c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut got = Vec::new();
            let _ = c.read_to_end(&mut got);
            assert!(got.is_empty(), "the removed listener answered: {got:?}");
        }
    }
    // ...while the session it accepted goes on, and POP3 is untouched.
    assert!(bob.command("SELECT INBOX").unwrap().is_ok());
    let mut pop = mailgate::check_client::Pop3Client::connect(s.mailgate.addr(1)).unwrap();
    assert!(pop.login(ALICE, ALICE_PW).unwrap().starts_with("+OK"));
}
