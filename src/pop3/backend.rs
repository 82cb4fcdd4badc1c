//! Logging in to a POP3 back end with the client's credentials, sans I/O.
//!
//! After the `+OK` greeting: with `pop3_auth = "auto"` ask `CAPA` and use
//! `AUTH PLAIN` with an initial response when `SASL` lists PLAIN, else
//! `USER`/`PASS`. What `CAPA` listed is handed out ([`BackendOffers`]) to
//! be remembered for the next login to the same back end, which then
//! sends `AUTH PLAIN` without asking (one round trip fewer); should that
//! be refused, `CAPA` is asked after all, and the refusal stands only if
//! PLAIN is still listed (else `USER`/`PASS` follows). `XCLIENT` goes in
//! one write with the login when `CAPA` listed `PIPELINING` (RFC 2449).
//! What the greeting offered (`+OK [XCLIENT]`) is remembered with it; on
//! both, and with `[backend] early_login`, the next login is sent right
//! after connecting, before the greeting (the greeting is still read and
//! checked; an `XCLIENT` the greeting no longer offers is answered with
//! an error the login ignores, one it newly offers is used from the next
//! login on).
//! `-ERR` replies are classified by their RFC 3206 response code: `[SYS/TEMP]`/`[SYS/PERM]` → unavailable, `[IN-USE]` → in use,
//! anything else → authentication failed. A bearer-token login always asks
//! `CAPA` and is replayed with the client's mechanism (`AUTH OAUTHBEARER`
//! / `XOAUTH2` with an initial response), which `SASL` must list; its
//! error challenge is acknowledged so that the `-ERR` follows. Never
//! performs I/O.

use crate::auth::oauth::{Bearer, BearerLogin};
use crate::auth::{self, Secret};
use crate::login::{
    self, append_decimal, printable, AddressText, BackendEvent, BackendFault, BackendGreeting,
    BackendLogin, BackendOffers, BackendOutcome, ClientAddress, LoginFailure, MAX_BACKEND_LINE,
};
use serde::Deserialize;

/// How the proxy logs in to POP3 back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pop3BackendAuth {
    /// Ask `CAPA`; use `AUTH PLAIN` when offered, else `USER`/`PASS`.
    #[default]
    Auto,
    /// Always `AUTH PLAIN` (saves the CAPA round trip).
    Plain,
    /// Always `USER`/`PASS`.
    User,
}

/// [`BackendOffers`] bit: `CAPA`'s `SASL` line listed PLAIN.
const OFFERS_SASL_PLAIN: u32 = 1;
/// [`BackendOffers`] bit: `CAPA` listed `PIPELINING`.
const OFFERS_PIPELINING: u32 = 1 << 1;
/// [`BackendOffers`] bit: `CAPA` listed `XCLIENT`.
const OFFERS_XCLIENT_CAPA: u32 = 1 << 2;
/// The bits `CAPA` answers (kept from memory when it is not asked).
const OFFERS_FROM_CAPA: u32 = OFFERS_SASL_PLAIN | OFFERS_PIPELINING | OFFERS_XCLIENT_CAPA;
/// [`BackendOffers`] bit: a greeting was read, so the next bit says what
/// it offered (without it, nothing is known of the greeting and no login
/// goes early).
const OFFERS_GREETED: u32 = 1 << 3;
/// [`BackendOffers`] bit: the greeting offered `XCLIENT` (`+OK [XCLIENT]`).
const OFFERS_XCLIENT_GREETING: u32 = 1 << 4;

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
        pipelining: bool,
    },
    /// `XCLIENT` sent; then log in with PLAIN or not.
    Xclient {
        plain: bool,
    },
    AuthPlain,
    /// `AUTH OAUTHBEARER|XOAUTH2` sent; `acknowledged` once its error
    /// challenge was answered.
    AuthBearer {
        acknowledged: bool,
    },
    User,
    Pass,
    Done,
}

