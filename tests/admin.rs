//! The admin listener after real sessions through mailgate to Dovecot:
//! `/metrics` content, kick, session list, cache invalidation, and the token.

mod support;

use mailgate::check_client::ImapClient;
use mailgate_testkit::admin::AdminClient;
use std::net::SocketAddr;
use std::time::Duration;
use support::metric;
use support::stack::*;

/// How long a log line may take to appear.
const START: Duration = Duration::from_secs(10);

const TOKEN: &str = "s3cret-admin-token";

fn stack() -> (Stack, tempfile::TempDir) {
    stack_with(2)
}

fn stack_with(workers: usize) -> (Stack, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let extra = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n[directory.cache]\nenabled = true\n",
        token_file.display()
    );
    let stack = if workers == 1 {
        Stack::start_one_worker(&extra)
    } else {
        Stack::start(&extra)
    };
    (stack, dir)
}

fn http(admin: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let answer = AdminClient::new(admin, token.map(str::to_owned))
        .request(method, path)
        .unwrap();
    (answer.status, answer.body)
}

/// Every sample line is `name{labels} value` with a float value; every
/// family has HELP and TYPE (the text format 0.0.4).
fn assert_exposition_format(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            typed.contains(name) || typed.contains(family),
            "no TYPE for {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels {line:?}"
            );
        }
    }
}

#[test]
fn metrics_count_what_the_sessions_did() {
    let (stack, _dir) = stack();
    let admin = stack.mailgate.addr(2);
    let mut received = 0u64;
    for _ in 0..3 {
        let mut c = ImapClient::connect(stack.imap()).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
        received += c.fetch_message(2).unwrap().len() as u64;
        c.logout().unwrap();
    }
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert_eq!(c.login(ALICE, "wrong").unwrap().status, "NO");
    drop(c);
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert_eq!(c.command("FROB").unwrap().status, "BAD");
    assert_eq!(
        c.login("nobody@elsewhere.invalid", "x").unwrap().status,
        "NO"
    );
    drop(c);
    stack.mailgate.wait_for_session_ends("imap", 5);
    let (status, text) = http(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert_exposition_format(&text);
    // And a real exposition-format parser accepts it, with typed families.
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let ok_logins = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "mailgate_logins_total"
                && s.labels.get("outcome") == Some("ok")
                && s.labels.get("protocol") == Some("imap")
        })
        .expect("login counter");
    assert!(
        matches!(ok_logins.value, prometheus_parse::Value::Counter(v) if v == 3.0),
        "{:?}",
        ok_logins.value
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "mailgate_login_duration_seconds"
            && matches!(s.value, prometheus_parse::Value::Histogram(_))));
    let hits = metric(
        &text,
        "mailgate_phase_duration_seconds_count{phase=\"directory_cache_hit\"}",
    );
    let misses = metric(
        &text,
        "mailgate_phase_duration_seconds_count{phase=\"directory_cache_miss\"}",
    );
    assert_eq!(
        hits + misses,
        5.0,
        "every login looked up through the cache"
    );
    assert!(
        (2.0..=3.0).contains(&misses),
        "one miss for the unknown user, one for alice per worker at most: {misses}"
    );
    for phase in ["backend_connect", "backend_login"] {
        let count = metric(
            &text,
            &format!("mailgate_phase_duration_seconds_count{{phase=\"{phase}\"}}"),
        );
        assert_eq!(count, 4.0, "{phase}: 3 good logins and 1 bad one");
    }
    assert_eq!(
        metric(
            &text,
            "mailgate_logins_total{protocol=\"imap\",outcome=\"ok\"}"
        ),
        3.0
    );
    for (outcome, expected) in [
        ("bad_password", 1.0),
        ("unknown_user", 1.0),
        ("protocol_error", 1.0),
        ("rate_limited", 0.0),
        ("backend_unavailable", 0.0),
        ("directory_unavailable", 0.0),
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("mailgate_logins_total{{protocol=\"imap\",outcome=\"{outcome}\"}}")
            ),
            expected,
            "{outcome}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "mailgate_login_duration_seconds_count{protocol=\"imap\"}"
        ),
        3.0
    );
    // Series carry the listener: all of these went to the plaintext IMAP one.
    assert_eq!(
        metric(
            &text,
            &format!(
                "mailgate_logins_total{{listener=\"{}\",outcome=\"ok\"}}",
                stack.imap()
            )
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "mailgate_login_duration_seconds_bucket{protocol=\"imap\",le=\"+Inf\"}"
        ),
        3.0
    );
    let backend = format!("127.0.0.1:{}", stack.dovecot.imap.port());
    let to_client = metric(
        &text,
        &format!("mailgate_backend_bytes_total{{backend=\"{backend}\",direction=\"to_client\"}}"),
    );
    assert!(to_client >= received as f64, "{to_client} < {received}");
    assert!(
        metric(&text, "mailgate_relay_bytes_total{method=\"splice\"}") >= received as f64,
        "{}",
        stack.mailgate.log()
    );
    assert_eq!(metric(&text, "mailgate_sessions{phase=\"relaying\"}"), 0.0);
    let (status, _) = http(admin, "GET", "/healthz", None);
    assert_eq!(status, 200);
}

