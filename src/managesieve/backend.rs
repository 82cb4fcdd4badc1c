//! The ManageSieve login towards a back end (RFC 5804), sans I/O: read the
//! capability greeting up to its `OK`; with `starttls`, `STARTTLS` and the
//! capabilities again after the handshake; `XCLIENT ADDR=… PORT=…` when the
//! back end announces `XCLIENT` (Dovecot does to its
//! `login_trusted_networks`) and the client's address is passed on; then
//! `AUTHENTICATE "PLAIN"` with the credentials as initial response, or for
//! a bearer-token login the client's mechanism (which the back end's
//! `SASL` capability must list) with its error challenge acknowledged.
//!
//! Answers are `OK`, `NO` or `BYE`, each with an optional response code in
//! parentheses and an optional string (quoted, or a literal `{n}` the back
//! end sends on the next line). A successful login hands on the back end's
//! capability lines (the greeting's, after TLS when it was upgraded) in
//! [`BackendGreeting::capability`], for the greeting mailgate gives its own
//! clients. `NO (TRYLATER)` and `BYE` are trouble
//! behind us (a temporary failure for the client); any other `NO` to the
//! login is a refused password. Nothing here performs I/O.

use crate::auth::oauth::{Bearer, BearerLogin};
use crate::auth::{encode_base64, encode_plain, Secret};
use crate::login::framing::{Frame, Framer};
use crate::login::{
    printable, AddressText, BackendEvent, BackendFault, BackendGreeting, BackendLogin,
    BackendOutcome, ClientAddress, LoginFailure, MAX_BACKEND_LINE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The greeting's capability lines and `OK`.
    Greeting,
    /// `STARTTLS` sent, its answer pending.
    StartTls,
    /// The driver runs the handshake.
    AwaitingTls,
    /// After the handshake: the capabilities again and `OK`.
    TlsGreeting,
    /// `XCLIENT` sent, its answer pending.
    Xclient,
    /// `AUTHENTICATE` sent, its answer pending.
    Authenticate,
    Done,
}

/// One back-end ManageSieve login.
pub struct ManageSieveBackendLogin {
    login_user: String,
    password: Secret,
    step: Step,
    framer: Framer,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Capability names of the last greeting (upper case).
    capabilities: Vec<String>,
    /// The last greeting's capability lines (CRLF included), handed on in
    /// the login's [`BackendGreeting`].
    capability_lines: Vec<u8>,
    client: Option<ClientAddress>,
    starttls: bool,
    /// The mechanisms of the last greeting's `SASL` line (upper case).
    sasl: Vec<String>,
    /// A bearer-token login (`password` is the token); its error challenge
    /// is answered once.
    bearer: Option<Bearer>,
    acknowledged: bool,
}

/// The step and sizes only: the output may hold the password.
impl std::fmt::Debug for ManageSieveBackendLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManageSieveBackendLogin")
            .field("step", &self.step)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
}

/// A back-end answer.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Ok,
    No { trylater: bool },
    Bye,
}

impl ManageSieveBackendLogin {
    /// Starts a login as `login_user`.
    pub fn new(login_user: &str, password: Secret) -> Self {
        Self {
            login_user: login_user.to_owned(),
            password,
            step: Step::Greeting,
            framer: Framer::new(MAX_BACKEND_LINE, MAX_BACKEND_LINE),
            input: Vec::new(),
            output: Vec::new(),
            capabilities: Vec::new(),
            capability_lines: Vec::new(),
            client: None,
            starttls: false,
            sasl: Vec::new(),
            bearer: None,
            acknowledged: false,
        }
    }

    /// Replays a bearer token (the `password`) with its mechanism.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// Upgrades the connection with `STARTTLS` before the login.
    pub fn with_starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Tells back ends that announce `XCLIENT` where the client connected
    /// from.
    pub fn with_client_address(mut self, client: ClientAddress) -> Self {
        self.client = Some(client);
        self
    }

    fn done(&mut self, outcome: BackendOutcome) -> BackendEvent {
        self.step = Step::Done;
        self.output.clear();
        BackendEvent::Done(outcome)
    }

    fn fault(&mut self, fault: BackendFault) -> BackendEvent {
        self.done(BackendOutcome::Unavailable(fault))
    }

    /// After a greeting's `OK`: `STARTTLS`, `XCLIENT` or the login.
    fn after_greeting(&mut self) -> Option<BackendEvent> {
        if self.starttls && self.step == Step::Greeting {
            self.output.extend_from_slice(b"STARTTLS\r\n");
            self.step = Step::StartTls;
            return None;
        }
        if let Some(client) = self.client.filter(|_| self.announces("XCLIENT")) {
            let line = format!(
                "XCLIENT ADDR={} PORT={}\r\n",
                AddressText(client.peer.ip()),
                client.peer.port()
            );
            self.output.extend_from_slice(line.as_bytes());
            self.step = Step::Xclient;
            return None;
        }
        self.authenticate()
    }

    fn authenticate(&mut self) -> Option<BackendEvent> {
        let (mechanism, response) = match &self.bearer {
            None => ("PLAIN", encode_plain(&self.login_user, &self.password)),
            Some(bearer) => {
                let mechanism = bearer.mechanism;
                if !self.sasl.iter().any(|m| m == mechanism.name()) {
                    let fault = BackendFault::MechanismMissing(mechanism.name(), mechanism.label());
                    return Some(self.fault(fault));
                }
                let login = BearerLogin::replay(&self.login_user, &self.password, bearer);
                let message = mechanism.encode(&login);
                let b64 = zeroize::Zeroizing::new(encode_base64(message.expose()));
                (mechanism.name(), b64)
            }
        };
        self.output.extend_from_slice(b"AUTHENTICATE \"");
        self.output.extend_from_slice(mechanism.as_bytes());
        self.output.extend_from_slice(b"\" \"");
        self.output.extend_from_slice(response.as_bytes());
        self.output.extend_from_slice(b"\"\r\n");
        self.step = Step::Authenticate;
        None
    }