/// One POP3 back-end login exchange.
pub struct Pop3BackendLogin {
    login_user: String,
    password: Secret,
    method: Pop3BackendAuth,
    step: Step,
    input: Vec<u8>,
    /// The line being handled, taken from `input`: one buffer for the
    /// exchange's lines, not one per line.
    line: Vec<u8>,
    output: Vec<u8>,
    client: Option<ClientAddress>,
    /// The back end offered XCLIENT (Dovecot: `+OK [XCLIENT]` greeting).
    xclient_offered: bool,
    /// Upgrade the connection with STLS before logging in.
    starttls: bool,
    /// An event decided outside `poll` (after the TLS upgrade), returned by
    /// the next `poll`.
    pending: Option<BackendEvent>,
    /// A bearer-token login (`password` is the token).
    bearer: Option<Bearer>,
    /// `CAPA`'s `SASL` line lists the bearer login's mechanism.
    bearer_offered: bool,
    /// What an earlier login's `CAPA` listed, remembered by the caller.
    remembered: Option<BackendOffers>,
    /// What this exchange's `CAPA` listed.
    learned: Option<BackendOffers>,
    /// Commands may go in one write (`PIPELINING`).
    pipelining: bool,
    /// `AUTH PLAIN` went on remembered offers, without asking `CAPA`.
    assumed_plain: bool,
    /// A refusal of that login, standing once a fresh `CAPA` still lists
    /// PLAIN.
    recheck: Option<LoginFailure>,
    /// The step the login is at when `XCLIENT` was sent with it: taken
    /// once `XCLIENT`'s reply is read.
    after_xclient: Option<Step>,
    /// The login may go before the greeting (`[backend] early_login`);
    /// taken at the first poll.
    early: bool,
    /// The login went before the greeting, which is still to be read.
    greeting_pending: bool,
    /// Whether the greeting offered `XCLIENT`, once it was read.
    greeting_xclient: Option<bool>,
}

