//! The connection cache (up-imapproxy's job) against a real Dovecot: a
//! webmail-style session (LOGIN, SELECT, FETCH, LOGOUT) parks its back-end
//! session, and the same user's next login with the same password takes it
//! instead of logging in to Dovecot again (counted in Dovecot's own log).

mod support;

use mailgate::check_client::ImapClient;
use mailgate_testkit::admin::{Action, AdminClient};
use std::time::{Duration, Instant};
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::stack::*;
use support::{metric, Dovecot, Mailgate};

const TOKEN: &str = "cache-token";

/// What a [`Webmail`] stack is started with besides its cache settings.
struct Setup<'a> {
    workers: usize,
    users: &'a [support::TestUser],
    /// Appended to dovecot.conf.
    dovecot_extra: &'a str,
    /// Added to mailgate's `[backend]`.
    backend: &'a str,
    /// The back end's IMAP port, if not Dovecot's plaintext one.
    imap_port: Option<u16>,
    /// A slapd URL to route with (else the static map).
    ldap: Option<&'a str>,
}

struct Webmail {
    mailgate: Mailgate,
    dovecot: Dovecot,
    _token: tempfile::TempDir,
}

impl Webmail {
    /// Dovecot with alice and bob; mailgate (one worker, so one cache) with
    /// a `connection_cache` IMAP listener; `cache` is the
    /// `[connection_cache]` body.
    fn start(cache: &str) -> Self {
        Self::start_with(&directory_users(), "", cache)
    }

    /// Like `start`, routing with a real slapd at `ldap` (routes cached for
    /// an hour) and its directory watch.
    fn start_ldap(ldap: &str) -> Self {
        Self::start_full(&directory_users(), "", "", Some(ldap))
    }

    /// Like `start`, with these users and `extra` in dovecot.conf.
    fn start_with(users: &[support::TestUser], extra: &str, cache: &str) -> Self {
        Self::start_full(users, extra, cache, None)
    }

    fn start_full(
        users: &[support::TestUser],
        extra: &str,
        cache: &str,
        ldap: Option<&str>,
    ) -> Self {
        Self::start_on(
            Setup {
                workers: 1,
                users,
                dovecot_extra: extra,
                backend: "",
                imap_port: None,
                ldap,
            },
            cache,
        )
    }

    /// `workers` workers (so that `SO_REUSEPORT` spreads one client's
    /// connections over several) with `cache` as `[connection_cache]`.
    fn start_workers(workers: usize, cache: &str) -> Self {
        Self::start_on(
            Setup {
                workers,
                users: &directory_users(),
                dovecot_extra: "",
                backend: "",
                imap_port: None,
                ldap: None,
            },
            cache,
        )
    }

    fn start_on(setup: Setup<'_>, cache: &str) -> Self {
        let dovecot = Dovecot::start_with(setup.users, setup.dovecot_extra);
        Self::start_before(dovecot, setup, cache)
    }

    /// mailgate in front of a running `dovecot`; `setup.backend` is added to
    /// `[backend]` and may name another port with `imap_port`.
    fn start_before(dovecot: Dovecot, setup: Setup<'_>, cache: &str) -> Self {
        let token = tempfile::tempdir().unwrap();
        let token_file = token.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let config = support::mailgate::config(
            setup.imap_port.unwrap_or(dovecot.imap.port()),
            dovecot.pop3.port(),
            setup.backend,
            "",
        )
        .replace("workers = 2", &format!("workers = {}", setup.workers))
        .replace(
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\n",
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\nconnection_cache = true\n",
        ) + &format!(
            "[connection_cache]\n{cache}\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            token_file.display()
        );
        let config = match setup.ldap {
            None => config,
            Some(url) => config.replace(
                "kind = \"static\"\nmap = \"users.map\"\n",
                &format!(
                    "kind = \"ldap\"\nurl = \"{url}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
                     timeout = \"1s\"\nwatch = true\n\
                     [directory.hosts]\nbox1 = \"127.0.0.1\"\n\
                     [directory.cache]\nttl = \"1h\"\n"
                ),
            ),
        };
        let map = "*@example.org 127.0.0.1\n";
        Self {
            mailgate: Mailgate::start(&config, map),
            dovecot,
            _token: token,
        }
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(self.mailgate.addr(2), Some(TOKEN.into()))
    }

