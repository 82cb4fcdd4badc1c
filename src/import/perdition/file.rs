//! Perdition's configuration file syntax: one `option value` per logical
//! line, as Perdition 2.2 reads it.
//!
//! The rules, checked against `perdition -d` printing what it parsed:
//! a `\` before a newline joins the next line, even inside a comment (so a
//! commented-out option ending in `\` comments out the continuation lines
//! too, as Debian's shipped file relies on); `#` starts a comment outside
//! quotes; `\x` outside single quotes is `x` (so `\U` is `U`: a query key
//! needs `\\U`); single quotes keep everything, double quotes everything
//! but `\`-escapes. The first word is the option — long or short, with or
//! without the command line's leading `-`/`--`, `--key=value` too; the rest
//! of the line, whitespace inside kept and trailing whitespace dropped, is
//! its value. One option per line: `-t 55 -O y` is option `t` with value
//! `55 -O y`, as in Perdition.

/// One option as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// 1-based line where the option starts.
    pub line: usize,
    /// The option as written, dashes removed (`m`, `map_library_opt`).
    pub key: String,
    /// The value; empty for flags.
    pub value: String,
    /// `None` for the configuration file; for a command-line option from
    /// the defaults file, its variable (`FLAGS`, `IMAP4_FLAGS`…), and then
    /// `line` is the defaults file's.
    pub from: Option<String>,
}

impl Setting {
    /// Where the setting was written, for notes: `line 12`, or
    /// `IMAP4_FLAGS (defaults line 40)`.
    pub fn place(&self) -> String {
        match &self.from {
            None => format!("line {}", self.line),
            Some(var) => format!("{var} (defaults line {})", self.line),
        }
    }
}

/// One character of a logical line; `literal` if quoted or escaped (so it
/// never separates the option from its value and is never trimmed).
#[derive(Clone, Copy)]
struct Char {
    c: char,
    literal: bool,
}

#[derive(PartialEq)]
enum State {
    Plain,
    Single,
    Double,
    Comment,
}

/// Splits `text` into settings, in file order.
pub fn parse(text: &str) -> Vec<Setting> {
    let mut settings = Vec::new();
    let mut current: Vec<Char> = Vec::new();
    let mut line = 1;
    let mut start = 1;
    let mut state = State::Plain;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && state != State::Single {
            match chars.next() {
                Some('\n') => line += 1,
                Some(escaped) if state != State::Comment => current.push(Char {
                    c: escaped,
                    literal: true,
                }),
                Some(_) | None => {}
            }
            continue;
        }
        let quoted = matches!(state, State::Single | State::Double);
        match (&state, c) {
            (State::Single, '\'') | (State::Double, '"') => state = State::Plain,
            (State::Plain, '\'') => state = State::Single,
            (State::Plain, '"') => state = State::Double,
            (State::Plain, '#') => state = State::Comment,
            (State::Plain | State::Comment, '\n') => {
                settings.extend(setting(&current, start));
                current.clear();
                state = State::Plain;
                line += 1;
                start = line;
            }
            (State::Comment, _) => {}
            (_, c) => {
                if c == '\n' {
                    line += 1;
                }
                current.push(Char { c, literal: quoted });
            }
        }
    }
    settings.extend(setting(&current, start));
    settings
}

/// The option and value of one logical line, or `None` for a blank one.
fn setting(chars: &[Char], line: usize) -> Option<Setting> {
    let blank = |ch: &Char| !ch.literal && ch.c.is_whitespace();
    let begin = chars.iter().position(|ch| !blank(ch))?;
    let end = chars.iter().rposition(|ch| !blank(ch))? + 1;
    let chars = &chars[begin..end];
    let key_end = chars.iter().position(blank).unwrap_or(chars.len());
    let key: String = chars[..key_end].iter().map(|ch| ch.c).collect();
    let value_start = chars[key_end..]
        .iter()
        .position(|ch| !blank(ch))
        .map_or(chars.len(), |at| key_end + at);
    let value: String = chars[value_start..].iter().map(|ch| ch.c).collect();
    let dashed = key.starts_with('-');
    let key = key.trim_start_matches('-');
    if dashed && value.is_empty() {
        if let Some((key, value)) = key.split_once('=') {
            return Some(Setting {
                line,
                key: key.to_owned(),
                value: value.to_owned(),
                from: None,
            });
        }
    }
    Some(Setting {
        line,
        key: key.to_owned(),
        value,
        from: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> (String, String) {
        let settings = parse(text);
        assert_eq!(settings.len(), 1, "{settings:?}");
        (settings[0].key.clone(), settings[0].value.clone())
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    // Each case below is what `perdition -d` 2.2 printed for the same line.
    #[test]
    fn values_keep_inner_whitespace_and_lose_trailing() {
        assert_eq!(
            one("ok_line it\\'s   two  words  \n"),
            pair("ok_line", "it's   two  words")
        );
    }

    #[test]
    fn a_continuation_joins_lines_even_in_a_comment() {
        assert_eq!(one("ok_line one \\\n two\n"), pair("ok_line", "one  two"));
        assert!(parse("#foo \\\nok_line 12345\n").is_empty());
        let s = parse("#a \\\n\"x\"\\\n\"y\"\ntimeout 7\n");
        assert_eq!(
            s,
            vec![Setting {
                line: 4,
                key: "timeout".into(),
                value: "7".into(),
                from: None,
            }]
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(one("ok_line \"a # b\" # c\n"), pair("ok_line", "a # b"));
        assert_eq!(one("ok_line \"a\\\"b\"\n"), pair("ok_line", "a\"b"));
        assert_eq!(one("ok_line \"it's\"\n"), pair("ok_line", "it's"));
        assert_eq!(one("ok_line 'a\\b \"c\"'\n"), pair("ok_line", "a\\b \"c\""));
        assert_eq!(one("ok_line a\\#b\n"), pair("ok_line", "a#b"));
        assert_eq!(one("\"ok_line\" \"v\"\n"), pair("ok_line", "v"));
        assert_eq!(one("query_key \\u,\\D\\d\n"), pair("query_key", "u,Dd"));
        assert_eq!(one("query_key \\\\u\n"), pair("query_key", "\\u"));
    }

    #[test]
    fn command_line_forms() {
        assert_eq!(one("-t 77\n"), pair("t", "77"));
        assert_eq!(one("--timeout=66\n"), pair("timeout", "66"));
        assert_eq!(one("-t 55 -O y\n"), pair("t", "55 -O y"));
        assert_eq!(one("debug"), pair("debug", ""));
    }

    #[test]
    fn lines_are_numbered_from_where_the_option_starts() {
        let s = parse("# c\n\nb 127.0.0.1\n  m ldap://a \\\n  b/x\n");
        assert_eq!(s[0].line, 3);
        assert_eq!(
            s[1],
            Setting {
                line: 4,
                key: "m".into(),
                value: "ldap://a   b/x".into(),
                from: None,
            }
        );
    }
}
