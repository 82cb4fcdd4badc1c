//! The ManageSieve client side before login (RFC 5804), as a state machine
//! fed with bytes: the capability greeting, `CAPABILITY`, `NOOP`,
//! `STARTTLS`, `LOGOUT` and `AUTHENTICATE` (PLAIN or LOGIN, and where the
//! listener offers them OAUTHBEARER or XOAUTH2 with RFC 7628's error
//! exchange, with or without an initial response; challenges and responses
//! are strings). Every other
//! command is refused with `NO` before login. Commands are framed like
//! IMAP's (a line, literals `{n+}`/`{n}` bounded by `max_literal`, the line
//! by `max_line`).
//!
//! Refusals carry RFC 5804 response codes: `(ENCRYPT-NEEDED)` for a login
//! before TLS where TLS is required, `(TRYLATER)` for trouble behind the
//! proxy. Nothing here performs I/O or reads a clock.

use super::syntax::{parse_command, parse_words, quote, Arg, Command};
use crate::auth::sasl::{Mechanism, SaslExchange, SaslStep};
use crate::auth::{Credentials, SaslError};
use crate::login::framing::{Frame, Framer};
use crate::login::{
    BackendGreeting, ListenerSettings, LoggedIn, LoginFailure, PreAuth, PreAuthEvent,
};
use std::rc::Rc;

/// What a listener's greeting announces besides what mailgate decides
/// itself (`SASL`, `STARTTLS`, `VERSION`): the back ends' Sieve
/// implementation and extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SieveCapabilities {
    /// `IMPLEMENTATION`.
    pub implementation: String,
    /// `SIEVE`: the extensions scripts may use.
    pub sieve: String,
    /// `NOTIFY`: notification methods, if any.
    pub notify: Option<String>,
}

impl SieveCapabilities {
    /// The Sieve capabilities among a back end's capability lines
    /// (`"NAME" "value"` CRLF each); `None` without `IMPLEMENTATION` and
    /// `SIEVE` or with a line that does not parse.
    pub fn from_lines(lines: &str) -> Option<Self> {
        let (mut implementation, mut sieve, mut notify) = (None, None, None);
        for line in lines.split_inclusive('\n') {
            let words = parse_words(line.as_bytes()).ok()?;
            let text = |arg: &Arg| {
                arg.as_string()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
            };
            let (Some(name), value) = (words.first().and_then(text), words.get(1).and_then(text))
            else {
                return None;
            };
            match name.to_ascii_uppercase().as_str() {
                "IMPLEMENTATION" => implementation = value,
                "SIEVE" => sieve = value,
                "NOTIFY" => notify = value,
                _ => {}
            }
        }
        Some(Self {
            implementation: implementation?,
            sieve: sieve?,
            notify,
        })
    }
}

impl Default for SieveCapabilities {
    /// What Debian's Dovecot 2.3 with Pigeonhole 0.5 announces by default.
    fn default() -> Self {
        Self {
            implementation: "Dovecot Pigeonhole".into(),
            sieve: "fileinto reject envelope encoded-character vacation subaddress \
                    comparator-i;ascii-numeric relational regex imap4flags copy include \
                    variables body enotify environment mailbox date index ihave duplicate \
                    mime foreverypart extracttext"
                .into(),
            notify: Some("mailto".into()),
        }
    }
}

/// Settings of one ManageSieve listener.
#[derive(Debug, Clone, Default)]
pub struct ManageSieveSettings {
    /// What every listener has (greeting, bounds, TLS).
    pub listener: ListenerSettings,
    /// The Sieve capabilities announced.
    pub capabilities: SieveCapabilities,
}

enum State {
    Commands,
    Sasl(SaslExchange),
    /// Waiting for the session's verdict; `bearer` when a token was sent.
    LoggingIn {
        bearer: bool,
    },
    StartingTls,
    Closed,
}

/// Pre-authentication state of one ManageSieve client connection.
pub struct ManageSievePreAuth {
    settings: Rc<ManageSieveSettings>,
    framer: Framer,
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

/// The state and counters only: the buffers may hold a password.
impl std::fmt::Debug for ManageSievePreAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Commands => "Commands",
            State::Sasl(_) => "Sasl",
            State::LoggingIn { .. } => "LoggingIn",
            State::StartingTls => "StartingTls",
            State::Closed => "Closed",
        };
        f.debug_struct("ManageSievePreAuth")
            .field("state", &state)
            .field("failures", &self.failures)
            .field("tls_active", &self.tls_active)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
}

impl ManageSievePreAuth {
    /// A new connection, `tls_active` when TLS was on from the first byte;
    /// the capability greeting is queued at once.
    pub fn with_tls(settings: Rc<ManageSieveSettings>, tls_active: bool) -> Self {
        let listener = &settings.listener;
        let mut machine = Self {
            framer: Framer::new(listener.max_login_line(), listener.max_login_literal()),
            settings,
            input: Vec::new(),
            output: Vec::new(),
            state: State::Commands,
            failures: 0,
            tls_active,
            protocol_errors: 0,
            errors_total: 0,
            commands: 0,
        };
        machine.capabilities();
        let greeting = machine.settings.listener.greeting.clone();
        machine.ok(None, &greeting);
        machine
    }

