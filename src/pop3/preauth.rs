//! The POP3 client side before login, as a pure state machine.
//!
//! Answers `CAPA`, `AUTH` (mechanism list), `QUIT`; takes credentials from
//! `USER`/`PASS` or `AUTH PLAIN` (initial response or continuation, `*`
//! cancels), and where the listener offers them `AUTH OAUTHBEARER` /
//! `XOAUTH2` (RFC 7628's error exchange when a token is refused); refuses `APOP` (a proxy cannot replay a digest) and everything
//! else with `-ERR`. Commands pipelined after the login (RFC 2449 PIPELINING)
//! are handed over on success. This module never performs I/O.

use crate::auth::sasl::{Mechanism, SaslExchange, SaslStep};
use crate::auth::{Credentials, SaslError, Secret};
use crate::login::{
    self, BackendGreeting, LoggedIn, LoginFailure, OAuthOffer, PreAuth, PreAuthEvent,
    DEFAULT_GREETING, DEFAULT_MAX_AUTH_FAILURES, DEFAULT_MAX_LINE, DEFAULT_MAX_PREAUTH_COMMANDS,
    DEFAULT_MAX_PROTOCOL_ERRORS,
};
use std::rc::Rc;

/// Settings shared by all POP3 sessions of a listener.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    /// Greeting text after `+OK `.
    pub greeting: String,
    /// Longest command line.
    pub max_line: usize,
    /// Failed logins before the connection is closed.
    pub max_auth_failures: u32,
    /// Commands before login; the next one closes the connection.
    pub max_commands: u32,
    /// Refused commands (`-ERR` other than a failed login) before login;
    /// the last one closes the connection.
    pub max_protocol_errors: u32,
    /// Capabilities listed by `CAPA` besides `USER` and `SASL PLAIN`:
    /// promises about the back ends, so configurable.
    pub capabilities: Vec<String>,
    /// This listener offers STLS.
    pub starttls: bool,
    /// Login only after TLS (STLS listeners).
    pub require_tls: bool,
    /// The bearer-token mechanisms offered (`[oauth]` configured).
    pub oauth: Option<OAuthOffer>,
}

/// Default `CAPA` entries (what Dovecot offers after login).
pub const DEFAULT_CAPABILITIES: [&str; 5] =
    ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"];

impl Default for Pop3Settings {
    fn default() -> Self {
        Self {
            greeting: DEFAULT_GREETING.into(),
            max_line: DEFAULT_MAX_LINE,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            max_commands: DEFAULT_MAX_PREAUTH_COMMANDS,
            max_protocol_errors: DEFAULT_MAX_PROTOCOL_ERRORS,
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            starttls: false,
            require_tls: false,
            oauth: None,
        }
    }
}

impl Pop3Settings {
    /// The SASL mechanisms `AUTH` accepts, as `CAPA` and `AUTH` list them.
    fn mechanisms(&self) -> String {
        let mut names = String::from("PLAIN");
        for mechanism in self.oauth.iter().flat_map(|o| &o.mechanisms) {
            names.push(' ');
            names.push_str(mechanism.name());
        }
        names
    }

    fn offers(&self, mechanism: Mechanism) -> bool {
        match mechanism {
            Mechanism::Plain => true,
            Mechanism::Login => false,
            Mechanism::Bearer(bearer) => self
                .oauth
                .as_ref()
                .is_some_and(|o| o.mechanisms.contains(&bearer)),
        }
    }
}

enum State {
    Authorization {
        user: Option<String>,
    },
    Sasl(SaslExchange),
    /// Waiting for the session's verdict; `bearer` when a token was sent.
    LoggingIn {
        bearer: bool,
    },
    StartingTls,
    Closed,
}

/// Pre-authentication state of one POP3 client connection.
pub struct Pop3PreAuth {
    settings: Rc<Pop3Settings>,
    input: Vec<u8>,
    output: Vec<u8>,
    state: State,
    failures: u32,
    tls_active: bool,
    /// Refused commands not yet taken by `take_protocol_errors`.
    protocol_errors: u32,
    /// Refused commands in all.
    errors_total: u32,
    /// Commands in all.
    commands: u32,
}

/// The state and counters only: the buffers may hold a password, and a
/// user name given with `USER` is client text.
impl std::fmt::Debug for Pop3PreAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Authorization { .. } => "Authorization",
            State::Sasl(_) => "Sasl",
            State::LoggingIn { .. } => "LoggingIn",
            State::StartingTls => "StartingTls",
            State::Closed => "Closed",
        };
        f.debug_struct("Pop3PreAuth")
            .field("state", &state)
            .field("failures", &self.failures)
            .field("tls_active", &self.tls_active)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
}

