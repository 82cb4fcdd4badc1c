//! The IMAP side of the client: tagged commands and their answers (with
//! literals), FETCH, IDLE.

use super::{Conn, ErrorKind, Failure, Result};
use tokio::io::AsyncReadExt;

impl Conn {
    /// Sends an IMAP command and reads through its tagged answer.
    pub async fn imap_command(&mut self, command: &str) -> Result<ImapResponse> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.send(format!("{tag} {command}\r\n").as_bytes()).await?;
        self.imap_response(&tag).await
    }

    pub(super) async fn imap_response(&mut self, tag: &str) -> Result<ImapResponse> {
        let mut response = ImapResponse::default();
        loop {
            let line = self.read_line().await?;
            if let Some(size) = literal_size(&line) {
                let mut literal = vec![0; size];
                self.stream.read_exact(&mut literal).await?;
                self.bytes_in += size as u64;
                response.literals.push(literal);
                continue;
            }
            if let Some(n) = uid_validity(&line) {
                response.uid_validity = Some(n);
            }
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            {
                response.tagged = String::from_utf8_lossy(rest.trim_ascii_end()).into_owned();
                return Ok(response);
            }
        }
    }

    /// `FETCH n BODY.PEEK[]`: the message's bytes.
    pub(super) async fn imap_fetch(&mut self, number: usize) -> Result<Vec<u8>> {
        let mut r = self
            .imap_command(&format!("FETCH {number} BODY.PEEK[]"))
            .await?;
        r.ok()?;
        if r.literals.len() != 1 {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("FETCH returned {} literals", r.literals.len()),
            ));
        }
        Ok(r.literals.pop().unwrap_or_default())
    }

    /// `IDLE` until `until`, then `DONE`.
    pub(super) async fn imap_idle(&mut self, until: tokio::time::Instant) -> Result<()> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let line = self.read_line().await?;
        if !line.starts_with(b"+") {
            return Err(Failure::new(
                ErrorKind::Protocol,
                String::from_utf8_lossy(&line).into_owned(),
            ));
        }
        // Untagged updates may arrive while idling; a close is an error.
        let mut scratch = [0u8; 4096];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                read = self.stream.read(&mut scratch) => match read? {
                    0 => return Err(Failure::new(ErrorKind::Closed, "closed while idling")),
                    n => self.bytes_in += n as u64,
                }
            }
        }
        self.send(b"DONE\r\n").await?;
        self.imap_response(&tag).await?.ok()
    }
}

/// An IMAP command's answer.
#[derive(Debug, Default)]
pub struct ImapResponse {
    /// The tagged line after the tag.
    pub tagged: String,
    /// Literals, in order.
    pub literals: Vec<Vec<u8>>,
    /// `[UIDVALIDITY n]` from an untagged `OK` (answers to `SELECT`).
    pub uid_validity: Option<u32>,
}

impl ImapResponse {
    /// `Ok` for a tagged `OK`, the failure's kind otherwise.
    pub fn ok(&self) -> Result<()> {
        if self.tagged.starts_with("OK") {
            return Ok(());
        }
        let kind = if self.tagged.contains("[UNAVAILABLE]") {
            ErrorKind::Unavailable
        } else if self.tagged.starts_with("NO") {
            ErrorKind::LoginRejected
        } else {
            ErrorKind::Protocol
        };
        Err(Failure::new(kind, self.tagged.clone()))
    }
}

/// `n` of `* OK [UIDVALIDITY n]`.
fn uid_validity(line: &[u8]) -> Option<u32> {
    let rest = line.strip_prefix(b"* OK [UIDVALIDITY ")?;
    let end = rest.iter().position(|&b| b == b']')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// `{n}` at the end of a response line.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

/// A quoted string with `\\` and `"` escaped.
pub(super) fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sizes_are_read_off_the_line_end() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {42}\r\n"), Some(42));
        assert_eq!(literal_size(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(literal_size(b"{x}\r\n"), None);
    }

    #[test]
    fn uid_validity_is_read_from_its_untagged_ok() {
        assert_eq!(uid_validity(b"* OK [UIDVALIDITY 3] ok\r\n"), Some(3));
        assert_eq!(uid_validity(b"* OK [UIDNEXT 3] ok\r\n"), None);
        assert_eq!(uid_validity(b"* OK [UIDVALIDITY x] ok\r\n"), None);
    }

    #[test]
    fn tagged_no_unavailable_is_unavailable() {
        let r = ImapResponse {
            tagged: "NO [UNAVAILABLE] later".into(),
            ..Default::default()
        };
        assert_eq!(r.ok().unwrap_err().kind, ErrorKind::Unavailable);
    }
}
