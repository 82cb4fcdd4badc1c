//! The loadgen against its own simulated back end, directly and through a
//! real mailgate process: every scenario's summary counts, TLS, a corrupted
//! byte failing the run, the HTML report and the interval log, per-address
//! limits reached through spread source addresses, and the cluster mode's
//! VPN share.

use mailgate::simulated_backend::{Mailbox, SimulatedBackend};
use mailgate_testkit::certs::TestCa;
use mailgate_testkit::MailgateProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SIZES: &str = "2000,300000";

fn loadgen() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailgate-loadgen"))
}

/// mailgate, built by the same `cargo test --workspace` into the same folder.
fn mailgate_binary() -> PathBuf {
    let path = loadgen().with_file_name("mailgate");
    assert!(
        path.exists(),
        "{} missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn backend(corrupt: bool) -> SimulatedBackend {
    SimulatedBackend::start(Mailbox {
        password: "pw".into(),
        message_sizes: vec![2000, 300_000],
        corrupt,
        uid_validity: 1,
        ..Default::default()
    })
    .unwrap()
}

/// A mailgate process in front of `backend` (stopped when dropped).
struct Mailgate {
    process: MailgateProcess,
    _ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Mailgate {
    fn start(backend: &SimulatedBackend, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let (cert, key) = ca.self_signed_localhost();
        std::fs::write(dir.path().join("users.map"), "*  127.0.0.1\n").unwrap();
        let listen = |protocol: &str, tls: &str| {
            format!("[[listen]]\nprotocol = \"{protocol}\"\naddress = \"127.0.0.1:0\"\ntls = \"{tls}\"\n\n")
        };
        let config = format!(
            "{}{}{}{}{}[directory]\nkind = \"static\"\nmap = \"users.map\"\n\n\
             [backend]\nimap_port = {}\npop3_port = {}\n\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [runtime]\nworkers = 1\npin_workers = false\nshutdown_grace = \"1s\"\n\n{extra}",
            listen("imap", "none"),
            listen("pop3", "none"),
            listen("imap", "implicit"),
            listen("imap", "starttls"),
            listen("pop3", "starttls"),
            backend.imap.port(),
            backend.pop3.port(),
            cert.display(),
            key.display(),
        );
        let config = mailgate_testkit::config::with_test_defaults(&config);
        let process =
            MailgateProcess::start(&mailgate_binary(), dir.path(), "mailgate", &config, "info")
                .unwrap_or_else(|e| panic!("{e}"));
        Mailgate {
            process,
            _ca: ca,
            _dir: dir,
        }
    }

    /// The `n`-th listener of that name in config order (`imap` 0: plain, 1: implicit, 2: STARTTLS).
    fn addr(&self, name: &str, n: usize) -> String {
        let listeners = &self.process.ready.listeners;
        listeners
            .iter()
            .filter(|(p, _)| p == name)
            .nth(n)
            .unwrap_or_else(|| panic!("no {name} #{n} in {listeners:?}"))
            .1
            .to_string()
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(loadgen())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mailgate-loadgen")
}

/// Runs a scenario with `--json` and returns its summary (the run must succeed).
fn summary(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--json", "--quiet"]);
    let out = run(&all);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

fn count(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

fn all_ok(v: &Value, n: u64) {
    assert_eq!(
        (count(v, "attempted"), count(v, "ok"), count(v, "errors")),
        (n, n, 0),
        "{v}"
    );
}

#[test]
fn logins_closed_and_open_loop_directly_and_through_mailgate() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "");
    let direct = be.imap.to_string();
    let proxied = mg.addr("imap", 0);
    for target in [&direct, &proxied] {
        let v = summary(&[
            "logins",
            "--target",
            target,
            "--count",
            "40",
            "--clients",
            "4",
            "--duration",
            "60s",
        ]);
        all_ok(&v, 40);
        let v = summary(&[
            "logins",
            "--target",
            target,
            "--count",
            "30",
            "--rate",
            "300",
            "--duration",
            "60s",
        ]);
        all_ok(&v, 30);
        assert!(v["load"].as_str().unwrap().contains("open loop"), "{v}");
    }
    let pop3 = mg.addr("pop3", 0);
    let v = summary(&[
        "logins",
        "--target",
        &pop3,
        "--protocol",
        "pop3",
        "--count",
        "20",
    ]);
    all_ok(&v, 20);
}

#[test]
fn bearer_and_plain_mechanisms_log_in_directly_and_through_mailgate() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "[oauth]\n");
    for (protocol, target) in [
        ("imap", be.imap.to_string()),
        ("imap", mg.addr("imap", 0)),
        ("pop3", be.pop3.to_string()),
        ("pop3", mg.addr("pop3", 0)),
    ] {
        for mechanism in ["plain", "oauthbearer", "xoauth2"] {
            let v = summary(&[
                "logins",
                "--target",
                &target,
                "--protocol",
                protocol,
                "--mechanism",
                mechanism,
                "--count",
                "10",
                "--duration",
                "60s",
            ]);
            all_ok(&v, 10);
        }
    }
    // A wrong token: the error exchange is answered and the login fails.
    let v = summary(&[
        "logins",
        "--target",
        &mg.addr("imap", 0),
        "--mechanism",
        "oauthbearer",
        "--password",
        "wrong",
        "--count",
        "3",
        "--duration",
        "60s",
    ]);
    assert_eq!((count(&v, "ok"), count(&v, "errors")), (0, 3), "{v}");
}

#[test]
fn fetch_and_retr_check_every_body_directly_and_through_mailgate() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "");
    for (scenario, target) in [
        ("fetch", be.imap.to_string()),
        ("fetch", mg.addr("imap", 0)),
        ("retr", be.pop3.to_string()),
        ("retr", mg.addr("pop3", 0)),
    ] {
        let v = summary(&[
            scenario,
            "--target",
            &target,
            "--sizes",
            SIZES,
            "--clients",
            "2",
            "--count",
            "20",
            "--duration",
            "60s",
        ]);
        all_ok(&v, 20);
        assert_eq!(
            count(&v, "bytes"),
            10 * 2000 + 10 * 300_000,
            "{scenario} {target}: {v}"
        );
    }
}

