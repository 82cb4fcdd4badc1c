//! ManageSieve (RFC 5804), sans I/O: the words of a command, the pre-auth
//! state machine for clients, and the login exchange with a back end —
//! what lets webmail's filter pages, Thunderbird's Sieve add-on and
//! `sieve-connect` reach the user's own box through the same front end.
//!
//! Nothing in this module tree performs I/O or reads a clock.

pub mod backend;
pub mod preauth;
mod protocol;
pub mod syntax;

pub use backend::ManageSieveBackendLogin;
pub use preauth::{ManageSievePreAuth, ManageSieveSettings, SieveCapabilities};
pub use protocol::MANAGESIEVE;
