//! IMAP, sans I/O: framing and parsing of client commands, the pre-auth state
//! machine for clients, and the login exchange with a back end.
//!
//! Nothing in this module tree performs I/O or reads a clock.

pub mod backend;
pub mod command;
pub use crate::login::framing;
pub mod parkable;
pub mod preauth;
mod protocol;
mod response;
pub mod tracker;

pub use backend::{ImapBackendAuth, ImapBackendLogin};
pub use preauth::{ImapPreAuth, ImapSettings};
pub use protocol::IMAP;
