//! The usual fixture: Dovecot with two users, mailgate in front of it.

use super::recorder::Recorder;
use super::{closed_port, Dovecot, Mailgate, TestUser};
use mailgate::simulated_backend::message;
use std::time::Duration;

/// Alice: an ordinary password; three messages, the last one 5 MiB.
pub const ALICE: &str = "alice@example.org";
/// Alice's password.
pub const ALICE_PW: &str = "alice-pw";
/// Bob: a password that needs quoting and is not ASCII.
pub const BOB: &str = "bob@example.org";
/// Bob's password.
pub const BOB_PW: &str = "s3cr et\"\\é";
/// Carol: in the directory tests only.
pub const CAROL: &str = "carol@example.org";
/// Carol's password.
pub const CAROL_PW: &str = "carol-pw";
/// A user whose back end does not listen.
pub const GHOST: &str = "ghost@down.example";
/// Alice's message sizes.
pub const ALICE_SIZES: [usize; 3] = [1_500, 70_000, 5 * 1024 * 1024];

/// Alice's messages as stored.
pub fn alice_messages() -> Vec<Vec<u8>> {
    ALICE_SIZES
        .iter()
        .enumerate()
        .map(|(i, &s)| message(i + 1, s))
        .collect()
}

/// Alice, Bob (no messages) and Carol, as the directory tests' Dovecot
/// holds them.
pub fn directory_users() -> Vec<TestUser> {
    [
        (ALICE, ALICE_PW, alice_messages()),
        (BOB, BOB_PW, vec![]),
        (CAROL, CAROL_PW, vec![]),
    ]
    .into_iter()
    .map(|(name, password, messages)| TestUser {
        name: name.into(),
        password: password.into(),
        messages,
    })
    .collect()
}

/// Dovecot with Alice only and no mail, trusting loopback's clients to say
/// who the client is (`ID x-originating-ip`, `XCLIENT`); one of its
/// listeners (IMAP or POP3) behind a recorder that connects only once
/// mailgate has spoken, or after 2 s (a login that waits for the greeting
/// waits those 2 s), and notes which happened.
pub struct BehindARecorder {
    /// The back end.
    pub dovecot: Dovecot,
    /// Between mailgate and `dovecot`'s listener.
    pub recorder: Recorder,
    pop3: bool,
}

impl BehindARecorder {
    /// With the recorder before Dovecot's POP3 listener if `pop3`, else
    /// before its IMAP one.
    pub fn start(pop3: bool) -> Self {
        let alice = TestUser {
            name: ALICE.into(),
            password: ALICE_PW.into(),
            messages: vec![],
        };
        let dovecot = Dovecot::start_with(&[alice], "login_trusted_networks = 127.0.0.1/32\n");
        let port = if pop3 { &dovecot.pop3 } else { &dovecot.imap }.port();
        let recorder = Recorder::noting_who_speaks_first(port, Duration::from_secs(2));
        Self {
            dovecot,
            recorder,
            pop3,
        }
    }

    /// mailgate with `backend` settings, everyone routed to the recorder
    /// (or Dovecot, for the other protocol), and one worker: one memory, so
    /// every login after the first meets what it learned.
    pub fn mailgate(&self, backend: &str) -> Mailgate {
        let (imap, pop3) = match self.pop3 {
            true => (self.dovecot.imap.port(), self.recorder.port),
            false => (self.recorder.port, self.dovecot.pop3.port()),
        };
        let config =
            super::mailgate::config(imap, pop3, backend, "").replace("workers = 2", "workers = 1");
        Mailgate::start(&config, "*@example.org 127.0.0.1\n")
    }
}

/// curl as Alice from `source` (a loopback address) to `url`: whether it
/// succeeded, and what it said on its standard error.
pub fn curl_as_alice_from(source: &str, url: &str) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--interface", source, url, "-u"])
        .arg(format!("{ALICE}:{ALICE_PW}"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), said)
}

/// Dovecot plus mailgate (IMAP listener 0, POP3 listener 1).
pub struct Stack {
    /// Listener 0 is IMAP, 1 is POP3.
    pub mailgate: Mailgate,
    /// The back end.
    pub dovecot: Dovecot,
    /// Holds GHOST's back-end port closed.
    _down: socket2::Socket,
}

impl Stack {
    /// Starts both; `extra` is appended to mailgate's config.
    pub fn start(extra: &str) -> Self {
        Self::start_with("", extra)
    }

    /// Starts both; `backend` is added to `[backend]`, `extra` appended.
    pub fn start_with(backend: &str, extra: &str) -> Self {
        Self::start_full(backend, extra, "")
    }

    /// Like `start`, with a single worker (one cache: exact cache counts).
    pub fn start_one_worker(extra: &str) -> Self {
        Self::start_workers(1, "", extra, "")
    }

    /// Like `start_with`, with `dovecot_extra` appended to dovecot.conf.
    pub fn start_full(backend: &str, extra: &str, dovecot_extra: &str) -> Self {
        Self::start_workers(2, backend, extra, dovecot_extra)
    }

    /// Dovecot and mailgate with `workers` workers.
    pub fn start_workers(workers: usize, backend: &str, extra: &str, dovecot_extra: &str) -> Self {
        let dovecot = Dovecot::start_with(
            &[
                TestUser {
                    name: ALICE.into(),
                    password: ALICE_PW.into(),
                    messages: alice_messages(),
                },
                TestUser {
                    name: BOB.into(),
                    password: BOB_PW.into(),
                    messages: vec![message(7, 900)],
                },
            ],
            dovecot_extra,
        );
        let (down, down_port) = closed_port();
        let map = format!("*@example.org  127.0.0.1\n{GHOST}  127.0.0.1:{down_port}\n");
        let config =
            super::mailgate::config(dovecot.imap.port(), dovecot.pop3.port(), backend, extra)
                .replace("workers = 2", &format!("workers = {workers}"));
        let mailgate = Mailgate::start(&config, &map);
        Self {
            mailgate,
            dovecot,
            _down: down,
        }
    }

    /// mailgate's IMAP address.
    pub fn imap(&self) -> std::net::SocketAddr {
        self.mailgate.addr(0)
    }

    /// mailgate's POP3 address.
    pub fn pop3(&self) -> std::net::SocketAddr {
        self.mailgate.addr(1)
    }
}