#[test]
fn idle_sessions_stay_up_directly_and_through_mailgate() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "");
    for (target, protocol) in [
        (be.imap.to_string(), "imap"),
        (mg.addr("imap", 0), "imap"),
        (mg.addr("pop3", 0), "pop3"),
    ] {
        let v = summary(&[
            "idle",
            "--target",
            &target,
            "--protocol",
            protocol,
            "--sessions",
            "30",
            "--duration",
            "1500ms",
        ]);
        all_ok(&v, 30);
        assert_eq!(v["counts"]["stayed_up"], 30, "{v}");
        assert_eq!(v["counts"]["sessions_up_peak"], 30, "{v}");
    }
}

#[test]
fn mix_runs_all_three_populations() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "");
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("mix.toml");
    std::fs::write(
        &profile,
        "[idle]\nclients = 5\n[pollers]\nclients = 4\ninterval = \"500ms\"\n\
         [webmail]\nbursts_per_second = 10\nsessions_per_burst = 2\n\
         [messages]\nsizes = [2000, 300000]\nweights = [3, 1]\n",
    )
    .unwrap();
    let v = summary(&[
        "mix",
        "--target",
        &mg.addr("imap", 0),
        "--pop3-target",
        &mg.addr("pop3", 0),
        "--profile",
        profile.to_str().unwrap(),
        "--duration",
        "2s",
    ]);
    assert_eq!(count(&v, "errors"), 0, "{v}");
    assert_eq!(v["counts"]["stayed_up"], 5, "{v}");
    assert!(v["counts"]["polls"].as_i64().unwrap() >= 8, "{v}");
    assert!(
        v["counts"]["webmail_sessions"].as_i64().unwrap() >= 30,
        "{v}"
    );
}

