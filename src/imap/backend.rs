//! Logging in to an IMAP back end with the client's credentials, sans I/O.
//!
//! Reads the greeting (asking `CAPABILITY` only if the greeting carried none),
//! then uses `AUTHENTICATE PLAIN` (with SASL-IR when offered) or `LOGIN` with
//! quoted strings, or literals when a value cannot be quoted (`{n+}` with
//! LITERAL+, else synchronizing literals awaiting `+`). A bearer-token
//! login is replayed with the client's mechanism (`AUTHENTICATE
//! OAUTHBEARER`/`XOAUTH2`, which the back end must announce), its error
//! challenge acknowledged so that the refusal follows. With compression
//! asked for and `COMPRESS=DEFLATE` in the post-login capabilities, a
//! `COMPRESS DEFLATE` follows the login (RFC 4978); everything after its
//! `OK` is deflate, handed over as `leftover`.
//!
//! **The login before the greeting.** What a greeting offered (the
//! capabilities a login's bytes depend on: `ID`, `AUTH=PLAIN`, `SASL-IR`,
//! `LITERAL+`, `LOGINDISABLED`) is handed out ([`BackendOffers`]) to be
//! remembered for the next login to the same back end. Given them, a
//! password login that fits one write (no synchronizing literal, no
//! STARTTLS, no bearer token) is sent at once, before the greeting has
//! arrived: the back end reads it after its greeting, and the round trip
//! to the greeting and back is gone (a VPN round trip per login; on one
//! host, a wake-up of the back end's login process and often of the
//! worker, the `ID`'s answer arriving with the greeting). The greeting is
//! still read and checked: should it offer other capabilities than those
//! assumed, a refusal of the early login is not taken for an answer, and
//! the login is sent again as the greeting says (after `CAPABILITY` if it
//! listed none); an `OK` stands either way.
//!
//! The tagged reply decides: `OK` → logged in (post-login capability kept for the client),
//! `NO` → rejected or temporarily unavailable depending on the response code,
//! anything unexpected → unavailable. Never performs I/O.

use super::response::{can_quote, capability_code, response_code, strip_prefix_ci};
use crate::auth::oauth::{Bearer, BearerLogin};
use crate::auth::{self, Secret};
use crate::login::{
    self, append_decimal, printable, AddressText, BackendEvent, BackendFault, BackendGreeting,
    BackendLogin, BackendOffers, BackendOutcome, ClientAddress, Compression, LoginFailure,
    MAX_BACKEND_LINE,
};
use serde::Deserialize;
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// How the proxy logs in to IMAP back ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImapBackendAuth {
    /// `AUTHENTICATE PLAIN` when the back end offers `AUTH=PLAIN`, else `LOGIN`.
    #[default]
    Auto,
    /// Always `AUTHENTICATE PLAIN`.
    Plain,
    /// Always `LOGIN` (quoted strings or literals as needed).
    Login,
}

/// Longest value sent as a quoted string; longer ones go as literals.
pub(super) const MAX_QUOTED_VALUE: usize = 1024;

const CAPABILITY_TAG: &str = "mg0";
const LOGIN_TAG: &str = "mg1";
const ID_TAG: &str = "mgid";
/// Room for the longest `ID` command (two IPv6 addresses written in full,
/// two five-digit ports): its buffer is never regrown.
const ID_ROOM: usize = 200;
const STARTTLS_TAG: &str = "mgtls";
const COMPRESS_TAG: &str = "mgz";
/// The capability that announces RFC 4978's DEFLATE.
const COMPRESS_DEFLATE: &str = "COMPRESS=DEFLATE";

/// [`BackendOffers`] bit: the greeting carried a `CAPABILITY` code (without
/// it nothing is known before asking, and no login goes early).
pub(super) const OFFERS_IN_GREETING: u32 = 1;
/// The capabilities a login's bytes depend on, one [`BackendOffers`] bit
/// each (from bit 1 on), in the order of this list.
pub(super) const LOGIN_CAPABILITIES: [&str; 5] =
    ["ID", "AUTH=PLAIN", "SASL-IR", "LITERAL+", "LOGINDISABLED"];

