//! Routes from the directory are checked before anything connects to them:
//! a host outside `[backend] allowed_networks` or a port outside
//! `allowed_ports` is a temporary failure for the client and a log line that
//! names the value.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use support::stack::*;

#[test]
fn routes_outside_the_allowed_networks_or_ports_are_refused_and_logged() {
    let stack = Stack::start("");
    let (imap_port, pop3_port) = (stack.dovecot.imap.port(), stack.dovecot.pop3.port());
    let map =
        "*@example.org 127.0.0.1\nodd@example.org 127.0.0.1:9\nelsewhere@example.org 127.0.0.2\n";
    let backend = format!(
        "allowed_networks = [\"127.0.0.1/32\"]\nallowed_ports = [{imap_port}, {pop3_port}]"
    );
    let config = support::mailgate::config(imap_port, pop3_port, &backend, "");
    let mg = support::Mailgate::start(&config, map);
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(
        c.login(ALICE, ALICE_PW).unwrap().is_ok(),
        "an allowed route"
    );
    for user in ["odd@example.org", "elsewhere@example.org"] {
        let mut c = ImapClient::connect(mg.addr(0)).unwrap();
        let r = c.login(user, "pw").unwrap();
        assert!(r.text.starts_with("[UNAVAILABLE]"), "{user}: {}", r.text);
        let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
        let status = p.login(user, "pw").unwrap();
        assert!(status.starts_with("-ERR [SYS/TEMP]"), "{user}: {status}");
    }
    let log = mg.log();
    assert!(
        log.contains("route to 127.0.0.1:9 refused: port not in [backend] allowed_ports"),
        "{log}"
    );
    assert!(
        log.contains("route to 127.0.0.2 (127.0.0.2:")
            && log.contains("not in [backend] allowed_networks"),
        "{log}"
    );
    assert_eq!(
        stack.dovecot.log().matches("odd@example.org").count()
            + stack.dovecot.log().matches("elsewhere@example.org").count(),
        0,
        "nothing reached a back end"
    );
}
