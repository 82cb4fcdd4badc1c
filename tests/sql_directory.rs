//! `kind = "sql"` against real PostgreSQL and real MariaDB holding
//! Perdition's table as it is, and a real Dovecot: routing for two boxes,
//! an unknown user, a user with a port, a servername with a user part, a
//! user name that tries SQL injection, and the database going away (cached
//! users still served, the others refused at once with a temporary
//! failure). Built with the `sql` feature only.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use support::sql::{Database, Engine, DB_PASSWORD};
use support::stack::*;
use support::{Dovecot, Mailgate};

/// Alice on box1 (Dovecot, the protocol's port), Bob on box1 with
/// Dovecot's IMAP port in the table (used whatever the protocol, as
/// Perdition uses it), Carol on box2 (a closed port), "bob-alias" logging
/// in as Bob (`user@host` in servername).
fn rows(imap_port: u16) -> Vec<(String, String, Option<String>)> {
    vec![
        (ALICE.into(), "box1".into(), None),
        (BOB.into(), "127.0.0.1".into(), Some(imap_port.to_string())),
        (CAROL.into(), "box2".into(), None),
        ("bob-alias@example.org".into(), format!("{BOB}@box1"), None),
    ]
}

fn start(engine: Engine, dovecot: &Dovecot) -> Database {
    let rows = rows(dovecot.imap.port());
    let borrowed: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|(u, s, p)| (u.as_str(), s.as_str(), p.as_deref()))
        .collect();
    Database::start(engine, &borrowed)
}

/// mailgate routing with `db`; the password file lives in `secrets`.
fn mailgate(
    dovecot: &Dovecot,
    db: &Database,
    cache: &str,
    secrets: &tempfile::TempDir,
) -> Mailgate {
    let servers = format!("url = \"{}\"", db.url());
    mailgate_with(dovecot, &servers, cache, secrets)
}

/// mailgate routing with the SQL `servers` line given (`url = …`,
/// `servers = […]`, and `ca_file` if any).
fn mailgate_with(
    dovecot: &Dovecot,
    servers: &str,
    cache: &str,
    secrets: &tempfile::TempDir,
) -> Mailgate {
    let password_file = secrets.path().join("db.pw");
    std::fs::write(&password_file, format!("{DB_PASSWORD}\n")).unwrap();
    let directory = format!(
        "kind = \"sql\"\n{servers}\npassword_file = \"{}\"\ntimeout = \"1s\"\n\
         [directory.hosts]\nbox1 = \"127.0.0.1\"\nbox2 = \"127.0.0.1:{}\"\n{cache}\n",
        password_file.display(),
        support::closed_port_held()
    );
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace("kind = \"static\"\nmap = \"users.map\"\n", &directory)
        .replace("workers = 2", "workers = 1");
    Mailgate::start(&config, "")
}

fn imap_login(mg: &Mailgate, user: &str, password: &str) -> (String, String) {
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let r = c.login(user, password).unwrap();
    (r.status, r.text)
}

fn routes_perditions_table(engine: Engine) {
    let dovecot = Dovecot::start(&directory_users());
    let db = start(engine, &dovecot);
    let secrets = tempfile::tempdir().unwrap();
    let mg = mailgate(&dovecot, &db, "", &secrets);

    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok(), "{}", mg.log());
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    assert_eq!(
        c.fetch_message(1).unwrap(),
        alice_messages()[0],
        "byte-exact"
    );
    let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
    assert!(
        p.login(ALICE, ALICE_PW).unwrap().starts_with("+OK"),
        "NULL port: POP3's own"
    );

    assert_eq!(imap_login(&mg, BOB, BOB_PW).0, "OK", "the port column");
    let mut p = Pop3Client::connect(mg.addr(1)).unwrap();
    let answer = p.login(BOB, BOB_PW).unwrap();
    assert!(
        answer.starts_with("-ERR [SYS/TEMP]"),
        "POP3 to Bob's IMAP port: the table's port is used: {answer}"
    );
    let (status, text) = imap_login(&mg, CAROL, CAROL_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "Carol is on box2: {text}"
    );
    let (status, text) = imap_login(&mg, "nobody@example.org", "pw");
    assert!(
        status == "NO" && text.starts_with("[AUTHENTICATIONFAILED]"),
        "{text}"
    );
    for attempt in ["' OR '1'='1", "x' OR 1=1 -- ", "\\' OR 1=1#", "*"] {
        let (status, text) = imap_login(&mg, attempt, "pw");
        assert!(
            status == "NO" && text.starts_with("[AUTHENTICATIONFAILED]"),
            "{attempt:?} found nothing: {text}"
        );
    }
    assert_eq!(imap_login(&mg, "bob-alias@example.org", BOB_PW).0, "OK");
    assert!(
        dovecot.logins_of(BOB, 2) >= 2,
        "the alias logged in as Bob: {}",
        dovecot.log()
    );
    assert!(
        !mg.log().contains(DB_PASSWORD),
        "the database password is never logged"
    );
}

#[test]
fn postgresql_routes_perditions_table() {
    routes_perditions_table(Engine::Postgres);
}

#[test]
fn mariadb_routes_perditions_table() {
    routes_perditions_table(Engine::Mariadb);
}

