//! Finding where one client command ends, literals included, within limits,
//! for the protocols with IMAP's literals (IMAP, ManageSieve).
//!
//! Such a command is a line that may end in a literal announcement (`{n}` or
//! the non-synchronizing `{n+}`, RFC 7888), followed by `n` raw bytes and the
//! rest of the command. The framer resumes where it stopped, so feeding a
//! command byte by byte costs linear time, and it enforces three bounds: each
//! line segment (`max_line`), each literal (`max_literal`) and the whole
//! command (`max_line + 2 * max_literal`). It asks the caller to send a
//! continuation request (`+`) for each synchronizing literal exactly once.

/// What the framer found in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole command occupies `buf[..len]` (CRLF included).
    Complete(usize),
    /// More bytes are needed; if `continue_literal` the client waits for `+`.
    Incomplete {
        /// Send a continuation request now.
        continue_literal: bool,
    },
    /// A limit was exceeded; the command cannot be read.
    Error(FrameError),
}

/// A limit broken while framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line segment is longer than `max_line`.
    #[error("command line too long")]
    LineTooLong,
    /// A literal is larger than `max_literal`.
    #[error("literal too large")]
    LiteralTooLarge {
        /// `{n+}`: the client sends the bytes without waiting, so the stream
        /// cannot be resynchronized.
        non_synchronizing: bool,
    },
    /// Literals and lines together exceed the whole-command bound.
    #[error("command too long")]
    CommandTooLong,
}

/// Resumable framing state for the command at the start of the buffer.
#[derive(Debug, Clone)]
pub struct Framer {
    max_line: usize,
    max_literal: usize,
    /// Start of the line segment being searched.
    segment_start: usize,
    /// Offset up to which the current segment has been searched for LF.
    searched: usize,
    /// When a literal's bytes are awaited: the offset where they end.
    literal_end: Option<usize>,
}

impl Framer {
    /// A framer with the given bounds.
    pub fn new(max_line: usize, max_literal: usize) -> Self {
        Self {
            max_line,
            max_literal,
            segment_start: 0,
            searched: 0,
            literal_end: None,
        }
    }

    /// Bound on a whole command, literals included.
    pub fn max_command(&self) -> usize {
        self.max_line
            .saturating_add(self.max_literal.saturating_mul(2))
            .saturating_add(4)
    }

    /// Forget progress; call after the caller removed a complete command.
    pub fn reset(&mut self) {
        self.segment_start = 0;
        self.searched = 0;
        self.literal_end = None;
    }

    /// Scans `buf` (which starts with the command) for the command's end.
    pub fn scan(&mut self, buf: &[u8]) -> Frame {
        loop {
            if let Some(end) = self.literal_end {
                if buf.len() < end {
                    return Frame::Incomplete {
                        continue_literal: false,
                    };
                }
                self.literal_end = None;
                self.segment_start = end;
                self.searched = end;
            }
            let Some(lf) = memchr(b'\n', &buf[self.searched..]).map(|i| self.searched + i) else {
                self.searched = buf.len();
                if buf.len() - self.segment_start > self.max_line {
                    return Frame::Error(FrameError::LineTooLong);
                }
                return Frame::Incomplete {
                    continue_literal: false,
                };
            };
            let mut line = &buf[self.segment_start..lf];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > self.max_line {
                return Frame::Error(FrameError::LineTooLong);
            }
            let Some((size, non_sync)) = literal_announcement(line) else {
                return Frame::Complete(lf + 1);
            };
            if size > self.max_literal {
                return Frame::Error(FrameError::LiteralTooLarge {
                    non_synchronizing: non_sync,
                });
            }
            let end = lf + 1 + size;
            if end > self.max_command() {
                return Frame::Error(FrameError::CommandTooLong);
            }
            self.literal_end = Some(end);
            if buf.len() < end {
                // The continuation is due once: when the announcing line
                // first completes, which is exactly now.
                return Frame::Incomplete {
                    continue_literal: !non_sync,
                };
            }
        }
    }
}

