//! Per-worker recorders and their export.
//!
//! Each worker records into its own [`Recorder`] (counters and HdrHistograms)
//! behind a mutex that only that worker and, occasionally, the admin reader
//! take: nothing on the per-connection path is shared across cores. The admin
//! interface merges all workers' recorders when it renders `/metrics`.
//! Recorders know no runtime, socket or config: they are handed numbers.

pub mod hlog;
pub mod prometheus;

use crate::auth::oauth::TokenFailure;
use crate::protocols::Protocol;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a login attempt ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginOutcome {
    /// Logged in.
    Ok,
    /// The back end refused the credentials (wrong password).
    BadPassword,
    /// The directory has no active entry for the user.
    UnknownUser,
    /// The back end refused because the mailbox is locked (POP3 `[IN-USE]`).
    InUse,
    /// Back end down, slow or misbehaving.
    BackendUnavailable,
    /// The directory failed.
    DirectoryUnavailable,
    /// Refused before any lookup: too many failed logins from the client's
    /// address.
    RateLimited,
    /// A pre-auth command refused as malformed, unknown or oversized (each
    /// IMAP `BAD`, each POP3 `-ERR` that is not a login failure).
    ProtocolError,
    /// The user's mailbox is being moved (`hold_filter`): try again later.
    Held,
    /// Refused before any lookup: the user already has
    /// `max_sessions_per_user_address` sessions from the client's address.
    UserAddressCap,
    /// A bearer token refused at the front (`[oauth] verify`), before any
    /// lookup.
    BadToken,
    /// A bearer token could not be checked (the provider's keys or
    /// introspection endpoint unreachable): a temporary failure.
    TokenCheckUnavailable,
}

impl LoginOutcome {
    /// Every outcome, in export order.
    pub const ALL: [LoginOutcome; 12] = [
        LoginOutcome::Ok,
        LoginOutcome::BadPassword,
        LoginOutcome::UnknownUser,
        LoginOutcome::InUse,
        LoginOutcome::BackendUnavailable,
        LoginOutcome::DirectoryUnavailable,
        LoginOutcome::RateLimited,
        LoginOutcome::ProtocolError,
        LoginOutcome::Held,
        LoginOutcome::UserAddressCap,
        LoginOutcome::BadToken,
        LoginOutcome::TokenCheckUnavailable,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::BadPassword => "bad_password",
            LoginOutcome::UnknownUser => "unknown_user",
            LoginOutcome::InUse => "in_use",
            LoginOutcome::BackendUnavailable => "backend_unavailable",
            LoginOutcome::DirectoryUnavailable => "directory_unavailable",
            LoginOutcome::RateLimited => "rate_limited",
            LoginOutcome::ProtocolError => "protocol_error",
            LoginOutcome::Held => "held",
            LoginOutcome::UserAddressCap => "max_sessions_per_user_address",
            LoginOutcome::BadToken => "bad_token",
            LoginOutcome::TokenCheckUnavailable => "token_check_unavailable",
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `max_connections` reached.
    TooManyConnections,
    /// `max_preauth_per_address` reached for the client's address.
    TooManyFromAddress,
    /// `max_preauth_connections` reached and no connection could be evicted.
    TooManyPreAuth,
    /// Not a refusal of the new connection: at `max_preauth_connections` it
    /// took the place of the connection that had waited longest without
    /// completing a command, which was closed.
    PreAuthEvicted,
}

impl Refusal {
    /// Every reason, in export order.
    pub const ALL: [Refusal; 4] = [
        Refusal::TooManyConnections,
        Refusal::TooManyFromAddress,
        Refusal::TooManyPreAuth,
        Refusal::PreAuthEvicted,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "max_connections",
            Refusal::TooManyFromAddress => "max_preauth_per_address",
            Refusal::TooManyPreAuth => "max_preauth_connections",
            Refusal::PreAuthEvicted => "preauth_evicted",
        }
    }
}

/// How a session's bytes were relayed (the relay module's choice, counted
/// here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayMethod {
    /// Zero-copy `splice(2)`.
    Splice,
    /// User-space copy.
    Copy,
}

impl RelayMethod {
    /// `splice` or `copy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayMethod::Splice => "splice",
            RelayMethod::Copy => "copy",
        }
    }
}

