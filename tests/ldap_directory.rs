//! The LDAP directory against a real slapd, end to end through mailgate to a
//! real Dovecot, and at the library level for the cache's query counts.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use mailgate::directory::{Directory, Invalidations};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::slapd::{Options, Person, Slapd, PEOPLE, PROXY_DN, PROXY_PW};
use support::stack::*;
use support::{Dovecot, Mailgate};

const FILTER_URL: &str = "?mail,host?sub?(&(mail=%s)(status=active))";

fn people() -> Vec<Person<'static>> {
    vec![
        Person {
            mail: ALICE,
            host: "box1",
            status: "active",
        },
        Person {
            mail: BOB,
            host: "box1",
            status: "inactive",
        },
        Person {
            mail: CAROL,
            host: "box1",
            status: "active",
        },
    ]
}

fn dovecot() -> Dovecot {
    Dovecot::start(&directory_users())
}

/// The `[directory]` block for `url`; box1 is Dovecot, box2 a closed port.
fn ldap_directory(url: &str, extra: &str) -> String {
    format!(
        "kind = \"ldap\"\nurl = \"{url}/{PEOPLE}{FILTER_URL}\"\ntimeout = \"1s\"\n{extra}\n\
         [directory.hosts]\nbox1 = \"127.0.0.1\"\nbox2 = \"127.0.0.1:{}\"\n",
        support::closed_port_held()
    )
}

fn mailgate(dovecot: &Dovecot, directory: &str, cache: &str) -> Mailgate {
    mailgate_with_workers(dovecot, directory, cache, 2)
}

/// With one worker there is one cache, so cache behaviour is deterministic.
fn mailgate_with_workers(
    dovecot: &Dovecot,
    directory: &str,
    cache: &str,
    workers: usize,
) -> Mailgate {
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace(
            "kind = \"static\"\nmap = \"users.map\"\n",
            &format!("{directory}\n{cache}\n"),
        )
        .replace("workers = 2", &format!("workers = {workers}"));
    Mailgate::start(&config, "")
}

fn imap_login(mailgate: &Mailgate, user: &str, password: &str) -> (String, String) {
    let mut c = ImapClient::connect(mailgate.addr(0)).unwrap();
    let r = c.login(user, password).unwrap();
    (r.status, r.text)
}

/// Repeats `f` until it returns true or `deadline` passes.
fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn active_user_logs_in_and_inactive_or_unknown_users_are_refused_alike() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate(&dovecot, &ldap_directory(&slapd.url(), ""), "");
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert_eq!(c.fetch_message(1).unwrap(), alice_messages()[0]);

    let inactive = imap_login(&mg, BOB, BOB_PW);
    let unknown = imap_login(&mg, "nobody@example.org", "x");
    assert_eq!(inactive.0, "NO");
    assert!(
        inactive.1.starts_with("[AUTHENTICATIONFAILED]"),
        "{}",
        inactive.1
    );
    assert_eq!(inactive, unknown);

    let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
    assert_eq!(p.login(ALICE, ALICE_PW).unwrap(), "+OK Logged in.");
}

#[test]
fn filter_injection_finds_nothing() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate(&dovecot, &ldap_directory(&slapd.url(), ""), "");
    for hostile in ["*", "*)(mail=*", "alice@example.org)(|(mail=*"] {
        let (status, text) = imap_login(&mg, hostile, ALICE_PW);
        assert_eq!(status, "NO", "{hostile}");
        assert!(
            text.starts_with("[AUTHENTICATIONFAILED]"),
            "{hostile}: {text}"
        );
    }
    let filters = slapd.searches();
    assert!(
        filters.iter().any(|f| f.contains("(mail=\\2A)")),
        "escaped star not seen: {filters:?}"
    );
    assert!(
        !filters.iter().any(|f| f.contains("(mail=*)")),
        "{filters:?}"
    );
}

#[test]
fn host_change_takes_effect_after_the_ttl() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate_with_workers(
        &dovecot,
        &ldap_directory(&slapd.url(), ""),
        "[directory.cache]\nttl = \"2s\"\n",
        1,
    );
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    slapd.set_host(ALICE, "box2").unwrap();
    // The cached route still holds for the rest of the TTL...
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    // ...then the new box (here: down) is used.
    assert!(
        eventually(Duration::from_secs(15), || imap_login(&mg, ALICE, ALICE_PW)
            .1
            .starts_with("[UNAVAILABLE]")),
        "the host change never took effect"
    );
}