    fn login_allowed(&self) -> bool {
        self.tls_active || !self.settings.listener.require_tls
    }

    fn offers_starttls(&self) -> bool {
        self.settings.listener.starttls && !self.tls_active
    }

    /// The capability lines (RFC 5804 §1.7), without the closing `OK`.
    fn capabilities(&mut self) {
        let caps = &self.settings.capabilities;
        let mut text = format!(
            "\"IMPLEMENTATION\" {}\r\n\"SIEVE\" {}\r\n",
            quote(&caps.implementation),
            quote(&caps.sieve)
        );
        if let Some(notify) = &caps.notify {
            text.push_str(&format!("\"NOTIFY\" {}\r\n", quote(notify)));
        }
        // Only what mailgate can replay to the back end; nothing while a
        // login would be refused for want of TLS.
        let mut sasl = String::new();
        if self.login_allowed() {
            sasl.push_str("PLAIN LOGIN");
            for mechanism in self.settings.listener.bearer_mechanisms() {
                sasl.push(' ');
                sasl.push_str(mechanism.name());
            }
        }
        text.push_str(&format!("\"SASL\" {}\r\n", quote(&sasl)));
        if self.offers_starttls() {
            text.push_str("\"STARTTLS\"\r\n");
        }
        text.push_str("\"VERSION\" \"1.0\"\r\n");
        self.output.extend_from_slice(text.as_bytes());
    }

    fn respond(&mut self, status: &str, code: Option<&str>, text: &str) {
        let mut line = String::from(status);
        if let Some(code) = code {
            line.push_str(&format!(" ({code})"));
        }
        line.push(' ');
        line.push_str(&quote(text));
        line.push_str("\r\n");
        self.output.extend_from_slice(line.as_bytes());
    }

    fn ok(&mut self, code: Option<&str>, text: &str) {
        self.respond("OK", code, text);
    }

    fn no(&mut self, code: Option<&str>, text: &str) {
        self.respond("NO", code, text);
    }

    /// Refuses a malformed, unknown or disallowed command (counted).
    fn refuse(&mut self, code: Option<&str>, text: &str) {
        self.protocol_errors += 1;
        self.errors_total += 1;
        self.no(code, text);
    }

    /// Says `BYE` and closes: the next `poll` returns `Close`.
    fn close(&mut self, code: Option<&str>, text: &str) {
        self.respond("BYE", code, text);
        self.state = State::Closed;
        self.input.clear();
    }

    fn close_with(&mut self, code: Option<&str>, text: &str) -> PreAuthEvent {
        self.close(code, text);
        PreAuthEvent::Close
    }

    fn command(&mut self, bytes: &[u8]) -> Option<PreAuthEvent> {
        self.commands += 1;
        if self.commands > self.settings.listener.max_commands {
            return Some(self.close_with(None, "Too many commands before login."));
        }
        let event = match parse_command(bytes) {
            Ok(command) => self.dispatch(command),
            Err(e) => {
                self.refuse(None, &format!("Syntax error: {e}."));
                None
            }
        };
        if event.is_none() && self.errors_total >= self.settings.listener.max_protocol_errors {
            return Some(self.close_with(None, "Too many invalid commands."));
        }
        event
    }

    fn dispatch(&mut self, command: Command) -> Option<PreAuthEvent> {
        let args = command.args;
        match (command.name.as_str(), args.as_slice()) {
            ("CAPABILITY", []) => {
                self.capabilities();
                self.ok(None, "Capability completed.");
            }
            ("NOOP", []) => self.ok(None, "Done."),
            ("NOOP", [Arg::String(tag)]) => {
                let tag = quote(&String::from_utf8_lossy(tag));
                self.ok(Some(&format!("TAG {tag}")), "Done.");
            }
            ("LOGOUT", []) => {
                self.ok(None, "Logout completed.");
                self.state = State::Closed;
                self.input.clear();
                return Some(PreAuthEvent::Close);
            }
            ("STARTTLS", []) if self.offers_starttls() => {
                self.ok(None, "Begin TLS negotiation now.");
                self.state = State::StartingTls;
                // Plaintext pipelined after STARTTLS must never be read
                // after the handshake (CVE-2011-0411).
                self.input.fill(0);
                self.input.clear();
                return Some(PreAuthEvent::StartTls);
            }
            ("STARTTLS", []) => self.refuse(None, "STARTTLS is not offered here."),
            ("AUTHENTICATE", [Arg::String(mechanism), rest @ ..]) if rest.len() <= 1 => {
                if !self.login_allowed() {
                    self.refuse(
                        Some("ENCRYPT-NEEDED"),
                        "Authentication is allowed only after STARTTLS.",
                    );
                    return None;
                }
                let offered = |m: &Mechanism| self.settings.listener.offers(*m);
                let Some(mechanism) = Mechanism::parse(mechanism).filter(offered) else {
                    self.refuse(None, "Unsupported authentication mechanism.");
                    return None;
                };
                let initial = match rest {
                    [] => None,
                    [Arg::String(initial)] => Some(&initial[..]),
                    _ => {
                        self.refuse(None, "The initial response must be a string.");
                        return None;
                    }
                };
                let max_token = self.settings.listener.max_token();
                return self.sasl_step(SaslExchange::start(mechanism, initial, max_token));
            }
            ("CAPABILITY" | "NOOP" | "LOGOUT" | "STARTTLS" | "AUTHENTICATE", _) => {
                self.refuse(None, "Wrong arguments.")
            }
            _ => self.refuse(None, "Unknown command or not allowed before login."),
        }
        None
    }