#[test]
fn kick_closes_only_that_users_sessions_and_needs_the_token() {
    let (stack, _dir) = stack();
    let admin = stack.mailgate.addr(2);
    let mut alice = ImapClient::connect(stack.imap()).unwrap();
    assert!(alice.login(ALICE, ALICE_PW).unwrap().is_ok());
    let mut bob = ImapClient::connect(stack.imap()).unwrap();
    assert!(bob.login(BOB, BOB_PW).unwrap().is_ok());
    assert!(alice.command("SELECT INBOX").unwrap().is_ok());

    assert_eq!(
        http(
            admin,
            "POST",
            "/sessions/kick?user=alice%40example.org",
            None
        )
        .0,
        401
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/sessions/kick?user=alice%40example.org",
            Some("wrong")
        )
        .0,
        401
    );
    let (status, body) = http(
        admin,
        "GET",
        "/sessions?user=bob%40example.org",
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    assert!(
        body.contains("\"bob@example.org\"") && !body.contains("alice"),
        "{body}"
    );

    let (status, body) = http(
        admin,
        "POST",
        "/sessions/kick?user=alice%40example.org",
        Some(TOKEN),
    );
    assert_eq!((status, body.as_str()), (200, "kicked 1\n"));
    assert!(alice.command("NOOP").is_err(), "alice's session is closed");
    assert!(
        bob.command("NOOP").unwrap().is_ok(),
        "bob's session is untouched"
    );
}

#[test]
fn invalidation_makes_the_next_login_ask_the_directory_again() {
    let (stack, _dir) = stack_with(1);
    let admin = stack.mailgate.addr(2);
    let misses = || {
        metric(
            &http(admin, "GET", "/metrics", None).1,
            "mailgate_directory_cache_total{result=\"miss\"}",
        )
    };
    let login = || {
        let mut c = ImapClient::connect(stack.imap()).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    };
    login();
    login();
    login();
    let before = misses();
    assert_eq!(
        before, 1.0,
        "one worker, one cache: one miss for three logins"
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/cache/invalidate?user=alice%40example.org",
            None
        )
        .0,
        401
    );
    assert_eq!(
        http(
            admin,
            "POST",
            "/cache/invalidate?user=alice%40example.org",
            Some(TOKEN)
        )
        .0,
        200
    );
    login();
    assert_eq!(misses(), before + 1.0);
    login();
    assert_eq!(misses(), before + 1.0, "cached again");
}