#[test]
fn bind_dn_with_password_file() {
    let slapd = Slapd::start(
        &people(),
        Options {
            require_bind: true,
            ..Options::default()
        },
    )
    .unwrap();
    let dovecot = dovecot();
    // Anonymous sees nothing under this ACL: alice is unknown.
    let anonymous = mailgate(&dovecot, &ldap_directory(&slapd.url(), ""), "");
    assert_eq!(imap_login(&anonymous, ALICE, ALICE_PW).0, "NO");
    drop(anonymous);
    let config_dir = tempfile::tempdir().unwrap();
    let pw_file = config_dir.path().join("bind.pw");
    std::fs::write(&pw_file, format!("{PROXY_PW}\n")).unwrap();
    let bound = mailgate(
        &dovecot,
        &ldap_directory(
            &slapd.url(),
            &format!(
                "bind_dn = \"{PROXY_DN}\"\nbind_password_file = \"{}\"",
                pw_file.display()
            ),
        ),
        "",
    );
    assert_eq!(imap_login(&bound, ALICE, ALICE_PW).0, "OK");
    assert!(!bound.log().contains(PROXY_PW), "bind password logged");
}

#[test]
fn failover_to_the_next_server_when_the_first_is_down() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let url = format!(
        "ldap://127.0.0.1:{} 127.0.0.1:{}",
        support::closed_port_held(),
        slapd.port
    );
    let mg = mailgate(&dovecot, &ldap_directory(&url, ""), "");
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
}

#[test]
fn ldap_outage_serves_cached_users_and_fails_new_ones_fast() {
    let mut slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate_with_workers(
        &dovecot,
        &ldap_directory(&slapd.url(), ""),
        "[directory.cache]\nttl = \"1s\"\n",
        1,
    );
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    slapd.stop();
    std::thread::sleep(Duration::from_millis(1100)); // past the TTL: stale from now on
    for _ in 0..4 {
        assert_eq!(
            imap_login(&mg, ALICE, ALICE_PW).0,
            "OK",
            "stale route served during the outage"
        );
    }
    assert!(
        mg.log().contains("serving a stale cached route"),
        "{}",
        mg.log()
    );
    let started = Instant::now();
    let (status, text) = imap_login(&mg, CAROL, CAROL_PW);
    assert_eq!(status, "NO");
    assert!(text.starts_with("[UNAVAILABLE]"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a new user must not hang"
    );
    slapd.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || imap_login(&mg, CAROL, CAROL_PW)
            .0
            == "OK"),
        "new users never worked again after slapd came back"
    );
}

#[test]
fn a_hung_ldap_server_serves_cached_users_fails_new_ones_in_bounded_time_and_recovers() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate_with_workers(
        &dovecot,
        &ldap_directory(&slapd.url(), ""),
        "[directory.cache]\nttl = \"1s\"\n",
        1,
    );
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    slapd.pause();
    std::thread::sleep(Duration::from_millis(1100)); // past the TTL
    let thawed = ResumeOnDrop(&slapd);
    assert_eq!(
        imap_login(&mg, ALICE, ALICE_PW).0,
        "OK",
        "stale route served while the server hangs"
    );
    let (status, text) = imap_login(&mg, CAROL, CAROL_PW);
    assert_eq!(status, "NO");
    assert!(text.starts_with("[UNAVAILABLE]"), "{text}");
    assert!(
        mg.log().contains("timeout: deadline has elapsed"),
        "the lookup was bounded:\n{}",
        mg.log()
    );
    drop(thawed);
    assert!(
        eventually(Duration::from_secs(20), || imap_login(&mg, CAROL, CAROL_PW)
            .0
            == "OK"),
        "new users never worked again after slapd answered again"
    );
}

/// Thaws a paused slapd however the test ends (a frozen child would outlive it).
struct ResumeOnDrop<'a>(&'a Slapd);

