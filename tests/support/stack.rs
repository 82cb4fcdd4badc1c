//! The usual fixture: Dovecot with two users, mailgate in front of it.

use super::{closed_port, Dovecot, Mailgate, TestUser};
use mailgate::simulated_backend::message;

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
