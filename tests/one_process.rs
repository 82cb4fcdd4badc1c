//! What users see as the proxy's memory is the process's, not one worker's:
//! with 4 workers (so that `SO_REUSEPORT`'s hash spreads one client's
//! connections over several), failed logins from one address count once
//! for the whole process.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::stack::*;

/// A fresh connection (a new source port: any worker may take it), one
/// LOGIN; the tagged answer.
fn login_once(stack: &Stack, user: &str, password: &str) -> String {
    let stream = TcpStream::connect(stack.imap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    write!(reader.get_mut(), "l1 LOGIN \"{user}\" \"{password}\"\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with("l1 ") || line.is_empty() {
            return line;
        }
    }
}

#[test]
fn failed_logins_from_one_address_count_once_for_the_process_over_four_workers() {
    let stack = Stack::start_workers(
        4,
        "",
        "[limits]\nmax_failures_per_address = 30\nfailure_delay = \"0s\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n",
        "",
    );
    // Six clients at once (Dovecot delays each failure), five failures each.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..5 {
                    let answer = login_once(&stack, ALICE, "wrong");
                    assert!(
                        answer.starts_with("l1 NO [AUTHENTICATIONFAILED]"),
                        "{answer}"
                    );
                }
            });
        }
    });
    let answer = login_once(&stack, ALICE, ALICE_PW);
    assert!(
        answer.starts_with("l1 NO [UNAVAILABLE]"),
        "the 31st login reached the back end: {answer}"
    );
    let text = mailgate_testkit::admin::AdminClient::new(stack.mailgate.addr(2), None)
        .run(&mailgate_testkit::admin::Action::Metrics)
        .unwrap()
        .body;
    assert_eq!(
        support::metric(&text, "mailgate_logins_total{outcome=\"rate_limited\"}"),
        1.0
    );
}