    /// Acts on one step of an `AUTHENTICATE` exchange.
    fn sasl_step(&mut self, step: SaslStep) -> Option<PreAuthEvent> {
        self.state = State::Commands;
        match step {
            SaslStep::Challenge { challenge, next } => {
                self.output.extend_from_slice(quote(challenge).as_bytes());
                self.output.extend_from_slice(b"\r\n");
                self.state = State::Sasl(next);
                None
            }
            SaslStep::Done(credentials) => Some(self.start_login(credentials)),
            SaslStep::Failed(SaslError::Cancelled) => {
                self.refuse(None, "Authentication cancelled.");
                None
            }
            SaslStep::Failed(SaslError::Base64) => {
                self.refuse(None, "Invalid base64 data.");
                None
            }
            SaslStep::Failed(_) => {
                self.state = State::LoggingIn { bearer: false };
                self.login_failed(LoginFailure::AuthFailed);
                matches!(self.state, State::Closed).then_some(PreAuthEvent::Close)
            }
        }
    }

    /// A client response in a SASL exchange: one string (`"*"` cancels).
    fn sasl_response(&mut self, exchange: SaslExchange, bytes: &[u8]) -> Option<PreAuthEvent> {
        match parse_words(bytes).as_deref() {
            Ok([Arg::String(response)]) => self.sasl_step(exchange.respond(response)),
            _ => {
                self.state = State::Commands;
                self.refuse(None, "Expected one string in the authentication exchange.");
                None
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

impl PreAuth for ManageSievePreAuth {
    fn receive(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Closed) {
            crate::login::append_wiping(&mut self.input, data);
        }
    }

    fn poll(&mut self) -> PreAuthEvent {
        loop {
            match self.state {
                State::Closed => return PreAuthEvent::Close,
                State::LoggingIn { .. } | State::StartingTls => return PreAuthEvent::NeedInput,
                State::Commands | State::Sasl(_) => {}
            }
            let end = match self.framer.scan(&self.input) {
                // ManageSieve sends no continuation for `{n}`: the client
                // sends the bytes at once, like `{n+}`.
                Frame::Incomplete { .. } => return PreAuthEvent::NeedInput,
                Frame::Complete(end) => end,
                Frame::Error(e) => {
                    self.protocol_errors += 1;
                    return self.close_with(None, &format!("{e}."));
                }
            };
            self.framer.reset();
            let mut bytes: Vec<u8> = self.input.drain(..end).collect();
            let event = match std::mem::replace(&mut self.state, State::LoggingIn { bearer: false })
            {
                State::Sasl(exchange) => self.sasl_response(exchange, &bytes),
                other => {
                    self.state = other;
                    self.command(&bytes)
                }
            };
            bytes.fill(0);
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
        self.state = State::Commands;
        match failure {
            LoginFailure::AuthFailed if bearer => {
                // RFC 7628 §3.2.2: the error challenge first; the refusal
                // follows the client's acknowledgement.
                let _ = self.sasl_step(SaslExchange::token_refused());
            }
            LoginFailure::AuthFailed => {
                self.failures += 1;
                if self.failures >= self.settings.listener.max_auth_failures {
                    self.close(None, "Authentication failed; too many failures.");
                } else {
                    self.no(None, "Authentication failed.");
                }
            }
            LoginFailure::Unavailable => {
                self.no(Some("TRYLATER"), "Temporary failure, try again later.")
            }
            LoginFailure::InUse => self.no(Some("TRYLATER"), "In use, try again later."),
        }
    }

    fn login_succeeded(&mut self, _backend: &BackendGreeting) -> LoggedIn {
        let mut to_client = std::mem::take(&mut self.output);
        to_client.extend_from_slice(b"OK \"Logged in.\"\r\n");
        LoggedIn {
            to_client,
            to_backend: std::mem::take(&mut self.input),
        }
    }

    fn timed_out(&mut self) {
        self.close(None, "Disconnected for inactivity.");
    }

    fn shutting_down(&mut self) {
        self.close(Some("TRYLATER"), "Server shutting down.");
    }

    fn tls_started(&mut self) {
        self.tls_active = true;
        self.input.clear();
        self.framer.reset();
        self.state = State::Commands;
        // RFC 5804 §2.2: the capabilities again, then OK.
        self.capabilities();
        self.ok(None, "TLS negotiation successful.");
    }

    fn take_protocol_errors(&mut self) -> u32 {
        std::mem::take(&mut self.protocol_errors)
    }
}

#[cfg(test)]
#[path = "preauth_tests.rs"]
mod tests;
