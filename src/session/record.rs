//! The one log line per session, and the gauges a session holds while it is
//! in a phase.

use super::SessionContext;
use crate::config::Protocol;
use crate::login::{append_decimal, AddressText};
use crate::metrics::RelayMethod;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// How a session ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in and relayed until both sides closed.
    Relayed,
    /// Relay ended by the idle timeout.
    IdleTimeout,
    /// Relay ended by a socket error.
    RelayError,
    /// Closed before login (LOGOUT/QUIT, too many failures, limits, EOF).
    ClosedBeforeLogin,
    /// Pre-auth timeout.
    PreAuthTimeout,
    /// A socket error before login.
    ClientError,
    /// The TLS handshake failed or timed out.
    TlsFailed,
    /// Closed before login because the server is stopping.
    ServerShutdown,
    /// Closed before login: at the pre-auth cap, a newcomer took its place.
    Evicted,
}

impl Outcome {
    /// Label in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Relayed => "relayed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::RelayError => "relay_error",
            Outcome::ClosedBeforeLogin => "closed_before_login",
            Outcome::PreAuthTimeout => "preauth_timeout",
            Outcome::ClientError => "client_error",
            Outcome::TlsFailed => "tls_failed",
            Outcome::ServerShutdown => "server_shutdown",
            Outcome::Evicted => "evicted",
        }
    }
}

/// How the client's TLS session was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsHandshake {
    /// A full handshake.
    Full,
    /// A resumed session (ticket or session id).
    Resumed,
}

impl TlsHandshake {
    /// Label in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsHandshake::Full => "full",
            TlsHandshake::Resumed => "resumed",
        }
    }
}

/// The record logged when a session ends.
#[derive(Debug)]
pub(super) struct SessionRecord {
    pub peer: SocketAddr,
    pub protocol: Protocol,
    /// Shared with the registry's entry (`Arc`): an idle session keeps its
    /// login name once.
    pub user: Option<Arc<str>>,
    /// The name the back end knows the user by (the route's login user);
    /// the same allocation as `user` when equal.
    pub identity: Option<Arc<str>>,
    pub backend: Option<SocketAddr>,
    pub failed_logins: u32,
    pub client_to_backend: u64,
    pub backend_to_client: u64,
    pub started: Instant,
    pub outcome: Outcome,
    /// Set when the client used TLS.
    pub tls: Option<TlsHandshake>,
    /// Set once relaying.
    pub relay: Option<RelayMethod>,
    /// On `connection_cache` listeners: `new` (a back-end login) or
    /// `reused` (a parked session); `parked` is appended when the session
    /// was parked at its end.
    pub backend_session: Option<&'static str>,
    /// Bytes on the wire to and from the back end, when the leg was
    /// compressed (the counts above are the uncompressed bytes).
    pub wire: Option<crate::compress::WireBytes>,
}

impl SessionRecord {
    pub fn new(peer: SocketAddr, protocol: Protocol) -> Self {
        Self {
            peer,
            protocol,
            user: None,
            identity: None,
            backend: None,
            failed_logins: 0,
            client_to_backend: 0,
            backend_to_client: 0,
            started: Instant::now(),
            outcome: Outcome::ClosedBeforeLogin,
            tls: None,
            relay: None,
            backend_session: None,
            wire: None,
        }
    }

    /// Counts the session's end and writes its log line.
    pub fn finish(&self, ctx: &SessionContext) {
        ctx.record(|r| {
            r.session_end(ctx.listener.label, self.started.elapsed());
            if let (Some(backend), Some(method)) = (self.backend, self.relay) {
                let plain = (self.client_to_backend, self.backend_to_client);
                match self.wire {
                    None => r.relayed(backend, plain.0, plain.1, method),
                    Some(w) => {
                        r.relayed(backend, w.sent, w.received, method);
                        let wire = (w.sent, w.received);
                        r.compressed(backend, crate::metrics::CompressedBytes { wire, plain });
                    }
                }
            }
        });
        if let Some(backend_session) = self.backend_session {
            tracing::info!(
                target: SESSION_TARGET,
                client = %AddressText(self.peer),
                user = self.user.as_deref().unwrap_or("-"),
                backend_session,
                "connection cache"
            );
        }
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if !WRITE_TEXT_LINE.load(Ordering::Relaxed) {
            self.log_end_with_fields(duration_ms);
        } else if tracing::enabled!(target: SESSION_TARGET, tracing::Level::INFO) {
            let mut line = String::with_capacity(384);
            let now = std::time::SystemTime::now();
            let _ = write!(line, "{} ", humantime::format_rfc3339_micros(now));
            self.push_text_line(&mut line, duration_ms);
            line.push('\n');
            crate::log_batch::write_info_line(line.as_bytes());
        }
    }

