//! The POP3 side of the client: commands checked for `+OK`, and RETR's
//! multi-line answer un-stuffed a buffer at a time.

use super::{Conn, ErrorKind, Failure, Result};
use tokio::io::AsyncBufReadExt;

impl Conn {
    /// Sends a POP3 command and checks for `+OK`.
    pub async fn pop3_command(&mut self, command: &str) -> Result<()> {
        self.send(format!("{command}\r\n").as_bytes()).await?;
        let line = self.read_line().await?;
        pop3_status(&line)
    }

    /// `RETR n`: the message's bytes, un-stuffed.
    pub(super) async fn pop3_retr(&mut self, number: usize, size_hint: usize) -> Result<Vec<u8>> {
        self.pop3_command(&format!("RETR {number}")).await?;
        self.pop3_multiline(size_hint).await
    }

    /// Reads a multi-line POP3 answer up to its `.` line, un-stuffing
    /// leading dots, a buffer at a time (not a line at a time: this is the
    /// hot loop of `retr`).
    async fn pop3_multiline(&mut self, size_hint: usize) -> Result<Vec<u8>> {
        #[derive(Clone, Copy)]
        enum At {
            LineStart,
            InLine,
            /// A `.` opened the line: a second `.` (stuffed) or CRLF (the end).
            Dot,
            /// `.` CR: only LF may follow.
            DotCr,
        }
        let mut body = Vec::with_capacity(size_hint + 2);
        let mut at = At::LineStart;
        loop {
            let buf = self.stream.fill_buf().await?;
            if buf.is_empty() {
                return Err(Failure::new(ErrorKind::Closed, "connection closed in RETR"));
            }
            let mut i = 0;
            let mut done = false;
            while i < buf.len() {
                match at {
                    At::LineStart if buf[i] == b'.' => {
                        at = At::Dot;
                        i += 1;
                    }
                    At::LineStart => at = At::InLine,
                    At::Dot if buf[i] == b'\r' => {
                        at = At::DotCr;
                        i += 1;
                    }
                    // The stuffed dot is dropped; this byte is content.
                    At::Dot => at = At::InLine,
                    At::DotCr if buf[i] == b'\n' => {
                        i += 1;
                        done = true;
                        break;
                    }
                    At::DotCr => {
                        return Err(Failure::new(ErrorKind::Protocol, "bad terminator in RETR"))
                    }
                    // Copy in bulk up to the next line that starts with a dot.
                    At::InLine => match memchr::memmem::find(&buf[i..], b"\n.") {
                        Some(p) => {
                            body.extend_from_slice(&buf[i..=i + p]);
                            i += p + 1;
                            at = At::LineStart;
                        }
                        None => {
                            body.extend_from_slice(&buf[i..]);
                            if buf.ends_with(b"\n") {
                                at = At::LineStart;
                            }
                            i = buf.len();
                        }
                    },
                }
            }
            self.bytes_in += i as u64;
            self.stream.consume(i);
            if done {
                return Ok(body);
            }
            if body.len() > size_hint.saturating_mul(2) + (1 << 20) {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "RETR answer far larger than expected",
                ));
            }
        }
    }
}

pub(super) fn pop3_status(line: &[u8]) -> Result<()> {
    if line.starts_with(b"+OK") {
        return Ok(());
    }
    let text = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
    let kind = if text.contains("[SYS/TEMP]") || text.contains("[IN-USE]") {
        ErrorKind::Unavailable
    } else if text.contains("[AUTH]") {
        ErrorKind::LoginRejected
    } else {
        ErrorKind::Protocol
    };
    Err(Failure::new(kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::conn::AnyStream;
    use crate::client::Protocol;
    use tokio::io::{AsyncWriteExt, BufReader};

    #[tokio::test]
    async fn retr_bodies_are_unstuffed_across_any_buffer_boundary() {
        let body = mailgate::simulated_backend::message(3, 5000);
        assert!(
            body.windows(2).any(|w| w == b"\n."),
            "the body has dot lines"
        );
        let mut wire = b".starts with a dot\r\n".to_vec();
        wire.extend_from_slice(&mailgate::simulated_backend::dot_stuff(&body));
        wire.extend_from_slice(b".\r\nNEXT");
        let mut expected = b"starts with a dot\r\n".to_vec();
        expected.extend_from_slice(&body);
        for capacity in [1, 2, 3, 5, 7, 64, 4096] {
            let (mut server, client) = tokio::io::duplex(1 << 20);
            server.write_all(&wire).await.unwrap();
            drop(server); // a missed terminator ends in EOF, not a hang
            let mut conn = Conn {
                stream: BufReader::with_capacity(capacity, AnyStream(Box::new(client))),
                protocol: Protocol::Pop3,
                mechanism: super::super::Mechanism::Native,
                next_tag: 0,
                bytes_in: 0,
                line: Vec::new(),
            };
            let got = conn.pop3_multiline(expected.len()).await.unwrap();
            assert!(got == expected, "capacity {capacity}");
            assert_eq!(
                conn.bytes_in as usize,
                wire.len() - 4,
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(
            pop3_status(b"-ERR [AUTH] no\r\n").unwrap_err().kind,
            ErrorKind::LoginRejected
        );
        assert_eq!(
            pop3_status(b"-ERR [SYS/TEMP] x\r\n").unwrap_err().kind,
            ErrorKind::Unavailable
        );
    }
}