/// A listener, as labelled: its protocol and bound address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    /// What it speaks.
    pub protocol: Protocol,
    /// Where it is bound (e.g. `0.0.0.0:993`).
    pub address: SocketAddr,
}

/// One worker's numbers.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Logins by listener and outcome.
    pub logins: HashMap<(Listener, LoginOutcome), u64>,
    /// Accept → login complete, microseconds, by listener.
    pub login_latency: HashMap<Listener, Histogram<u64>>,
    /// Session duration, milliseconds, by listener.
    pub session_duration: HashMap<Listener, Histogram<u64>>,
    /// Bytes client → back end and back end → client, by back end, on the
    /// wire (compressed where the leg is).
    pub backend_bytes: HashMap<SocketAddr, (u64, u64)>,
    /// Of those, the bytes of compressed legs, on the wire and before
    /// compression (up, down each), by back end; legs without compression
    /// add nothing here (their bytes are the same either way).
    pub backend_compressed: HashMap<SocketAddr, CompressedBytes>,
    /// Back-end logins that asked for compression, by result.
    pub compression: HashMap<crate::login::Compression, u64>,
    /// Bytes moved by splice and by copying.
    pub spliced_bytes: u64,
    /// Bytes moved by the copy path.
    pub copied_bytes: u64,
    /// Sessions before login.
    pub preauth_sessions: i64,
    /// Sessions relaying.
    pub relaying_sessions: i64,
    /// Durations of login phases, microseconds.
    pub phases: HashMap<Phase, Histogram<u64>>,
    /// Connections refused at accept, by listener and reason.
    pub refused: HashMap<(Listener, Refusal), u64>,
    /// Connection cache events, by kind.
    pub connection_cache: HashMap<CacheEvent, u64>,
    /// Back-end sessions parked in the connection cache now.
    pub parked_sessions: i64,
    /// Login attempts by how the client proved who it is (`password`,
    /// `oauthbearer`, `xoauth2`) and whether they logged in.
    pub mechanisms: HashMap<(&'static str, bool), u64>,
    /// Bearer tokens refused at the front, by reason.
    pub token_failures: HashMap<TokenFailure, u64>,
}

/// A compressed leg's bytes: on the wire and before compression, each
/// (to the back end, to the client).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompressedBytes {
    /// On the wire.
    pub wire: (u64, u64),
    /// Before compression.
    pub plain: (u64, u64),
}

impl CompressedBytes {
    fn add(&mut self, other: &CompressedBytes) {
        self.wire.0 += other.wire.0;
        self.wire.1 += other.wire.1;
        self.plain.0 += other.plain.0;
        self.plain.1 += other.plain.1;
    }
}

/// What happened in the connection cache (`connection_cache` listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheEvent {
    /// A login took a parked session: one back-end login saved.
    Hit,
    /// A login found nothing parked for its user and route.
    MissEmpty,
    /// A login found sessions parked under another password.
    MissWrongPassword,
    /// A parked session failed its health check at reuse.
    MissUnhealthy,
    /// A session was parked after its client's LOGOUT.
    Parked,
    /// A LOGOUT came while the session could not be parked.
    NotParkable,
    /// The back end did not answer our neutral command cleanly.
    Unclean,
    /// Dropped after `ttl`.
    Expired,
    /// Dropped: the back end closed it or wrote to it while parked.
    Unhealthy,
    /// Dropped: its user was invalidated (admin, mailbox move).
    Invalidated,
    /// Pushed out by `max` or `max_per_user`.
    Evicted,
    /// Logged out at the back end instead of parked: its back-end login is
    /// older than `max_age`, or its user was invalidated (admin, directory
    /// watch, reload) since that login.
    Retired,
}