/// The [`BackendOffers`] of a greeting whose capability list is `caps`
/// (`None`: it carried none).
fn offers_of(caps: Option<&str>) -> BackendOffers {
    let Some(caps) = caps else {
        return BackendOffers(0);
    };
    let mut bits = OFFERS_IN_GREETING;
    for cap in caps.split_ascii_whitespace() {
        if let Some(i) = LOGIN_CAPABILITIES
            .iter()
            .position(|name| cap.eq_ignore_ascii_case(name))
        {
            bits |= 2 << i;
        }
    }
    BackendOffers(bits)
}

/// The longest list [`capabilities_of`] makes: every name and a space.
const LOGIN_CAPABILITIES_ROOM: usize = {
    let mut room = 0;
    let mut i = 0;
    while i < LOGIN_CAPABILITIES.len() {
        room += LOGIN_CAPABILITIES[i].len() + 1;
        i += 1;
    }
    room
};

/// The capability list that `offers` stands for (the login's part of it).
fn capabilities_of(offers: BackendOffers) -> String {
    let mut caps = String::with_capacity(LOGIN_CAPABILITIES_ROOM);
    for (i, name) in LOGIN_CAPABILITIES.iter().enumerate() {
        if offers.0 & (2 << i) != 0 {
            if !caps.is_empty() {
                caps.push(' ');
            }
            caps.push_str(name);
        }
    }
    caps
}

enum Step {
    Greeting,
    /// `STARTTLS` sent, its reply pending.
    StartingTls,
    /// Waiting for the driver's handshake.
    AwaitingTls,
    Capability,
    /// Login sent (maybe in part); `pending` chunks wait for `+` each.
    LoggingIn {
        pending: VecDeque<Zeroizing<Vec<u8>>>,
    },
    /// Logged in; `COMPRESS DEFLATE` sent, its answer pending.
    Compressing {
        greeting: BackendGreeting,
    },
    Done,
}

/// Most bytes of untagged lines kept from the login exchange (for the
/// client); more is a misbehaving back end.
pub const MAX_UNTAGGED: usize = 64 * 1024;

/// One back-end login exchange.
pub struct ImapBackendLogin {
    login_user: String,
    password: Secret,
    method: ImapBackendAuth,
    step: Step,
    input: Vec<u8>,
    /// The line being handled, taken from `input`: one buffer for the
    /// exchange's lines, not one per line.
    line: Vec<u8>,
    output: Vec<u8>,
    /// The back end's capability list as it sent it (space-separated),
    /// searched in place: no string per capability.
    capabilities: String,
    post_login_capability: Option<String>,
    untagged: Vec<u8>,
    client: Option<ClientAddress>,
    /// An `ID` with the client's address was sent and its reply is pending.
    awaiting_id_reply: bool,
    /// Upgrade the connection with STARTTLS before logging in.
    starttls: bool,
    /// A bearer-token login (`password` is the token); its error challenge
    /// is answered once.
    bearer: Option<Bearer>,
    acknowledged: bool,
    /// Compress the leg after the login when offered.
    compress: bool,
    /// What an earlier login's greeting offered, remembered by the caller:
    /// the login may go before this one's greeting. Taken at the first poll.
    remembered: Option<BackendOffers>,
    /// The login went before the greeting, on these offers.
    assumed: Option<BackendOffers>,
    /// The greeting offered other capabilities than those assumed: a
    /// refusal of the early login is not an answer.
    stale: bool,
    /// What this exchange's greeting offered (handed out by `offers`).
    learned: Option<BackendOffers>,
    /// The `ID` was sent (it is not sent twice).
    id_sent: bool,
}

/// The step and sizes only: the buffers hold the password.
impl std::fmt::Debug for ImapBackendLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            Step::Greeting => "Greeting",
            Step::StartingTls => "StartingTls",
            Step::AwaitingTls => "AwaitingTls",
            Step::Capability => "Capability",
            Step::LoggingIn { .. } => "LoggingIn",
            Step::Compressing { .. } => "Compressing",
            Step::Done => "Done",
        };
        f.debug_struct("ImapBackendLogin")
            .field("step", &step)
            .field("method", &self.method)
            .field("input_bytes", &self.input.len())
            .field("output_bytes", &self.output.len())
            .finish()
    }
}

