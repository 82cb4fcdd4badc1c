//! mailgate: an IMAP/POP3 front-end proxy for mail clusters.
//!
//! ```text
//!  worker thread per CPU (pinned), each with its own io_uring reactor and SO_REUSEPORT listeners
//!    accept → [TLS handshake, implicit or after STARTTLS]
//!           → pre-auth state machine (imap/ or pop3/, no I/O inside)
//!           → directory lookup (per-worker cache → static map | LDAP)
//!           → back-end connect [+ TLS] + login replay (imap::backend / pop3::backend, no I/O inside)
//!           → relay: splice (plain both sides) | copy through rustls (a TLS side)
//!  admin thread (loopback): /metrics, /healthz, /readyz, invalidate, kick — reads per-worker recorders
//! ```
//!
//! * [`imap`], [`pop3`]: sans-I/O protocol machines behind the [`login`] contract.
//! * [`directory`]: user → back-end routes (static map, LDAP, cache).
//! * [`runtime`]: worker threads, CPU pinning, listeners, the io_uring transport.
//! * [`session`]: one connection's life, generic over the transport.
//! * [`tls`]: rustls configs and the TLS stream.
//! * [`relay`]: splice and copy paths with half-close and idle timeout.
//! * [`metrics`]: recorders, Prometheus and `.hlog` export, the admin listener.
//! * [`demo`], [`simulated_backend`], [`check_client`]: the single-command demo.

pub mod auth;
pub mod check_client;
pub mod config;
pub mod demo;
pub mod directory;
#[doc(hidden)]
pub mod fuzzing;
pub mod imap;
pub mod login;
pub mod metrics;
pub mod pop3;
pub mod relay;
pub mod runtime;
pub mod session;
pub mod simulated_backend;
pub mod tls;