    fn metric(&self, selector: &str) -> f64 {
        metric(&self.admin().run(&Action::Metrics).unwrap().body, selector)
    }

    /// Dovecot's IMAP logins of `user` so far.
    fn backend_logins(&self, user: &str) -> usize {
        self.dovecot
            .log()
            .matches(&format!("imap-login: Info: Login: user=<{user}>"))
            .count()
    }

    fn connect(&self) -> ImapClient {
        ImapClient::connect(self.mailgate.addr(0)).unwrap()
    }

    /// LOGIN, SELECT INBOX (its EXISTS count), FETCH 1, LOGOUT.
    fn page_view(&self, user: &str, password: &str) -> usize {
        let mut c = self.connect();
        let login = c.login(user, password).unwrap();
        assert!(login.is_ok(), "{} {}", login.status, login.text);
        assert!(login.text.contains("[CAPABILITY"), "{}", login.text);
        let select = c.command("SELECT INBOX").unwrap();
        assert!(select.is_ok(), "{}", select.text);
        let exists = select
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .unwrap();
        if exists > 0 {
            let fetch = c.command("FETCH 1 BODY[]").unwrap();
            assert!(fetch.is_ok(), "{}", fetch.text);
        }
        let logout = c.logout().unwrap();
        assert!(logout.is_ok(), "{}", logout.text);
        assert!(logout.lines.iter().any(|l| l.starts_with("* BYE")));
        exists
    }

    /// Waits until no session is relaying (the last one has ended, parked
    /// or not).
    fn relay_ended(&self) -> bool {
        eventually(|| self.metric("mailgate_sessions{phase=\"relaying\"}") == 0.0)
    }

    /// Waits until mailgate counts `n` parked sessions.
    fn parked(&self, n: f64) -> bool {
        eventually(|| self.metric("mailgate_connection_cache_parked") == n)
    }
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// APPENDs a small message to `user`'s INBOX directly at Dovecot.
fn append_directly(dovecot: &Dovecot, user: &str, password: &str) {
    let mut c = ImapClient::connect(dovecot.imap).unwrap();
    assert!(c.login(user, password).unwrap().is_ok());
    let message = b"Subject: new\r\n\r\nhello\r\n";
    c.send_raw(format!("a APPEND INBOX {{{}}}\r\n", message.len()).as_bytes())
        .unwrap();
    assert!(c.read_raw_line().unwrap().starts_with('+'));
    c.send_raw(message).unwrap();
    c.send_raw(b"\r\n").unwrap();
    assert!(c.read_response("a").unwrap().is_ok());
    c.logout().unwrap();
}

#[test]
fn three_page_views_cost_dovecot_one_login_and_each_sees_current_state() {
    let w = Webmail::start("");
    let exists = w.page_view(ALICE, ALICE_PW);
    assert!(w.parked(1.0), "the session was not parked");
    assert_eq!(w.page_view(ALICE, ALICE_PW), exists);
    append_directly(&w.dovecot, ALICE, ALICE_PW);
    assert_eq!(
        w.page_view(ALICE, ALICE_PW),
        exists + 1,
        "the appended message is seen after SELECT"
    );
    // Three page views through mailgate, one direct APPEND.
    assert_eq!(
        w.backend_logins(ALICE),
        2,
        "{}\n{}",
        w.dovecot.log(),
        w.mailgate.process().log()
    );
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"hit\"}"),
        2.0
    );
    let log = w
        .mailgate
        .wait_for_log("backend_session=\"reused, parked\"", Duration::from_secs(5));
    assert!(log.contains("connection cache"), "{log}");
}