impl ImapBackendLogin {
    /// Starts a login as `login_user` (the directory's name for the user).
    pub fn new(login_user: &str, password: Secret, method: ImapBackendAuth) -> Self {
        Self {
            login_user: login_user.to_owned(),
            password,
            method,
            step: Step::Greeting,
            input: Vec::new(),
            line: Vec::new(),
            output: Vec::new(),
            capabilities: String::new(),
            post_login_capability: None,
            untagged: Vec::new(),
            client: None,
            awaiting_id_reply: false,
            starttls: false,
            bearer: None,
            acknowledged: false,
            compress: false,
            remembered: None,
            assumed: None,
            stale: false,
            learned: None,
            id_sent: false,
        }
    }

    /// What an earlier login's greeting from this back end offered
    /// ([`BackendLogin::offers`]): the login goes before the greeting when
    /// it can.
    pub fn with_offers(mut self, offers: BackendOffers) -> Self {
        self.remembered = Some(offers);
        self
    }

    /// Sends the login at once on the remembered offers, when they came
    /// from a greeting and the login fits one write.
    fn send_early(&mut self, offers: BackendOffers) {
        if offers.0 & OFFERS_IN_GREETING == 0 || self.starttls || self.bearer.is_some() {
            return;
        }
        self.capabilities = capabilities_of(offers);
        match self.login_plan() {
            Ok(chunks) if chunks.len() == 1 => {
                self.queue_login(chunks);
                self.assumed = Some(offers);
            }
            // Refused or in parts: the greeting decides, as without offers.
            _ => self.capabilities.clear(),
        }
    }

    /// Asks for `COMPRESS DEFLATE` after the login when the back end
    /// announces it.
    pub fn with_compression(mut self) -> Self {
        self.compress = true;
        self
    }

    /// After the login's `OK`: `COMPRESS DEFLATE` when asked for and
    /// offered (`None`: its answer is awaited), else done.
    fn logged_in(&mut self, mut greeting: BackendGreeting) -> Option<BackendEvent> {
        if !self.compress {
            let leftover = std::mem::take(&mut self.input);
            return Some(self.done(BackendOutcome::LoggedIn { greeting, leftover }));
        }
        let offered = greeting.capability.as_deref().is_some_and(|caps| {
            caps.split_ascii_whitespace()
                .any(|c| c.eq_ignore_ascii_case(COMPRESS_DEFLATE))
        });
        if !offered {
            greeting.compression = Compression::NotOffered;
            let leftover = std::mem::take(&mut self.input);
            return Some(self.done(BackendOutcome::LoggedIn { greeting, leftover }));
        }
        self.output
            .extend_from_slice(format!("{COMPRESS_TAG} COMPRESS DEFLATE\r\n").as_bytes());
        self.step = Step::Compressing { greeting };
        None
    }