    /// The `session end` line through tracing, its values as fields (the
    /// JSON format keeps them apart).
    fn log_end_with_fields(&self, duration_ms: u64) {
        tracing::info!(
            target: SESSION_TARGET,
            client = %AddressText(self.peer),
            protocol = %self.protocol,
            tls = self.tls.map_or("none", TlsHandshake::as_str),
            relay = self.relay.map_or("-", RelayMethod::as_str),
            // A string field is written quoted and escaped (`Debug`), so a
            // user name with a line break cannot forge a log line.
            user = self.user.as_deref().unwrap_or("-"),
            backend = %AddressText(self.backend),
            failed_logins = self.failed_logins,
            bytes_up = self.client_to_backend,
            bytes_down = self.backend_to_client,
            duration_ms,
            outcome = self.outcome.as_str(),
            "session end"
        );
    }

    /// The `session end` line after its timestamp, exactly as tracing's
    /// text format writes it (level padded to five, target, message, then
    /// `name=value` after a space; strings quoted and escaped as `Debug`
    /// does, so a user name with a line break cannot forge a line). Written
    /// without tracing's formatter, whose field visitor and timestamp took
    /// ~12 500 instructions per login (docs/performance.md, "The session
    /// line without tracing's formatter").
    fn push_text_line(&self, line: &mut String, duration_ms: u64) {
        line.push_str(" INFO ");
        line.push_str(SESSION_TARGET);
        line.push_str(": session end client=");
        let _ = write!(line, "{}", AddressText(self.peer));
        line.push_str(" protocol=");
        line.push_str(self.protocol.as_str());
        line.push_str(" tls=");
        quoted(line, self.tls.map_or("none", TlsHandshake::as_str));
        line.push_str(" relay=");
        quoted(line, self.relay.map_or("-", RelayMethod::as_str));
        line.push_str(" user=");
        let _ = write!(line, "{:?}", self.user.as_deref().unwrap_or("-"));
        line.push_str(" backend=");
        let _ = write!(line, "{}", AddressText(self.backend));
        line.push_str(" failed_logins=");
        append_decimal(line, u64::from(self.failed_logins));
        line.push_str(" bytes_up=");
        append_decimal(line, self.client_to_backend);
        line.push_str(" bytes_down=");
        append_decimal(line, self.backend_to_client);
        line.push_str(" duration_ms=");
        append_decimal(line, duration_ms);
        line.push_str(" outcome=");
        quoted(line, self.outcome.as_str());
    }
}

/// The session lines' target.
const SESSION_TARGET: &str = "mailgate::session";

/// Whether the session-end line is written as text without tracing's
/// formatter (the text log format: the same bytes) rather than through it
/// with fields (the JSON format, and the library's default).
static WRITE_TEXT_LINE: AtomicBool = AtomicBool::new(false);

/// Set at start for the text log format: the session-end line is written
/// without tracing's formatter, reading the same. `MAILGATE_LOG` still
/// decides whether it is written.
pub fn write_session_end_as_text(on: bool) {
    WRITE_TEXT_LINE.store(on, Ordering::Relaxed);
}

/// A label known to need no escaping, quoted as `Debug` would.
fn quoted(line: &mut String, label: &'static str) {
    line.push('"');
    line.push_str(label);
    line.push('"');
}

