//! Logging in to a POP3 back end with the client's credentials, sans I/O.
//!
//! After the `+OK` greeting: with `pop3_auth = "auto"` ask `CAPA` and use
//! `AUTH PLAIN` with an initial response when `SASL` lists PLAIN, else
//! `USER`/`PASS`. `-ERR` replies are classified by their RFC 3206 response
//! code: `[SYS/TEMP]`/`[SYS/PERM]` → unavailable, `[IN-USE]` → in use,
//! anything else → authentication failed. Never performs I/O.

use crate::auth::{self, Secret};
use crate::config::Pop3BackendAuth;
use crate::imap::backend::printable;
use crate::login::{
    self, BackendEvent, BackendGreeting, BackendLogin, BackendOutcome, ClientAddress, LoginFailure,
    MAX_BACKEND_LINE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    /// `STLS` sent, its reply pending.
    Stls,
    /// Waiting for the driver's handshake.
    AwaitingTls,
    Capa {
        status_seen: bool,
        plain: bool,
        xclient: bool,
    },
    /// `XCLIENT` sent; then log in with PLAIN or not.
    Xclient {
        plain: bool,
    },
    AuthPlain,
    User,
    Pass,
    Done,
}

/// One POP3 back-end login exchange.
#[derive(Debug)]
pub struct Pop3BackendLogin {
    login_user: String,
    password: Secret,
    method: Pop3BackendAuth,
    step: Step,
    input: Vec<u8>,
    output: Vec<u8>,
    client: Option<ClientAddress>,
    /// The back end offered XCLIENT (Dovecot: `+OK [XCLIENT]` greeting).
    xclient_offered: bool,
    /// Upgrade the connection with STLS before logging in.
    starttls: bool,
}

impl Pop3BackendLogin {
    /// Starts a login as `login_user`.
    pub fn new(login_user: &str, password: Secret, method: Pop3BackendAuth) -> Self {
        Self {
            login_user: login_user.to_owned(),
            password,
            method,
            step: Step::Greeting,
            input: Vec::new(),
            output: Vec::new(),
            client: None,
            xclient_offered: false,
            starttls: false,
        }
    }

