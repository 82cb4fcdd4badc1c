//! The ManageSieve side of the client (RFC 5804): answers read up to their
//! `OK`/`NO`/`BYE` line (capability lines and literals before it), login
//! with `AUTHENTICATE "PLAIN"` and an initial response. ManageSieve has no
//! messages: the fetching scenarios do not apply to it.

use super::{Conn, ErrorKind, Failure, Result};

impl Conn {
    /// Reads one ManageSieve answer: lines up to `OK`, `NO` or `BYE`
    /// (a line ending in a literal `{n}` takes its `n` bytes along).
    pub(super) async fn sieve_answer(&mut self) -> Result<()> {
        loop {
            let line = self.read_line().await?;
            if let Some(size) = literal_size(&line) {
                let mut rest = vec![0; size];
                tokio::io::AsyncReadExt::read_exact(&mut self.stream, &mut rest).await?;
                self.bytes_in += size as u64;
                let _ = self.read_line().await?;
            }
            if let Some(status) = sieve_status(&line) {
                return status;
            }
        }
    }

    /// Sends one command and reads its answer.
    pub async fn sieve_command(&mut self, command: &str) -> Result<()> {
        self.send(format!("{command}\r\n").as_bytes()).await?;
        self.sieve_answer().await
    }

    /// `AUTHENTICATE "PLAIN"` with the credentials as initial response.
    pub(super) async fn sieve_login(&mut self, user: &str, password: &str) -> Result<()> {
        let plain = mailgate::auth::encode_base64(format!("\0{user}\0{password}").as_bytes());
        self.sieve_command(&format!("AUTHENTICATE \"PLAIN\" \"{plain}\""))
            .await
    }
}

/// `Some` for an answer line (`OK`, `NO`, `BYE`), with its meaning.
fn sieve_status(line: &[u8]) -> Option<Result<()>> {
    let word = line.split(|&b| b == b' ' || b == b'\r').next()?;
    let text = || String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
    if word.eq_ignore_ascii_case(b"OK") {
        Some(Ok(()))
    } else if word.eq_ignore_ascii_case(b"NO") {
        let kind = if text().contains("(TRYLATER)") {
            ErrorKind::Unavailable
        } else {
            ErrorKind::LoginRejected
        };
        Some(Err(Failure::new(kind, text())))
    } else if word.eq_ignore_ascii_case(b"BYE") {
        Some(Err(Failure::new(ErrorKind::Closed, text())))
    } else {
        None
    }
}

/// `{n}` or `{n+}` ending a line.
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.trim_ascii_end().strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = line[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&line[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_literals_are_recognized() {
        assert!(matches!(
            sieve_status(b"OK \"Logged in.\"\r\n"),
            Some(Ok(()))
        ));
        assert_eq!(
            sieve_status(b"NO (TRYLATER) \"x\"\r\n")
                .unwrap()
                .unwrap_err()
                .kind,
            ErrorKind::Unavailable
        );
        assert_eq!(
            sieve_status(b"NO \"Authentication failed.\"\r\n")
                .unwrap()
                .unwrap_err()
                .kind,
            ErrorKind::LoginRejected
        );
        assert!(sieve_status(b"\"SIEVE\" \"fileinto\"\r\n").is_none());
        assert_eq!(literal_size(b"NO {12}\r\n"), Some(12));
        assert_eq!(literal_size(b"\"x\"\r\n"), None);
    }
}
