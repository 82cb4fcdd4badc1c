//! The session's writes, shared by its phases: a write that does nothing
//! for no bytes, one bounded by a deadline (a client that does not read is
//! closed at it), and one that wipes what it wrote (a login command with a
//! password).
//!
//! This module owns how a session writes; it never reads or decides what to
//! write.

use crate::transport::Stream;
use tokio::time::{timeout_at, Instant};
use zeroize::Zeroize;

/// Read size before login (commands are small; bounded by the limits), and
/// of the back-end login exchange.
pub(super) const PREAUTH_READ_SIZE: usize = 4096;

/// Writes `bytes` (nothing when empty).
pub(super) async fn write<S: Stream>(stream: &S, bytes: Vec<u8>) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream.write_all(bytes).await.0
}

/// Writes `bytes` that hold a password (a back-end login command), then
/// wipes them.
pub(super) async fn write_secret<S: Stream>(stream: &S, bytes: Vec<u8>) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let (result, mut written) = stream.write_all(bytes).await;
    written.zeroize();
    result
}

/// Writes `bytes` before `deadline`: a client that does not read its answers
/// is closed at the deadline like one that does not write.
pub(super) async fn write_until<S: Stream>(
    stream: &S,
    bytes: Vec<u8>,
    deadline: Instant,
) -> std::io::Result<()> {
    match timeout_at(deadline, write(stream, bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
