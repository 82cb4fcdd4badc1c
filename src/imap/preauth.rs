//! The IMAP client side before login (RFC 3501 / RFC 9051), as a pure state machine.
//!
//! Answers `CAPABILITY`, `NOOP`, `LOGOUT`, `ID` (RFC 2971), takes credentials
//! from `LOGIN` (atoms, quoted strings, literals, LITERAL+) and
//! `AUTHENTICATE PLAIN` (RFC 4616, with or without SASL-IR),
//! `AUTHENTICATE LOGIN`, and where the listener offers them `AUTHENTICATE
//! OAUTHBEARER` / `XOAUTH2` (with the RFC 7628 error exchange when a token
//! is refused), and refuses everything else with a tagged `BAD`.
//! Bytes the client pipelined after its login command stay buffered and are
//! handed over on success, so nothing is lost. This module never performs I/O.

use super::command;
use super::framing::{Frame, FrameError, Framer};
use crate::auth::sasl::SaslExchange;
use crate::login::{self, BackendGreeting, LoggedIn, LoginFailure, PreAuth, PreAuthEvent};
use std::rc::Rc;

/// Capabilities offered before login when login is allowed; `STARTTLS` is
/// added on STARTTLS listeners before TLS.
pub const PREAUTH_CAPABILITIES: &str = "IMAP4rev1 LITERAL+ SASL-IR ID AUTH=PLAIN AUTH=LOGIN";
/// Capabilities before TLS when login needs TLS (RFC 3501 §6.2.3, RFC 9051):
/// no mechanisms offered, `LOGINDISABLED`.
const PRETLS_CAPABILITIES: &str = "IMAP4rev1 LITERAL+ SASL-IR ID STARTTLS LOGINDISABLED";
/// Room for the greeting's fixed text and capabilities, bearer mechanisms
/// included, so that its buffer is allocated once at its size (the
/// configured greeting text is added to it).
const GREETING_ROOM: usize = 160;

/// Settings shared by all IMAP sessions of a listener: IMAP uses every
/// protocol-neutral listener setting as it is.
pub type ImapSettings = crate::login::ListenerSettings;

/// Most key/value pairs accepted in an `ID` command (RFC 2971 allows 30).
const MAX_ID_FIELDS: usize = 30;

/// Bytes reserved before a reply is formatted: a tagged `OK`/`NO`/`BAD`
/// with its text fits, so the output is not grown step by step.
const REPLY_ROOM: usize = 96;

#[derive(Debug)]
enum State {
    Commands,
    Sasl {
        tag: String,
        exchange: SaslExchange,
    },
    /// Waiting for the session's verdict; `bearer` when a token was sent
    /// (a refusal then runs the error exchange first).
    LoggingIn {
        tag: String,
        bearer: bool,
    },
    StartingTls,
    Closed,
}

/// Pre-authentication state of one IMAP client connection.
pub struct ImapPreAuth {
    settings: Rc<ImapSettings>,
    input: Vec<u8>,
    output: Vec<u8>,
    framer: Framer,
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
impl std::fmt::Debug for ImapPreAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapPreAuth")
            .field("state", &self.state)
            .field("failures", &self.failures)
            .field("tls_active", &self.tls_active)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
}

impl ImapPreAuth {
    /// A new plaintext connection; the greeting is queued at once.
    pub fn new(settings: Rc<ImapSettings>) -> Self {
        Self::with_tls(settings, false)
    }

