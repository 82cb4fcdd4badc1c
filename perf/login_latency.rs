//! Where a login's time goes (a benchmark, not a test: run it explicitly):
//!
//!   cargo test --release --test perf_login_latency -- --ignored --nocapture
//!
//! Real Dovecot and slapd on loopback; the same logins made directly to
//! Dovecot, through HAProxy (TCP, if installed: it reads no byte, so it is
//! the floor for a proxy), and through mailgate (2 workers) with a static
//! map, with LDAP behind its cache (warm) and with LDAP and no cache (every
//! login queries slapd). Two more static-map paths change one setting each:
//! `pin_workers = false` (the workers may run on any CPU, where by default
//! each is pinned to one) and `forward_client_address = false` (no IMAP
//! `ID`, no POP3 `XCLIENT`: what telling the back end the client's address
//! costs); one more has both. One more tells Dovecot the client's address
//! with a PROXY v2 header instead (`[backend] proxy_protocol = true` and
//! `forward_client_address = false`, to Dovecot listeners with
//! `haproxy = yes`): the header has no reply to wait for, where the `ID`'s
//! comes back on its own; and once more with the header and unpinned.
//! The last static-map path has `early_login = false`: every IMAP login
//! waits for the back end's greeting, as before the login went early.
//!
//! 1. **Timeline, one client**: `ROUNDS` (default 300) logins per path,
//!    interleaved path by path, each split into connect, greeting, login
//!    (IMAP `LOGIN`; POP3 `USER` + `PASS`) and logout, medians in ms, and the
//!    total's difference to the direct path: what each hop adds when nothing
//!    else competes for the CPUs.
//! 2. **Closed loop, `CLIENTS` (default 4) clients**: `LOOP_ROUNDS` (default
//!    5) rounds of `LOOP_SECS` (default 4) s per path, alternating, the median
//!    of the rounds' p50s: on a machine whose CPUs the clients, Dovecot and
//!    the proxy share, a login waits for every process's CPU, so what a proxy
//!    adds here is mostly its CPU per login (and slapd's, on a cache miss).
//!    Each proxy's own CPU per login over those rounds (user + system, from
//!    `/proc/PID/stat`) is printed beside it.
//!
//! `MAILGATE_TEST_IO=uring|epoll` picks mailgate's transport.
//!
//! A second benchmark in this file, `early_login_over_a_slow_link`, puts a
//! relay that delays every byte (`tests/support/delay_relay.py`) between
//! mailgate and Dovecot's IMAP port, as a VPN would, and compares logins
//! sent before the back end's greeting with logins sent after it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::slapd::{Options, Person, Slapd, PEOPLE};
use support::{cpu_ticks, free_port, have, wait_for_port, Dovecot, Mailgate, TestUser};

const USERS: usize = 8;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn user(i: usize) -> String {
    format!("user{}@example.org", i % USERS)
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Imap,
    Pop3,
}