impl Pop3PreAuth {
    /// A new plaintext connection; the greeting is queued at once.
    pub fn new(settings: Rc<Pop3Settings>) -> Self {
        Self::with_tls(settings, false)
    }

    /// A new connection, `tls_active` when TLS was on from the first byte.
    pub fn with_tls(settings: Rc<Pop3Settings>, tls_active: bool) -> Self {
        let output = format!("+OK {}\r\n", settings.greeting).into_bytes();
        Self {
            settings,
            input: Vec::new(),
            output,
            state: State::Authorization { user: None },
            failures: 0,
            tls_active,
            protocol_errors: 0,
            errors_total: 0,
            commands: 0,
        }
    }

    fn login_allowed(&self) -> bool {
        self.tls_active || !self.settings.require_tls
    }

    fn offers_stls(&self) -> bool {
        self.settings.starttls && !self.tls_active
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Refuses a malformed, unknown or disallowed command (counted).
    fn refuse(&mut self, line: &str) {
        self.protocol_errors += 1;
        self.errors_total += 1;
        self.reply(line);
    }

    /// Sends `line` and closes: the next `poll` returns `Close`.
    fn close(&mut self, line: &str) {
        self.reply(line);
        self.state = State::Closed;
        self.input.clear();
    }

    fn close_with(&mut self, line: &str) -> PreAuthEvent {
        self.close(line);
        PreAuthEvent::Close
    }

    fn command(&mut self, line: &[u8]) -> Option<PreAuthEvent> {
        self.commands += 1;
        if self.commands > self.settings.max_commands {
            return Some(
                self.close_with("-ERR Too many commands before login, closing connection."),
            );
        }
        let event = self.dispatch(line);
        if event.is_none() && self.errors_total >= self.settings.max_protocol_errors {
            return Some(self.close_with("-ERR Too many invalid commands, closing connection."));
        }
        event
    }

    fn dispatch(&mut self, line: &[u8]) -> Option<PreAuthEvent> {
        let (keyword, arg) = super::split_command(line);
        if matches!(keyword.as_str(), "USER" | "PASS" | "AUTH" | "APOP") && !self.login_allowed() {
            self.refuse("-ERR [AUTH] Plaintext authentication is disabled here; use STLS first.");
            return None;
        }
        if keyword == "STLS" && arg.is_empty() && self.offers_stls() {
            self.reply("+OK Begin TLS negotiation now.");
            self.state = State::StartingTls;
            // Plaintext pipelined after STLS must never be read after the
            // handshake (CVE-2011-0411).
            self.input.fill(0);
            self.input.clear();
            return Some(PreAuthEvent::StartTls);
        }
        let offers_stls = self.offers_stls();
        let login_allowed = self.login_allowed();
        let user = match &mut self.state {
            State::Authorization { user } => user,
            _ => return None,
        };
        match keyword.as_str() {
            "CAPA" if arg.is_empty() => {
                let mut text = String::from("+OK Capability list follows\r\n");
                for cap in &self.settings.capabilities {
                    text.push_str(cap);
                    text.push_str("\r\n");
                }
                if offers_stls {
                    text.push_str("STLS\r\n");
                }
                if login_allowed {
                    text.push_str("USER\r\nSASL ");
                    text.push_str(&self.settings.mechanisms());
                    text.push_str("\r\n");
                }
                text.push_str(".\r\n");
                self.output.extend_from_slice(text.as_bytes());
            }
            "USER" => match std::str::from_utf8(arg) {
                Ok(name) if !name.is_empty() => {
                    *user = Some(name.to_owned());
                    self.reply("+OK");
                }
                _ => self.refuse("-ERR USER expects a user name."),
            },
            "PASS" => {
                let Some(name) = user.take() else {
                    self.refuse("-ERR No user name given: send USER first.");
                    return None;
                };
                return Some(
                    self.start_login(Credentials::with_password(name, Secret::new(arg.to_vec()))),
                );
            }
            "AUTH" => return self.auth(arg),
            "QUIT" => return Some(self.close_with("+OK Bye.")),
            "APOP" => self
                .refuse("-ERR APOP is not supported by this proxy; use USER/PASS or AUTH PLAIN."),
            "STLS" => self.refuse("-ERR STLS is not offered here."),
            "CAPA" => self.refuse("-ERR CAPA takes no argument."),
            _ => self.refuse("-ERR Unknown command or not allowed before login."),
        }
        None
    }

    fn auth(&mut self, arg: &[u8]) -> Option<PreAuthEvent> {
        let (mechanism, initial) = match arg.iter().position(|&b| b == b' ') {
            Some(sp) => (&arg[..sp], Some(&arg[sp + 1..])),
            None => (arg, None),
        };
        let parsed = Mechanism::parse(mechanism).filter(|m| self.settings.offers(*m));
        match (mechanism, parsed) {
            (b"", _) if initial.is_none() => {
                let list =
                    format!("+OK\r\n{}\r\n.\r\n", self.settings.mechanisms()).replace(' ', "\r\n");
                self.output.extend_from_slice(list.as_bytes())
            }
            (_, Some(mechanism)) => {
                let max_token = self.settings.oauth.as_ref().map_or(0, |o| o.max_token);
                return self.sasl_step(SaslExchange::start(mechanism, initial, max_token));
            }
            _ => self.refuse("-ERR Unsupported authentication mechanism."),
        }
        None
    }

    /// Acts on one step of an `AUTH` exchange.
    fn sasl_step(&mut self, step: SaslStep) -> Option<PreAuthEvent> {
        self.state = State::Authorization { user: None };
        match step {
            SaslStep::Challenge { challenge, next } => {
                self.reply(&format!("+ {challenge}"));
                self.state = State::Sasl(next);
                None
            }
            SaslStep::Done(credentials) => Some(self.start_login(credentials)),
            SaslStep::Failed(SaslError::Cancelled) => {
                self.refuse("-ERR AUTH cancelled.");
                None
            }
            SaslStep::Failed(SaslError::Base64) => {
                self.refuse("-ERR Invalid base64 data.");
                None
            }
            SaslStep::Failed(_) => {
                self.state = State::LoggingIn { bearer: false };
                self.login_failed(LoginFailure::AuthFailed);
                matches!(self.state, State::Closed).then_some(PreAuthEvent::Close)
            }
        }
    }

    fn start_login(&mut self, credentials: Credentials) -> PreAuthEvent {
        self.state = State::LoggingIn {
            bearer: credentials.bearer.is_some(),
        };
        PreAuthEvent::Login(credentials)
    }
}

impl PreAuth for Pop3PreAuth {
    fn receive(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Closed) {
            login::append_wiping(&mut self.input, data);
        }
    }