    /// A new connection, `tls_active` when TLS was on from the first byte.
    pub fn with_tls(settings: Rc<ImapSettings>, tls_active: bool) -> Self {
        let mut machine = Self {
            framer: Framer::new(settings.max_login_line(), settings.max_literal),
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
        // Pieced together in one buffer: `format!` cost ~1 200 instructions
        // a connection, and the capabilities need no string of their own.
        let greeting = &machine.settings.greeting;
        let mut output = Vec::with_capacity(GREETING_ROOM + greeting.len());
        output.extend_from_slice(b"* OK [CAPABILITY ");
        machine.push_capabilities(&mut output);
        output.extend_from_slice(b"] ");
        output.extend_from_slice(greeting.as_bytes());
        output.extend_from_slice(b"\r\n");
        machine.output = output;
        machine
    }

    /// Capabilities for the current state (recomputed after STARTTLS).
    pub fn capabilities(&self) -> String {
        let mut caps = Vec::with_capacity(GREETING_ROOM);
        self.push_capabilities(&mut caps);
        String::from_utf8(caps).expect("capability names are ASCII")
    }

    /// [`Self::capabilities`], appended to `out`.
    fn push_capabilities(&self, out: &mut Vec<u8>) {
        if !self.login_allowed() {
            out.extend_from_slice(PRETLS_CAPABILITIES.as_bytes());
            return;
        }
        out.extend_from_slice(PREAUTH_CAPABILITIES.as_bytes());
        for mechanism in self.settings.bearer_mechanisms() {
            out.extend_from_slice(b" AUTH=");
            out.extend_from_slice(mechanism.name().as_bytes());
        }
        if self.settings.starttls && !self.tls_active {
            out.extend_from_slice(b" STARTTLS");
        }
    }

    fn login_allowed(&self) -> bool {
        self.tls_active || !self.settings.require_tls
    }

    /// Queues one response line; a tagged or untagged `BAD` is counted as a
    /// protocol error.
    fn reply(&mut self, line: std::fmt::Arguments) {
        use std::io::Write;
        let start = self.output.len();
        // Room for a usual reply at once, not grown 8, 16, 32, 64 bytes.
        self.output.reserve(REPLY_ROOM);
        let _ = self.output.write_fmt(line);
        let written = &self.output[start..];
        if let Some(space) = written.iter().position(|&b| b == b' ') {
            if written[space + 1..].starts_with(b"BAD") {
                self.protocol_errors += 1;
                self.errors_total += 1;
            }
        }
        self.output.extend_from_slice(b"\r\n");
    }

    /// Says `* BYE` and closes: the next `poll` returns `Close`.
    fn close(&mut self, bye: &str) {
        self.reply(format_args!("* BYE {bye}"));
        self.state = State::Closed;
        self.input.clear();
    }

    fn close_with(&mut self, bye: &str) -> PreAuthEvent {
        self.close(bye);
        PreAuthEvent::Close
    }

    /// Removes `n` bytes from the front of the input, wiping them (they may
    /// hold a password).
    fn consume(&mut self, n: usize) {
        self.input[..n].fill(0);
        self.input.drain(..n);
        self.framer.reset();
    }

    fn frame_error(&mut self, err: FrameError) -> PreAuthEvent {
        let tag = command::leading_tag(&self.input).unwrap_or("*").to_owned();
        self.reply(format_args!("{tag} BAD [TOOBIG] {err}"));
        self.close_with("Input limit exceeded, closing connection.")
    }

    fn command(&mut self, len: usize) -> Option<PreAuthEvent> {
        self.commands += 1;
        if self.commands > self.settings.max_commands {
            return Some(self.close_with("Too many commands before login."));
        }
        let input = std::mem::take(&mut self.input);
        let outcome = match command::parse(&input[..len]) {
            Err(e) => {
                let tag = e.tag.as_deref().unwrap_or("*");
                self.reply(format_args!("{tag} BAD {}", e.reason));
                None
            }
            Ok(cmd) => self.dispatch(&cmd),
        };
        self.input = input;
        self.consume(len);
        if outcome == Some(PreAuthEvent::StartTls) {
            // Whatever followed STARTTLS in plaintext was sent before the
            // handshake and must never be interpreted after it (CVE-2011-0411).
            let pipelined = self.input.len();
            self.consume(pipelined);
        }
        if outcome.is_none() && self.errors_total >= self.settings.max_protocol_errors {
            return Some(self.close_with("Too many invalid commands."));
        }
        outcome
    }
}

impl PreAuth for ImapPreAuth {
    fn receive(&mut self, data: &[u8]) {
        if !matches!(self.state, State::Closed) {
            login::append_wiping(&mut self.input, data);
        }
    }

