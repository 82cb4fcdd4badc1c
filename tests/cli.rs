//! The `mailgate` command line: check-config, demo, start-up errors, and
//! graceful shutdown on SIGTERM.

mod support;

use mailgate::check_client::ImapClient;
use std::process::Command;
use std::time::Duration;
use support::{stack::*, Mailgate};

fn mailgate(args: &[&str]) -> std::process::Output {
    Command::new(Mailgate::binary())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_a_good_file_and_points_at_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\n").unwrap();
    let good = support::mailgate::config(10143, 10110, "", "");
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let out = mailgate(&["check-config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok (2 listener(s), 1 static map entries, io "),
        "{stdout}"
    );

    let bad = good.replace("workers = 2", "workers = 2\nwrokers = 3");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, &bad).unwrap();
    let out = mailgate(&["check-config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = bad.lines().position(|l| l.starts_with("wrokers")).unwrap() + 1;
    assert!(
        err.contains("bad.toml")
            && err.contains(&format!("line {line}"))
            && err.contains("wrokers"),
        "{err}"
    );

    std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\nbroken\n").unwrap();
    let out = mailgate(&[
        "check-config",
        dir.path().join("good.toml").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("users.map:2:"));
}

#[test]
fn demo_check_runs_a_real_session_and_exits_zero() {
    let out = mailgate(&["demo", "--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("curl -s 'imap://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("check: ok"), "{stdout}");
}

#[test]
fn impossible_io_uring_setup_fails_with_a_clear_message_when_uring_is_required() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\n").unwrap();
    let config = support::mailgate::config(
        10143,
        10110,
        "",
        "ring_entries = 1000000\nio = \"uring\"\nallow_root = true\n",
    );
    let path = dir.path().join("m.toml");
    std::fs::write(&path, config).unwrap();
    let out = mailgate(&["run", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot set up io_uring") && err.contains("kernel.io_uring_disabled"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_accepting_and_lets_sessions_drain() {
    let mut stack = Stack::start("");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    let imap = stack.imap();
    // SIGTERM, without waiting for the exit.
    let pid = stack.mailgate.pid();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    stack
        .mailgate
        .wait_for_log("stopping", Duration::from_secs(10));
    // The running session keeps working during the grace period...
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    // ...while new connections are refused.
    let refused = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::net::TcpStream::connect(imap).is_err()
    });
    assert!(refused, "still accepting after SIGTERM");
    let status = stack
        .mailgate
        .wait_exit(Duration::from_secs(20))
        .expect("exits after the grace period");
    assert!(status.success(), "{status}");
}

#[test]
fn the_man_page_and_completions_name_every_command() {
    let man = mailgate(&["man"]);
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH mailgate"), "{man}");
    for command in [
        "run",
        "check\\-config",
        "import\\-perdition",
        "admin",
        "demo",
    ] {
        assert!(man.contains(command), "{command} missing from the man page");
    }
    let bash = mailgate(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.contains("_mailgate()"), "{bash}");
    for command in [
        "run",
        "check-config",
        "import-perdition",
        "admin",
        "demo",
        "completions",
    ] {
        assert!(
            bash.contains(command),
            "{command} missing from the completions"
        );
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let stack = Stack::start("\n[log]\nformat = \"json\"\n");
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    drop(c);
    stack
        .mailgate
        .wait_for_log("session end", Duration::from_secs(10));
    let log = stack.mailgate.log();
    let mut session_end = None;
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if value["fields"]["message"] == "session end" {
            session_end = Some(value);
        }
    }
    let end = session_end.expect("a session end line");
    assert_eq!(end["level"], "INFO");
    assert_eq!(end["fields"]["user"], ALICE);
    assert_eq!(end["fields"]["outcome"], "relayed");
}

/// Logs in and out as `user`; the session's `session end` line is what
/// the log should show for it.
fn login_and_logout(stack: &Stack, user: &str, password: &str) {
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    assert!(c.login(user, password).unwrap().is_ok());
    c.logout().unwrap();
}

fn session_end_of(log: &str, user: &str) -> Option<usize> {
    let field = format!("user=\"{user}\"");
    log.lines()
        .position(|l| l.contains("session end") && l.contains(&field))
}

#[test]
fn a_workers_log_lines_wait_for_their_batch_warnings_go_at_once_and_nothing_is_lost_at_stop() {
    // An interval no test outlives: a line comes out only with something
    // that is written at once, or at the stop.
    let mut stack = Stack::start_one_worker("\n[log]\nflush_interval = \"1h\"\n");
    login_and_logout(&stack, ALICE, ALICE_PW);
    // The session is over well before this; its line waits.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        session_end_of(&stack.mailgate.log(), ALICE),
        None,
        "{}",
        stack.mailgate.log()
    );
    // A warning (a back end that is down) is written at once, after the
    // line that waited before it.
    let mut c = ImapClient::connect(stack.imap()).unwrap();
    let refused = c.login(GHOST, "pw").unwrap();
    assert!(refused.text.contains("UNAVAILABLE"), "{refused:?}");
    let log = stack
        .mailgate
        .wait_for_log("login failed: temporary failure", Duration::from_secs(10));
    let warning = log
        .lines()
        .position(|l| l.contains("login failed: temporary failure"))
        .unwrap();
    let alice = session_end_of(&log, ALICE).expect("written with the warning");
    assert!(alice < warning, "in order:\n{log}");
    drop(c);
    // Another session's line waits again, and the stop writes it.
    login_and_logout(&stack, BOB, BOB_PW);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(session_end_of(&stack.mailgate.log(), BOB), None);
    let status = stack.mailgate.stop(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status}");
    let log = stack.mailgate.log();
    assert!(session_end_of(&log, BOB).is_some(), "{log}");
    assert!(log.contains(&format!("user=\"{GHOST}\"")), "{log}");
}

#[test]
fn mailgate_log_still_decides_whether_the_session_line_is_written() {
    let dovecot = support::Dovecot::start(&[support::TestUser {
        name: ALICE.into(),
        password: ALICE_PW.into(),
        messages: vec![],
    }]);
    let config = support::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), "", "");
    for (level, written) in [
        ("info,mailgate::session=warn", false),
        ("warn,mailgate::session=info", true),
    ] {
        let mut mg = Mailgate::start_with_env(&config, "*@example.org 127.0.0.1\n", level, &[]);
        let mut c = ImapClient::connect(mg.addr(0)).unwrap();
        assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
        c.logout().unwrap();
        drop(c);
        // The stop writes whatever waits.
        let status = mg.stop(Duration::from_secs(20)).expect("exits");
        assert!(status.success(), "{status}");
        let log = mg.log();
        let ends: Vec<&str> = log.lines().filter(|l| l.contains("session end")).collect();
        assert_eq!(ends.len(), usize::from(written), "{level}:\n{log}");
        if written {
            assert!(ends[0].contains(&format!("user=\"{ALICE}\"")), "{log}");
            assert!(ends[0].contains("  INFO mailgate::session: session end client="));
        }
    }
}