#[test]
fn tls_clients_implicit_starttls_and_stls() {
    let be = backend(false);
    let mg = Mailgate::start(&be, "");
    for (target, protocol, tls) in [
        (mg.addr("imap", 1), "imap", "implicit"),
        (mg.addr("imap", 2), "imap", "starttls"),
        (mg.addr("pop3", 1), "pop3", "starttls"),
    ] {
        let v = summary(&[
            "logins",
            "--target",
            &target,
            "--protocol",
            protocol,
            "--tls",
            tls,
            "--insecure",
            "--count",
            "10",
        ]);
        all_ok(&v, 10);
    }
    let v = summary(&[
        "fetch",
        "--target",
        &mg.addr("imap", 1),
        "--tls",
        "implicit",
        "--insecure",
        "--sizes",
        SIZES,
        "--count",
        "6",
    ]);
    all_ok(&v, 6);
    // Without --insecure the self-signed certificate is refused.
    let v = summary(&[
        "logins",
        "--target",
        &mg.addr("imap", 1),
        "--tls",
        "implicit",
        "--count",
        "2",
    ]);
    assert_eq!(v["errors_by_kind"]["tls"], 2, "{v}");
}

#[test]
fn a_flipped_byte_fails_the_run_directly_and_through_mailgate() {
    let be = backend(true);
    let mg = Mailgate::start(&be, "");
    for (scenario, target) in [
        ("fetch", be.imap.to_string()),
        ("fetch", mg.addr("imap", 0)),
        ("retr", mg.addr("pop3", 0)),
    ] {
        let out = run(&[
            scenario, "--target", &target, "--sizes", SIZES, "--count", "4", "--json", "--quiet",
        ]);
        assert!(!out.status.success(), "{scenario} via {target} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("differed"), "{stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["errors_by_kind"]["mismatch"], 4, "{v}");
    }
}

#[test]
fn report_and_interval_log_are_written() {
    let be = backend(false);
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let hlog = dir.path().join("run.hlog");
    let v = summary(&[
        "logins",
        "--target",
        &be.imap.to_string(),
        "--duration",
        "1500ms",
        "--report",
        html.to_str().unwrap(),
        "--hlog",
        hlog.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3, "three inline charts");
    for caption in [
        "Latency by percentile",
        "Throughput over time",
        "Errors by kind",
    ] {
        assert!(page.contains(caption), "{caption}");
    }
    assert_eq!(
        hlog_total(&hlog),
        count(&v, "ok"),
        "the interval log holds every login"
    );
}

fn hlog_total(path: &Path) -> u64 {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let text = std::fs::read(path).unwrap();
    let mut total = 0;
    for entry in IntervalLogIterator::new(&text) {
        if let Ok(LogEntry::Interval(h)) = entry {
            let bytes = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                h.encoded_histogram(),
            )
            .unwrap();
            let hist: hdrhistogram::Histogram<u64> = Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap();
            total += hist.len();
        }
    }
    total
}

#[test]
fn spread_source_addresses_meet_the_per_address_limit() {
    let be = backend(false);
    let mg = Mailgate::start(
        &be,
        "[limits]\nmax_failures_per_address = 2\nmax_auth_failures = 10\n",
    );
    let v = summary(&[
        "logins",
        "--target",
        &mg.addr("imap", 0),
        "--password",
        "wrong",
        "--source-addresses",
        "3",
        "--clients",
        "1",
        "--count",
        "12",
    ]);
    // Each of the 3 addresses: 2 rejected logins, then refused by the limit.
    assert_eq!(v["errors_by_kind"]["login_rejected"], 6, "{v}");
    assert_eq!(v["errors_by_kind"]["unavailable"], 6, "{v}");
}

#[test]
fn cluster_of_three_boxes_sends_two_thirds_over_the_vpn() {
    let out = run(&[
        "cluster",
        "--boxes",
        "3",
        "--users",
        "90",
        "--sessions",
        "300",
        "--clients",
        "6",
        "--message-size",
        "50000",
        "--mailgate",
        mailgate_binary().to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(count(&v, "sessions_ok"), 300, "{v}");
    let share = v["vpn_share"].as_f64().unwrap();
    assert!((share - 2.0 / 3.0).abs() < 0.08, "VPN share {share}: {v}");
    let client = v["client_remote_share"].as_f64().unwrap();
    assert!(
        (client - share).abs() < 0.02,
        "clients {client} vs mailgate {share}"
    );
    assert!(v["projection"]["proxy_vpn_mbit_avg"].as_f64().unwrap() > 0.0);
    assert_eq!(v["projection"]["per_box_vpn_mbit_avg"], 0.0);
}

/// `cluster --corpus --compress compare`: the same sessions through
/// uncompressed and compressed back-end legs (the simulated back ends speak
/// COMPRESS=DEFLATE); every corpus message arrives byte-exact both ways
/// (the run fails on a differing byte), the compressed phase sends fewer
/// VPN bytes than it carries, the uncompressed one exactly what it carries.
#[test]
fn cluster_compares_compressed_and_plain_legs_on_the_corpus() {
    let out = run(&[
        "cluster",
        "--boxes",
        "3",
        "--users",
        "30",
        "--sessions",
        "60",
        "--clients",
        "4",
        "--fetches-per-session",
        "3",
        "--corpus",
        "--corpus-messages",
        "40",
        "--compress",
        "compare",
        "--mailgate",
        mailgate_binary().to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let phases = v["compression"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{v}");
    let (off, deflate) = (&phases[0], &phases[1]);
    assert_eq!(off["compress"], "off");
    assert_eq!(deflate["compress"], "deflate");
    for p in phases {
        assert_eq!(count(p, "sessions_ok"), 60, "{v}");
        assert!(p["vpn_plain_bytes"].as_u64().unwrap() > 0, "{v}");
        assert!(p["small_fetch_p99_ms"].as_f64().unwrap() > 0.0, "{v}");
    }
    assert_eq!(off["vpn_wire_bytes"], off["vpn_plain_bytes"], "{v}");
    let ratio = deflate["vpn_wire_ratio"].as_f64().unwrap();
    assert!(ratio < 0.95, "compressed legs carry fewer bytes: {ratio}");
    assert!(
        deflate["projection"]["proxy_vpn_mbit_avg"]
            .as_f64()
            .unwrap()
            < off["projection"]["proxy_vpn_mbit_avg"].as_f64().unwrap()
    );
    assert!(v["corpus"].as_str().unwrap().contains("40 messages"), "{v}");
}

/// `cluster --moves`: a real slapd with content sync behind three front
/// ends; each move follows the runbook (hold, final sync, new host) while
/// the workload runs.
fn cluster_with_moves(extra: &[&str]) -> Output {
    let mut args = vec![
        "cluster",
        "--boxes",
        "3",
        "--users",
        "30",
        "--sessions",
        "150",
        "--clients",
        "4",
        "--message-size",
        "20000",
        "--directory",
        "ldap",
        "--mailgate",
    ];
    let binary = mailgate_binary();
    args.push(binary.to_str().unwrap());
    args.extend_from_slice(extra);
    args.push("--json");
    run(&args)
}

#[test]
fn cluster_moves_lose_nothing_with_the_watch() {
    let out = cluster_with_moves(&["--moves", "6", "--ttl", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(count(&v, "sessions_ok"), 150, "{v}");
    let m = &v["moves"];
    assert_eq!(m["moves"], 6, "{v}");
    assert_eq!(m["old_box_logins_after_hold"], 0, "{v}");
    assert_eq!(m["sessions_ended"], 6, "{v}");
    assert_eq!(m["sessions_left_on_old_box"], 0, "{v}");
    for front in m["reroute"].as_array().unwrap() {
        assert_eq!(
            front["count"], 6,
            "every front end followed every move: {v}"
        );
    }
    assert_eq!(
        v["ldap"]["watch_searches"], 3,
        "one watch per front end: {v}"
    );
}

#[test]
fn cluster_moves_without_the_watch_are_caught_by_the_check() {
    // Routes cached for an hour and no watch: the front ends keep sending
    // the mover to the old box, and the run says so.
    let out = cluster_with_moves(&[
        "--moves",
        "1",
        "--move-mode",
        "direct",
        "--watch",
        "false",
        "--ttl",
        "1h",
    ]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["moves"]["sessions_left_on_old_box"], 1, "{v}");
    assert!(v["moves"]["probe_timeouts"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mailbox moves lost track"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
