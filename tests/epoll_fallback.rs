//! Where io_uring is blocked — here by a seccomp filter installed in the
//! child before exec, which makes `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` fail with EPERM like Docker's default profile —
//! `io = "auto"` serves IMAP and POP3 on epoll after one warning that names
//! the cause and the fix, `io = "uring"` refuses to start with that message,
//! and the demo runs.

mod support;

use mailgate::check_client::{ImapClient, Pop3Client};
use mailgate_testkit::seccomp::deny_io_uring;
use mailgate_testkit::MailgateProcess;
use std::process::Command;
use std::time::Duration;
use support::stack::*;

/// The Dovecot stack's config with `io` set, started under the filter.
fn start_without_io_uring(
    stack: &Stack,
    io: &str,
    dir: &tempfile::TempDir,
) -> Result<MailgateProcess, mailgate_testkit::StartError> {
    std::fs::write(dir.path().join("users.map"), "*@example.org 127.0.0.1\n").unwrap();
    let config = support::mailgate::config(
        stack.dovecot.imap.port(),
        stack.dovecot.pop3.port(),
        "",
        &format!("io = \"{io}\"\n[admin]\naddress = \"127.0.0.1:0\"\n"),
    );
    let config = mailgate_testkit::config::with_test_defaults(&config);
    MailgateProcess::start_configured(
        &support::Mailgate::binary(),
        dir.path(),
        "filtered",
        &config,
        "info",
        deny_io_uring,
    )
}

#[test]
fn auto_serves_imap_and_pop3_on_epoll_where_io_uring_is_blocked() {
    let stack = Stack::start("");
    let dir = tempfile::tempdir().unwrap();
    let mg = start_without_io_uring(&stack, "auto", &dir).unwrap_or_else(|e| panic!("{e}"));
    let log = mg
        .wait_for_log("running on epoll", Duration::from_secs(5))
        .expect("the fallback is logged");
    assert!(
        log.contains("io_uring cannot be set up (Operation not permitted")
            && log.contains("io_uring_setup, io_uring_enter and io_uring_register"),
        "{log}"
    );
    assert_eq!(log.matches("running on epoll").count(), 1, "one warning");
    assert!(
        log.contains("io=\"epoll\""),
        "the listening lines say so:\n{log}"
    );
    let mut imap = ImapClient::connect(mg.addr(0)).unwrap();
    assert!(imap.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert_eq!(
        imap.fetch_message(3).unwrap(),
        alice_messages()[2],
        "5 MiB, byte-exact"
    );
    let mut pop3 = Pop3Client::connect(mg.addr(1)).unwrap();
    assert!(pop3.login(BOB, BOB_PW).unwrap().starts_with("+OK"));
    let metrics = mg
        .admin(None)
        .run(&mailgate_testkit::admin::Action::Metrics)
        .unwrap()
        .body;
    assert!(metrics.contains("io=\"epoll\"} 1"), "{metrics}");
}

#[test]
fn uring_refuses_to_start_where_io_uring_is_blocked() {
    let stack = Stack::start("");
    let dir = tempfile::tempdir().unwrap();
    match start_without_io_uring(&stack, "uring", &dir) {
        Ok(_) => panic!("started without io_uring"),
        Err(mailgate_testkit::StartError::Exited { status, log }) => {
            assert!(!status.success());
            assert!(
                log.contains("cannot set up io_uring: Operation not permitted")
                    && log.contains("seccomp"),
                "{log}"
            );
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_demo_runs_where_io_uring_is_blocked() {
    let mut demo = Command::new(support::Mailgate::binary());
    demo.args(["demo", "--check"]);
    deny_io_uring(&mut demo);
    let out = demo.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("check: ok"), "{stdout}");
    assert!(stderr.contains("running on epoll"), "{stderr}");
}
