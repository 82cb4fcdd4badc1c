//! Following a logged-in IMAP session from the side, for the connection
//! cache: which commands are still waiting for their tagged answer, whether
//! a mailbox may be selected, whether anything was done that a parked
//! session must not carry to its next user (`ENABLE`, `COMPRESS`, …), and
//! whether the client's `LOGOUT` can be answered here so the back-end
//! session is kept.
//!
//! Both directions stream through: client command lines are held only until
//! their line ends (at most `max_line` bytes; a longer line turns the
//! tracker into a pass-through and the session is not parked), literals go
//! on as they arrive, and server bytes are never held except the first
//! bytes of a line while they might start the answer to a command of our
//! own. Anything the tracker cannot follow with certainty makes the session
//! unparkable; it never changes a byte it forwards.
//!
//! This module owns the decision "this session can be parked"; it must
//! never perform I/O or read a clock.

use super::command::is_tag_char;
use super::framing::literal_announcement;
use super::parkable::{self, Verdict};
use std::collections::VecDeque;

/// Commands waiting for their tagged answer, at most; more and the session
/// is not followed any further (nor parked).
pub const MAX_PENDING: usize = 256;
/// Bytes of a server line kept to read its tag and status.
const HEAD: usize = 64;
/// Bytes of a server line's end kept to find a literal announcement.
const TAIL: usize = 24;

/// What to do with client bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientStep {
    /// Send `buf[..n]` to the back end; keep the rest (the start of a command
    /// line) and call again once more bytes arrived.
    Forward(usize),
    /// Send `buf[..forward]` to the back end, then `internal` (our own
    /// command that brings the back end to a neutral state); the client's
    /// `LOGOUT` (tag `logout_tag`) is answered here and not forwarded.
    Park {
        /// Bytes before the `LOGOUT` line.
        forward: usize,
        /// The client's tag, for our `OK`.
        logout_tag: String,
        /// `UNSELECT` or `NOOP`, tagged with our own tag, CRLF-terminated.
        internal: Vec<u8>,
    },
}

/// What to do with server bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send `buf[..n]` to the client; keep the rest (at most a few bytes that
    /// may start the answer to our command) and call again with more.
    Forward(usize),
    /// Send `buf[..forward]` to the client; the next `len` bytes are the
    /// tagged answer to our command (not for the client). `ok` says whether
    /// it was `OK`. Nothing should follow.
    Internal {
        /// Bytes before our answer.
        forward: usize,
        /// Length of our answer's line.
        len: usize,
        /// `OK` (the back end is in the state we asked for).
        ok: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `SELECT`/`EXAMINE`, the `n`th selection command sent.
    Select(u64),
    /// `CLOSE`/`UNSELECT`, the `n`th selection command sent.
    Deselect(u64),
    Idle,
    Other,
    /// Ours: `UNSELECT` or `NOOP` before parking.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    No,
    Bad,
}

/// Where the client stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientAt {
    /// At the start of a command.
    CommandStart,
    /// Inside literal bytes of the command tagged `tag`; after them the same
    /// command goes on.
    Literal {
        tag: String,
        /// The command's verdict so far (its later lines are judged too).
        verdict: Verdict,
        remaining: usize,
        /// Synchronizing (`{n}`): the client waits for `+`, and sends
        /// nothing if the server answers the command instead.
        synchronizing: bool,
        received: usize,
    },
    /// After a literal: the rest of command `tag`.
    Continuation { tag: String, verdict: Verdict },
    /// After `IDLE` was sent: the next line is `DONE`.
    Done,
}

/// Where the server stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerAt {
    LineStart,
    /// Inside a line; `response_start` when it is the start of a response
    /// (not the continuation after a literal).
    InLine {
        response_start: bool,
    },
    Literal {
        remaining: usize,
    },
}

/// The tracker of one session.
#[derive(Debug)]
pub struct SessionTracker {
    max_line: usize,
    pending: VecDeque<(String, Kind)>,
    /// A mailbox may be selected: set when a selection command is sent,
    /// settled by the answer to the last one sent.
    maybe_selected: bool,
    /// Selection commands (`SELECT`, `EXAMINE`, `CLOSE`, `UNSELECT`) sent.
    selections: u64,
    /// Why the session may carry state a next user must not inherit (a
    /// command off the allowlist, a `BAD`, an answer to a command not
    /// seen); sticky.
    taint: Option<&'static str>,
    /// Lost track (a line over `max_line`, too many pending commands):
    /// forward everything, park nothing.
    passthrough: bool,
    client: ClientAt,
    server: ServerAt,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Our command's tag while it runs.
    internal: Option<String>,
    next_internal: u64,
    unselect: bool,
    /// Why the client's LOGOUT went to the back end instead of parking.
    not_parked: Option<&'static str>,
}