impl CacheEvent {
    /// Every event, in export order.
    pub const ALL: [CacheEvent; 12] = [
        CacheEvent::Hit,
        CacheEvent::MissEmpty,
        CacheEvent::MissWrongPassword,
        CacheEvent::MissUnhealthy,
        CacheEvent::Parked,
        CacheEvent::NotParkable,
        CacheEvent::Unclean,
        CacheEvent::Expired,
        CacheEvent::Unhealthy,
        CacheEvent::Invalidated,
        CacheEvent::Evicted,
        CacheEvent::Retired,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheEvent::Hit => "hit",
            CacheEvent::MissEmpty => "miss_empty",
            CacheEvent::MissWrongPassword => "miss_wrong_password",
            CacheEvent::MissUnhealthy => "miss_unhealthy",
            CacheEvent::Parked => "parked",
            CacheEvent::NotParkable => "not_parkable",
            CacheEvent::Unclean => "unclean",
            CacheEvent::Expired => "expired",
            CacheEvent::Unhealthy => "unhealthy",
            CacheEvent::Invalidated => "invalidated",
            CacheEvent::Evicted => "evicted",
            CacheEvent::Retired => "retired",
        }
    }
}

/// Login phases timed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Directory lookup without a cache.
    DirectoryLookup,
    /// Directory lookup answered by the cache.
    DirectoryCacheHit,
    /// Directory lookup through the cache that went to the directory.
    DirectoryCacheMiss,
    /// TCP connect to the back end.
    BackendConnect,
    /// Back-end greeting, optional TLS and the login exchange.
    BackendLogin,
    /// Client TLS handshake, full.
    TlsHandshakeFull,
    /// Client TLS handshake, resumed.
    TlsHandshakeResumed,
    /// A bearer token checked at the front (`[oauth] verify`).
    TokenCheck,
}

impl Phase {
    /// Every phase, in export order.
    pub const ALL: [Phase; 8] = [
        Phase::DirectoryLookup,
        Phase::DirectoryCacheHit,
        Phase::DirectoryCacheMiss,
        Phase::BackendConnect,
        Phase::BackendLogin,
        Phase::TlsHandshakeFull,
        Phase::TlsHandshakeResumed,
        Phase::TokenCheck,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::DirectoryLookup => "directory_lookup",
            Phase::DirectoryCacheHit => "directory_cache_hit",
            Phase::DirectoryCacheMiss => "directory_cache_miss",
            Phase::BackendConnect => "backend_connect",
            Phase::BackendLogin => "backend_login",
            Phase::TlsHandshakeFull => "tls_handshake_full",
            Phase::TlsHandshakeResumed => "tls_handshake_resumed",
            Phase::TokenCheck => "token_check",
        }
    }
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds")
}

impl Recorder {
    /// Counts a login attempt; `latency` is accept → this moment.
    pub fn login(&mut self, listener: Listener, outcome: LoginOutcome, latency: Duration) {
        *self.logins.entry((listener, outcome)).or_default() += 1;
        if outcome == LoginOutcome::Ok {
            let us = (latency.as_micros() as u64).max(1);
            let _ = self
                .login_latency
                .entry(listener)
                .or_insert_with(histogram)
                .record(us);
        }
    }

    /// Counts a login attempt by how the client proved who it is.
    pub fn mechanism(&mut self, mechanism: &'static str, ok: bool) {
        *self.mechanisms.entry((mechanism, ok)).or_default() += 1;
    }

    /// Adds a compressed relay's bytes for `backend` (already counted on
    /// the wire by [`Recorder::relayed`]).
    pub fn compressed(&mut self, backend: SocketAddr, bytes: CompressedBytes) {
        self.backend_compressed
            .entry(backend)
            .or_default()
            .add(&bytes);
    }

    /// Bytes by back end before compression: the wire bytes, with each
    /// compressed leg's wire bytes replaced by its uncompressed ones.
    pub fn backend_uncompressed_bytes(&self) -> HashMap<SocketAddr, (u64, u64)> {
        let mut out = self.backend_bytes.clone();
        for (backend, c) in &self.backend_compressed {
            let e = out.entry(*backend).or_default();
            e.0 = (e.0 + c.plain.0).saturating_sub(c.wire.0);
            e.1 = (e.1 + c.plain.1).saturating_sub(c.wire.1);
        }
        out
    }

    /// Counts a back-end login that asked for compression.
    pub fn backend_compression(&mut self, result: crate::login::Compression) {
        *self.compression.entry(result).or_default() += 1;
    }

    /// Counts a bearer token refused at the front.
    pub fn token_failure(&mut self, reason: TokenFailure) {
        *self.token_failures.entry(reason).or_default() += 1;
    }