/// Which session gauge a [`Gauge`] holds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GaugeKind {
    /// `mailgate_sessions{phase="preauth"}`.
    PreAuth,
    /// `mailgate_sessions{phase="relaying"}`.
    Relaying,
}

/// Counts a session in one phase's gauge until dropped, however the phase
/// ends.
pub(super) struct Gauge<'a> {
    ctx: &'a SessionContext,
    kind: GaugeKind,
}

impl<'a> Gauge<'a> {
    pub fn enter(ctx: &'a SessionContext, kind: GaugeKind) -> Self {
        ctx.record(|r| *Self::slot(r, kind) += 1);
        Self { ctx, kind }
    }

    fn slot(r: &mut crate::metrics::Recorder, kind: GaugeKind) -> &mut i64 {
        match kind {
            GaugeKind::PreAuth => &mut r.preauth_sessions,
            GaugeKind::Relaying => &mut r.relaying_sessions,
        }
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        let kind = self.kind;
        self.ctx.record(|r| *Self::slot(r, kind) -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What a text-format subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The text format's output of `log`, with or without timestamps.
    fn text_of(with_time: bool, log: impl FnOnce()) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false);
        if with_time {
            tracing::subscriber::with_default(builder.finish(), log);
        } else {
            tracing::subscriber::with_default(builder.without_time().finish(), log);
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn records() -> Vec<SessionRecord> {
        let v4: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::7]:993".parse().unwrap();
        let mut plain = SessionRecord::new(v4, Protocol::Imap);
        plain.user = Some(Arc::from("alice@example.org"));
        plain.backend = Some("10.0.0.2:10143".parse().unwrap());
        plain.relay = Some(RelayMethod::Splice);
        plain.outcome = Outcome::Relayed;
        plain.client_to_backend = 11;
        plain.backend_to_client = 23;
        let mut hostile = SessionRecord::new(v6, Protocol::Pop3);
        hostile.user = Some(Arc::from(
            "INJECTED\n2026 INFO \"quoted\" \\ é \u{1b}[31m\t\u{7f}\u{200b}",
        ));
        hostile.tls = Some(TlsHandshake::Resumed);
        hostile.failed_logins = u32::MAX;
        hostile.client_to_backend = u64::MAX;
        hostile.outcome = Outcome::PreAuthTimeout;
        let mut sieve = SessionRecord::new(v4, Protocol::ManageSieve);
        sieve.tls = Some(TlsHandshake::Full);
        sieve.backend = Some(v6);
        sieve.relay = Some(RelayMethod::Copy);
        sieve.outcome = Outcome::IdleTimeout;
        let none = SessionRecord::new(v4, Protocol::Imap);
        vec![plain, hostile, sieve, none]
    }

    #[test]
    fn the_session_end_line_written_as_text_is_what_tracing_writes() {
        for record in records() {
            for duration_ms in [0, 9, 10, 1234, u64::MAX] {
                let by_tracing = text_of(false, || record.log_end_with_fields(duration_ms));
                let mut ours = String::new();
                record.push_text_line(&mut ours, duration_ms);
                ours.push('\n');
                assert!(by_tracing.contains("session end client="), "{by_tracing}");
                assert_eq!(ours, by_tracing);
                assert_eq!(ours.lines().count(), 1, "{ours}");
            }
        }
    }

    #[test]
    fn the_timestamp_is_laid_out_as_tracings_and_tells_the_same_time() {
        let record = &records()[0];
        let by_tracing = text_of(true, || record.log_end_with_fields(5));
        let ours = format!(
            "{} ",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        );
        let theirs = &by_tracing[..ours.len()];
        let layout = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect()
        };
        assert_eq!(layout(&ours), layout(theirs), "{theirs:?}");
        assert!(by_tracing[ours.len()..].starts_with(" INFO mailgate::session: "));
        let at = |s: &str| humantime::parse_rfc3339(s.trim_end()).unwrap();
        let apart = at(&ours).duration_since(at(theirs)).unwrap_or_default();
        assert!(
            apart < std::time::Duration::from_secs(60),
            "{ours} {theirs}"
        );
    }
}
