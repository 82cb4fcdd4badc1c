//! Mailbox moves across front ends, with a real slapd (content sync through
//! `syncprov`) and a real Dovecot listening on two addresses that stand for
//! two boxes (box1 = 127.0.0.1, box2 = 127.0.0.2): with `[directory] watch`,
//! a host change reroutes the next login at once although routes are cached
//! for an hour, sessions on the old box are ended and others are not, a
//! held user (`status=moving`) gets a temporary failure, the watch survives
//! a slapd restart, and three front ends all apply one change.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use mailgate_testkit::admin::{Action, AdminClient};
use std::time::{Duration, Instant};
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::stack::*;
use support::{metric, Dovecot, Mailgate};

const TOKEN: &str = "moves-token";

fn people() -> Vec<Person<'static>> {
    [ALICE, BOB, CAROL]
        .into_iter()
        .map(|mail| Person {
            mail,
            host: "box1",
            status: "active",
        })
        .collect()
}

/// One Dovecot on both box addresses.
fn dovecot() -> Dovecot {
    Dovecot::start_with(&directory_users(), "listen = 127.0.0.1, 127.0.0.2\n")
}

struct FrontEnd {
    mailgate: Mailgate,
    _token: tempfile::TempDir,
}

impl FrontEnd {
    /// `servers`: the URL's server list (failover order).
    fn start(servers: &str, dovecot: &Dovecot, directory: &str) -> Self {
        Self::start_filtered(servers, dovecot, "(&(mail=%s)(status=active))", directory)
    }

    /// Like `start`, with another search filter.
    fn start_filtered(servers: &str, dovecot: &Dovecot, filter: &str, directory: &str) -> Self {
        let token = tempfile::tempdir().unwrap();
        let token_file = token.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        // One worker: one cache, so a stale route cannot hide behind a
        // worker that never saw the user.
        let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
            .replace("workers = 2", "workers = 1")
            .replace(
                "kind = \"static\"\nmap = \"users.map\"\n",
                &format!(
                    "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?{filter}\"\n\
                     timeout = \"1s\"\nwatch = true\n{directory}\n\
                     [directory.hosts]\nbox1 = \"127.0.0.1\"\nbox2 = \"127.0.0.2\"\n\
                     [directory.cache]\nttl = \"1h\"\n",
                    servers
                ),
            )
            + &format!(
                "[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
                token_file.display()
            );
        Self {
            mailgate: Mailgate::start(&config, ""),
            _token: token,
        }
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(self.mailgate.addr(2), Some(TOKEN.into()))
    }

    /// The back-end address of `user`'s relaying sessions.
    fn backends_of(&self, user: &str) -> Vec<String> {
        self.admin()
            .run(&Action::Sessions(Some(user.into())))
            .unwrap()
            .body
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["backend"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn metric(&self, selector: &str) -> f64 {
        let text = self.admin().run(&Action::Metrics).unwrap().body;
        metric(&text, selector)
    }

    /// Logs `user` in, checks which box the session reached, logs out.
    fn login_lands_on(&self, user: &str, password: &str) -> String {
        let mut c = ImapClient::connect(self.mailgate.addr(0)).unwrap();
        let r = c.login(user, password).unwrap();
        assert!(r.is_ok(), "{user}: {} {}", r.status, r.text);
        let backend = self.backends_of(user);
        c.logout().unwrap();
        backend
            .iter()
            .find_map(|b| b.split(':').next().map(str::to_owned))
            .unwrap_or_default()
    }
}

fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether the server closed `client`'s connection.
fn closed(client: &mut ImapClient) -> bool {
    client.command("NOOP").is_err()
}

#[test]
fn a_host_change_reroutes_the_next_login_at_once_and_ends_only_sessions_on_the_old_box() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let front = FrontEnd::start(&slapd.url(), &dovecot, "");
    assert_eq!(front.login_lands_on(ALICE, ALICE_PW), "127.0.0.1");
    let mut alice = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    assert!(alice.login(ALICE, ALICE_PW).unwrap().is_ok());
    let mut bob = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    assert!(bob.login(BOB, BOB_PW).unwrap().is_ok());
    slapd.set_host(ALICE, "box2").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || front
            .login_lands_on(ALICE, ALICE_PW)
            == "127.0.0.2"),
        "the next login never reached box2 (routes are cached for an hour)"
    );
    assert!(closed(&mut alice), "alice's session on box1 was ended");
    assert!(
        bob.command("SELECT INBOX").unwrap().is_ok(),
        "bob's session goes on"
    );
    let log = front
        .mailgate
        .wait_for_log("mailbox moved: sessions on the old back end ended", START);
    assert!(log.contains("new=\"127.0.0.2\""), "{log}");
    assert_eq!(front.metric("mailgate_move_kicks_total"), 1.0);
    assert_eq!(front.metric("mailgate_directory_watch_up"), 1.0);
}