/// The step and sizes only: the buffers hold the password.
impl std::fmt::Debug for Pop3BackendLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3BackendLogin")
            .field("step", &self.step)
            .field("method", &self.method)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
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
            line: Vec::new(),
            output: Vec::new(),
            client: None,
            xclient_offered: false,
            starttls: false,
            pending: None,
            bearer: None,
            bearer_offered: false,
            remembered: None,
            learned: None,
            pipelining: false,
            assumed_plain: false,
            recheck: None,
            after_xclient: None,
            early: false,
            greeting_pending: false,
            greeting_xclient: None,
        }
    }

    /// Lets the login go before the greeting when the remembered offers
    /// say what the greeting offers (`[backend] early_login`).
    pub fn with_early_login(mut self) -> Self {
        self.early = true;
        self
    }

    /// Sends the login at once, as [`Self::after_greeting`] would, when the
    /// remembered offers say what the greeting will offer; not with STLS
    /// (the login waits for TLS) or a bearer token (which asks `CAPA`
    /// anyway).
    fn send_early(&mut self) -> Option<BackendEvent> {
        let remembered = self.remembered.map_or(0, |o| o.0);
        if !std::mem::take(&mut self.early)
            || remembered & OFFERS_GREETED == 0
            || self.starttls
            || self.bearer.is_some()
        {
            return None;
        }
        self.greeting_pending = true;
        self.xclient_offered = remembered & OFFERS_XCLIENT_GREETING != 0;
        self.after_greeting()
    }

    /// What an earlier login to this back end learned ([`BackendLogin::offers`]):
    /// with PLAIN among them, `auto` logs in without asking `CAPA`.
    pub fn with_offers(mut self, offers: BackendOffers) -> Self {
        self.remembered = Some(offers);
        self
    }

    /// Replays a bearer token (the `password`) with its mechanism.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
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

    /// Queues one command line. Room is made for all of it first: a
    /// buffer that grew half-way through a password would leave that part
    /// in the one it gave up, unwiped.
    fn send(&mut self, parts: &[&[u8]]) {
        self.output
            .reserve(parts.iter().map(|p| p.len()).sum::<usize>() + 2);
        for part in parts {
            self.output.extend_from_slice(part);
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn after_greeting(&mut self) -> Option<BackendEvent> {
        // A bearer login needs to know the mechanism is there.
        let method = match self.bearer {
            Some(_) => Pop3BackendAuth::Auto,
            None => self.method,
        };
        match method {
            Pop3BackendAuth::Auto => {
                let remembered = self.remembered.map_or(0, |o| o.0);
                if self.bearer.is_none() && remembered & OFFERS_SASL_PLAIN != 0 {
                    self.assumed_plain = true;
                    self.pipelining = remembered & OFFERS_PIPELINING != 0;
                    self.xclient_offered |= remembered & OFFERS_XCLIENT_CAPA != 0;
                    return self.introduce_client_then_auth(true);
                }
                self.ask_capa();
                None
            }
            Pop3BackendAuth::Plain => self.introduce_client_then_auth(true),
            Pop3BackendAuth::User => self.introduce_client_then_auth(false),
        }
    }

    fn ask_capa(&mut self) {
        self.send(&[b"CAPA"]);
        self.step = Step::Capa {
            status_seen: false,
            plain: false,
            xclient: false,
            pipelining: false,
        };
    }

    /// Sends `XCLIENT` first when offered and a client address is known,
    /// the login with it when the back end pipelines.
    fn introduce_client_then_auth(&mut self, plain: bool) -> Option<BackendEvent> {
        match self.client.filter(|_| self.xclient_offered) {
            Some(client) => {
                let mut command = String::with_capacity(80);
                command.push_str("XCLIENT ADDR=");
                AddressText(client.peer.ip()).append_to(&mut command);
                command.push_str(" PORT=");
                append_decimal(&mut command, client.peer.port().into());
                self.send(&[command.as_bytes()]);
                if self.pipelining {
                    if let Some(event) = self.start_auth(plain) {
                        return Some(event);
                    }
                    self.after_xclient = Some(self.step);
                }
                self.step = Step::Xclient { plain };
                None
            }
            None => self.start_auth(plain),
        }
    }

    fn start_auth(&mut self, plain: bool) -> Option<BackendEvent> {
        if let Some(bearer) = &self.bearer {
            let mechanism = bearer.mechanism;
            if !self.bearer_offered {
                let fault = BackendFault::MechanismMissing(mechanism.name(), mechanism.label());
                return Some(self.done(BackendOutcome::Unavailable(fault)));
            }
            let login = BearerLogin::replay(&self.login_user, &self.password, bearer);
            let message = mechanism.encode(&login);
            let b64 = zeroize::Zeroizing::new(auth::encode_base64(message.expose()));
            self.send(&[b"AUTH ", mechanism.name().as_bytes(), b" ", b64.as_bytes()]);
            self.step = Step::AuthBearer {
                acknowledged: false,
            };
            return None;
        }
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

    /// The lines waiting in `input`, one at a time through `line`, until
    /// one ends the poll.
    fn handle_lines(&mut self, line: &mut Vec<u8>) -> BackendEvent {
        loop {
            if self.step == Step::Done {
                return BackendEvent::Done(BackendOutcome::Unavailable(
                    BackendFault::AlreadyFinished,
                ));
            }
            match login::take_line_into(&mut self.input, line, MAX_BACKEND_LINE) {
                Ok(true) => {}
                Ok(false) => return BackendEvent::NeedInput,
                Err(login::LineTooLong) => {
                    return self.done(BackendOutcome::Unavailable(BackendFault::LineTooLong))
                }
            }
            if let Some(event) = self.on_line(line) {
                return event;
            }
        }
    }

    fn on_line(&mut self, line: &[u8]) -> Option<BackendEvent> {
        let ok = line.starts_with(b"+OK");
        if self.greeting_pending {
            // The greeting to a login sent before it: checked, and what it
            // offers noted for the next login.
            self.greeting_pending = false;
            if !ok {
                let fault = BackendFault::UnexpectedGreeting(printable(line));
                return Some(self.done(BackendOutcome::Unavailable(fault)));
            }
            let xclient = line.starts_with(b"+OK [XCLIENT]");
            self.greeting_xclient = Some(xclient);
            if matches!(self.step, Step::Capa { .. }) {
                // Only `CAPA` went: whether `XCLIENT` follows is the
                // greeting's (and CAPA's) to say, not the memory's.
                self.xclient_offered = xclient;
            }
            return None;
        }
        match self.step {
            Step::Greeting if ok => {
                self.xclient_offered = line.starts_with(b"+OK [XCLIENT]");
                self.greeting_xclient = Some(self.xclient_offered);
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
                status_seen,
                plain,
                xclient,
                pipelining,
            } => self.on_capa_line(line, ok, status_seen, (plain, xclient, pipelining)),
            // Whatever the back end thinks of XCLIENT, the login goes on.
            Step::Xclient { plain } => match self.after_xclient.take() {
                Some(sent) => {
                    self.step = sent;
                    None
                }
                None => self.start_auth(plain),
            },
            // Refused on remembered offers: PLAIN may be gone since.
            Step::AuthPlain if self.assumed_plain && line.starts_with(b"-ERR") => {
                self.assumed_plain = false;
                match classify(line) {
                    BackendOutcome::Rejected(failure @ LoginFailure::AuthFailed) => {
                        self.recheck = Some(failure);
                        self.ask_capa();
                        None
                    }
                    outcome => Some(self.done(outcome)),
                }
            }
            Step::User if ok => {
                let password = self.password.clone();
                if password.expose().iter().any(|&b| b == b'\r' || b == b'\n') {
                    return Some(self.done(BackendOutcome::Rejected(LoginFailure::AuthFailed)));
                }
                self.send(&[b"PASS ", password.expose()]);
                self.step = Step::Pass;
                None
            }
            // A refused token's error challenge (RFC 7628 §3.2.2).
            Step::AuthBearer {
                acknowledged: false,
            } if line.starts_with(b"+ ") || line == b"+" => {
                let ack = self
                    .bearer
                    .as_ref()
                    .map_or("", |b| b.mechanism.error_acknowledgement());
                self.send(&[ack.as_bytes()]);
                self.step = Step::AuthBearer { acknowledged: true };
                None
            }
            Step::AuthPlain | Step::AuthBearer { .. } | Step::Pass if ok => {
                let leftover = std::mem::take(&mut self.input);
                Some(self.done(BackendOutcome::LoggedIn {
                    greeting: BackendGreeting::default(),
                    leftover,
                }))
            }
            Step::AuthPlain | Step::AuthBearer { .. } | Step::User | Step::Pass
                if line.starts_with(b"-ERR") =>
            {
                Some(self.done(classify(line)))
            }
            _ => Some(self.unexpected(line, ok)),
        }
    }

    /// One line of the `CAPA` answer (its status line first); `seen`:
    /// PLAIN, XCLIENT, PIPELINING listed so far.
    fn on_capa_line(
        &mut self,
        line: &[u8],
        ok: bool,
        status_seen: bool,
        seen: (bool, bool, bool),
    ) -> Option<BackendEvent> {
        let (plain, xclient, pipelining) = seen;
        if !status_seen {
            if !ok {
                if let Some(failure) = self.recheck.take() {
                    return Some(self.done(BackendOutcome::Rejected(failure)));
                }
                return self.start_auth(false);
            }
            self.step = Step::Capa {
                status_seen: true,
                plain: false,
                xclient: false,
                pipelining: false,
            };
            return None;
        }
        if line == b"." {
            let bits = (if plain { OFFERS_SASL_PLAIN } else { 0 })
                | (if pipelining { OFFERS_PIPELINING } else { 0 })
                | (if xclient { OFFERS_XCLIENT_CAPA } else { 0 });
            self.learned = Some(BackendOffers(bits));
            self.pipelining = pipelining;
            if let Some(failure) = self.recheck.take() {
                // XCLIENT went already; the refusal stands where PLAIN is
                // still offered, else the login goes the other way.
                if plain {
                    return Some(self.done(BackendOutcome::Rejected(failure)));
                }
                return self.start_auth(false);
            }
            self.xclient_offered |= xclient;
            return self.introduce_client_then_auth(plain);
        }
        let (keyword, rest) = super::split_command(line);
        let offers = |name: &str| {
            keyword == "SASL"
                && rest
                    .split(|&b| b == b' ')
                    .any(|m| m.eq_ignore_ascii_case(name.as_bytes()))
        };
        let offers_plain = offers("PLAIN");
        if let Some(bearer) = &self.bearer {
            self.bearer_offered |= offers(bearer.mechanism.name());
        }
        self.step = Step::Capa {
            status_seen: true,
            plain: plain || offers_plain,
            xclient: xclient || keyword == "XCLIENT",
            pipelining: pipelining || keyword == "PIPELINING",
        };
        None
    }

    /// A line that fits no step: the back end is unusable.
    fn unexpected(&mut self, line: &[u8], ok: bool) -> BackendEvent {
        let fault = match self.step {
            Step::Greeting => BackendFault::UnexpectedGreeting(printable(line)),
            Step::Stls if ok => BackendFault::DataAfterStartTls,
            Step::Stls => BackendFault::StartTlsRefused(printable(line)),
            Step::AwaitingTls => BackendFault::DataDuringTlsUpgrade,
            _ => BackendFault::UnexpectedReply(printable(line)),
        };
        self.done(BackendOutcome::Unavailable(fault))
    }
}

/// A `-ERR` to a login, by its RFC 3206 response code.
fn classify(line: &[u8]) -> BackendOutcome {
    let code = line
        .strip_prefix(b"-ERR [")
        .and_then(|r| r.iter().position(|&b| b == b']').map(|end| &r[..end]))
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase());
    match code.as_deref() {
        Some(c) if c.starts_with("SYS/") => {
            BackendOutcome::Unavailable(BackendFault::ServiceRefused(printable(line)))
        }
        Some("IN-USE") => BackendOutcome::Rejected(LoginFailure::InUse),
        _ => BackendOutcome::Rejected(LoginFailure::AuthFailed),
    }
}

impl BackendLogin for Pop3BackendLogin {
    fn receive(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    fn poll(&mut self) -> BackendEvent {
        if let Some(event) = self.pending.take() {
            return event;
        }
        if self.step == Step::Greeting {
            if let Some(event) = self.send_early() {
                return event;
            }
        }
        let mut line = std::mem::take(&mut self.line);
        let event = self.handle_lines(&mut line);
        self.line = line;
        event
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn tls_started(&mut self) {
        // The login may be decided right here (a user name USER cannot
        // carry): keep that outcome for the next `poll`.
        self.pending = self.after_greeting();
    }

    fn offers(&self) -> Option<BackendOffers> {
        // What `CAPA` answered now, or was remembered when not asked; with
        // what the greeting offered, once one was read.
        let xclient = self.greeting_xclient?;
        let capa = self.learned.or(self.remembered).map_or(0, |o| o.0) & OFFERS_FROM_CAPA;
        let greeting = OFFERS_GREETED | if xclient { OFFERS_XCLIENT_GREETING } else { 0 };
        Some(BackendOffers(capa | greeting))
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
