//! What users see as the proxy's memory is the process's, not one worker's:
//! with 4 workers (so that `SO_REUSEPORT`'s hash spreads one client's
//! connections over several), failed logins from one address count once
//! for the whole process, a route any worker learned serves every worker
//! (when LDAP is down too), and each user costs one LDAP search per TTL for
//! the process — real slapd and Dovecot behind.

mod support;

use mailgate::check_client::ImapClient;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::stack::*;
use support::{Dovecot, Mailgate, TestUser};

const WORKERS: usize = 4;

/// mailgate with 4 workers routing with `slapd` (box1 = Dovecot); `cache`
/// is the `[directory.cache]` body.
fn ldap_mailgate(slapd: &Slapd, dovecot: &Dovecot, cache: &str) -> Mailgate {
    let directory = format!(
        "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
         timeout = \"1s\"\n[directory.hosts]\nbox1 = \"127.0.0.1\"\n[directory.cache]\n{cache}\n",
        slapd.url()
    );
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace("kind = \"static\"\nmap = \"users.map\"\n", &directory)
        .replace("workers = 2", &format!("workers = {WORKERS}"))
        + "[admin]\naddress = \"127.0.0.1:0\"\n";
    Mailgate::start(&config, "")
}

fn admin_metric(mailgate: &Mailgate, selector: &str) -> f64 {
    let text = mailgate_testkit::admin::AdminClient::new(mailgate.addr(2), None)
        .run(&mailgate_testkit::admin::Action::Metrics)
        .unwrap()
        .body;
    support::metric(&text, selector)
}

#[test]
fn a_route_any_worker_learned_serves_every_worker_while_ldap_is_down() {
    let mut slapd = Slapd::start(
        &[Person {
            mail: ALICE,
            host: "box1",
            status: "active",
        }],
        Options::default(),
    )
    .unwrap();
    let dovecot = Dovecot::start(&directory_users());
    let mg = ldap_mailgate(&slapd, &dovecot, "ttl = \"1s\"");
    let mut first = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(first.login(ALICE, ALICE_PW).unwrap().is_ok());
    slapd.stop();
    std::thread::sleep(Duration::from_millis(1100)); // past the TTL: stale from now on
    for i in 0..20 {
        let mut c = ImapClient::connect(mg.addr(0)).unwrap();
        let r = c.login(ALICE, ALICE_PW).unwrap();
        assert!(
            r.is_ok(),
            "login {i} during the outage: {} {}",
            r.status,
            r.text
        );
    }
    // Someone no worker has seen gets a temporary failure, promptly.
    let started = std::time::Instant::now();
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let r = c.login(CAROL, CAROL_PW).unwrap();
    assert!(
        r.text.starts_with("[UNAVAILABLE]"),
        "{} {}",
        r.status,
        r.text
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn logins_of_ten_users_over_four_workers_cost_one_ldap_search_each() {
    let names: Vec<String> = (0..10).map(|i| format!("user{i}@example.org")).collect();
    let people = Person::active_on(&names, "box1");
    let slapd = Slapd::start(&people, Options::default()).unwrap();
    let users = TestUser::all_with_password(&names, "pw");
    let dovecot = Dovecot::start(&users);
    let mg = ldap_mailgate(&slapd, &dovecot, "ttl = \"1h\"");
    let addr = mg.addr(0);
    // Ten clients at once, each logging in as every user in turn: 100
    // logins, spread over the workers by their source ports.
    std::thread::scope(|scope| {
        for client in 0..10 {
            let names = &names;
            scope.spawn(move || {
                for round in 0..10 {
                    let name = &names[(client + round) % names.len()];
                    let mut c = ImapClient::connect(addr).unwrap();
                    let r = c.login(name, "pw").unwrap();
                    assert!(r.is_ok(), "{name}: {} {}", r.status, r.text);
                }
            });
        }
    });
    for name in &names {
        assert_eq!(
            slapd.searches_for(name),
            1,
            "{name}: {:?}",
            slapd.searches()
        );
    }
    assert_eq!(
        admin_metric(&mg, "mailgate_directory_cache_total{result=\"miss\"}"),
        10.0,
        "the directory was asked once per user"
    );
}

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
    assert_eq!(
        admin_metric(
            &stack.mailgate,
            "mailgate_logins_total{outcome=\"rate_limited\"}"
        ),
        1.0
    );
}
