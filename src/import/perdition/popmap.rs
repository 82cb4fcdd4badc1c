//! Perdition's user maps as a mailgate static map: the flat `popmap` that
//! `makegdbm`/`makebdb` build from, and the regular expressions of
//! `popmap.re` where a static map can say the same.
//!
//! A static map has exact keys, `*@domain` and `*`, with exact beating
//! domain beating `*`; `popmap.re` is first match wins. A rule is carried
//! over only when it means the same under both: `^user$` (exact),
//! `@domain$`-style suffixes (domain), `.*`-style catch-alls (`*`); a rule
//! Perdition could never reach (after a catch-all, or an exact key after its
//! domain's rule) and every other expression is listed, never guessed.
//! A `.` in a name is read as a dot (Perdition's unescaped `.` also matches
//! any other character there; no real user relies on that).

/// A map file in mailgate's format, and what could not go into it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Converted {
    /// `key target` lines.
    pub lines: Vec<String>,
    /// One line per entry left out: `line N: entry (why)`.
    pub left_out: Vec<String>,
}

/// A `[user@]host[:port]` value as a mailgate target, or why not.
pub(super) fn target(value: &str, delimiter: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("no server".into());
    }
    if value.contains('$') {
        return Err("back-references need a regular expression".into());
    }
    if value.contains(delimiter) {
        return Err(format!(
            "a back-end user name (`user{delimiter}server`) cannot be given in a static map; \
             the back end gets the login as typed"
        ));
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{host}` is not a host"));
    }
    match port {
        None => Ok(host.to_owned()),
        Some(port) => match super::translate::port_number(port) {
            Some(n) => Ok(format!("{host}:{n}")),
            None => Err(format!("`{port}` is not a port")),
        },
    }
}

/// Converts a flat popmap: `key:value` per line, `#` comments.
pub fn flat(text: &str, delimiter: &str) -> Converted {
    let mut out = Converted::default();
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let n = index + 1;
        let Some((key, value)) = line.split_once(':') else {
            out.left_out.push(format!(
                "line {n}: `{line}` (no `:` between user and server)"
            ));
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('*') {
            out.left_out
                .push(format!("line {n}: `{line}` (`{key}` is not a user name)"));
            continue;
        }
        if !seen.insert(key.to_lowercase()) {
            out.left_out
                .push(format!("line {n}: `{line}` (`{key}` is listed before)"));
            continue;
        }
        match target(value, delimiter) {
            Ok(target) => out.lines.push(format!("{key} {target}")),
            Err(why) => out.left_out.push(format!("line {n}: `{line}` ({why})")),
        }
    }
    out
}

/// What a `popmap.re` expression means, when a static map can say it.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Exact(String),
    Domain(String),
    Everyone,
}

/// Regular-expression metacharacters (POSIX extended) other than `.`.
const META: &[char] = &[
    '[', ']', '(', ')', '*', '+', '?', '{', '}', '|', '^', '$', '\\',
];

/// `text` as a literal name, `\.` and `.` read as a dot, if nothing else in
/// it is special. (An unescaped `.` also matches any other character in
/// Perdition; in a user or domain name nobody relies on that.)
fn literal(text: &str) -> Option<String> {
    let plain = text.replace("\\.", ".");
    if plain.is_empty() || plain.contains(META) {
        return None;
    }
    Some(plain)
}

fn key_of(regex: &str) -> Option<Key> {
    if matches!(
        regex,
        "." | ".*" | "^.*" | "^.*$" | ".*$" | "^" | "^.+$" | ".+"
    ) {
        return Some(Key::Everyone);
    }
    if let Some(inner) = regex.strip_prefix('^').and_then(|r| r.strip_suffix('$')) {
        if let Some(user) = literal(inner) {
            return Some(Key::Exact(user));
        }
    }
    let suffix = regex.strip_suffix('$')?;
    let domain = ["^.*@", ".*@", "@"]
        .iter()
        .find_map(|prefix| suffix.strip_prefix(prefix))
        .and_then(literal)?;
    (!domain.contains('@')).then_some(Key::Domain(domain))
}