    fn poll(&mut self) -> PreAuthEvent {
        loop {
            match self.state {
                State::Closed => return PreAuthEvent::Close,
                State::LoggingIn { .. } | State::StartingTls => return PreAuthEvent::NeedInput,
                State::Authorization { .. } | State::Sasl(_) => {}
            }
            let mut line = match login::take_line(&mut self.input, self.settings.max_line) {
                Ok(Some(line)) => line,
                Ok(None) => return PreAuthEvent::NeedInput,
                Err(login::LineTooLong) => {
                    self.protocol_errors += 1;
                    return self.close_with("-ERR Line too long, closing connection.");
                }
            };
            let event = match std::mem::replace(&mut self.state, State::LoggingIn { bearer: false })
            {
                State::Sasl(exchange) => self.sasl_step(exchange.respond(&line)),
                other => {
                    self.state = other;
                    self.command(&line)
                }
            };
            line.fill(0);
            if let Some(event) = event {
                return event;
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn login_failed(&mut self, failure: LoginFailure) {
        let State::LoggingIn { bearer } = self.state else {
            return;
        };
        self.state = State::Authorization { user: None };
        match failure {
            LoginFailure::AuthFailed if bearer => {
                // RFC 7628 §3.2.2: the error challenge first; the refusal
                // follows the client's acknowledgement.
                let _ = self.sasl_step(SaslExchange::token_refused());
            }
            LoginFailure::AuthFailed => {
                self.failures += 1;
                if self.failures >= self.settings.max_auth_failures {
                    self.close(
                        "-ERR [AUTH] Authentication failed; too many failures, closing connection.",
                    );
                } else {
                    self.reply("-ERR [AUTH] Authentication failed.");
                }
            }
            LoginFailure::Unavailable => {
                self.reply("-ERR [SYS/TEMP] Temporary failure, try again later.")
            }
            LoginFailure::InUse => self.reply("-ERR [IN-USE] Mailbox is in use, try again later."),
        }
    }

    fn login_succeeded(&mut self, _backend: &BackendGreeting) -> LoggedIn {
        let mut to_client = std::mem::take(&mut self.output);
        to_client.extend_from_slice(b"+OK Logged in.\r\n");
        LoggedIn {
            to_client,
            to_backend: std::mem::take(&mut self.input),
        }
    }

    fn timed_out(&mut self) {
        self.close("-ERR Autologout; idle for too long.");
    }

    fn shutting_down(&mut self) {
        self.close("-ERR [SYS/TEMP] Server shutting down.");
    }

    fn tls_started(&mut self) {
        self.tls_active = true;
        self.input.clear();
        self.state = State::Authorization { user: None };
    }

    fn take_protocol_errors(&mut self) -> u32 {
        std::mem::take(&mut self.protocol_errors)
    }
}

#[cfg(test)]
#[path = "preauth_tests.rs"]
mod tests;