/// Reads until the received bytes hold `until` followed by a line end (an
/// answer line starting with `until`, or the end of a line for `b""`).
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, until: &[u8]) {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let done = |buf: &[u8]| {
        buf.windows(until.len().max(1))
            .position(|w| w.starts_with(until))
            .is_some_and(|at| buf[at..].windows(2).any(|w| w == b"\r\n"))
    };
    while !done(buf) {
        let n = s.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One login: the time of each phase (connect, greeting, login, logout).
fn login(addr: SocketAddr, protocol: Protocol, i: usize) -> [Duration; 4] {
    let mut buf = Vec::with_capacity(4096);
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t1 = Instant::now();
    read_until(&mut s, &mut buf, b"");
    let t2 = Instant::now();
    match protocol {
        Protocol::Imap => {
            write!(s, "a LOGIN {} pw\r\n", user(i)).unwrap();
            read_until(&mut s, &mut buf, b"a OK");
        }
        Protocol::Pop3 => {
            write!(s, "USER {}\r\n", user(i)).unwrap();
            read_until(&mut s, &mut buf, b"");
            s.write_all(b"PASS pw\r\n").unwrap();
            read_until(&mut s, &mut buf, b"");
            assert!(buf.starts_with(b"+OK"), "{}", String::from_utf8_lossy(&buf));
        }
    }
    let t3 = Instant::now();
    match protocol {
        Protocol::Imap => {
            s.write_all(b"b LOGOUT\r\n").unwrap();
            read_until(&mut s, &mut buf, b"b OK");
        }
        Protocol::Pop3 => {
            s.write_all(b"QUIT\r\n").unwrap();
            read_until(&mut s, &mut buf, b"");
        }
    }
    let t4 = Instant::now();
    [t1 - t0, t2 - t1, t3 - t2, t4 - t3]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// HAProxy in TCP mode in front of Dovecot's IMAP and POP3 ports; stopped on drop.
struct Haproxy {
    child: Child,
    imap: SocketAddr,
    pop3: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(imap_backend: u16, pop3_backend: u16) -> Option<Self> {
        if !have("haproxy") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (imap, pop3) = (free_port(), free_port());
        let config = format!(
            "global\n  maxconn 5000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n  option splice-auto\n\
             listen imap\n  bind 127.0.0.1:{imap}\n  server d 127.0.0.1:{imap_backend}\n\
             listen pop3\n  bind 127.0.0.1:{pop3}\n  server d 127.0.0.1:{pop3_backend}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let imap: SocketAddr = format!("127.0.0.1:{imap}").parse().unwrap();
        let pop3: SocketAddr = format!("127.0.0.1:{pop3}").parse().unwrap();
        let haproxy = Self {
            child,
            imap,
            pop3,
            _dir: dir,
        };
        wait_for_port(imap, Duration::from_secs(5));
        wait_for_port(pop3, Duration::from_secs(5));
        Some(haproxy)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path a login can take: its name, its IMAP and POP3 addresses, and the
/// proxy's process (none on the direct path).
struct Path {
    name: &'static str,
    imap: SocketAddr,
    pop3: SocketAddr,
    proxy: Option<u32>,
}

impl Path {
    fn addr(&self, protocol: Protocol) -> SocketAddr {
        match protocol {
            Protocol::Imap => self.imap,
            Protocol::Pop3 => self.pop3,
        }
    }
}

/// `config` with `setting` (a line) added to its `[backend]` table.
fn with_backend_setting(config: &str, setting: &str) -> String {
    let changed = config.replace("[backend]\n", &format!("[backend]\n{setting}\n"));
    assert_ne!(changed, config, "the template has a [backend] table");
    changed
}

/// `rounds` logins to each of `addrs`, interleaved; per address the median
/// ms of each phase and of the total.
fn phase_medians(addrs: &[SocketAddr], protocol: Protocol, rounds: usize) -> Vec<[f64; 5]> {
    let mut phases: Vec<[Vec<f64>; 5]> = addrs.iter().map(|_| Default::default()).collect();
    for i in 0..rounds {
        for (addr, out) in addrs.iter().zip(&mut phases) {
            let p = login(*addr, protocol, i);
            for (k, d) in p.iter().enumerate() {
                out[k].push(ms(*d));
            }
            out[4].push(ms(p.iter().sum()));
        }
    }
    phases.into_iter().map(|p| p.map(median)).collect()
}

fn timeline(paths: &[Path], protocol: Protocol, rounds: usize) {
    let addrs: Vec<SocketAddr> = paths.iter().map(|p| p.addr(protocol)).collect();
    let medians = phase_medians(&addrs, protocol, rounds);
    let direct = medians[0][4];
    let name = if protocol == Protocol::Imap {
        "IMAP"
    } else {
        "POP3"
    };
    println!("\n{name}, one client, {rounds} logins per path, medians (ms):\n");
    println!("| path | connect | greeting | login | logout | total | total − direct |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (path, m) in paths.iter().zip(&medians) {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.3} |",
            path.name,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[4] - direct
        );
    }
}

/// p50 of the login latency (connect to the logout's answer) with `clients`
/// closed-loop clients for `secs`.
fn closed_loop(addr: SocketAddr, protocol: Protocol, clients: usize, secs: u64) -> (f64, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, all) = (stop.clone(), all.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let p = login(addr, protocol, i);
                    mine.push(ms(p.iter().sum()));
                    i += clients;
                }
                all.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let all = std::mem::take(&mut *all.lock().unwrap());
    let n = all.len();
    (median(all), n)
}

fn loaded(paths: &[Path], protocol: Protocol, clients: usize, rounds: usize, secs: u64) {
    let mut p50s: Vec<Vec<f64>> = paths.iter().map(|_| Vec::new()).collect();
    let mut counts: Vec<usize> = vec![0; paths.len()];
    let mut ticks: Vec<u64> = vec![0; paths.len()];
    for round in 0..rounds {
        // Which path goes first turns round by round.
        for k in 0..paths.len() {
            let j = (k + round) % paths.len();
            let before = paths[j].proxy.map(cpu_ticks);
            let (p50, n) = closed_loop(paths[j].addr(protocol), protocol, clients, secs);
            if let (Some(pid), Some(before)) = (paths[j].proxy, before) {
                ticks[j] += cpu_ticks(pid) - before;
            }
            p50s[j].push(p50);
            counts[j] += n;
        }
    }
    let medians: Vec<f64> = p50s.iter().map(|v| median(v.clone())).collect();
    let name = if protocol == Protocol::Imap {
        "IMAP"
    } else {
        "POP3"
    };
    println!(
        "\n{name}, {clients} closed-loop clients, {rounds} rounds of {secs} s per path, alternating:\n"
    );
    println!(
        "| path | login p50 ms (median of rounds) | rounds' p50s | logins | p50 − direct | proxy CPU ms per login |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (k, path) in paths.iter().enumerate() {
        let rounds: Vec<String> = p50s[k].iter().map(|v| format!("{v:.1}")).collect();
        // A tick is 10 ms.
        let cpu = match path.proxy {
            Some(_) => format!("{:.3}", ticks[k] as f64 * 10.0 / counts[k].max(1) as f64),
            None => "—".to_owned(),
        };
        println!(
            "| {} | {:.2} | {} | {} | {:+.2} | {cpu} |",
            path.name,
            medians[k],
            rounds.join(", "),
            counts[k],
            medians[k] - medians[0]
        );
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn login_latency_figures() {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let people = Person::active_on(&names, "box1");
    let slapd = Slapd::start(&people, Options::default()).unwrap();
    let users = TestUser::all_with_password(&names, "pw");
    // Two more listeners that expect a PROXY header from mailgate.
    let (dovecot, header_ports) = Dovecot::start_with_ports(&users, 2, |ports| {
        format!(
            "haproxy_trusted_networks = 127.0.0.1/32\n\
             service imap-login {{\n  inet_listener imap_haproxy {{\n    port = {}\n    haproxy = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3_haproxy {{\n    port = {}\n    haproxy = yes\n  }}\n}}\n",
            ports[0], ports[1]
        )
    });
    let (imap_port, pop3_port) = (dovecot.imap.port(), dovecot.pop3.port());
    let base = support::mailgate::config(
        imap_port,
        pop3_port,
        "",
        "[limits]\nmax_preauth_per_address = 0\n",
    );
    let ldap = |cache: &str| {
        base.replace(
            "kind = \"static\"\nmap = \"users.map\"\n",
            &format!(
                "kind = \"ldap\"\nurl = \"{}/{PEOPLE}?mail,host?sub?(&(mail=%s)(status=active))\"\n\
                 [directory.hosts]\nbox1 = \"127.0.0.1\"\n[directory.cache]\n{cache}\n",
                slapd.url()
            ),
        )
    };
    let with_static_map =
        |config: &str| Mailgate::start_with_env(config, "*@example.org 127.0.0.1\n", "info", &[]);
    // Workers free to run on any CPU (the default pins each).
    let unpinned = |config: &str| {
        let changed = config.replace("workers = 2\n", "workers = 2\npin_workers = false\n");
        assert_ne!(changed, config, "the template sets `workers = 2`");
        changed
    };
    // Telling the back end nothing of the client (no IMAP `ID`, no POP3
    // `XCLIENT`): what forwarding the client's address costs.
    let anonymous = |config: &str| with_backend_setting(config, "forward_client_address = false");
    let static_map = with_static_map(&base);
    // Every IMAP login after the greeting.
    let static_late = with_static_map(&with_backend_setting(&base, "early_login = false"));
    let static_unpinned = with_static_map(&unpinned(&base));
    let static_anonymous = with_static_map(&anonymous(&base));
    let static_both = with_static_map(&anonymous(&unpinned(&base)));
    // The client's address in a PROXY header to Dovecot's `haproxy = yes`
    // listeners, not in an `ID`/`XCLIENT`.
    let header = support::mailgate::config(
        header_ports[0],
        header_ports[1],
        "forward_client_address = false\nproxy_protocol = true\n",
        "[limits]\nmax_preauth_per_address = 0\n",
    );
    let static_header = with_static_map(&header);
    let static_header_unpinned = with_static_map(&unpinned(&header));
    let cached = Mailgate::start_with_env(&ldap("ttl = \"60s\""), "", "info", &[]);
    let uncached = Mailgate::start_with_env(&ldap("enabled = false"), "", "info", &[]);
    let haproxy = Haproxy::start(imap_port, pop3_port);

    let mut paths = vec![Path {
        name: "direct to Dovecot",
        imap: dovecot.imap,
        pop3: dovecot.pop3,
        proxy: None,
    }];
    if let Some(h) = &haproxy {
        paths.push(Path {
            name: "HAProxy (TCP)",
            imap: h.imap,
            pop3: h.pop3,
            proxy: Some(h.child.id()),
        });
    }
    for (name, mg) in [
        ("mailgate, static map", &static_map),
        ("mailgate, static map, unpinned", &static_unpinned),
        ("mailgate, static map, no client address", &static_anonymous),
        (
            "mailgate, static map, unpinned, no client address",
            &static_both,
        ),
        (
            "mailgate, static map, PROXY header to Dovecot",
            &static_header,
        ),
        (
            "mailgate, static map, unpinned, PROXY header",
            &static_header_unpinned,
        ),
        (
            "mailgate, static map, login after the greeting",
            &static_late,
        ),
        ("mailgate, LDAP, cache warm", &cached),
        ("mailgate, LDAP, no cache", &uncached),
    ] {
        paths.push(Path {
            name,
            imap: mg.addr(0),
            pop3: mg.addr(1),
            proxy: Some(mg.pid()),
        });
    }
    // Warm every path up (Dovecot's login processes, the LDAP cache).
    for path in &paths {
        for i in 0..USERS {
            login(path.imap, Protocol::Imap, i);
            login(path.pop3, Protocol::Pop3, i);
        }
    }
    let rounds = env_or("ROUNDS", 300) as usize;
    let clients = env_or("CLIENTS", 4) as usize;
    let loop_rounds = env_or("LOOP_ROUNDS", 5) as usize;
    let loop_secs = env_or("LOOP_SECS", 4);
    println!(
        "\n# Login latency, {} CPUs, mailgate io {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("MAILGATE_TEST_IO").unwrap_or_else(|_| "auto".into())
    );
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        timeline(&paths, protocol, rounds);
    }
    for protocol in [Protocol::Imap, Protocol::Pop3] {
        loaded(&paths, protocol, clients, loop_rounds, loop_secs);
    }
    println!(
        "\nLDAP searches slapd answered during the run: {}",
        slapd.searches().len()
    );
}

/// `tests/support/delay_relay.py` in front of `target`: every byte
/// `delay_ms` later each way; stopped on drop.
struct SlowLink {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SlowLink {
    fn start(target: u16, delay_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let (target, delay) = (target.to_string(), delay_ms.to_string());
        let (child, port) = support::start_python_server(
            "delay_relay.py",
            &[target.as_ref(), port_file.as_os_str(), delay.as_ref()],
            &port_file,
        );
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What sending the IMAP login before the back end's greeting
/// (`[backend] early_login`, the default) saves where the back end is a
/// round trip away: mailgate's IMAP back ends behind a relay that delays
/// every byte by `DELAY_MS` (default 1) each way, a VPN of `2 × DELAY_MS`
/// round-trip time. One client, `ROUNDS` (default 200) logins alternating
/// between a mailgate with `early_login` and one without; medians of each
/// phase.
///
///   cargo test --release --test perf_login_latency -- --ignored --nocapture slow_link
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn early_login_over_a_slow_link() {
    let names: Vec<String> = (0..USERS).map(user).collect();
    let users = TestUser::all_with_password(&names, "pw");
    let dovecot = Dovecot::start(&users);
    let delay_ms = env_or("DELAY_MS", 1);
    let imap_link = SlowLink::start(dovecot.imap.port(), delay_ms);
    let pop3_link = SlowLink::start(dovecot.pop3.port(), delay_ms);
    let config = support::mailgate::config(
        imap_link.port,
        pop3_link.port,
        "",
        "[limits]\nmax_preauth_per_address = 0\n",
    );
    let late_config = with_backend_setting(&config, "early_login = false");
    let map = "*@example.org 127.0.0.1\n";
    let early = Mailgate::start_with_env(&config, map, "info", &[]);
    let late = Mailgate::start_with_env(&late_config, map, "info", &[]);
    let rounds = env_or("ROUNDS", 200) as usize;
    for (protocol, listener) in [(Protocol::Imap, 0), (Protocol::Pop3, 1)] {
        let paths = [
            (
                "login before the greeting (the default)",
                early.addr(listener),
            ),
            (
                "login after the greeting (`early_login = false`)",
                late.addr(listener),
            ),
        ];
        // Each worker meets the back end once before the figures count.
        for (_, addr) in paths {
            for i in 0..2 * USERS {
                login(addr, protocol, i);
            }
        }
        let addrs: Vec<SocketAddr> = paths.iter().map(|(_, addr)| *addr).collect();
        let medians = phase_medians(&addrs, protocol, rounds);
        println!(
            "\n# {} logins to a back end {} ms away each way ({} ms round trip), one client, {rounds} logins per path, medians (ms), mailgate io {}\n",
            match protocol {
                Protocol::Imap => "IMAP",
                Protocol::Pop3 => "POP3",
            },
            delay_ms,
            2 * delay_ms,
            std::env::var("MAILGATE_TEST_IO").unwrap_or_else(|_| "auto".into())
        );
        println!("| path | connect | greeting | login | logout | total |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for ((name, _), m) in paths.iter().zip(&medians) {
            println!(
                "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                m[0], m[1], m[2], m[3], m[4]
            );
        }
        println!(
            "\nThe login phase before the greeting, less after: {:+.3} ms (a round trip is {} ms).",
            medians[0][2] - medians[1][2],
            2 * delay_ms
        );
    }
}