    fn poll(&mut self) -> PreAuthEvent {
        loop {
            match &self.state {
                State::Closed => return PreAuthEvent::Close,
                State::LoggingIn { .. } | State::StartingTls => return PreAuthEvent::NeedInput,
                State::Commands => match self.framer.scan(&self.input) {
                    Frame::Complete(len) => {
                        if let Some(event) = self.command(len) {
                            return event;
                        }
                    }
                    Frame::Incomplete { continue_literal } => {
                        if continue_literal {
                            self.output
                                .extend_from_slice(b"+ Ready for literal data.\r\n");
                        }
                        return PreAuthEvent::NeedInput;
                    }
                    Frame::Error(err) => return self.frame_error(err),
                },
                State::Sasl { .. } => {
                    match login::take_line(&mut self.input, self.settings.max_login_line()) {
                        Ok(Some(mut line)) => {
                            let State::Sasl { tag, exchange } =
                                std::mem::replace(&mut self.state, State::Commands)
                            else {
                                unreachable!("matched just above");
                            };
                            let event = self.sasl_step(tag, exchange.respond(&line));
                            line.fill(0);
                            if let Some(event) = event {
                                return event;
                            }
                        }
                        Ok(None) => return PreAuthEvent::NeedInput,
                        Err(login::LineTooLong) => {
                            return self.frame_error(FrameError::LineTooLong)
                        }
                    }
                }
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn login_failed(&mut self, failure: LoginFailure) {
        let (tag, bearer) = match std::mem::replace(&mut self.state, State::Commands) {
            State::LoggingIn { tag, bearer } => (tag, bearer),
            other => {
                self.state = other;
                return;
            }
        };
        match failure {
            LoginFailure::AuthFailed if bearer => {
                // RFC 7628 §3.2.2: the error challenge first; the refusal
                // follows the client's acknowledgement.
                let _ = self.sasl_step(tag, SaslExchange::token_refused());
            }
            LoginFailure::AuthFailed => {
                self.failures += 1;
                self.reply(format_args!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed."
                ));
                if self.failures >= self.settings.max_auth_failures {
                    self.close("Too many authentication failures.");
                }
            }
            LoginFailure::Unavailable => self.reply(format_args!(
                "{tag} NO [UNAVAILABLE] Temporary failure, try again later."
            )),
            LoginFailure::InUse => self.reply(format_args!(
                "{tag} NO [INUSE] Mailbox is in use, try again later."
            )),
        }
    }

    fn login_succeeded(&mut self, backend: &BackendGreeting) -> LoggedIn {
        let tag = match &self.state {
            State::LoggingIn { tag, .. } => tag.clone(),
            _ => "*".to_owned(),
        };
        let mut to_client = std::mem::take(&mut self.output);
        to_client.extend_from_slice(&backend.untagged);
        match &backend.capability {
            Some(caps) => self.reply(format_args!("{tag} OK [CAPABILITY {caps}] Logged in")),
            None => self.reply(format_args!("{tag} OK Logged in")),
        }
        to_client.append(&mut self.output);
        LoggedIn {
            to_client,
            to_backend: std::mem::take(&mut self.input),
        }
    }

    fn timed_out(&mut self) {
        self.close("Autologout; idle for too long.");
    }

    fn shutting_down(&mut self) {
        self.close("Server shutting down.");
    }

    fn tls_started(&mut self) {
        self.tls_active = true;
        self.input.clear();
        self.framer.reset();
        self.state = State::Commands;
    }

    fn take_protocol_errors(&mut self) -> u32 {
        std::mem::take(&mut self.protocol_errors)
    }
}

#[path = "preauth_commands.rs"]
mod commands;

#[cfg(test)]
#[path = "preauth_tests.rs"]
mod tests;