    fn announces(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }

    /// One complete line (a literal's bytes included) from the back end.
    fn line(&mut self, line: &[u8]) -> Option<BackendEvent> {
        let answer = match answer(line) {
            Some(answer) => answer,
            None if matches!(self.step, Step::Greeting | Step::TlsGreeting)
                && line.starts_with(b"\"") =>
            {
                let name = capability_name(line);
                if name == "SASL" {
                    self.sasl = sasl_mechanisms(line);
                }
                self.capabilities.push(name);
                self.capability_lines.extend_from_slice(line);
                return None;
            }
            // A refused token's error challenge (RFC 7628 §3.2.2), a
            // string: acknowledged once, the `NO` follows.
            None if self.step == Step::Authenticate
                && self.bearer.is_some()
                && !self.acknowledged
                && (line.starts_with(b"\"") || line.starts_with(b"{")) =>
            {
                self.acknowledged = true;
                let ack = self
                    .bearer
                    .as_ref()
                    .map_or("", |b| b.mechanism.error_acknowledgement());
                self.output
                    .extend_from_slice(format!("\"{ack}\"\r\n").as_bytes());
                return None;
            }
            None => return Some(self.fault(BackendFault::UnexpectedReply(printable(line)))),
        };
        match (self.step, answer) {
            (Step::Greeting | Step::TlsGreeting, Answer::Ok) => self.after_greeting(),
            (Step::Greeting, _) => {
                Some(self.fault(BackendFault::UnexpectedGreeting(printable(line))))
            }
            (Step::StartTls, Answer::Ok) if !self.input.is_empty() => {
                Some(self.fault(BackendFault::DataAfterStartTls))
            }
            (Step::StartTls, Answer::Ok) => {
                self.step = Step::AwaitingTls;
                Some(BackendEvent::StartTls)
            }
            (Step::StartTls, _) => Some(self.fault(BackendFault::StartTlsRefused(printable(line)))),
            (Step::Xclient, Answer::Ok) => self.authenticate(),
            (Step::Authenticate, Answer::Ok) => {
                let leftover = std::mem::take(&mut self.input);
                let lines = std::mem::take(&mut self.capability_lines);
                let greeting = BackendGreeting {
                    capability: Some(String::from_utf8_lossy(&lines).into_owned()),
                    ..BackendGreeting::default()
                };
                Some(self.done(BackendOutcome::LoggedIn { greeting, leftover }))
            }
            (Step::Authenticate, Answer::No { trylater: false }) => {
                Some(self.done(BackendOutcome::Rejected(LoginFailure::AuthFailed)))
            }
            (_, Answer::No { .. } | Answer::Bye) => {
                Some(self.fault(BackendFault::ServiceRefused(printable(line))))
            }
            _ => Some(self.fault(BackendFault::UnexpectedReply(printable(line)))),
        }
    }
}

/// `OK`, `NO` or `BYE` at the start of `line`, if it is an answer.
fn answer(line: &[u8]) -> Option<Answer> {
    let word_end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let rest = &line[word_end..];
    let code_trylater = || {
        rest.trim_ascii_start()
            .get(..10)
            .is_some_and(|c| c.eq_ignore_ascii_case(b"(TRYLATER)"))
    };
    match &line[..word_end] {
        w if w.eq_ignore_ascii_case(b"OK") => Some(Answer::Ok),
        w if w.eq_ignore_ascii_case(b"NO") => Some(Answer::No {
            trylater: code_trylater(),
        }),
        w if w.eq_ignore_ascii_case(b"BYE") => Some(Answer::Bye),
        _ => None,
    }
}

/// The mechanisms of a `"SASL" "…"` line, upper-cased.
fn sasl_mechanisms(line: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(line).to_ascii_uppercase();
    let value = text.split('"').nth(3).unwrap_or("");
    value.split_ascii_whitespace().map(str::to_owned).collect()
}

/// The first quoted string of a capability line, upper-cased.
fn capability_name(line: &[u8]) -> String {
    let inner = &line[1..];
    let end = inner.iter().position(|&b| b == b'"').unwrap_or(inner.len());
    String::from_utf8_lossy(&inner[..end]).to_ascii_uppercase()
}

impl BackendLogin for ManageSieveBackendLogin {
    fn receive(&mut self, data: &[u8]) {
        if self.step != Step::Done {
            self.input.extend_from_slice(data);
        }
    }

    fn poll(&mut self) -> BackendEvent {
        loop {
            match self.step {
                Step::Done => {
                    return BackendEvent::Done(BackendOutcome::Unavailable(
                        BackendFault::AlreadyFinished,
                    ))
                }
                Step::AwaitingTls if !self.input.is_empty() => {
                    return self.fault(BackendFault::DataDuringTlsUpgrade)
                }
                Step::AwaitingTls => return BackendEvent::NeedInput,
                _ => {}
            }
            let end = match self.framer.scan(&self.input) {
                Frame::Incomplete { .. } => return BackendEvent::NeedInput,
                Frame::Complete(end) => end,
                Frame::Error(_) => return self.fault(BackendFault::LineTooLong),
            };
            self.framer.reset();
            let line: Vec<u8> = self.input.drain(..end).collect();
            if let Some(event) = self.line(&line) {
                return event;
            }
        }
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn tls_started(&mut self) {
        self.capabilities.clear();
        self.sasl.clear();
        self.capability_lines.clear();
        self.step = Step::TlsGreeting;
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