#[test]
fn the_admin_subcommand_wraps_the_endpoints() {
    let (stack, dir) = stack();
    let admin = stack.mailgate.addr(2).to_string();
    let token = dir.path().join("admin.token");
    let run = |args: &[&str]| {
        std::process::Command::new(support::Mailgate::binary())
            .args([
                "admin",
                "--address",
                &admin,
                "--token-file",
                token.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["metrics"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("mailgate_logins_total")
    );
    let out = run(&["kick", ALICE]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kicked 0\n");
    assert!(run(&["invalidate", ALICE]).status.success());
    let no_token = std::process::Command::new(support::Mailgate::binary())
        .args(["admin", "--address", &admin, "kick", ALICE])
        .output()
        .unwrap();
    assert!(!no_token.status.success(), "refused without the token");
}

#[test]
fn hlog_holds_the_login_latencies_readable_by_hdrhistogram() {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let dir = tempfile::tempdir().unwrap();
    let hlog = dir.path().join("latency.hlog");
    let extra = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\nhlog = \"{}\"\nhlog_interval = \"200ms\"\n",
        hlog.display()
    );
    let stack = Stack::start(&extra);
    for _ in 0..5 {
        let mut c = ImapClient::connect(stack.imap()).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    }
    // Wait (bounded) until the intervals holding the 5 logins are written.
    let count_logins = || -> u64 {
        let bytes = std::fs::read(&hlog).unwrap_or_default();
        let mut total = 0;
        for entry in IntervalLogIterator::new(&bytes) {
            if let Ok(LogEntry::Interval(h)) = entry {
                if h.tag().map(|t| t.as_str().to_owned()) == Some("login_us.imap".into()) {
                    let raw = base64_decode(h.encoded_histogram());
                    let histogram: hdrhistogram::Histogram<u64> = Deserializer::new()
                        .deserialize(&mut raw.as_slice())
                        .unwrap();
                    total += histogram.len();
                }
            }
        }
        total
    };
    let start = std::time::Instant::now();
    while count_logins() < 5 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(count_logins(), 5);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn readyz_fails_while_the_directory_is_unreachable_and_the_cache_is_cold() {
    let closed = support::closed_port_held();
    let config = support::mailgate::config(1, 1, "", "[admin]\naddress = \"127.0.0.1:0\"\n")
        .replace(
            "kind = \"static\"\nmap = \"users.map\"\n",
            &format!("kind = \"ldap\"\nurl = \"ldap://127.0.0.1:{closed}/dc=x?mail,host?sub?(mail=%s)\"\ntimeout = \"1s\"\n"),
        )
        .replace("workers = 2", "workers = 1");
    let mg = support::Mailgate::start(&config, "");
    let admin = mg.addr(2);
    assert_eq!(
        http(admin, "GET", "/readyz", None).0,
        200,
        "no lookup failed yet"
    );
    let mut c = ImapClient::connect(mg.addr(0)).unwrap();
    let r = c.login(ALICE, ALICE_PW).unwrap();
    assert!(r.text.starts_with("[UNAVAILABLE]"), "{}", r.text);
    assert_eq!(http(admin, "GET", "/readyz", None).0, 503);
    assert_eq!(
        http(admin, "GET", "/healthz", None).0,
        200,
        "alive all the same"
    );
}

#[test]
fn failed_logins_from_one_address_are_rate_limited_before_the_back_end() {
    let stack = Stack::start_one_worker(
        "[admin]\naddress = \"127.0.0.1:0\"\n[limits]\nmax_failures_per_address = 2\nfailure_window = \"10m\"\n",
    );
    let admin = stack.mailgate.addr(2);
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert_eq!(c.login(ALICE, "wrong").unwrap().status, "NO");
    assert_eq!(
        c.login("nobody@elsewhere.invalid", "x").unwrap().status,
        "NO"
    );
    drop(c);
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let refused = c.login(ALICE, ALICE_PW).unwrap();
    assert_eq!(refused.status, "NO");
    assert!(
        refused.text.starts_with("[UNAVAILABLE]"),
        "a temporary failure, even with the right password: {}",
        refused.text
    );
    drop(c);
    let mut p = mailgate::check_client::Pop3Client::connect(stack.pop3()).unwrap();
    let status = p.login(ALICE, ALICE_PW).unwrap();
    assert!(status.starts_with("-ERR [SYS/TEMP]"), "{status}");
    drop(p);
    stack.mailgate.wait_for_session_ends("imap", 2);
    stack.mailgate.wait_for_session_ends("pop3", 1);
    let (_, text) = http(admin, "GET", "/metrics", None);
    for (protocol, outcome, expected) in [
        ("imap", "bad_password", 1.0),
        ("imap", "unknown_user", 1.0),
        ("imap", "rate_limited", 1.0),
        ("pop3", "rate_limited", 1.0),
        ("imap", "ok", 0.0),
        ("pop3", "ok", 0.0),
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("mailgate_logins_total{{protocol=\"{protocol}\",outcome=\"{outcome}\"}}")
            ),
            expected,
            "{protocol} {outcome}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "mailgate_phase_duration_seconds_count{phase=\"backend_login\"}"
        ),
        1.0,
        "only the wrong password reached the back end"
    );
}

#[test]
fn metrics_off_records_nothing_but_admin_actions_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let stack = Stack::start_one_worker(&format!(
        "[admin]\naddress = \"127.0.0.1:0\"\nmetrics = false\ntoken_file = \"{}\"\n",
        token_file.display()
    ));
    let admin = stack.mailgate.addr(2);
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    let (status, body) = http(
        admin,
        "GET",
        "/sessions?user=alice%40example.org",
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    assert!(body.contains("alice@example.org"), "{body}");
    c.logout().unwrap();
    drop(c);
    stack.mailgate.wait_for_session_ends("imap", 1);
    let (status, text) = http(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        !text.lines().any(|l| l.starts_with("mailgate_logins_total{")
            || l.starts_with("mailgate_session_duration_seconds_count{")),
        "nothing recorded:\n{text}"
    );
}

#[test]
fn without_a_token_file_actions_are_off_and_the_log_says_so() {
    let stack = Stack::start_one_worker("[admin]\naddress = \"127.0.0.1:0\"\n");
    let admin = stack.mailgate.addr(2);
    stack.mailgate.wait_for_log(
        "admin actions (kick, invalidate, session list) are off",
        START,
    );
    for (method, path) in [
        ("POST", "/sessions/kick?user=alice%40example.org"),
        ("POST", "/cache/invalidate?user=alice%40example.org"),
        ("GET", "/sessions"),
    ] {
        let (status, body) = http(admin, method, path, Some("anything"));
        assert_eq!(status, 403, "{path}: {body}");
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(http(admin, "GET", path, None).0, 200, "{path} stays open");
    }
}

#[test]
fn a_slow_admin_client_does_not_stall_the_others() {
    let (stack, _dir) = stack_with(1);
    let admin = stack.mailgate.addr(2);
    // Half a request head, then silence: the listener must go on serving.
    let mut stalled = std::net::TcpStream::connect(admin).unwrap();
    std::io::Write::write_all(&mut stalled, b"GET /metr").unwrap();
    for _ in 0..3 {
        assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    }
    // The stalled request is closed at the request deadline.
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stalled, &mut rest);
    assert!(rest.is_empty() || !String::from_utf8_lossy(&rest).contains("200 OK"));
}