    /// Upgrades the connection with `STLS` (RFC 2595) before the login.
    pub fn with_starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Tells back ends that offer `XCLIENT` (Dovecot does so in its greeting,
    /// `+OK [XCLIENT]`, to its `login_trusted_networks`; others may list it in
    /// `CAPA`) where the client connected from.
    pub fn with_client_address(mut self, client: ClientAddress) -> Self {
        self.client = Some(client);
        self
    }

    fn done(&mut self, outcome: BackendOutcome) -> BackendEvent {
        self.step = Step::Done;
        BackendEvent::Done(outcome)
    }

    fn send(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.output.extend_from_slice(part);
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn after_greeting(&mut self) -> Option<BackendEvent> {
        match self.method {
            Pop3BackendAuth::Auto => {
                self.send(&[b"CAPA"]);
                self.step = Step::Capa {
                    status_seen: false,
                    plain: false,
                    xclient: false,
                };
                None
            }
            Pop3BackendAuth::Plain => self.introduce_client_then_auth(true),
            Pop3BackendAuth::User => self.introduce_client_then_auth(false),
        }
    }

    /// Sends `XCLIENT` first when offered and a client address is known.
    fn introduce_client_then_auth(&mut self, plain: bool) -> Option<BackendEvent> {
        match self.client.filter(|_| self.xclient_offered) {
            Some(client) => {
                let command = format!(
                    "XCLIENT ADDR={} PORT={}",
                    client.peer.ip(),
                    client.peer.port()
                );
                self.send(&[command.as_bytes()]);
                self.step = Step::Xclient { plain };
                None
            }
            None => self.start_auth(plain),
        }
    }

    fn start_auth(&mut self, plain: bool) -> Option<BackendEvent> {
        if plain {
            let b64 = auth::encode_plain(&self.login_user, &self.password);
            self.send(&[b"AUTH PLAIN ", b64.as_bytes()]);
            self.step = Step::AuthPlain;
            return None;
        }
        if self
            .login_user
            .bytes()
            .any(|b| b == b' ' || b == b'\r' || b == b'\n')
        {
            return Some(self.done(BackendOutcome::Rejected(LoginFailure::AuthFailed)));
        }
        let user = std::mem::take(&mut self.login_user);
        self.send(&[b"USER ", user.as_bytes()]);
        self.login_user = user;
        self.step = Step::User;
        None
    }

    fn on_line(&mut self, line: &[u8]) -> Option<BackendEvent> {
        let ok = line.starts_with(b"+OK");
        match self.step {
            Step::Greeting if ok => {
                self.xclient_offered = line.starts_with(b"+OK [XCLIENT]");
                if self.starttls {
                    self.send(&[b"STLS"]);
                    self.step = Step::Stls;
                    return None;
                }
                self.after_greeting()
            }
            Step::Stls if ok && self.input.is_empty() => {
                self.step = Step::AwaitingTls;
                Some(BackendEvent::StartTls)
            }
            Step::Capa {
                status_seen: false, ..
            } => {
                if ok {
                    self.step = Step::Capa {
                        status_seen: true,
                        plain: false,
                        xclient: false,
                    };
                    None
                } else {
                    self.start_auth(false)
                }
            }
            Step::Capa {
                status_seen: true,
                plain,
                xclient,
            } => {
                if line == b"." {
                    self.xclient_offered |= xclient;
                    return self.introduce_client_then_auth(plain);
                }
                let (keyword, rest) = super::split_command(line);
                let offers_plain = keyword == "SASL"
                    && rest
                        .split(|&b| b == b' ')
                        .any(|m| m.eq_ignore_ascii_case(b"PLAIN"));
                self.step = Step::Capa {
                    status_seen: true,
                    plain: plain || offers_plain,
                    xclient: xclient || keyword == "XCLIENT",
                };
                None
            }
            // Whatever the back end thinks of XCLIENT, the login goes on.
            Step::Xclient { plain } => self.start_auth(plain),
            Step::User if ok => {
                let password = self.password.clone();
                if password.expose().iter().any(|&b| b == b'\r' || b == b'\n') {
                    return Some(self.done(BackendOutcome::Rejected(LoginFailure::AuthFailed)));
                }
                self.send(&[b"PASS ", password.expose()]);
                self.step = Step::Pass;
                None
            }
            Step::AuthPlain | Step::Pass if ok => {
                let leftover = std::mem::take(&mut self.input);
                Some(self.done(BackendOutcome::LoggedIn {
                    greeting: BackendGreeting::default(),
                    leftover,
                }))
            }
            Step::AuthPlain | Step::User | Step::Pass if line.starts_with(b"-ERR") => {
                Some(self.rejected(line))
            }
            _ => Some(self.done(BackendOutcome::Unavailable(format!(
                "unexpected reply: {}",
                printable(line)
            )))),
        }
    }

    fn rejected(&mut self, line: &[u8]) -> BackendEvent {
        let code = line
            .strip_prefix(b"-ERR [")
            .and_then(|r| r.iter().position(|&b| b == b']').map(|end| &r[..end]))
            .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase());
        let outcome = match code.as_deref() {
            Some(c) if c.starts_with("SYS/") => {
                BackendOutcome::Unavailable(format!("back end: {}", printable(line)))
            }
            Some("IN-USE") => BackendOutcome::Rejected(LoginFailure::InUse),
            _ => BackendOutcome::Rejected(LoginFailure::AuthFailed),
        };
        self.done(outcome)
    }
}

impl BackendLogin for Pop3BackendLogin {
    fn receive(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    fn poll(&mut self) -> BackendEvent {
        loop {
            if self.step == Step::Done {
                return BackendEvent::Done(BackendOutcome::Unavailable(
                    "login exchange already finished".into(),
                ));
            }
            let line = match login::take_line(&mut self.input, MAX_BACKEND_LINE) {
                Ok(Some(line)) => line,
                Ok(None) => return BackendEvent::NeedInput,
                Err(()) => {
                    return self.done(BackendOutcome::Unavailable("back-end line too long".into()))
                }
            };
            if let Some(event) = self.on_line(&line) {
                return event;
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn tls_started(&mut self) {
        self.after_greeting();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(method: Pop3BackendAuth, password: &[u8]) -> Pop3BackendLogin {
        Pop3BackendLogin::new("alice@example.org", Secret::new(password.to_vec()), method)
    }

    fn step(m: &mut Pop3BackendLogin, server: &[u8]) -> (BackendEvent, String) {
        m.receive(server);
        let ev = m.poll();
        (ev, String::from_utf8_lossy(&m.take_output()).into_owned())
    }

    fn logged_in(leftover: &[u8]) -> BackendEvent {
        BackendEvent::Done(BackendOutcome::LoggedIn {
            greeting: BackendGreeting::default(),
            leftover: leftover.to_vec(),
        })
    }

    #[test]
    fn auto_prefers_auth_plain_when_capa_lists_it() {
        let mut m = login(Pop3BackendAuth::Auto, b"pw");
        let (_, out) = step(&mut m, b"+OK Dovecot ready.\r\n");
        assert_eq!(out, "CAPA\r\n");
        let (_, out) = step(&mut m, b"+OK\r\nCAPA\r\nTOP\r\nSASL PLAIN LOGIN\r\n.\r\n");
        let b64 = auth::encode_base64(b"\0alice@example.org\0pw");
        assert_eq!(out, format!("AUTH PLAIN {b64}\r\n"));
        let (ev, _) = step(&mut m, b"+OK Logged in.\r\n");
        assert_eq!(ev, logged_in(b""));
    }

    #[test]
    fn auto_falls_back_to_user_pass() {
        let mut m = login(Pop3BackendAuth::Auto, b"p w");
        step(&mut m, b"+OK hi\r\n");
        let (_, out) = step(&mut m, b"+OK\r\nUSER\r\n.\r\n");
        assert_eq!(out, "USER alice@example.org\r\n");
        let (_, out) = step(&mut m, b"+OK\r\n");
        assert_eq!(out, "PASS p w\r\n");
        let (ev, _) = step(&mut m, b"+OK Logged in.\r\n");
        assert_eq!(ev, logged_in(b""));
    }

    #[test]
    fn capa_error_falls_back_to_user() {
        let mut m = login(Pop3BackendAuth::Auto, b"pw");
        step(&mut m, b"+OK hi\r\n");
        let (_, out) = step(&mut m, b"-ERR unknown command\r\n");
        assert_eq!(out, "USER alice@example.org\r\n");
    }

    #[test]
    fn response_codes_classify_failures() {
        for (reply, expected) in [
            (
                &b"-ERR [AUTH] Authentication failed.\r\n"[..],
                Some(LoginFailure::AuthFailed),
            ),
            (b"-ERR nope\r\n", Some(LoginFailure::AuthFailed)),
            (b"-ERR [IN-USE] locked\r\n", Some(LoginFailure::InUse)),
            (b"-ERR [SYS/TEMP] later\r\n", None),
        ] {
            let mut m = login(Pop3BackendAuth::Plain, b"pw");
            step(&mut m, b"+OK hi\r\n");
            let (ev, _) = step(&mut m, reply);
            match (ev, expected) {
                (BackendEvent::Done(BackendOutcome::Rejected(f)), Some(e)) => assert_eq!(f, e),
                (BackendEvent::Done(BackendOutcome::Unavailable(_)), None) => {}
                (ev, e) => panic!(
                    "{:?}: got {ev:?}, expected {e:?}",
                    String::from_utf8_lossy(reply)
                ),
            }
        }
    }

    #[test]
    fn bad_greeting_is_unavailable() {
        let mut m = login(Pop3BackendAuth::Auto, b"pw");
        let (ev, _) = step(&mut m, b"-ERR go away\r\n");
        assert!(matches!(
            ev,
            BackendEvent::Done(BackendOutcome::Unavailable(_))
        ));
    }

    #[test]
    fn user_mode_cannot_send_user_with_space() {
        let mut m =
            Pop3BackendLogin::new("a b", Secret::new(b"pw".to_vec()), Pop3BackendAuth::User);
        let (ev, _) = step(&mut m, b"+OK hi\r\n");
        assert_eq!(
            ev,
            BackendEvent::Done(BackendOutcome::Rejected(LoginFailure::AuthFailed))
        );
    }

    #[test]
    fn xclient_is_sent_when_offered_and_a_client_address_is_known() {
        let client = ClientAddress {
            peer: "192.0.2.7:40000".parse().unwrap(),
            local: "198.51.100.1:110".parse().unwrap(),
        };
        let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client);
        step(&mut m, b"+OK hi\r\n");
        let (_, out) = step(&mut m, b"+OK\r\nXCLIENT\r\nSASL PLAIN\r\n.\r\n");
        assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
        let (_, out) = step(&mut m, b"-ERR not trusted\r\n");
        assert!(out.starts_with("AUTH PLAIN "), "{out}");

        // Not offered: straight to the login.
        let mut m = login(Pop3BackendAuth::Auto, b"pw").with_client_address(client);
        step(&mut m, b"+OK hi\r\n");
        let (_, out) = step(&mut m, b"+OK\r\nSASL PLAIN\r\n.\r\n");
        assert!(out.starts_with("AUTH PLAIN "), "{out}");
    }

    #[test]
    fn xclient_announced_in_the_greeting_is_used_in_every_mode() {
        let client = ClientAddress {
            peer: "192.0.2.7:40000".parse().unwrap(),
            local: "198.51.100.1:110".parse().unwrap(),
        };
        let mut m = login(Pop3BackendAuth::Plain, b"pw").with_client_address(client);
        let (_, out) = step(&mut m, b"+OK [XCLIENT] Dovecot ready.\r\n");
        assert_eq!(out, "XCLIENT ADDR=192.0.2.7 PORT=40000\r\n");
        let (_, out) = step(&mut m, b"+OK\r\n");
        assert!(out.starts_with("AUTH PLAIN "), "{out}");
    }

    #[test]
    fn stls_upgrades_before_the_login() {
        let mut m = login(Pop3BackendAuth::Plain, b"pw").with_starttls();
        let (_, out) = step(&mut m, b"+OK hi\r\n");
        assert_eq!(out, "STLS\r\n");
        let (ev, _) = step(&mut m, b"+OK Begin TLS\r\n");
        assert_eq!(ev, BackendEvent::StartTls);
        m.tls_started();
        let (_, out) = step(&mut m, b"");
        assert!(out.starts_with("AUTH PLAIN "), "{out}");
        let mut refused = login(Pop3BackendAuth::Plain, b"pw").with_starttls();
        step(&mut refused, b"+OK hi\r\n");
        let (ev, _) = step(&mut refused, b"-ERR no\r\n");
        assert!(matches!(
            ev,
            BackendEvent::Done(BackendOutcome::Unavailable(_))
        ));
    }

    #[test]
    fn leftover_after_login_is_kept() {
        let mut m = login(Pop3BackendAuth::Plain, b"pw");
        step(&mut m, b"+OK hi\r\n");
        let (ev, _) = step(&mut m, b"+OK Logged in.\r\n+OK 2 messages\r\n");
        assert_eq!(ev, logged_in(b"+OK 2 messages\r\n"));
    }
}
