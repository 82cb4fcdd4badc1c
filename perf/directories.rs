//! Every directory kind side by side (a benchmark, not a test: run it
//! explicitly, with the SQL kind built in):
//!
//!   cargo test --release --features sql --test perf_directories -- --ignored --nocapture
//!
//! Real slapd, PostgreSQL, MariaDB, a Python auth_http server and Dovecot
//! on loopback; mailgate routes the same 20 users with each kind in turn,
//! with the route cache and without it, in one run. Per kind: mailgate's
//! CPU per login over a storm of 400 logins from 4 clients, the lookups
//! that reached the directory per login (mailgate's own count:
//! `mailgate_directory_cache_total{result="miss"}` with the cache,
//! `mailgate_phase_duration_seconds_count{phase="directory_lookup"}`
//! without), and the median login latency. The static map, measured in the
//! same run, is the baseline the ratios are taken to.

#[path = "../tests/support/mod.rs"]
mod support;

use mailgate::check_client::ImapClient;
use serde_json::json;
use std::time::{Duration, Instant};
use support::auth_http::AuthHttp;
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::sql::{Database, Engine, DB_PASSWORD};
use support::{cpu_ticks, metric, Dovecot, Mailgate, TestUser};

const USERS: usize = 20;
const THREADS: usize = 4;
const LOGINS_PER_THREAD: usize = 100;

fn user(i: usize) -> String {
    format!("user{i}@example.org")
}

/// A storm of logins: (logins, CPU ms per login, median latency ms).
fn storm(mg: &Mailgate) -> (usize, f64, f64) {
    let addr = mg.addr(0);
    let before = cpu_ticks(mg.pid());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (0..LOGINS_PER_THREAD)
                    .map(|i| {
                        let start = Instant::now();
                        let mut c = ImapClient::connect(addr).unwrap();
                        let r = c.login(&user((t + i) % USERS), "pw").unwrap();
                        assert!(r.is_ok(), "{}", r.text);
                        c.logout().unwrap();
                        start.elapsed()
                    })
                    .collect::<Vec<Duration>>()
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    latencies.sort();
    let logins = THREADS * LOGINS_PER_THREAD;
    let ticks = cpu_ticks(mg.pid()) - before;
    (
        logins,
        ticks as f64 * 10.0 / logins as f64,
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
    )
}

/// Lookups that reached the directory, by mailgate's own count.
fn lookups(mg: &Mailgate) -> f64 {
    let text = mg
        .process()
        .admin(None)
        .request("GET", "/metrics")
        .unwrap()
        .body;
    metric(&text, "mailgate_directory_cache_total{result=\"miss\"}")
        + metric(
            &text,
            "mailgate_phase_duration_seconds_count{phase=\"directory_lookup\"}",
        )
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn every_directory_kind_side_by_side() {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let users = TestUser::all_with_password(&names, "pw");
    let dovecot = Dovecot::start(&users);
    let people = Person::active_on(&names, "box1");
    let slapd = Slapd::start(&people, Options::default()).unwrap();
    let rows: Vec<(&str, &str, Option<&str>)> =
        names.iter().map(|n| (n.as_str(), "box1", None)).collect();
    let postgres = Database::start(Engine::Postgres, &rows);
    let mariadb = Database::start(Engine::Mariadb, &rows);
    let ports = json!({"imap": dovecot.imap.port(), "pop3": dovecot.pop3.port()});
    let table: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                json!({"password": "pw", "server": "127.0.0.1", "ports": ports}),
            )
        })
        .collect();
    let auth = AuthHttp::start(&json!({"users": table, "wait": 0}));
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("db.pw");
    std::fs::write(&password_file, DB_PASSWORD).unwrap();
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let base = support::mailgate::config(
        dovecot.imap.port(),
        dovecot.pop3.port(),
        "",
        "[admin]\naddress = \"127.0.0.1:0\"\n",
    )
    .replace("workers = 2", &format!("workers = {workers}"));
    let hosts = "[directory.hosts]\nbox1 = \"127.0.0.1\"\n";
    let sql = |db: &Database| {
        format!(
            "kind = \"sql\"\nurl = \"{}\"\npassword_file = \"{}\"\n{hosts}",
            db.url(),
            password_file.display()
        )
    };
    let kinds: Vec<(&str, String)> = vec![
        ("static map", "kind = \"static\"\nmap = \"users.map\"\n".into()),
        (
            "LDAP (slapd)",
            format!(
                "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n{hosts}",
                slapd.url()
            ),
        ),
        ("SQL (PostgreSQL)", sql(&postgres)),
        ("SQL (MariaDB)", sql(&mariadb)),
        (
            "auth_http (Python http.server)",
            format!("kind = \"http\"\nurl = \"{}\"\n", auth.url()),
        ),
    ];
    let mut table = Vec::new();
    for cached in [true, false] {
        let cache = format!("[directory.cache]\nenabled = {cached}\nttl = \"60s\"\n");
        for (name, directory) in &kinds {
            let config = base.replace(
                "kind = \"static\"\nmap = \"users.map\"\n",
                &format!("{directory}{cache}"),
            );
            let mg = Mailgate::start(&config, "*@example.org 127.0.0.1\n");
            let (logins, cpu, p50) = storm(&mg);
            let asked = lookups(&mg);
            table.push((cached, *name, logins, cpu, asked / logins as f64, p50));
        }
    }
    println!("\n# Directory kinds, {USERS} users, {workers} workers, storms of {} logins from {THREADS} clients\n", THREADS * LOGINS_PER_THREAD);
    println!(
        "| cache | kind | CPU ms per login | × static map | lookups per login | login p50 ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (cached, name, _, cpu, per_login, p50) in &table {
        let baseline = table
            .iter()
            .find(|row| row.0 == *cached && row.1 == "static map")
            .map_or(1.0, |row| row.3);
        println!(
            "| {} | {name} | {cpu:.3} | {:.2} | {per_login:.3} | {p50:.2} |",
            if *cached { "on" } else { "off" },
            cpu / baseline
        );
    }
}
