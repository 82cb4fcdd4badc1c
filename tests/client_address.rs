//! The client's address reaches Dovecot (IMAP `ID x-originating-ip`, POP3
//! `XCLIENT`) when the proxy is in Dovecot's `login_trusted_networks`, so
//! Dovecot's logs and per-IP limits see the real client.

mod support;

use support::{have, stack::*};

fn curl_from(source: &str, url: &str) {
    let (ok, said) = curl_as_alice_from(source, url);
    assert!(ok, "{said}");
}

#[test]
fn dovecot_logs_the_real_client_address_for_imap_and_pop3() {
    assert!(have("curl"));
    let stack = Stack::start_full("", "", "login_trusted_networks = 127.0.0.1/32\n");
    curl_from(
        "127.0.0.2",
        &format!("imap://{}/INBOX;MAILINDEX=1", stack.imap()),
    );
    curl_from("127.0.0.3", &format!("pop3://{}/1", stack.pop3()));
    let imap = stack.dovecot.login_lines("imap", 1);
    let imap = imap.first().expect("imap login logged");
    assert!(imap.contains("rip=127.0.0.2"), "{imap}");
    let pop3 = stack.dovecot.login_lines("pop3", 1);
    let pop3 = pop3.first().expect("pop3 login logged");
    assert!(pop3.contains("rip=127.0.0.3"), "{pop3}");
}

#[test]
fn forwarding_can_be_turned_off() {
    let stack = Stack::start_full(
        "forward_client_address = false",
        "",
        "login_trusted_networks = 127.0.0.1/32\n",
    );
    curl_from(
        "127.0.0.2",
        &format!("imap://{}/INBOX;MAILINDEX=1", stack.imap()),
    );
    let imap = stack.dovecot.login_lines("imap", 1);
    let imap = imap.first().expect("imap login logged");
    assert!(imap.contains("rip=127.0.0.1"), "{imap}");
}