#[test]
fn a_move_reaches_users_whose_login_is_transformed_before_the_lookup() {
    // Perdition-style: the domain stripped, the filter on another attribute
    // than the login (`cn` holds the local part); the watch reports `cn`.
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let front = FrontEnd::start_filtered(
        &slapd.url(),
        &dovecot,
        "(&(cn=%s)(status=active))",
        "strip_domain = true\nlower_case = true",
    );
    let typed = ALICE.to_uppercase();
    assert_eq!(front.login_lands_on(&typed, ALICE_PW), "127.0.0.1");
    let mut alice = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    assert!(alice.login(&typed, ALICE_PW).unwrap().is_ok());
    slapd.set_host(ALICE, "box2").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || front
            .login_lands_on(&typed, ALICE_PW)
            == "127.0.0.2"),
        "the cached route of the typed name was not dropped by the watch's change of cn=alice"
    );
    assert!(closed(&mut alice), "the session on box1 was not kicked");
    assert_eq!(front.metric("mailgate_move_kicks_total"), 1.0);
    // Admin actions by any of the names reach the same user.
    let mut again = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    assert!(again.login(ALICE, ALICE_PW).unwrap().is_ok());
    let kicked = front
        .admin()
        .run(&Action::Kick("alice".into()))
        .unwrap()
        .body;
    assert_eq!(kicked.trim(), "kicked 1", "kick by the lookup key");
    assert!(closed(&mut again));
}

#[test]
fn a_held_user_gets_a_temporary_failure_until_the_move_is_done() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let front = FrontEnd::start(&slapd.url(), &dovecot, "hold_filter = \"(status=moving)\"");
    let mut alice = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    assert!(alice.login(ALICE, ALICE_PW).unwrap().is_ok());
    slapd.set_status(ALICE, "moving").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || closed(&mut alice)),
        "alice's session was not ended when her mailbox started moving"
    );
    let logins_before = dovecot
        .log()
        .matches("Login: user=<alice@example.org>")
        .count();
    let mut c = ImapClient::connect(front.mailgate.addr(0)).unwrap();
    let r = c.login(ALICE, ALICE_PW).unwrap();
    assert_eq!(r.status, "NO");
    assert!(
        r.text.starts_with("[UNAVAILABLE]"),
        "never a wrong password: {}",
        r.text
    );
    let mut p = Pop3Client::connect(front.mailgate.addr(1)).unwrap();
    let status = p.login(ALICE, ALICE_PW).unwrap();
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    assert_eq!(
        dovecot
            .log()
            .matches("Login: user=<alice@example.org>")
            .count(),
        logins_before,
        "no back-end login while held"
    );
    assert_eq!(front.metric("mailgate_logins_total{outcome=\"held\"}"), 2.0);
    slapd.set_host_and_status(ALICE, "box2", "active").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut c = ImapClient::connect(front.mailgate.addr(0)).unwrap();
            c.login(ALICE, ALICE_PW).unwrap().is_ok()
        }),
        "logins never resumed"
    );
    assert_eq!(front.login_lands_on(ALICE, ALICE_PW), "127.0.0.2");
}