fn survives_the_database_going_away(engine: Engine) {
    let dovecot = Dovecot::start(&directory_users());
    let mut db = start(engine, &dovecot);
    let cache = "[directory.cache]\nttl = \"1s\"\n";
    let secrets = tempfile::tempdir().unwrap();
    let mg = mailgate(&dovecot, &db, cache, &secrets);
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    db.stop();
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert_eq!(
        status, "OK",
        "a stale route while the database is down: {text}"
    );
    let (status, text) = imap_login(&mg, BOB, BOB_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "uncached: {text}"
    );
    assert!(
        mg.log().contains("SQL directory unreachable"),
        "{}",
        mg.log()
    );
    assert!(
        mg.log().contains("serving a stale cached route"),
        "{}",
        mg.log()
    );
}

#[test]
fn postgresql_going_away_serves_cached_users_and_refuses_others() {
    survives_the_database_going_away(Engine::Postgres);
}

#[test]
fn mariadb_going_away_serves_cached_users_and_refuses_others() {
    survives_the_database_going_away(Engine::Mariadb);
}

#[test]
fn a_server_that_does_not_answer_is_passed_over_for_the_next() {
    let dovecot = Dovecot::start(&directory_users());
    let db = start(Engine::Mariadb, &dovecot);
    let dead = format!(
        "mysql://perdition@127.0.0.1:{}/dbPerdition",
        support::closed_port_held()
    );
    let secrets = tempfile::tempdir().unwrap();
    let servers = format!("servers = [\"{dead}\", \"{}\"]", db.url());
    let mg = mailgate_with(&dovecot, &servers, "", &secrets);
    for _ in 0..3 {
        assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    }
}

#[test]
fn postgresql_over_tls_verified_against_the_ca_file() {
    let dovecot = Dovecot::start(&directory_users());
    let ca = mailgate_testkit::certs::TestCa::new();
    let (cert, key) = ca.issue("db", &["localhost"], &["127.0.0.1"]);
    let rows = [(ALICE, "box1", None)];
    let db = Database::start_tls_only(&rows, &cert, &key);
    let secrets = tempfile::tempdir().unwrap();
    // The server takes TCP logins over TLS only: a plaintext client fails.
    let plain = format!("url = \"{}\"", db.url());
    let mg = mailgate_with(&dovecot, &plain, "", &secrets);
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "{text}"
    );
    drop(mg);
    let tls = format!(
        "url = \"{}?sslmode=require\"\nca_file = \"{}\"",
        db.url(),
        ca.ca().display()
    );
    let mg = mailgate_with(&dovecot, &tls, "", &secrets);
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    // A CA the server's certificate does not chain to: refused.
    let other = mailgate_testkit::certs::TestCa::new();
    let wrong = format!(
        "url = \"{}?sslmode=require\"\nca_file = \"{}\"",
        db.url(),
        other.ca().display()
    );
    drop(mg);
    let mg = mailgate_with(&dovecot, &wrong, "", &secrets);
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "{text}"
    );
}

/// A reload moves routing from MariaDB to PostgreSQL: the new SQL thread
/// serves the next login (the old one ends with the old workers'
/// directories).
#[test]
fn a_reload_switches_the_database() {
    let dovecot = Dovecot::start(&directory_users());
    let mariadb = Database::start(Engine::Mariadb, &[(ALICE, "box2", None)]);
    let postgres = Database::start(Engine::Postgres, &[(ALICE, "box1", None)]);
    let secrets = tempfile::tempdir().unwrap();
    let mg = mailgate(
        &dovecot,
        &mariadb,
        "[directory.cache]\nenabled = false\n",
        &secrets,
    );
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "box2 is down: {text}"
    );
    let config = std::fs::read_to_string(mg.config_path())
        .unwrap()
        .replace(&mariadb.url(), &postgres.url());
    mg.rewrite(&config, "");
    let report = mg.reload(1);
    assert!(report.contains("reloaded"), "{report}");
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    // The old SQL thread ended: one is left.
    let sql_threads = || {
        std::fs::read_dir(format!("/proc/{}/task", mg.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "mailgate-sql")
            .count()
    };
    let start = std::time::Instant::now();
    while sql_threads() != 1 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(sql_threads(), 1);
}

/// A custom query; one that finds several rows for a user is a temporary
/// failure naming the count (at most two rows are ever read).
#[test]
fn a_custom_query_routes_and_several_rows_are_refused() {
    let dovecot = Dovecot::start(&directory_users());
    let db = start(Engine::Mariadb, &dovecot);
    let secrets = tempfile::tempdir().unwrap();
    let own = format!(
        "url = \"{}\"\nquery = \"SELECT servername, port FROM tblPerdition WHERE user = ?\"",
        db.url()
    );
    let mg = mailgate_with(&dovecot, &own, "", &secrets);
    assert_eq!(imap_login(&mg, ALICE, ALICE_PW).0, "OK", "{}", mg.log());
    drop(mg);
    let every = format!(
        "url = \"{}\"\nquery = \"SELECT servername, port FROM tblPerdition WHERE user = ? OR 1 = 1\"",
        db.url()
    );
    let mg = mailgate_with(&dovecot, &every, "", &secrets);
    let (status, text) = imap_login(&mg, ALICE, ALICE_PW);
    assert!(
        status == "NO" && text.starts_with("[UNAVAILABLE]"),
        "{text}"
    );
    assert!(mg.log().contains("2 rows (one expected)"), "{}", mg.log());
}
