//! ManageSieve's words (RFC 5804 §4): a command is an atom followed by
//! arguments — atoms, numbers, quoted strings (`"…"` with `\"` and `\\`)
//! and literals (`{n+}` CRLF and `n` bytes, or `{n}`, which mailgate reads
//! the same way: ManageSieve has no continuation request) — ending in CRLF.
//! The framing (where a command ends, within bounds) is
//! [`crate::login::framing`]; this module splits one framed command into
//! its words, and writes the strings mailgate sends.
//!
//! String arguments may carry a password (SASL responses): they are wiped
//! when dropped.

use crate::login::framing::literal_announcement;
use zeroize::Zeroizing;

/// One argument of a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// An atom or a number.
    Atom(String),
    /// A quoted string or a literal, its content unescaped.
    String(Zeroizing<Vec<u8>>),
}

impl Arg {
    /// The content of a string argument.
    pub fn as_string(&self) -> Option<&[u8]> {
        match self {
            Arg::String(s) => Some(s),
            Arg::Atom(_) => None,
        }
    }
}

/// Why a command could not be split into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// No command name.
    #[error("empty command")]
    Empty,
    /// A quoted string without its closing quote, or with a bad escape
    /// or a line end inside.
    #[error("malformed quoted string")]
    BadQuoted,
    /// A character that starts no word, or two words without a space.
    #[error("unexpected character")]
    Unexpected,
    /// A literal whose bytes are missing (the framer guarantees they are
    /// there; a command cut short is not).
    #[error("truncated literal")]
    Truncated,
}

/// A command: its name (upper case) and arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Command {
    /// The command name, upper-cased.
    pub name: String,
    /// Its arguments.
    pub args: Vec<Arg>,
}

/// Splits a framed command (`bytes`, CRLF included) into its words.
pub fn parse_command(bytes: &[u8]) -> Result<Command, SyntaxError> {
    let mut words = parse_words(bytes)?.into_iter();
    match words.next() {
        Some(Arg::Atom(name)) => Ok(Command {
            name: name.to_ascii_uppercase(),
            args: words.collect(),
        }),
        Some(Arg::String(_)) => Err(SyntaxError::Unexpected),
        None => Err(SyntaxError::Empty),
    }
}

/// Splits a framed line (CRLF included; a client's response in a SASL
/// exchange is one string) into its words.
pub fn parse_words(bytes: &[u8]) -> Result<Vec<Arg>, SyntaxError> {
    let mut words = Vec::new();
    let mut at = 0;
    loop {
        if line_end(bytes, at) {
            return Ok(words);
        }
        if !words.is_empty() {
            match bytes.get(at) {
                Some(b' ') => {}
                Some(_) => return Err(SyntaxError::Unexpected),
                None => return Err(SyntaxError::Truncated),
            }
            while bytes.get(at) == Some(&b' ') {
                at += 1;
            }
            if line_end(bytes, at) {
                return Ok(words);
            }
        }
        let (word, next) = match bytes.get(at) {
            None => return Err(SyntaxError::Truncated),
            Some(b'"') => {
                let (word, next) = quoted(bytes, at + 1)?;
                (Arg::String(word), next)
            }
            Some(b'{') => {
                let (word, next) = literal(bytes, at)?;
                (Arg::String(word), next)
            }
            Some(&b) if is_atom_char(b) => {
                let end = bytes[at..]
                    .iter()
                    .position(|&b| !is_atom_char(b))
                    .map_or(bytes.len(), |i| at + i);
                let atom = String::from_utf8_lossy(&bytes[at..end]).into_owned();
                (Arg::Atom(atom), end)
            }
            Some(_) => return Err(SyntaxError::Unexpected),
        };
        words.push(word);
        at = next;
    }
}

/// Whether the line ends at `at` (CRLF, or a bare LF).
fn line_end(bytes: &[u8], at: usize) -> bool {
    matches!(bytes.get(at..), Some([b'\r', b'\n', ..] | [b'\n', ..]))
}

fn is_atom_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b'{' | b'}' | b'(' | b')' | b'\\' | b'%' | b'*')
}