/// `{n}` or `{n+}` at the end of a line: the size and whether it is `+`.
pub fn literal_announcement(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let non_sync = if let [rest @ .., b'+'] = digits {
        digits = rest;
        true
    } else {
        false
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((size, non_sync))
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> Framer {
        Framer::new(64, 16)
    }

    #[test]
    fn simple_line_is_complete() {
        assert_eq!(framer().scan(b"a NOOP\r\nb"), Frame::Complete(8));
        assert_eq!(framer().scan(b"a NOOP\n"), Frame::Complete(7));
    }

    #[test]
    fn partial_line_waits() {
        let mut f = framer();
        assert_eq!(
            f.scan(b"a NO"),
            Frame::Incomplete {
                continue_literal: false
            }
        );
        assert_eq!(f.scan(b"a NOOP\r\n"), Frame::Complete(8));
    }

    #[test]
    fn sync_literal_asks_for_continuation_once() {
        let mut f = framer();
        let buf = b"a LOGIN {5}\r\n".to_vec();
        assert_eq!(
            f.scan(&buf),
            Frame::Incomplete {
                continue_literal: true
            }
        );
        assert_eq!(
            f.scan(&buf),
            Frame::Incomplete {
                continue_literal: false
            }
        );
        let mut more = buf.clone();
        more.extend_from_slice(b"ali");
        assert_eq!(
            f.scan(&more),
            Frame::Incomplete {
                continue_literal: false
            }
        );
        more.extend_from_slice(b"ce pw\r\n");
        assert_eq!(f.scan(&more), Frame::Complete(more.len()));
    }

    #[test]
    fn non_sync_literal_needs_no_continuation() {
        let buf = b"a LOGIN {5+}\r\nalice {2+}\r\npw\r\n";
        let mut f = framer();
        assert_eq!(
            f.scan(&buf[..14]),
            Frame::Incomplete {
                continue_literal: false
            }
        );
        assert_eq!(f.scan(buf), Frame::Complete(buf.len()));
    }

    #[test]
    fn literal_may_contain_crlf() {
        let buf = b"a LOGIN {4}\r\n\r\n\r\n x\r\n";
        assert_eq!(framer().scan(buf), Frame::Complete(buf.len()));
    }

    #[test]
    fn line_limit_boundaries() {
        let at = |n: usize| {
            let mut line = vec![b'x'; n];
            line.extend_from_slice(b"\r\n");
            framer().scan(&line)
        };
        assert_eq!(at(63), Frame::Complete(65));
        assert_eq!(at(64), Frame::Complete(66));
        assert_eq!(at(65), Frame::Error(FrameError::LineTooLong));
        // Without a line end yet, the bound applies to what has arrived.
        assert_eq!(
            framer().scan(&[b'x'; 65]),
            Frame::Error(FrameError::LineTooLong)
        );
        assert_eq!(
            framer().scan(&[b'x'; 64]),
            Frame::Incomplete {
                continue_literal: false
            }
        );
    }

    #[test]
    fn literal_limit_boundaries() {
        let at =
            |n: usize, plus: &str| framer().scan(format!("a LOGIN {{{n}{plus}}}\r\n").as_bytes());
        assert_eq!(
            at(15, ""),
            Frame::Incomplete {
                continue_literal: true
            }
        );
        assert_eq!(
            at(16, ""),
            Frame::Incomplete {
                continue_literal: true
            }
        );
        assert_eq!(
            at(17, ""),
            Frame::Error(FrameError::LiteralTooLarge {
                non_synchronizing: false
            })
        );
        assert_eq!(
            at(17, "+"),
            Frame::Error(FrameError::LiteralTooLarge {
                non_synchronizing: true
            })
        );
        assert_eq!(
            at(9_999_999_999, ""),
            Frame::Error(FrameError::LiteralTooLarge {
                non_synchronizing: false
            })
        );
        // More digits than any size: not a literal; the parser refuses the line.
        assert!(matches!(at(99_999_999_999, ""), Frame::Complete(_)));
    }

    #[test]
    fn many_literals_hit_the_command_bound() {
        let mut f = Framer::new(64, 16);
        let mut buf = Vec::new();
        let mut last = Frame::Incomplete {
            continue_literal: false,
        };
        for _ in 0..10 {
            buf.extend_from_slice(b"{16+}\r\n");
            buf.extend_from_slice(&[b'y'; 16]);
            last = f.scan(&buf);
            if matches!(last, Frame::Error(_)) {
                break;
            }
        }
        assert_eq!(last, Frame::Error(FrameError::CommandTooLong));
    }

    #[test]
    fn braces_not_at_end_are_not_literals() {
        assert_eq!(literal_announcement(b"a LOGIN {5} x"), None);
        assert_eq!(literal_announcement(b"a LOGIN {}"), None);
        assert_eq!(literal_announcement(b"a LOGIN {x}"), None);
        assert_eq!(literal_announcement(b"a LOGIN {+}"), None);
        assert_eq!(literal_announcement(b"{12}"), Some((12, false)));
        assert_eq!(literal_announcement(b"{0+}"), Some((0, true)));
    }

    #[test]
    fn byte_by_byte_feeding_matches_whole_feeding() {
        let cmd = b"tag LOGIN {3+}\r\nabc \"p w\"\r\nnext";
        let mut f = framer();
        let mut result = None;
        for n in 1..=cmd.len() {
            if let Frame::Complete(len) = f.scan(&cmd[..n]) {
                result = Some(len);
                break;
            }
        }
        assert_eq!(result, Some(cmd.len() - 4));
    }
}