#[test]
fn the_watch_goes_down_with_slapd_and_resumes_after_its_restart() {
    let mut slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let front = FrontEnd::start(&slapd.url(), &dovecot, "");
    assert_eq!(front.metric("mailgate_directory_watch_up"), 1.0);
    assert_eq!(front.login_lands_on(CAROL, CAROL_PW), "127.0.0.1");
    slapd.stop();
    assert!(
        eventually(Duration::from_secs(10), || front
            .metric("mailgate_directory_watch_up")
            == 0.0),
        "watch never reported down"
    );
    let ready = front.admin().run(&Action::Ready).unwrap();
    assert!(
        ready.body.contains("directory watch down"),
        "{}",
        ready.body
    );
    slapd.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || front
            .metric("mailgate_directory_watch_up")
            == 1.0),
        "watch never came back"
    );
    // Cached after the watch came back (the resync on reconnect dropped
    // everything before): only the resumed watch can drop it now.
    assert_eq!(front.login_lands_on(CAROL, CAROL_PW), "127.0.0.1");
    slapd.set_host(CAROL, "box2").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || front
            .login_lands_on(CAROL, CAROL_PW)
            == "127.0.0.2"),
        "a change after the restart was not seen"
    );
}

#[test]
fn three_front_ends_all_apply_one_change_one_through_its_second_server() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let fronts: Vec<FrontEnd> = (0..3)
        .map(|i| {
            // The last one's first server is a replica that is down: its
            // watch follows the failover order, as lookups do.
            let servers = match i {
                2 => format!(
                    "ldap://127.0.0.1:{} {}",
                    support::closed_port_held(),
                    slapd.url()
                ),
                _ => slapd.url(),
            };
            FrontEnd::start(&servers, &dovecot, "")
        })
        .collect();
    for front in &fronts {
        assert_eq!(front.login_lands_on(BOB, BOB_PW), "127.0.0.1");
        assert_eq!(front.metric("mailgate_directory_watch_up"), 1.0);
    }
    slapd.set_host(BOB, "box2").unwrap();
    for (i, front) in fronts.iter().enumerate() {
        assert!(
            eventually(Duration::from_secs(10), || front
                .login_lands_on(BOB, BOB_PW)
                == "127.0.0.2"),
            "front end {i} kept the old route"
        );
    }
}

/// Starts mailgate with `watch = true` against `slapd`; the log of the
/// start-up failure it must end in (`started` names what a start would mean).
fn watch_start_failure(slapd: &Slapd, started: &str) -> String {
    let dovecot = dovecot();
    let dir = tempfile::tempdir().unwrap();
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace(
            "kind = \"static\"\nmap = \"users.map\"\n",
            &format!(
                "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(mail=%s)\"\ntimeout = \"1s\"\nwatch = true\n",
                slapd.url()
            ),
        );
    let config = mailgate_testkit::config::with_test_defaults(&config);
    match mailgate_testkit::MailgateProcess::start(
        &Mailgate::binary(),
        dir.path(),
        "m",
        &config,
        "info",
    ) {
        Ok(_) => panic!("{started}"),
        Err(mailgate_testkit::StartError::Exited { log, .. }) => log,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_server_without_content_sync_is_a_clear_start_up_error() {
    let slapd = Slapd::start(
        &people(),
        Options {
            without_sync: true,
            ..Options::default()
        },
    )
    .unwrap();
    let log = watch_start_failure(&slapd, "started without content sync");
    assert!(
        log.contains("syncprov") && log.contains("watch = false"),
        "{log}"
    );
}

#[test]
fn a_size_limit_that_cuts_the_watch_is_a_clear_start_up_error() {
    // slapd's default limit is 500 entries; three people over a limit of 2
    // stand for a directory larger than the limit.
    let slapd = Slapd::start(
        &people(),
        Options {
            size_limit: Some(2),
            ..Options::default()
        },
    )
    .unwrap();
    let log = watch_start_failure(&slapd, "started with a watch that cannot see every entry");
    assert!(log.contains("size=unlimited"), "{log}");
}

/// How long a log line may take to appear.
const START: Duration = Duration::from_secs(10);
