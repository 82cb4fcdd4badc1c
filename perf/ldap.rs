//! LDAP end-to-end figures (a benchmark, not a test: run it explicitly):
//!
//!   cargo test --release --test perf_ldap -- --ignored --nocapture
//!
//! Real slapd and Dovecot on loopback, mailgate with the LDAP directory and
//! its cache. Reports LDAP queries per login during a login storm of many
//! logins from few users (ideal: unique users per TTL, whatever the number
//! of workers: `WORKERS=n`, default 2, sets it), login
//! latency with a cold vs a warm cache, and mailgate's CPU per login with LDAP
//! (warm) next to the static map measured in the same run.

#[path = "../tests/support/mod.rs"]
mod support;

use mailgate::check_client::ImapClient;
use std::time::{Duration, Instant};
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::{cpu_ticks, Dovecot, Mailgate, TestUser};

const USERS: usize = 20;
const STORM_THREADS: usize = 4;
const STORM_LOGINS_PER_THREAD: usize = 100;

fn user(i: usize) -> String {
    format!("user{i}@example.org")
}

fn login(addr: std::net::SocketAddr, i: usize) -> Duration {
    let start = Instant::now();
    let mut c = ImapClient::connect(addr).unwrap();
    assert!(c.login(&user(i), "pw").unwrap().is_ok());
    c.logout().unwrap();
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Logins from `threads` clients over all users; returns (logins, CPU ms per login).
fn storm(mg: &Mailgate) -> (usize, f64) {
    let addr = mg.addr(0);
    let before = cpu_ticks(mg.pid());
    let threads: Vec<_> = (0..STORM_THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (0..STORM_LOGINS_PER_THREAD).for_each(|i| {
                    login(addr, (t + i) % USERS);
                })
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let logins = STORM_THREADS * STORM_LOGINS_PER_THREAD;
    let ticks = cpu_ticks(mg.pid()) - before;
    (logins, ticks as f64 * 10.0 / logins as f64)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn ldap_directory_figures() {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let people = Person::active_on(&names, "box1");
    let slapd = Slapd::start(&people, Options::default()).unwrap();
    let users = TestUser::all_with_password(&names, "pw");
    let dovecot = Dovecot::start(&users);
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let base = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "")
        .replace("workers = 2", &format!("workers = {workers}"));
    let ldap_config = base.replace(
        "kind = \"static\"\nmap = \"users.map\"\n",
        &format!(
            "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
             [directory.hosts]\nbox1 = \"127.0.0.1\"\n[directory.cache]\nttl = \"60s\"\n",
            slapd.url()
        ),
    );
    let mg = Mailgate::start(&ldap_config, "");
    let addr = mg.addr(0);

    let cold: Vec<Duration> = (0..USERS).map(|i| login(addr, i)).collect();
    let queries_cold = slapd.searches().len();
    let warm: Vec<Duration> = (0..USERS).map(|i| login(addr, i)).collect();
    let (storm_logins, ldap_cpu) = storm(&mg);
    let queries = slapd.searches().len();
    drop(mg);

    let static_mg = Mailgate::start(&base, "*@example.org 127.0.0.1\n");
    let (_, static_cpu) = storm(&static_mg);

    let total_logins = 2 * USERS + storm_logins;
    println!("\n# LDAP directory, {USERS} users, {workers} workers, TTL 60 s\n");
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| LDAP queries for {total_logins} logins (cold pass, warm pass, storm of {storm_logins}) | {queries} ({:.3} per login; cold pass alone: {queries_cold}) |", queries as f64 / total_logins as f64);
    println!("| ideal: unique users (one lookup per user per TTL for the process) | {USERS} |");
    println!(
        "| login latency median, cold cache (LDAP query) | {:.2} ms |",
        median(cold).as_secs_f64() * 1e3
    );
    println!(
        "| login latency median, warm cache | {:.2} ms |",
        median(warm).as_secs_f64() * 1e3
    );
    println!("| mailgate CPU per login, LDAP directory (warm) | {ldap_cpu:.3} ms |");
    println!("| mailgate CPU per login, static map, same run | {static_cpu:.3} ms |");
}