#[test]
fn a_wrong_password_never_gets_the_parked_session() {
    let w = Webmail::start("");
    w.page_view(BOB, BOB_PW);
    assert!(w.parked(1.0));
    let mut c = w.connect();
    let r = c.login(BOB, "wrong").unwrap();
    assert_eq!(r.status, "NO");
    assert!(r.text.starts_with("[AUTHENTICATIONFAILED]"), "{}", r.text);
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"miss_wrong_password\"}"),
        1.0
    );
    // The parked session is still there for the right password.
    assert_eq!(w.metric("mailgate_connection_cache_parked"), 1.0);
    let before = w.backend_logins(BOB);
    w.page_view(BOB, BOB_PW);
    assert_eq!(
        w.backend_logins(BOB),
        before,
        "reused, no new back-end login"
    );
}

#[test]
fn a_parked_session_is_unselected_and_enable_is_never_parked() {
    let w = Webmail::start("");
    w.page_view(ALICE, ALICE_PW);
    assert!(w.parked(1.0));
    let mut c = w.connect();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    // The parked session had INBOX selected; the next user of it must not.
    let fetch = c.command("FETCH 1 BODY[]").unwrap();
    assert_ne!(
        fetch.status, "OK",
        "a mailbox was still selected: {fetch:?}"
    );
    let enable = c.command("ENABLE CONDSTORE").unwrap();
    assert!(enable.is_ok(), "{}", enable.text);
    assert!(c.logout().unwrap().is_ok());
    drop(c);
    // Counted when the relay ends (both sides closed).
    assert!(
        eventually(
            || w.metric("mailgate_connection_cache_events_total{event=\"not_parkable\"}") == 1.0
        ),
        "the LOGOUT after ENABLE was not counted as not parkable"
    );
    assert_eq!(
        w.metric("mailgate_connection_cache_parked"),
        0.0,
        "parked after ENABLE"
    );
}

#[test]
fn ttl_per_user_bound_back_end_close_and_kick_drop_parked_sessions() {
    let w = Webmail::start("ttl = \"2s\"\nmax_per_user = 2\n");
    // Three sessions open at once, then all log out: two are kept.
    let mut clients: Vec<ImapClient> = (0..3)
        .map(|_| {
            let mut c = w.connect();
            assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
            c
        })
        .collect();
    for c in &mut clients {
        assert!(c.logout().unwrap().is_ok());
    }
    assert!(w.parked(2.0), "max_per_user");
    // The ttl runs out.
    assert!(w.parked(0.0), "ttl");
    assert!(w.metric("mailgate_connection_cache_events_total{event=\"expired\"}") >= 2.0);
    // A kick drops a parked session.
    w.page_view(BOB, BOB_PW);
    assert!(w.parked(1.0));
    w.admin().run(&Action::Kick(BOB.into())).unwrap();
    assert!(w.parked(0.0), "kick");
    let before = w.backend_logins(BOB);
    w.page_view(BOB, BOB_PW);
    assert_eq!(
        w.backend_logins(BOB),
        before + 1,
        "a fresh login after the kick"
    );
}

#[test]
fn a_session_parked_past_check_after_must_answer_a_noop_before_reuse() {
    let w = Webmail::start("check_after = \"0s\"\n");
    w.page_view(ALICE, ALICE_PW);
    assert!(w.parked(1.0));
    std::thread::sleep(Duration::from_millis(50));
    // A healthy parked session answers the NOOP and is reused.
    w.page_view(ALICE, ALICE_PW);
    assert_eq!(w.backend_logins(ALICE), 1, "the checked session was reused");
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"hit\"}"),
        1.0
    );
    // One whose Dovecot process hangs (socket open, nothing answered; here
    // the process is stopped) fails the NOOP and a fresh login serves the
    // page view instead.
    assert!(w.parked(1.0));
    let hung = Stopped::imap_processes_of(&w.dovecot, ALICE);
    w.page_view(ALICE, ALICE_PW);
    drop(hung);
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"miss_unhealthy\"}"),
        1.0
    );
    assert_eq!(w.backend_logins(ALICE), 2, "a fresh login after the check");
}