impl SessionTracker {
    /// A tracker for a session just logged in; `unselect` says whether the
    /// back end announced `UNSELECT` (without it a selected session cannot
    /// be brought back to a neutral state and is not parked).
    pub fn new(max_line: usize, unselect: bool) -> Self {
        Self {
            max_line,
            pending: VecDeque::new(),
            maybe_selected: false,
            selections: 0,
            taint: None,
            passthrough: false,
            client: ClientAt::CommandStart,
            server: ServerAt::LineStart,
            head: Vec::with_capacity(HEAD),
            tail: Vec::with_capacity(TAIL),
            internal: None,
            next_internal: 0,
            unselect,
            not_parked: None,
        }
    }

    /// Whether the session could be parked right now (no command running,
    /// nothing carried over).
    pub fn parkable(&self) -> bool {
        !self.passthrough
            && self.taint.is_none()
            && self.pending.is_empty()
            && self.client == ClientAt::CommandStart
            && self.server == ServerAt::LineStart
            && self.internal.is_none()
            && (self.unselect || !self.maybe_selected)
    }

    /// Why the session is not parkable, for metrics and logs.
    pub fn unparkable_reason(&self) -> &'static str {
        if self.passthrough {
            "lost track"
        } else if let Some(why) = self.taint {
            why
        } else if !self.pending.is_empty() || self.client != ClientAt::CommandStart {
            "a command still running"
        } else if self.maybe_selected && !self.unselect {
            "no UNSELECT on the back end"
        } else {
            "server output in progress"
        }
    }

    /// Set when the client's `LOGOUT` went to the back end because the
    /// session could not be parked: why.
    pub fn logout_not_parked(&self) -> Option<&'static str> {
        self.not_parked
    }

    /// Client bytes `buf` (starting with what was kept last time).
    pub fn client(&mut self, buf: &[u8]) -> ClientStep {
        let mut at = 0;
        while at < buf.len() {
            if self.passthrough {
                return ClientStep::Forward(buf.len());
            }
            match &mut self.client {
                ClientAt::Literal {
                    tag,
                    verdict,
                    remaining,
                    received,
                    ..
                } => {
                    let take = (*remaining).min(buf.len() - at);
                    at += take;
                    *remaining -= take;
                    *received += take;
                    if *remaining == 0 {
                        self.client = ClientAt::Continuation {
                            tag: std::mem::take(tag),
                            verdict: *verdict,
                        };
                    }
                }
                _ => {
                    let Some(lf) = buf[at..].iter().position(|&b| b == b'\n') else {
                        if buf.len() - at > self.max_line {
                            self.passthrough = true;
                            return ClientStep::Forward(buf.len());
                        }
                        return ClientStep::Forward(at);
                    };
                    let line = &buf[at..at + lf + 1];
                    if let Some(step) = self.client_line(line, at) {
                        return step;
                    }
                    at += lf + 1;
                }
            }
        }
        ClientStep::Forward(at)
    }

    /// One client line (LF included) starting at `offset` of the caller's
    /// buffer; `Some` when it is a `LOGOUT` answered here.
    fn client_line(&mut self, line: &[u8], offset: usize) -> Option<ClientStep> {
        let body = trim_eol(line);
        match std::mem::replace(&mut self.client, ClientAt::CommandStart) {
            ClientAt::Done => {
                // `DONE` ends IDLE; the tagged answer follows.
                return None;
            }
            ClientAt::Continuation { tag, verdict } => {
                let verdict = parkable::continued(verdict, without_literal(body));
                self.judged(verdict);
                self.literal_or_end(body, tag, verdict);
                return None;
            }
            ClientAt::CommandStart | ClientAt::Literal { .. } => {}
        }
        let Some((tag, name, rest)) = tag_and_name(body) else {
            // Not a command we can read (the server will say BAD).
            self.taint(parkable::NOT_ALLOWED);
            return None;
        };
        let upper = name.to_ascii_uppercase();
        if upper == "LOGOUT" && literal_announcement(body).is_none() {
            if self.parkable() {
                return Some(self.park(offset, tag));
            }
            self.not_parked = Some(self.unparkable_reason());
        }
        let verdict = match upper.as_str() {
            "LOGOUT" => Verdict::Stateless { selection: false },
            _ => parkable::judge(&name, without_literal(rest)),
        };
        self.judged(verdict);
        let kind = match upper.as_str() {
            "SELECT" | "EXAMINE" => {
                self.maybe_selected = true;
                self.selections += 1;
                Kind::Select(self.selections)
            }
            "CLOSE" | "UNSELECT" => {
                self.selections += 1;
                Kind::Deselect(self.selections)
            }
            "IDLE" => Kind::Idle,
            _ => Kind::Other,
        };
        if self.pending.len() >= MAX_PENDING {
            self.passthrough = true;
            return None;
        }
        self.pending.push_back((tag.clone(), kind));
        if kind == Kind::Idle {
            self.client = ClientAt::Done;
            return None;
        }
        self.literal_or_end(body, tag, verdict);
        None
    }

    fn judged(&mut self, verdict: Verdict) {
        if let Verdict::Stateful(why) = verdict {
            self.taint(why);
        }
    }

    fn taint(&mut self, why: &'static str) {
        self.taint.get_or_insert(why);
    }

    /// After a line of command `tag`: a literal follows, or the command is
    /// complete.
    fn literal_or_end(&mut self, body: &[u8], tag: String, verdict: Verdict) {
        if let Some((size, non_sync)) = literal_announcement(body) {
            self.client = if size == 0 {
                ClientAt::Continuation { tag, verdict }
            } else {
                ClientAt::Literal {
                    tag,
                    verdict,
                    remaining: size,
                    synchronizing: !non_sync,
                    received: 0,
                }
            };
        }
    }

    fn park(&mut self, offset: usize, logout_tag: String) -> ClientStep {
        self.next_internal += 1;
        let tag = format!("mg{}", self.next_internal);
        let command = if self.maybe_selected {
            "UNSELECT"
        } else {
            "NOOP"
        };
        let internal = format!("{tag} {command}\r\n").into_bytes();
        self.pending.push_back((tag.clone(), Kind::Internal));
        self.internal = Some(tag);
        ClientStep::Park {
            forward: offset,
            logout_tag,
            internal,
        }
    }

    /// Server bytes `buf` (starting with what was kept last time).
    pub fn server(&mut self, buf: &[u8]) -> ServerStep {
        let mut at = 0;
        while at < buf.len() {
            match self.server {
                ServerAt::Literal { remaining } => {
                    let take = remaining.min(buf.len() - at);
                    at += take;
                    self.server = if remaining == take {
                        ServerAt::InLine {
                            response_start: false,
                        }
                    } else {
                        ServerAt::Literal {
                            remaining: remaining - take,
                        }
                    };
                }
                ServerAt::LineStart => {
                    // Our answer's line is held until it can be told apart.
                    if let Some(tag) = &self.internal {
                        let prefix = format!("{tag} ");
                        let have = &buf[at..];
                        let n = have.len().min(prefix.len());
                        if have[..n] == prefix.as_bytes()[..n] {
                            if n < prefix.len() {
                                return ServerStep::Forward(at);
                            }
                            if let Some(lf) = have.iter().position(|&b| b == b'\n') {
                                let line = trim_eol(&have[..lf + 1]);
                                let ok = status(&line[prefix.len()..]) == Some(Status::Ok);
                                self.pending.retain(|(t, _)| t != tag);
                                self.internal = None;
                                return ServerStep::Internal {
                                    forward: at,
                                    len: lf + 1,
                                    ok,
                                };
                            }
                            if have.len() > self.max_line {
                                self.passthrough = true;
                                self.internal = None;
                                return ServerStep::Forward(buf.len());
                            }
                            return ServerStep::Forward(at);
                        }
                    }
                    self.head.clear();
                    self.tail.clear();
                    self.server = ServerAt::InLine {
                        response_start: true,
                    };
                }
                ServerAt::InLine { response_start } => {
                    let rest = &buf[at..];
                    let (chunk, done) = match rest.iter().position(|&b| b == b'\n') {
                        Some(lf) => (&rest[..lf + 1], true),
                        None => (rest, false),
                    };
                    if response_start && self.head.len() < HEAD {
                        let n = (HEAD - self.head.len()).min(chunk.len());
                        self.head.extend_from_slice(&chunk[..n]);
                    }
                    push_tail(&mut self.tail, chunk);
                    at += chunk.len();
                    if done {
                        self.server_line_end();
                    }
                }
            }
        }
        ServerStep::Forward(at)
    }

    /// The end of a server line: a literal follows (the response goes on
    /// after it), or the response is complete (and may be a tagged answer;
    /// `head` holds the response's first bytes either way).
    fn server_line_end(&mut self) {
        if let Some((size, _)) = literal_announcement(trim_eol(&self.tail)) {
            self.server = ServerAt::Literal { remaining: size };
            return;
        }
        self.server = ServerAt::LineStart;
        let head = std::mem::take(&mut self.head);
        if let Some((tag, status)) = tagged(&head) {
            let tag = tag.to_owned();
            self.completed(&tag, status);
        } else if head.len() > 2
            && head.starts_with(b"* ")
            && status(&head[2..]) == Some(Status::Bad)
        {
            self.taint(BACKEND_BAD);
        }
        self.head = head;
        self.head.clear();
    }

    fn completed(&mut self, tag: &str, status: Status) {
        if status == Status::Bad {
            // The two sides may disagree about where commands begin (a
            // literal the back end refused to read runs as commands).
            self.taint(BACKEND_BAD);
        }
        let Some(i) = self.pending.iter().position(|(t, _)| t == tag) else {
            self.taint(UNKNOWN_TAG);
            return;
        };
        let Some((tag, kind)) = self.pending.remove(i) else {
            return;
        };
        match (kind, status) {
            // Only the answer to the last selection command sent settles
            // what is selected; earlier ones are overtaken by it.
            (Kind::Select(n) | Kind::Deselect(n), _) if n != self.selections => {}
            (Kind::Select(_), Status::Ok) => self.maybe_selected = true,
            // A failed SELECT leaves no mailbox selected (RFC 3501 6.3.1).
            (Kind::Select(_), Status::No) => self.maybe_selected = false,
            (Kind::Deselect(_), Status::Ok) => self.maybe_selected = false,
            // A refused CLOSE/UNSELECT or a BAD SELECT changed nothing we
            // can be sure of.
            (Kind::Select(_) | Kind::Deselect(_), _) => self.maybe_selected = true,
            (Kind::Idle, _) if self.client == ClientAt::Done => {
                // Refused before the client sent DONE: it will not.
                self.client = ClientAt::CommandStart;
            }
            _ => {}
        }
        // A synchronizing literal answered before its bytes came: the client
        // gives up the command and sends nothing more of it.
        if let ClientAt::Literal {
            tag: waiting,
            synchronizing: true,
            received: 0,
            ..
        } = &self.client
        {
            if *waiting == tag {
                self.client = ClientAt::CommandStart;
            }
        }
    }
}

