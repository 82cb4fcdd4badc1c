//! Parsing one complete, framed client command into a tag, a name and tokens.
//!
//! Grammar from RFC 3501 §9 / RFC 9051 §9, limited to what a client may send
//! before login: atoms, quoted strings with `\"` and `\\` escapes (8-bit bytes
//! allowed, as IMAP4rev2 allows UTF-8), literals `{n}` / `{n+}` (already framed,
//! so their bytes are present), and parenthesized lists (for `ID`). Errors say
//! what was wrong in words a client log can show; bytes are never echoed.

use zeroize::Zeroizing;

/// One argument token.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// An atom (also `NIL`, compared case-insensitively by the caller).
    Atom(&'a [u8]),
    /// A quoted string, unescaped.
    Quoted(Zeroizing<Vec<u8>>),
    /// A literal's bytes.
    Literal(&'a [u8]),
    /// `(`
    ListStart,
    /// `)`
    ListEnd,
}

impl Token<'_> {
    /// The bytes of an `astring` (atom, quoted or literal); `None` for parens.
    pub fn as_astring(&self) -> Option<&[u8]> {
        match self {
            Token::Atom(b) | Token::Literal(b) => Some(b),
            Token::Quoted(b) => Some(b),
            Token::ListStart | Token::ListEnd => None,
        }
    }

    /// True for the atom `NIL`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Token::Atom(a) if a.eq_ignore_ascii_case(b"NIL"))
    }
}

/// A parsed command.
#[derive(Debug)]
pub struct Command<'a> {
    /// The client's tag, echoed in the tagged reply.
    pub tag: &'a str,
    /// Command name, upper-cased.
    pub name: String,
    /// Arguments in order.
    pub args: Vec<Token<'a>>,
}

/// Why a command could not be parsed. `tag` is set when the tag was valid,
/// so the `BAD` reply can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// The tag, if it could be read.
    pub tag: Option<String>,
    /// Human-readable reason.
    pub reason: &'static str,
}

/// Characters allowed in a tag: ASTRING-CHAR except `+`.
pub fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

fn is_atom_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// Reads a valid tag at the start of `buf`, if any (for error replies).
pub fn leading_tag(buf: &[u8]) -> Option<&str> {
    let end = buf.iter().position(|&b| !is_tag_char(b))?;
    if end == 0 || buf[end] != b' ' {
        return None;
    }
    std::str::from_utf8(&buf[..end]).ok()
}