/// Dovecot's `imap` processes of one user, stopped (`SIGSTOP`) until
/// dropped.
struct Stopped(Vec<i32>);

impl Stopped {
    fn imap_processes_of(dovecot: &Dovecot, user: &str) -> Self {
        // `doveadm who -1`: one line per connection, "user proto pid ip".
        let who = dovecot.doveadm(&["who", "-1", user]).unwrap();
        let pids: Vec<i32> = who
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&user) && f.get(1) == Some(&"imap"))
                    .then(|| f.get(2)?.parse().ok())
                    .flatten()
            })
            .collect();
        assert!(!pids.is_empty(), "no imap process of {user}: {who}");
        for &pid in &pids {
            assert_eq!(send_signal(pid, "STOP"), 0);
        }
        Self(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for &pid in &self.0 {
            send_signal(pid, "CONT");
        }
    }
}

/// `kill -SIGNAL pid` through the command, so the test needs no `unsafe`.
fn send_signal(pid: i32, signal: &str) -> i32 {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[test]
fn a_session_dovecot_ends_while_parked_is_dropped_not_handed_out() {
    let w = Webmail::start("");
    w.page_view(CAROL, CAROL_PW);
    assert!(w.parked(1.0));
    // What Dovecot's admin does to a user (or its autologout to an idle
    // session): the parked session gets `* BYE` and is closed.
    let kicked = w.dovecot.doveadm(&["kick", CAROL]).unwrap();
    assert!(kicked.contains(CAROL), "{kicked}");
    assert!(w.parked(0.0), "a closed session stayed parked");
    assert!(w.metric("mailgate_connection_cache_events_total{event=\"unhealthy\"}") >= 1.0);
    let before = w.backend_logins(CAROL);
    w.page_view(CAROL, CAROL_PW);
    assert_eq!(w.backend_logins(CAROL), before + 1, "a fresh login");
}

#[test]
fn a_client_outside_the_listeners_trusted_networks_is_closed_at_accept() {
    let dovecot = Dovecot::start(&directory_users());
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace(
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\n",
            "protocol = \"imap\"\naddress = \"127.0.0.1:0\"\nconnection_cache = true\ntrusted_networks = [\"10.1.2.0/24\"]\n",
        );
    let mailgate = Mailgate::start(&config, &format!("{ALICE} 127.0.0.1\n"));
    let mut socket = std::net::TcpStream::connect(mailgate.addr(0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut socket, &mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no greeting: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    mailgate.wait_for_log("trusted_networks closed", Duration::from_secs(5));
    // The POP3 listener has no such list.
    let mut pop3 = mailgate::check_client::Pop3Client::connect(mailgate.addr(1)).unwrap();
    assert!(pop3.command("QUIT").unwrap().starts_with("+OK"));
}

/// Logs in, sends `raw` (pipelined commands), reads the tagged answers of
/// `tags`, logs out; the answers' status words.
fn session_with(w: &Webmail, raw: &[u8], tags: &[&str]) -> Vec<String> {
    let mut c = w.connect();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    c.send_raw(raw).unwrap();
    let statuses = tags
        .iter()
        .map(|tag| c.read_response(tag).unwrap().status)
        .collect();
    assert!(c.logout().unwrap().is_ok());
    statuses
}

#[test]
fn a_select_pipelined_behind_a_failed_one_is_unselected_before_parking() {
    let w = Webmail::start("");
    let statuses = session_with(&w, b"a SELECT nosuch\r\nb SELECT INBOX\r\n", &["a", "b"]);
    assert_eq!(statuses, ["NO", "OK"]);
    assert!(w.parked(1.0), "a clean session was not parked");
    let mut c = w.connect();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    let fetch = c.command("FETCH 1 FLAGS").unwrap();
    assert_ne!(fetch.status, "OK", "INBOX was still selected: {fetch:?}");
}

#[test]
fn a_command_smuggled_in_a_literal_dovecot_refused_is_never_parked() {
    let w = Webmail::start("");
    // Dovecot answers BAD without reading the literal and runs its bytes
    // as the command `b ENABLE QRESYNC`.
    let statuses = session_with(&w, b"a XYZZY {18+}\r\nb ENABLE QRESYNC\r\n", &["a", "b"]);
    assert_eq!(statuses, ["BAD", "OK"], "Dovecot ran the smuggled command");
    assert!(w.relay_ended());
    assert_eq!(w.metric("mailgate_connection_cache_parked"), 0.0);
    let before = w.backend_logins(ALICE);
    w.page_view(ALICE, ALICE_PW);
    assert_eq!(w.backend_logins(ALICE), before + 1, "a fresh login");
}

#[test]
fn an_invalidation_while_a_session_is_in_use_logs_it_out_instead_of_parking() {
    let w = Webmail::start("");
    let mut c = w.connect();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    // The password changed in the directory; the admin tells mailgate.
    w.admin().run(&Action::Invalidate(ALICE.into())).unwrap();
    assert!(
        c.logout().unwrap().is_ok(),
        "the client still gets its answer"
    );
    assert!(eventually(|| w.metric(
        "mailgate_connection_cache_events_total{event=\"retired\"}"
    ) == 1.0));
    assert_eq!(w.metric("mailgate_connection_cache_parked"), 0.0);
    let before = w.backend_logins(ALICE);
    w.page_view(ALICE, ALICE_PW);
    assert_eq!(w.backend_logins(ALICE), before + 1, "a fresh login");
}

#[test]
fn max_age_counts_from_the_back_end_login_not_from_the_last_park() {
    let w = Webmail::start("max_age = \"2s\"\n");
    // A webmail tab refreshing well inside ttl for longer than max_age.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        w.page_view(ALICE, ALICE_PW);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        w.backend_logins(ALICE) >= 2,
        "one back-end login served every view for longer than max_age"
    );
    // Retired at a LOGOUT, or dropped from the lot (counted as expired).
    let ended = w.metric("mailgate_connection_cache_events_total{event=\"retired\"}")
        + w.metric("mailgate_connection_cache_events_total{event=\"expired\"}");
    assert!(ended >= 1.0);
}

#[test]
fn names_a_back_end_tells_apart_by_case_never_share_a_parked_session() {
    // Dovecot with `auth_username_format = %u`: two accounts.
    let user = |name: &str, messages: usize| support::TestUser {
        name: name.into(),
        password: "same-pw".into(),
        messages: vec![b"Subject: x\r\n\r\nx\r\n".to_vec(); messages],
    };
    let users = [user("Carol7@example.org", 1), user("carol7@example.org", 3)];
    let w = Webmail::start_with(&users, "auth_username_format = %u\n", "");
    assert_eq!(w.page_view("Carol7@example.org", "same-pw"), 1);
    assert!(w.parked(1.0));
    assert_eq!(
        w.page_view("carol7@example.org", "same-pw"),
        3,
        "served the other account's parked session"
    );
    assert_eq!(w.backend_logins("carol7@example.org"), 1);
    assert_eq!(w.page_view("Carol7@example.org", "same-pw"), 1);
    assert_eq!(w.backend_logins("Carol7@example.org"), 1, "reused");
}

#[test]
fn a_password_change_in_ldap_retires_cached_sessions_in_use_and_parked() {
    let people: Vec<Person> = [ALICE, BOB]
        .into_iter()
        .map(|mail| Person {
            mail,
            host: "box1",
            status: "active",
        })
        .collect();
    let slapd = Slapd::start(&people, Options::default()).unwrap();
    let w = Webmail::start_ldap(&slapd.url());
    // One session parked, one in use, both logged in under the old password.
    w.page_view(ALICE, ALICE_PW);
    assert!(w.parked(1.0));
    let mut in_use = w.connect();
    assert!(in_use.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert!(w.parked(0.0), "the in-use session took the parked one");
    w.page_view(BOB, BOB_PW);
    assert!(w.parked(1.0));
    // The user's entry changes in LDAP (a password change is one).
    slapd
        .modify(&format!(
            "dn: mail={ALICE},{PEOPLE}\nchangetype: modify\nreplace: userPassword\nuserPassword: changed\n"
        ))
        .unwrap();
    assert!(eventually(|| w
        .metric("mailgate_directory_watch_changes_total")
        >= 1.0));
    assert!(in_use.logout().unwrap().is_ok());
    assert!(
        eventually(|| w.metric("mailgate_connection_cache_events_total{event=\"retired\"}") == 1.0),
        "the session in use was parked again"
    );
    assert_eq!(
        w.metric("mailgate_connection_cache_parked"),
        1.0,
        "bob's stays"
    );
    let before = w.backend_logins(ALICE);
    w.page_view(ALICE, ALICE_PW);
    assert_eq!(
        w.backend_logins(ALICE),
        before + 1,
        "a fresh back-end login"
    );
}

/// `n` page views of alice, each waiting for the session to be parked.
fn page_views_one_at_a_time(w: &Webmail, n: usize) {
    for i in 0..n {
        w.page_view(ALICE, ALICE_PW);
        assert!(w.parked(1.0), "page view {i}: the session was not parked");
    }
}

#[test]
fn page_views_landing_on_any_of_four_workers_cost_dovecot_one_login() {
    // Twelve connections over 4 workers: SO_REUSEPORT's hash of each new
    // source port spreads them (all on one worker: a chance of 4^-11).
    let w = Webmail::start_workers(4, "");
    page_views_one_at_a_time(&w, 12);
    assert_eq!(w.backend_logins(ALICE), 1, "{}", w.mailgate.process().log());
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"hit\"}"),
        11.0
    );
}

#[test]
fn max_per_user_and_max_bound_the_process_not_each_worker() {
    let w = Webmail::start_workers(4, "max_per_user = 2\nmax = 3\n");
    // Eight sessions of `user` open at once, then all log out; the
    // parked count after.
    let eight_at_once = |user: &str, password: &str| {
        let clients: Vec<ImapClient> = (0..8)
            .map(|_| {
                let mut c = w.connect();
                assert!(c.login(user, password).unwrap().is_ok());
                c
            })
            .collect();
        for mut c in clients {
            assert!(c.logout().unwrap().is_ok());
        }
        assert!(w.relay_ended());
        w.metric("mailgate_connection_cache_parked")
    };
    // The process keeps two of alice's, wherever they ran.
    let parked = eight_at_once(ALICE, ALICE_PW);
    assert!(w.parked(2.0), "parked: {parked}");
    // Two of bob's join, and the oldest of alice's goes.
    let parked = eight_at_once(BOB, BOB_PW);
    assert!(w.parked(3.0), "parked: {parked}");
    assert_eq!(
        w.metric("mailgate_connection_cache_events_total{event=\"evicted\"}"),
        6.0 + 6.0 + 1.0
    );
}

#[test]
fn a_tls_back_end_session_parked_on_one_worker_carries_on_on_another() {
    let ca = support::certs::TestCa::new();
    let (cert, key) = ca.issue("dovecot", &["localhost"], &["127.0.0.1"]);
    let (dovecot, ports) = Dovecot::start_with_ports(&directory_users(), 1, |ports| {
        format!(
            "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n\
             service imap-login {{\n  inet_listener imaps {{\n    port = {}\n  }}\n}}\n",
            cert.display(),
            key.display(),
            ports[0]
        )
    });
    let imaps = ports[0];
    let backend = format!("tls = \"implicit\"\nca_file = \"{}\"", ca.ca().display());
    let setup = Setup {
        workers: 4,
        users: &[],
        dovecot_extra: "",
        backend: &backend,
        imap_port: Some(imaps),
        ldap: None,
    };
    let w = Webmail::start_before(dovecot, setup, "");
    // Each page view FETCHes a message through the TLS session it got,
    // which moved between workers with its rustls state.
    page_views_one_at_a_time(&w, 12);
    assert_eq!(w.backend_logins(ALICE), 1, "{}", w.mailgate.process().log());
}