/// Converts `popmap.re`: `regex[:] server` per line, first match wins. The
/// file uses Perdition's configuration syntax (quotes, `\`, `#`).
pub fn regex(text: &str, delimiter: &str) -> Converted {
    let mut out = Converted::default();
    let mut everyone = false;
    let mut domains = std::collections::HashSet::new();
    let mut exact = std::collections::HashSet::new();
    for setting in super::file::parse(text) {
        let n = setting.line;
        let regex = setting.key.strip_suffix(':').unwrap_or(&setting.key);
        let value = setting
            .value
            .strip_prefix(':')
            .unwrap_or(&setting.value)
            .trim();
        let shown = format!("`{regex}: {value}`");
        let Some(key) = key_of(regex) else {
            out.left_out.push(format!(
                "line {n}: {shown} (a static map has exact keys, `*@domain` and `*` only)"
            ));
            continue;
        };
        let unreachable = everyone
            || match &key {
                Key::Exact(user) => {
                    exact.contains(&user.to_lowercase())
                        || user
                            .rsplit_once('@')
                            .is_some_and(|(_, d)| domains.contains(&d.to_lowercase()))
                }
                Key::Domain(d) => domains.contains(&d.to_lowercase()),
                Key::Everyone => false,
            };
        if unreachable {
            out.left_out.push(format!(
                "line {n}: {shown} (Perdition never reaches it: an earlier rule matches first)"
            ));
            continue;
        }
        let target = match target(value, delimiter) {
            Ok(t) => t,
            Err(why) => {
                out.left_out.push(format!("line {n}: {shown} ({why})"));
                continue;
            }
        };
        let key = match key {
            Key::Everyone => {
                everyone = true;
                "*".to_owned()
            }
            Key::Domain(d) => {
                domains.insert(d.to_lowercase());
                format!("*@{d}")
            }
            Key::Exact(user) => {
                exact.insert(user.to_lowercase());
                user
            }
        };
        out.lines.push(format!("{key} {target}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_popmap_lines_become_map_lines() {
        let c = flat(
            "# comment\nhorms:localhost\njain:jane@foo.bar\nbob:10.0.0.2:10143\nbob:x\n\nodd\n",
            "@",
        );
        assert_eq!(c.lines, ["horms localhost", "bob 10.0.0.2:10143"]);
        assert_eq!(c.left_out.len(), 3, "{:?}", c.left_out);
        assert!(c.left_out[0].starts_with("line 3: `jain:jane@foo.bar`"));
        assert!(c.left_out[1].contains("listed before"));
        assert!(c.left_out[2].contains("no `:`"));
    }

    #[test]
    fn named_ports_become_numbers() {
        assert_eq!(
            flat("a:h:imap\nb:h:pop3s\n", "@").lines,
            ["a h:143", "b h:995"]
        );
        assert_eq!(flat("a:h:gopher\n", "@").left_out.len(), 1);
    }

    #[test]
    fn regexes_a_static_map_can_say() {
        let c = regex(
            "^alice@example\\\\.org$: box1\n@example\\\\.org$ box2:10143\n(.*)@(.*): $1_$2@localhost\n^[a-k]: box3\n.*: box4\n^zed$: box5\n",
            "@",
        );
        assert_eq!(
            c.lines,
            [
                "alice@example.org box1",
                "*@example.org box2:10143",
                "* box4"
            ]
        );
        assert_eq!(c.left_out.len(), 3, "{:?}", c.left_out);
        assert!(c.left_out[0].contains("(.*)@(.*)"));
        assert!(c.left_out[1].contains("^[a-k]"));
        assert!(c.left_out[2].contains("never reaches"));
    }

    #[test]
    fn an_exact_rule_after_its_domain_rule_is_unreachable() {
        let c = regex(
            "@x\\\\.org$: a\n^bob@x\\\\.org$: b\n^bob@y\\\\.org$: c\n",
            "@",
        );
        assert_eq!(c.lines, ["*@x.org a", "bob@y.org c"]);
        assert!(c.left_out[0].contains("never reaches"));
    }

    #[test]
    fn unanchored_names_are_not_exact() {
        // `flim` matches "flimstix" in Perdition: not an exact key.
        let c = regex("flim: localhost\n", "@");
        assert!(c.lines.is_empty());
    }
}
