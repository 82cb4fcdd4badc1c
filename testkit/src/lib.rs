//! What mailgate's tests (`tests/`, `loadgen/tests/`) and the load
//! generator's cluster mode share, so it exists once:
//!
//! * [`process`]: a `mailgate run` process in a folder of its own, its
//!   ready file read back, its log, stopped when dropped.
//! * [`certs`]: a test CA and server certificates, made with `rcgen`.
//! * [`config`]: config templates.
//! * [`admin`]: the admin client (mailgate's own).
//! * [`seccomp`]: a filter that blocks io_uring, as container runtimes do.
//! * [`slapd`]: a real OpenLDAP server with the deployment's tree.
//! * [`corpus`]: mail built from real files on a Debian system.

// Non-test code says why a value must be there (`expect`) or handles its absence.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod certs;
pub mod config;
pub mod corpus;
pub mod process;
pub mod seccomp;
pub mod slapd;

pub use mailgate::admin::client as admin;
pub use process::{MailgateProcess, Ready, StartError};
