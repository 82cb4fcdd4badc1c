//! Compressed back-end legs (IMAP `COMPRESS=DEFLATE`, RFC 4978): the
//! codec ([`codec`], sans-I/O) and a [`DeflateStream`] that wraps a
//! back-end connection once the back end has agreed, so the relay copies
//! plain bytes while the wire carries deflate. Splice cannot compress: a
//! compressed leg always takes the copy path.
//!
//! Owns the per-connection deflate state and its counters of wire bytes;
//! never knows a protocol (the negotiation is the IMAP back-end machine's)
//! or a session.

pub mod codec;
mod stream;

pub use codec::{Deflater, Inflater};
pub use stream::{DeflateStream, WireBytes};