/// A quoted string's content from `start` (after the opening quote), and
/// where the next word may begin. Its buffer is allocated once, at the most
/// the rest of the line can hold (a bounded pre-auth line): one that grew
/// would leave a part of a password in the buffer it gave up, unwiped.
fn quoted(bytes: &[u8], start: usize) -> Result<(Zeroizing<Vec<u8>>, usize), SyntaxError> {
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len().saturating_sub(start)));
    let mut at = start;
    loop {
        match bytes.get(at) {
            Some(b'"') => return Ok((out, at + 1)),
            Some(b'\\') => match bytes.get(at + 1) {
                Some(&c @ (b'"' | b'\\')) => {
                    out.push(c);
                    at += 2;
                }
                _ => return Err(SyntaxError::BadQuoted),
            },
            Some(b'\r' | b'\n') | None => return Err(SyntaxError::BadQuoted),
            Some(&c) => {
                out.push(c);
                at += 1;
            }
        }
    }
}

/// A literal announced at `start` (`{n+}` or `{n}` then CRLF), its bytes,
/// and where the next word may begin.
fn literal(bytes: &[u8], start: usize) -> Result<(Zeroizing<Vec<u8>>, usize), SyntaxError> {
    let close = bytes[start..]
        .iter()
        .position(|&b| b == b'}')
        .map(|i| start + i)
        .ok_or(SyntaxError::Unexpected)?;
    let (size, _) = literal_announcement(&bytes[start..=close]).ok_or(SyntaxError::Unexpected)?;
    let data = match &bytes[close + 1..] {
        [b'\r', b'\n', ..] => close + 3,
        [b'\n', ..] => close + 2,
        _ => return Err(SyntaxError::Unexpected),
    };
    let end = data.checked_add(size).ok_or(SyntaxError::Truncated)?;
    let content = bytes.get(data..end).ok_or(SyntaxError::Truncated)?;
    Ok((Zeroizing::new(content.to_vec()), end))
}

/// `text` as a quoted string: `"` and `\` escaped; CR and LF (which a
/// quoted string cannot hold) become spaces.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Arg {
        Arg::String(Zeroizing::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn words_are_atoms_quoted_strings_and_literals() {
        let c = parse_command(b"authenticate \"PLAIN\" {4+}\r\nAGFi\r\n").unwrap();
        assert_eq!(c.name, "AUTHENTICATE");
        assert_eq!(c.args, [string("PLAIN"), string("AGFi")]);
        let c = parse_command(b"NOOP \"a \\\"b\\\" \\\\c\"\r\n").unwrap();
        assert_eq!(c.args, [string("a \"b\" \\c")]);
        let c = parse_command(b"PUTSCRIPT {3}\r\nx\"y \"s\"\r\n").unwrap();
        assert_eq!(c.args, [string("x\"y"), string("s")]);
        assert_eq!(parse_command(b"LOGOUT\n").unwrap().args, []);
    }

    #[test]
    fn a_quoted_string_is_allocated_once_and_never_grown() {
        // A long response (a SASL PLAIN's base64, say) with escapes: the
        // buffer keeps the size it was made with.
        let content = "A\\\"".repeat(300);
        let line = format!("AUTHENTICATE \"PLAIN\" \"{content}\"\r\n");
        let start = line.find(&content).unwrap();
        let (value, _) = quoted(line.as_bytes(), start).unwrap();
        assert_eq!(value.len(), 3 * 300 - 300);
        assert_eq!(value.capacity(), line.len() - start);
    }

    #[test]
    fn malformed_commands_are_refused_not_guessed() {
        assert_eq!(parse_command(b"\r\n"), Err(SyntaxError::Empty));
        assert_eq!(parse_command(b"\"X\"\r\n"), Err(SyntaxError::Unexpected));
        assert_eq!(
            parse_command(b"NOOP \"open\r\n"),
            Err(SyntaxError::BadQuoted)
        );
        assert_eq!(
            parse_command(b"NOOP \"a\\b\"\r\n"),
            Err(SyntaxError::BadQuoted)
        );
        assert_eq!(
            parse_command(b"NOOP \"a\"\"b\"\r\n"),
            Err(SyntaxError::Unexpected)
        );
        assert_eq!(
            parse_command(b"NOOP {9+}\r\nab\r\n"),
            Err(SyntaxError::Truncated)
        );
        assert_eq!(parse_command(b"NOOP (x)\r\n"), Err(SyntaxError::Unexpected));
        assert_eq!(parse_command(b"NOOP"), Err(SyntaxError::Truncated));
    }

    #[test]
    fn quoting_escapes_and_never_breaks_a_line() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("x\r\ny"), "\"x  y\"");
        let line = format!("NOOP {}\r\n", quote("we\"ird\\"));
        assert_eq!(
            parse_command(line.as_bytes()).unwrap().args,
            [string("we\"ird\\")]
        );
    }
}