    /// Counts pre-auth commands refused as protocol errors.
    pub fn protocol_errors(&mut self, listener: Listener, count: u32) {
        *self
            .logins
            .entry((listener, LoginOutcome::ProtocolError))
            .or_default() += u64::from(count);
    }

    /// Records the duration of one login phase.
    pub fn phase(&mut self, phase: Phase, duration: Duration) {
        let us = (duration.as_micros() as u64).max(1);
        let _ = self
            .phases
            .entry(phase)
            .or_insert_with(histogram)
            .record(us);
    }

    /// Counts `n` connection cache events of one kind.
    pub fn cache_event(&mut self, event: CacheEvent, n: u64) {
        if n > 0 {
            *self.connection_cache.entry(event).or_default() += n;
        }
    }

    /// Counts a connection refused at accept.
    pub fn refused(&mut self, listener: Listener, reason: Refusal) {
        *self.refused.entry((listener, reason)).or_default() += 1;
    }

    /// Records a finished session.
    pub fn session_end(&mut self, listener: Listener, duration: Duration) {
        let ms = (duration.as_millis() as u64).max(1);
        let _ = self
            .session_duration
            .entry(listener)
            .or_insert_with(histogram)
            .record(ms);
    }

    /// Adds relayed bytes for `backend`, moved by splice or by copying.
    pub fn relayed(&mut self, backend: SocketAddr, up: u64, down: u64, method: RelayMethod) {
        let entry = self.backend_bytes.entry(backend).or_default();
        entry.0 += up;
        entry.1 += down;
        if method == RelayMethod::Splice {
            self.spliced_bytes += up + down;
        } else {
            self.copied_bytes += up + down;
        }
    }

    /// Every listener that has seen a session, sorted.
    pub fn listeners(&self) -> Vec<Listener> {
        let mut all: Vec<Listener> = self
            .logins
            .keys()
            .map(|(l, _)| *l)
            .chain(self.login_latency.keys().copied())
            .chain(self.session_duration.keys().copied())
            .chain(self.refused.keys().map(|(l, _)| *l))
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Adds `other` into `self` (for export).
    pub fn merge(&mut self, other: &Recorder) {
        for (k, v) in &other.logins {
            *self.logins.entry(*k).or_default() += v;
        }
        for (k, h) in &other.login_latency {
            let _ = self
                .login_latency
                .entry(*k)
                .or_insert_with(histogram)
                .add(h);
        }
        for (k, h) in &other.session_duration {
            let _ = self
                .session_duration
                .entry(*k)
                .or_insert_with(histogram)
                .add(h);
        }
        for (k, (up, down)) in &other.backend_bytes {
            let e = self.backend_bytes.entry(*k).or_default();
            e.0 += up;
            e.1 += down;
        }
        for (k, v) in &other.refused {
            *self.refused.entry(*k).or_default() += v;
        }
        for (k, v) in &other.connection_cache {
            *self.connection_cache.entry(*k).or_default() += v;
        }
        self.parked_sessions += other.parked_sessions;
        for (k, v) in &other.mechanisms {
            *self.mechanisms.entry(*k).or_default() += v;
        }
        for (k, v) in &other.token_failures {
            *self.token_failures.entry(*k).or_default() += v;
        }
        for (k, c) in &other.backend_compressed {
            self.backend_compressed.entry(*k).or_default().add(c);
        }
        for (k, v) in &other.compression {
            *self.compression.entry(*k).or_default() += v;
        }
        for (k, h) in &other.phases {
            let _ = self.phases.entry(*k).or_insert_with(histogram).add(h);
        }
        self.spliced_bytes += other.spliced_bytes;
        self.copied_bytes += other.copied_bytes;
        self.preauth_sessions += other.preauth_sessions;
        self.relaying_sessions += other.relaying_sessions;
    }
}

/// A worker's recorder, shared with the admin reader.
pub type SharedRecorder = Arc<Mutex<Recorder>>;

/// Runs `f` on the recorder (never poisoned in practice: no panics inside).
pub fn with(recorder: &SharedRecorder, f: impl FnOnce(&mut Recorder)) {
    if let Ok(mut r) = recorder.lock() {
        f(&mut r);
    }
}
