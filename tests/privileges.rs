//! Root only to bind: `[runtime] user` switches every thread to that user
//! once the listeners are bound, and a process started as root without it
//! refuses to run unless `allow_root = true`. `--pid-file` names the
//! process while it runs.

mod support;

use mailgate::check_client::ImapClient;
use mailgate::runtime::privileges;
use std::process::Command;
use std::time::{Duration, Instant};
use support::stack::*;
use support::{Dovecot, Mailgate};

/// The four uids (real, effective, saved, filesystem) of every thread of
/// `pid`, from /proc.
fn thread_uids(pid: u32) -> Vec<Vec<u32>> {
    let mut all = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        all.push(
            line.split_whitespace()
                .skip(1)
                .map(|n| n.parse().unwrap())
                .collect(),
        );
    }
    all
}

fn nobody_uid() -> u32 {
    privileges::resolve("nobody", None).unwrap().uid
}

#[test]
fn root_switches_every_thread_to_the_configured_user_and_still_serves() {
    let dovecot = Dovecot::start(&directory_users());
    let config = support::mailgate::config(
        dovecot.imap.port(),
        dovecot.pop3.port(),
        "",
        "user = \"nobody\"\n",
    );
    if !privileges::is_root() {
        // Not root: the switch cannot be made and says why.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\n").unwrap();
        std::fs::write(dir.path().join("m.toml"), config).unwrap();
        let out = Command::new(Mailgate::binary())
            .args(["run", "--config"])
            .arg(dir.path().join("m.toml"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot switch to user nobody"));
        return;
    }
    let mailgate = Mailgate::start(&config, "* 127.0.0.1\n");
    mailgate.wait_for_log("switched user", Duration::from_secs(5));
    let nobody = nobody_uid();
    let uids = thread_uids(mailgate.pid());
    assert!(uids.len() > 2, "workers and helper threads: {uids:?}");
    for thread in &uids {
        assert_eq!(
            thread,
            &vec![nobody; 4],
            "a thread kept another uid: {uids:?}"
        );
    }
    // Sockets bound as root keep serving; logins and relays work as nobody.
    let mut c = ImapClient::connect(mailgate.addr(0)).unwrap();
    assert!(c.login(ALICE, ALICE_PW).unwrap().is_ok());
    assert_eq!(c.fetch_message(1).unwrap(), alice_messages()[0]);
}

#[test]
fn root_without_a_user_refuses_to_run_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\n").unwrap();
    let run = |extra: &str| {
        let config = support::mailgate::config(10143, 10110, "", extra);
        let path = dir.path().join("m.toml");
        std::fs::write(&path, config).unwrap();
        let pid_file = dir.path().join("mailgate.pid");
        let mut child = Command::new(Mailgate::binary())
            .args(["run", "--config"])
            .arg(&path)
            .arg("--pid-file")
            .arg(&pid_file)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Started: the pid file appears; refused: the process exits.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                return (Some(status), err, None);
            }
            // The file is created before the pid is written into it: a
            // line is whole once it ends in a newline.
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .filter(|pid| pid.ends_with('\n'))
            {
                let pid = pid.trim().to_owned();
                assert_eq!(pid, child.id().to_string(), "the pid file holds its pid");
                // SIGTERM (to that pid): it stops and removes its pid file.
                let status = support::terminate(&mut child, Duration::from_secs(10))
                    .expect("mailgate stops on SIGTERM");
                return (Some(status), String::new(), Some((pid, pid_file.exists())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mailgate neither started nor exited");
    };
    let (status, err, started) = run("allow_root = false\n");
    if privileges::is_root() {
        assert!(!status.unwrap().success());
        assert!(err.contains("running as root: set [runtime] user"), "{err}");
        assert!(started.is_none());
    } else {
        assert!(started.is_some(), "not root: it runs ({err})");
    }
    let (_, err, started) = run("allow_root = true\n");
    let (pid, left_behind) = started.unwrap_or_else(|| panic!("allow_root: it runs ({err})"));
    assert!(pid.parse::<u32>().is_ok(), "{pid}");
    assert!(!left_behind, "the pid file is removed at exit");
}
