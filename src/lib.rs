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
//! Modules depend one way, each only on modules listed before it (checked by
//! `tests/module_graph.rs`):
//!
//! * [`auth`], [`login`]: credentials, SASL, and the contract between the
//!   protocol machines and the session; [`netaddr`]: networks and client keys;
//!   [`proxy_header`]: the PROXY protocol header (v1, v2), pure;
//!   [`log_batch`]: log lines written in batches on worker threads.
//! * [`imap`], [`pop3`]: sans-I/O protocol machines behind the [`login`]
//!   contract, each with its `ProtocolSpec` (the protocol seam).
//! * [`protocols`]: the registry that maps each protocol to its spec.
//! * [`directory`]: user → back-end routes (static map, LDAP, cache).
//! * [`metrics`]: per-worker recorders, Prometheus and `.hlog` export.
//! * [`registry`]: each worker's relaying sessions, for the admin actions.
//! * [`transport`]: the `Stream`/`Connector` seam and its io_uring implementation.
//! * [`tls`]: rustls configs and the TLS stream (on `transport`).
//! * [`relay`]: splice and copy paths with half-close and idle timeout.
//! * [`oauth`]: OAuth 2.0 bearer tokens checked at the front (JWT against
//!   a provider's keys, or RFC 7662 introspection).
//! * [`config`]: TOML into the settings types of the modules above.
//! * [`session`]: one connection's life, generic over the transport.
//! * [`runtime`]: builds live objects, runs the worker threads and listeners.
//! * [`admin`]: the admin listener and its client.
//! * [`demo`], [`simulated_backend`], [`check_client`]: the single-command demo.
//! * [`import`]: other proxies' configurations (Perdition's) as mailgate TOML.

// Non-test code says why a value must be there (`expect`) or handles its absence.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
pub mod log_batch;
pub mod login;
pub mod netaddr;
pub mod proxy_header;

pub mod imap;
pub mod managesieve;
pub mod pop3;
pub mod protocols;

pub mod directory;
pub mod metrics;
pub mod registry;
pub mod transport;

pub mod compress;
pub mod oauth;
pub mod relay;
pub mod tls;

pub mod config;

pub mod session;

pub mod runtime;

pub mod admin;

pub mod check_client;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
pub mod simulated_backend;