/// The back end answered `BAD`: the session is not parked.
const BACKEND_BAD: &str = "the back end answered BAD";
/// A tagged answer to no command the tracker saw.
const UNKNOWN_TAG: &str = "an answer to a command the tracker did not see";

/// A command line's text without a trailing literal announcement.
fn without_literal(text: &[u8]) -> &[u8] {
    match literal_announcement(text) {
        Some(_) => &text[..text.iter().rposition(|&b| b == b'{').unwrap_or(text.len())],
        None => text,
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn push_tail(tail: &mut Vec<u8>, chunk: &[u8]) {
    if chunk.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        return;
    }
    let overflow = (tail.len() + chunk.len()).saturating_sub(TAIL);
    tail.drain(..overflow);
    tail.extend_from_slice(chunk);
}

/// `tag NAME rest` of a command line.
fn tag_and_name(body: &[u8]) -> Option<(String, String, &[u8])> {
    let end = body.iter().position(|&b| !is_tag_char(b))?;
    if end == 0 || body[end] != b' ' {
        return None;
    }
    let after = &body[end + 1..];
    let name_end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
    let name = std::str::from_utf8(&after[..name_end]).ok()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let tag = std::str::from_utf8(&body[..end]).ok()?;
    let rest = after.get(name_end + 1..).unwrap_or_default();
    Some((tag.to_owned(), name.to_owned(), rest))
}

/// `tag OK|NO|BAD …` at the start of a server line.
fn tagged(head: &[u8]) -> Option<(&str, Status)> {
    if head.starts_with(b"* ") || head.starts_with(b"+") {
        return None;
    }
    let end = head.iter().position(|&b| !is_tag_char(b))?;
    if end == 0 || head.get(end) != Some(&b' ') {
        return None;
    }
    let tag = std::str::from_utf8(&head[..end]).ok()?;
    Some((tag, status(&head[end + 1..])?))
}

fn status(rest: &[u8]) -> Option<Status> {
    let word = rest
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()?;
    match word.to_ascii_uppercase().as_slice() {
        b"OK" => Some(Status::Ok),
        b"NO" => Some(Status::No),
        b"BAD" => Some(Status::Bad),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