    fn on_compress_reply(&mut self, line: &[u8]) -> Option<BackendEvent> {
        let Step::Compressing { greeting } = &mut self.step else {
            return None;
        };
        if line.starts_with(b"* ") {
            if !keep_untagged(&mut greeting.untagged, line) {
                return Some(self.unavailable(BackendFault::TooManyUntagged));
            }
            return None;
        }
        let Some(status) = line
            .strip_prefix(COMPRESS_TAG.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
        else {
            return Some(self.unavailable(BackendFault::UnexpectedReply(printable(line))));
        };
        let Step::Compressing { mut greeting } = std::mem::replace(&mut self.step, Step::Done)
        else {
            unreachable!("matched above");
        };
        if strip_prefix_ci(status, b"OK").is_some() {
            greeting.compression = Compression::Deflate;
            // The client's own COMPRESS would meet an active one: the list
            // it is handed says what it can use.
            greeting.capability = greeting.capability.map(|caps| {
                caps.split_ascii_whitespace()
                    .filter(|c| !c.eq_ignore_ascii_case(COMPRESS_DEFLATE))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        } else {
            greeting.compression = Compression::Refused;
        }
        // After an OK these bytes are deflate; after a refusal, plain.
        let leftover = std::mem::take(&mut self.input);
        Some(self.done(BackendOutcome::LoggedIn { greeting, leftover }))
    }

    /// Replays a bearer token (the `password`) with its mechanism.
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// Upgrades the connection with `STARTTLS` (RFC 2595) before the login.
    pub fn with_starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    fn on_starttls_reply(&mut self, line: &[u8]) -> Option<BackendEvent> {
        if line.starts_with(b"* ") {
            return None;
        }
        if line.starts_with(format!("{STARTTLS_TAG} OK").as_bytes()) {
            if !self.input.is_empty() {
                // Bytes after the OK would be plaintext injected before TLS.
                return Some(self.unavailable(BackendFault::DataAfterStartTls));
            }
            self.step = Step::AwaitingTls;
            return Some(BackendEvent::StartTls);
        }
        Some(self.unavailable(BackendFault::StartTlsRefused(printable(line))))
    }

    /// Tells back ends that support `ID` (RFC 2971) where the client connected
    /// from, with Dovecot's `x-originating-ip`/`x-connected-ip` fields (used by
    /// Dovecot when the proxy is in its `login_trusted_networks`).
    pub fn with_client_address(mut self, client: ClientAddress) -> Self {
        self.client = Some(client);
        self
    }

    /// `ID` with the client's address, built without the formatter (it
    /// cost ~2 000 instructions per login with `format!`), with `then`
    /// bytes of room for what follows it.
    fn id_command(&self, then: usize) -> Option<String> {
        if self.id_sent {
            return None;
        }
        let client = self.client.filter(|_| self.has_capability("ID"))?;
        let mut id = String::with_capacity(ID_ROOM + then);
        id.push_str(ID_TAG);
        id.push_str(" ID (\"x-originating-ip\" \"");
        AddressText(client.peer.ip()).append_to(&mut id);
        id.push_str("\" \"x-originating-port\" \"");
        append_decimal(&mut id, client.peer.port().into());
        id.push_str("\" \"x-connected-ip\" \"");
        AddressText(client.local.ip()).append_to(&mut id);
        id.push_str("\" \"x-connected-port\" \"");
        append_decimal(&mut id, client.local.port().into());
        id.push_str("\")\r\n");
        Some(id)
    }

    fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .split_ascii_whitespace()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    fn done(&mut self, outcome: BackendOutcome) -> BackendEvent {
        self.step = Step::Done;
        BackendEvent::Done(outcome)
    }

    fn unavailable(&mut self, fault: BackendFault) -> BackendEvent {
        self.done(BackendOutcome::Unavailable(fault))
    }

    fn on_greeting(&mut self, line: &[u8]) -> Option<BackendEvent> {
        let Some(rest) = line.strip_prefix(b"* OK") else {
            return Some(self.unavailable(BackendFault::UnexpectedGreeting(printable(line))));
        };
        if self.starttls {
            self.output
                .extend_from_slice(format!("{STARTTLS_TAG} STARTTLS\r\n").as_bytes());
            self.step = Step::StartingTls;
            return None;
        }
        let caps = capability_code(rest);
        let offers = offers_of(caps.as_deref());
        self.learned = Some(offers);
        if let Some(assumed) = self.assumed {
            // The login is on its way; its answer follows.
            self.stale = offers != assumed;
            self.capabilities = caps.unwrap_or_default();
            self.step = Step::LoggingIn {
                pending: VecDeque::new(),
            };
            return None;
        }
        if let Some(caps) = caps {
            self.capabilities = caps;
            return self.start_login();
        }
        self.ask_capability();
        None
    }

    fn ask_capability(&mut self) {
        self.output
            .extend_from_slice(format!("{CAPABILITY_TAG} CAPABILITY\r\n").as_bytes());
        self.step = Step::Capability;
    }

    /// The early login was refused, but on capabilities the greeting did
    /// not offer: sent again as the greeting says.
    fn retry_stale(&mut self) -> Option<BackendEvent> {
        self.stale = false;
        self.assumed = None;
        if self.learned.is_some_and(|o| o.0 & OFFERS_IN_GREETING != 0) {
            self.start_login()
        } else {
            self.ask_capability();
            None
        }
    }

    fn on_capability_reply(&mut self, line: &[u8]) -> Option<BackendEvent> {
        if let Some(caps) = strip_prefix_ci(line, b"* CAPABILITY ") {
            self.capabilities = String::from_utf8_lossy(caps).into_owned();
            None
        } else if line.starts_with(b"* ") {
            None
        } else if line.starts_with(format!("{CAPABILITY_TAG} OK").as_bytes()) {
            self.start_login()
        } else {
            Some(self.unavailable(BackendFault::CapabilityFailed(printable(line))))
        }
    }

    fn start_login(&mut self) -> Option<BackendEvent> {
        match self.login_plan() {
            Ok(chunks) => {
                let pending = self.queue_login(chunks);
                self.step = Step::LoggingIn { pending };
                None
            }
            Err(outcome) => Some(self.done(outcome)),
        }
    }

    /// The login's chunks for the capabilities known now, or the outcome
    /// that ends the exchange before anything is sent.
    fn login_plan(&self) -> Result<VecDeque<Zeroizing<Vec<u8>>>, BackendOutcome> {
        if let Some(bearer) = &self.bearer {
            let name = bearer.mechanism.name();
            if !self.has_capability(&format!("AUTH={name}")) {
                let fault = BackendFault::MechanismMissing(name, bearer.mechanism.label());
                return Err(BackendOutcome::Unavailable(fault));
            }
            return Ok(self.bearer_chunks(bearer));
        }
        let use_plain = match self.method {
            ImapBackendAuth::Plain => true,
            ImapBackendAuth::Login => false,
            ImapBackendAuth::Auto => self.has_capability("AUTH=PLAIN"),
        };
        if !use_plain && self.has_capability("LOGINDISABLED") {
            return Err(BackendOutcome::Unavailable(BackendFault::LoginDisabled));
        }
        if use_plain {
            return Ok(self.plain_chunks());
        }
        self.login_chunks()
            .ok_or(BackendOutcome::Rejected(LoginFailure::AuthFailed))
    }

    /// Queues the first chunk of a login (after `ID` when one is sent);
    /// the chunks that wait for `+`.
    fn queue_login(
        &mut self,
        mut chunks: VecDeque<Zeroizing<Vec<u8>>>,
    ) -> VecDeque<Zeroizing<Vec<u8>>> {
        let first = chunks.pop_front().expect("a login has at least one chunk");
        if let Some(id) = self.id_command(first.len()) {
            // Its room holds the login too: one buffer for the write.
            if self.output.is_empty() {
                self.output = id.into_bytes();
            } else {
                self.output.extend_from_slice(id.as_bytes());
            }
            self.awaiting_id_reply = true;
            self.id_sent = true;
        }
        self.output.extend_from_slice(&first);
        chunks
    }

    fn plain_chunks(&self) -> VecDeque<Zeroizing<Vec<u8>>> {
        let b64 = auth::encode_plain(&self.login_user, &self.password);
        self.authenticate_chunks("PLAIN", &b64)
    }

    fn bearer_chunks(&self, bearer: &Bearer) -> VecDeque<Zeroizing<Vec<u8>>> {
        let login = BearerLogin::replay(&self.login_user, &self.password, bearer);
        let message = bearer.mechanism.encode(&login);
        let b64 = Zeroizing::new(auth::encode_base64(message.expose()));
        self.authenticate_chunks(bearer.mechanism.name(), &b64)
    }

    /// `AUTHENTICATE <mechanism>` with the response as SASL-IR when
    /// offered, else after the first `+`.
    fn authenticate_chunks(&self, mechanism: &str, b64: &str) -> VecDeque<Zeroizing<Vec<u8>>> {
        let mut chunks = VecDeque::new();
        if self.has_capability("SASL-IR") {
            // Sized up front: the response is a secret, never left behind
            // in a buffer outgrown.
            let parts: [&[u8]; 6] = [
                LOGIN_TAG.as_bytes(),
                b" AUTHENTICATE ",
                mechanism.as_bytes(),
                b" ",
                b64.as_bytes(),
                b"\r\n",
            ];
            let mut line = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
            for part in parts {
                line.extend_from_slice(part);
            }
            chunks.push_back(line);
        } else {
            chunks.push_back(Zeroizing::new(
                format!("{LOGIN_TAG} AUTHENTICATE {mechanism}\r\n").into_bytes(),
            ));
            // At its size: `format!` grows its buffer as it writes and
            // would leave the response in the one it gave up.
            let mut response = Zeroizing::new(Vec::with_capacity(b64.len() + 2));
            response.extend_from_slice(b64.as_bytes());
            response.extend_from_slice(b"\r\n");
            chunks.push_back(response);
        }
        chunks
    }

    /// `LOGIN user password`, split where a synchronizing literal needs `+`.
    /// `None` when a value cannot be sent at all (a NUL byte).
    ///
    /// Every chunk is allocated once at a size it cannot outgrow
    /// ([`login_room`]): a `Vec` that grows copies its bytes and frees the
    /// old buffer unwiped, which would leave a part of the password behind.
    fn login_chunks(&self) -> Option<VecDeque<Zeroizing<Vec<u8>>>> {
        let literal_plus = self.has_capability("LITERAL+");
        let values = [self.login_user.as_bytes(), self.password.expose()];
        if values.iter().any(|v| v.contains(&0)) {
            return None;
        }
        let room = login_room(&values);
        let mut chunks = VecDeque::new();
        let mut current = Zeroizing::new(Vec::with_capacity(room));
        current.extend_from_slice(LOGIN_TAG.as_bytes());
        current.extend_from_slice(b" LOGIN ");
        for (i, value) in values.into_iter().enumerate() {
            if i == 1 {
                current.push(b' ');
            }
            if can_quote(value) {
                current.push(b'"');
                for &b in value {
                    if b == b'"' || b == b'\\' {
                        current.push(b'\\');
                    }
                    current.push(b);
                }
                current.push(b'"');
            } else {
                current.push(b'{');
                login::append_decimal_bytes(&mut current, value.len() as u64);
                current.extend_from_slice(if literal_plus { b"+}\r\n" } else { b"}\r\n" });
                if literal_plus {
                    current.extend_from_slice(value);
                } else {
                    let mut next = Zeroizing::new(Vec::with_capacity(room));
                    next.extend_from_slice(value);
                    chunks.push_back(std::mem::replace(&mut current, next));
                }
            }
        }
        current.extend_from_slice(b"\r\n");
        chunks.push_back(current);
        debug_assert!(
            chunks.iter().all(|c| c.capacity() == room),
            "a chunk outgrew its room"
        );
        Some(chunks)
    }

    fn on_login_reply(&mut self, line: &[u8]) -> Option<BackendEvent> {
        if self.awaiting_id_reply {
            // The reply to our ID comes first: `* ID …` then `mgid OK|NO|BAD`.
            if line
                .strip_prefix(ID_TAG.as_bytes())
                .is_some_and(|rest| rest.starts_with(b" "))
            {
                self.awaiting_id_reply = false;
                return None;
            }
            if strip_prefix_ci(line, b"* ID ").is_some() {
                return None;
            }
        }
        if line.starts_with(b"+") {
            let Step::LoggingIn { pending } = &mut self.step else {
                return None;
            };
            return match pending.pop_front() {
                Some(chunk) => {
                    self.output.extend_from_slice(&chunk);
                    None
                }
                // A bearer token refused: the error challenge (RFC 7628
                // §3.2.2), acknowledged once; the tagged NO follows.
                None => match &self.bearer {
                    Some(bearer) if !self.acknowledged => {
                        self.acknowledged = true;
                        let ack = bearer.mechanism.error_acknowledgement();
                        self.output
                            .extend_from_slice(format!("{ack}\r\n").as_bytes());
                        None
                    }
                    _ => Some(self.unavailable(BackendFault::UnexpectedContinuation)),
                },
            };
        }
        if let Some(caps) = strip_prefix_ci(line, b"* CAPABILITY ") {
            self.post_login_capability = Some(String::from_utf8_lossy(caps).into_owned());
            return None;
        }
        if line.starts_with(b"* ") {
            if !keep_untagged(&mut self.untagged, line) {
                return Some(self.unavailable(BackendFault::TooManyUntagged));
            }
            return None;
        }
        let Some(status) = line
            .strip_prefix(LOGIN_TAG.as_bytes())
            .and_then(|r| r.strip_prefix(b" "))
        else {
            return Some(self.unavailable(BackendFault::UnexpectedReply(printable(line))));
        };
        let ok = strip_prefix_ci(status, b"OK");
        if ok.is_none() && self.stale && !credentials_judged(status) {
            // Refused on capabilities the greeting did not offer: the
            // refusal may be the mechanism's, not the password's.
            return self.retry_stale();
        }
        if let Some(rest) = ok {
            let capability = capability_code(rest).or(self.post_login_capability.take());
            let greeting = BackendGreeting {
                capability,
                untagged: std::mem::take(&mut self.untagged),
                compression: Compression::Off,
            };
            return self.logged_in(greeting);
        }
        if let Some(rest) = strip_prefix_ci(status, b"NO") {
            let failure = match response_code(rest).as_deref() {
                Some("UNAVAILABLE" | "SERVERBUG" | "LIMIT" | "CONTACTADMIN") => {
                    return Some(self.unavailable(BackendFault::ServiceRefused(printable(status))))
                }
                Some("INUSE") => LoginFailure::InUse,
                _ => LoginFailure::AuthFailed,
            };
            return Some(self.done(BackendOutcome::Rejected(failure)));
        }
        Some(self.unavailable(BackendFault::UnexpectedReply(printable(line))))
    }

    /// The lines waiting in `input`, one at a time through `line`, until
    /// one ends the poll.
    fn handle_lines(&mut self, line: &mut Vec<u8>) -> BackendEvent {
        loop {
            if matches!(self.step, Step::Done) {
                return self.unavailable(BackendFault::AlreadyFinished);
            }
            match login::take_line_into(&mut self.input, line, MAX_BACKEND_LINE) {
                Ok(true) => {}
                Ok(false) => return BackendEvent::NeedInput,
                Err(login::LineTooLong) => return self.unavailable(BackendFault::LineTooLong),
            }
            let event = match self.step {
                Step::Greeting => self.on_greeting(line),
                Step::StartingTls => self.on_starttls_reply(line),
                Step::AwaitingTls => Some(self.unavailable(BackendFault::DataDuringTlsUpgrade)),
                Step::Capability => self.on_capability_reply(line),
                Step::LoggingIn { .. } => self.on_login_reply(line),
                Step::Compressing { .. } => self.on_compress_reply(line),
                Step::Done => None,
            };
            if let Some(event) = event {
                return event;
            }
        }
    }
}

/// Whether a login's refusal judged the credentials themselves (RFC 5530:
/// `AUTHENTICATIONFAILED`, `AUTHORIZATIONFAILED`, `EXPIRED`): the mechanism
/// was understood, so sending the login again by another one, after the
/// greeting showed stale offers, would only count one more failed attempt
/// against the user at the back end.
fn credentials_judged(status: &[u8]) -> bool {
    strip_prefix_ci(status, b"NO").is_some_and(|rest| {
        matches!(
            response_code(rest).as_deref(),
            Some("AUTHENTICATIONFAILED" | "AUTHORIZATIONFAILED" | "EXPIRED")
        )
    })
}

/// Room enough for any chunk of `LOGIN user password` made of `values`:
/// the command, and each value quoted with every byte escaped, or sent as a
/// literal with its `{n+}` header.
fn login_room(values: &[&[u8]]) -> usize {
    const COMMAND: usize = LOGIN_TAG.len() + " LOGIN ".len() + " ".len() + "\r\n".len();
    const LITERAL_HEADER: usize = "{+}\r\n".len() + 20; // 20 digits: any u64
    COMMAND
        + values
            .iter()
            .map(|v| (2 * v.len() + 2).max(v.len() + LITERAL_HEADER))
            .sum::<usize>()
}

/// Keeps an untagged line (CRLF added) for the client, within
/// [`MAX_UNTAGGED`] bytes in all; `false` when it would not fit.
fn keep_untagged(kept: &mut Vec<u8>, line: &[u8]) -> bool {
    if kept.len() + line.len() + 2 > MAX_UNTAGGED {
        return false;
    }
    kept.extend_from_slice(line);
    kept.extend_from_slice(b"\r\n");
    true
}

impl BackendLogin for ImapBackendLogin {
    fn receive(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    fn poll(&mut self) -> BackendEvent {
        if let (Step::Greeting, Some(offers)) = (&self.step, self.remembered.take()) {
            self.send_early(offers);
        }
        let mut line = std::mem::take(&mut self.line);
        let event = self.handle_lines(&mut line);
        self.line = line;
        event
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    fn offers(&self) -> Option<BackendOffers> {
        // After STARTTLS the greeting's offers are void, and no login
        // goes early there anyway.
        self.learned.filter(|_| !self.starttls)
    }

    fn tls_started(&mut self) {
        // Capabilities seen before TLS are void (RFC 3501 §6.2.1).
        self.capabilities.clear();
        self.output
            .extend_from_slice(format!("{CAPABILITY_TAG} CAPABILITY\r\n").as_bytes());
        self.step = Step::Capability;
    }
}

#[cfg(test)]
#[path = "backend_tests.rs"]
mod tests;