/// Parses a framed command (ending in LF or CRLF).
pub fn parse(buf: &[u8]) -> Result<Command<'_>, ParseError> {
    let body = buf
        .strip_suffix(b"\n")
        .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
        .ok_or(ParseError {
            tag: None,
            reason: "missing line end",
        })?;
    let mut cursor = Cursor { buf: body, pos: 0 };
    let tag = cursor.take_while(is_tag_char);
    let tag = match std::str::from_utf8(tag) {
        Ok(t) if !t.is_empty() => t,
        _ => {
            return Err(ParseError {
                tag: None,
                reason: "missing or invalid tag",
            })
        }
    };
    let fail = |reason| ParseError {
        tag: Some(tag.to_owned()),
        reason,
    };
    if !cursor.eat(b' ') {
        return Err(fail("missing command"));
    }
    let name = cursor.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name.is_empty() {
        return Err(fail("missing command"));
    }
    // ASCII by the `take_while` above.
    let name: String = name
        .iter()
        .map(|&b| char::from(b.to_ascii_uppercase()))
        .collect();
    let mut args = Vec::new();
    let mut after_list_start = false;
    while !cursor.at_end() {
        if cursor.peek() == Some(b')') {
            cursor.pos += 1;
            args.push(Token::ListEnd);
            after_list_start = false;
            continue;
        }
        if !after_list_start && !cursor.eat(b' ') {
            return Err(fail("expected a space between arguments"));
        }
        let token = cursor.token().map_err(fail)?;
        after_list_start = token == Token::ListStart;
        args.push(token);
    }
    Ok(Command { tag, name, args })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn token(&mut self) -> Result<Token<'a>, &'static str> {
        match self.peek() {
            None => Err("missing argument"),
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'(') => {
                self.pos += 1;
                Ok(Token::ListStart)
            }
            Some(_) => {
                let atom = self.take_while(is_astring_char);
                if atom.is_empty() {
                    Err("invalid character in argument")
                } else {
                    Ok(Token::Atom(atom))
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<Token<'a>, &'static str> {
        // Past the opening quote. The string is sized at once: a password's
        // bytes are then never left behind in a smaller buffer that growing
        // gave up.
        self.pos += 1;
        let mut out = Zeroizing::new(Vec::with_capacity(self.quoted_len()));
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Token::Quoted(out));
                }
                Some(b'\\') => {
                    match self.buf.get(self.pos + 1) {
                        Some(&c @ (b'"' | b'\\')) => out.push(c),
                        _ => return Err("invalid escape in quoted string"),
                    }
                    self.pos += 2;
                }
                Some(0 | b'\r' | b'\n') => return Err("invalid character in quoted string"),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// Bytes in the quoted string starting at `pos`, escapes counted once
    /// (up to the end of the input when it is unterminated).
    fn quoted_len(&self) -> usize {
        let mut len = 0;
        let mut rest = self.buf[self.pos..].iter();
        while let Some(&b) = rest.next() {
            match b {
                b'"' => break,
                b'\\' => {
                    rest.next();
                }
                _ => {}
            }
            len += 1;
        }
        len
    }

    fn literal(&mut self) -> Result<Token<'a>, &'static str> {
        self.pos += 1; // `{`
        let digits = self.take_while(|b| b.is_ascii_digit());
        self.eat(b'+');
        if digits.is_empty() || digits.len() > 10 || !self.eat(b'}') {
            return Err("invalid literal");
        }
        let size: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("invalid literal")?;
        if !self.eat(b'\r') && self.peek() != Some(b'\n') {
            return Err("literal must end its line");
        }
        if !self.eat(b'\n') {
            return Err("literal must end its line");
        }
        let end = self.pos.checked_add(size).ok_or("invalid literal")?;
        let data = self
            .buf
            .get(self.pos..end)
            .ok_or("literal shorter than announced")?;
        if data.contains(&0) {
            return Err("NUL byte in literal");
        }
        self.pos = end;
        Ok(Token::Literal(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cmd: &Command) -> Vec<Vec<u8>> {
        cmd.args
            .iter()
            .map(|t| t.as_astring().map(<[u8]>::to_vec).unwrap_or(b"()".to_vec()))
            .collect()
    }

    #[test]
    fn login_with_atoms() {
        let c = parse(b"a1 login alice@example.org secret\r\n").unwrap();
        assert_eq!((c.tag, c.name.as_str()), ("a1", "LOGIN"));
        assert_eq!(
            strings(&c),
            vec![b"alice@example.org".to_vec(), b"secret".to_vec()]
        );
    }

    #[test]
    fn login_with_quoted_escapes_and_utf8() {
        let c = parse("t LOGIN \"al ice\" \"p\\\"w\\\\d é\"\r\n".as_bytes()).unwrap();
        assert_eq!(
            strings(&c),
            vec![b"al ice".to_vec(), "p\"w\\d é".as_bytes().to_vec()]
        );
    }

    #[test]
    fn a_quoted_string_is_allocated_once_at_its_length() {
        let c = parse("t LOGIN \"al ice\" \"p\\\"w\\\\d é\"\r\n".as_bytes()).unwrap();
        for (token, len) in c.args.iter().zip([6, 8]) {
            let Token::Quoted(bytes) = token else {
                panic!("not quoted: {token:?}");
            };
            // Never grown: a password is not copied out of a smaller buffer.
            assert_eq!((bytes.len(), bytes.capacity()), (len, len));
        }
        // Unterminated: sized to the rest of the input, then refused.
        assert!(parse(b"t LOGIN \"abc\r\n").is_err());
    }

    #[test]
    fn login_with_literals_sync_and_non_sync() {
        let c = parse(b"t LOGIN {5}\r\nalice {4+}\r\np\r\nw\r\n").unwrap();
        assert_eq!(strings(&c), vec![b"alice".to_vec(), b"p\r\nw".to_vec()]);
    }

    #[test]
    fn id_list_and_nil() {
        let c = parse(b"t ID (\"name\" \"x\" \"version\" NIL)\r\n").unwrap();
        assert_eq!(c.args.first(), Some(&Token::ListStart));
        assert_eq!(c.args.last(), Some(&Token::ListEnd));
        assert!(c.args[4].is_nil());
        assert!(parse(b"t ID NIL\r\n").unwrap().args[0].is_nil());
        assert_eq!(parse(b"t ID ()\r\n").unwrap().args.len(), 2);
    }

    #[test]
    fn hostile_inputs_are_errors_with_tag() {
        for (input, reason) in [
            (
                &b"t LOGIN \"unterminated\r\n"[..],
                "unterminated quoted string",
            ),
            (b"t LOGIN \"a\\x\" b\r\n", "invalid escape in quoted string"),
            (
                b"t LOGIN \"a\0b\" c\r\n",
                "invalid character in quoted string",
            ),
            (b"t LOGIN {3}\r\na\0b c\r\n", "NUL byte in literal"),
            (b"t LOGIN {9}\r\nab\r\n", "literal shorter than announced"),
            (b"t LOGIN  a b\r\n", "invalid character in argument"),
            (b"t LOGIN a\0 b\r\n", "expected a space between arguments"),
            (b"t\r\n", "missing command"),
            (b"t \r\n", "missing command"),
        ] {
            let err = parse(input).unwrap_err();
            assert_eq!(err.reason, reason, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(err.tag.as_deref(), Some("t"));
        }
    }

    #[test]
    fn bad_or_missing_tag_has_no_tag() {
        assert_eq!(parse(b"+x NOOP\r\n").unwrap_err().tag, None);
        assert_eq!(parse(b" NOOP\r\n").unwrap_err().tag, None);
        assert_eq!(parse(b"\r\n").unwrap_err().tag, None);
        assert_eq!(parse(b"no-line-end").unwrap_err().tag, None);
    }

    #[test]
    fn leading_tag_reads_only_valid_tags() {
        assert_eq!(leading_tag(b"abc LOGIN x"), Some("abc"));
        assert_eq!(leading_tag(b"a*c LOGIN"), None);
        assert_eq!(leading_tag(b"xxxxxx"), None);
    }
}