impl Drop for ResumeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// Library level: the cache in front of the real LDAP directory.
fn with_directory<T>(
    slapd: &Slapd,
    ttl: &str,
    f: impl AsyncFnOnce(Rc<dyn Directory>, Arc<Invalidations>) -> T,
) -> T {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[listen]]\nprotocol = \"imap\"\naddress = \"127.0.0.1:0\"\n[directory]\n{}\n[directory.cache]\nttl = \"{ttl}\"\n",
        ldap_directory(&slapd.url(), "")
    );
    let loaded =
        mailgate::config::parse_str(&text, std::path::Path::new("t.toml"), dir.path()).unwrap();
    let invalidations = Arc::new(Invalidations::default());
    let live = mailgate::runtime::Live::build(Arc::new(loaded)).unwrap();
    let cached = live.directory(
        invalidations.clone(),
        Default::default(),
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
        None,
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f(cached, invalidations))
}

#[test]
fn concurrent_logins_of_one_user_make_one_ldap_query() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    with_directory(&slapd, "60s", async |directory, _| {
        let lookups: Vec<_> = (0..50).map(|_| directory.lookup(ALICE)).collect();
        for route in join_all(lookups).await {
            assert_eq!(
                route.unwrap().route.unwrap().login_user.as_deref(),
                Some(ALICE)
            );
        }
    });
    assert_eq!(slapd.searches_for("alice"), 1, "{:?}", slapd.searches());
}

#[test]
fn invalidation_takes_effect_at_once() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    with_directory(&slapd, "1h", async |directory, invalidations| {
        let host = async |d: &Rc<dyn Directory>| d.lookup(ALICE).await.unwrap().route.unwrap();
        assert_eq!(host(&directory).await.host, "127.0.0.1");
        slapd.set_host(ALICE, "box9.example").unwrap();
        assert_eq!(
            host(&directory).await.host,
            "127.0.0.1",
            "cached for the TTL"
        );
        invalidations.invalidate(ALICE);
        assert_eq!(host(&directory).await.host, "box9.example");
    });
    assert_eq!(slapd.searches_for("alice"), 2);
}

#[test]
fn login_storm_of_few_users_asks_ldap_once_per_user_for_the_process() {
    let slapd = Slapd::start(&people(), Options::default()).unwrap();
    let dovecot = dovecot();
    let mg = mailgate(&dovecot, &ldap_directory(&slapd.url(), ""), "");
    let addr = mg.addr(0);
    let threads: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let (user, pw) = if i % 2 == 0 {
                    (ALICE, ALICE_PW)
                } else {
                    (CAROL, CAROL_PW)
                };
                let mut c = ImapClient::connect(addr).unwrap();
                assert!(c.login(user, pw).unwrap().is_ok());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let queries = slapd.searches_for("alice") + slapd.searches_for("carol");
    // One per user: single flight within a worker and across workers.
    assert_eq!(
        queries,
        2,
        "{queries} LDAP queries for 40 logins: {:?}",
        slapd.searches()
    );
}

async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[test]
fn ldaps_and_starttls_with_a_ca_file() {
    let ca = support::certs::TestCa::new();
    let (cert, key) = ca.issue("slapd", &["localhost"], &["127.0.0.1"]);
    let slapd = Slapd::start(
        &people(),
        Options {
            tls: Some((&cert, &key)),
            ..Options::default()
        },
    )
    .unwrap();
    let dovecot = dovecot();
    let ca_file = format!("ca_file = \"{}\"", ca.ca().display());
    let ldaps = format!("ldaps://127.0.0.1:{}", slapd.tls_port.unwrap());
    let mg = mailgate(&dovecot, &ldap_directory(&ldaps, &ca_file), "");
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    drop(mg);
    let mg = mailgate(
        &dovecot,
        &ldap_directory(&slapd.url(), &format!("{ca_file}\nstarttls = true")),
        "",
    );
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    drop(mg);
    // A CA that did not sign slapd's certificate: the directory is unavailable.
    let other = support::certs::TestCa::new();
    let wrong = format!("ca_file = \"{}\"", other.ca().display());
    for url in [ldaps.as_str(), &format!("{}\nstarttls = true", slapd.url())] {
        let (url, extra) = url.split_once('\n').unwrap_or((url, ""));
        let mg = mailgate(
            &dovecot,
            &ldap_directory(url, &format!("{wrong}\n{extra}")),
            "",
        );
        let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
        assert_eq!(status, "NO", "{url}");
        assert!(text.starts_with("[UNAVAILABLE]"), "{url}: {text}");
    }
}
