//! Debian's `/etc/default/perdition` (RPM systems: `/etc/sysconfig/perdition`):
//! which modes the init script starts, and the command-line flags it gives
//! them — `FLAGS` to every mode, `IMAP4_FLAGS`, `IMAP4S_FLAGS`, `POP3_FLAGS`,
//! `POP3S_FLAGS` to one. On Perdition's command line they override the
//! configuration file.
//!
//! The file is shell, sourced by the init script. This reads the plain
//! assignments the shipped file consists of (`NAME=value`, `NAME="value"`,
//! `NAME='value'`, with or without `export`) and lists every other line, so
//! nothing is dropped silently. Unset variables take the init script's
//! defaults: every mode `yes`, `RUN_PERDITION` `no`. Flags are read as
//! Perdition reads its command line: `--key value`, `--key=value`, `-k value`, `-kvalue`, and
//! flags grouped after one dash (`-dC`); the init script expands them
//! unquoted, so they split at whitespace.
//!
//! Pure: text in, settings out; the caller reads the file.

use super::file::Setting;
use super::options::{canonical, Flag};
use super::translate::Mode;
use std::collections::BTreeMap;

/// What the init script would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// `RUN_PERDITION=yes`: without it the init script starts nothing.
    pub run: bool,
    /// The IMAP and POP3 modes set to `yes`, in the init script's order.
    pub modes: Vec<Mode>,
    /// `FLAGS`: options for every mode.
    pub common: Vec<Setting>,
    /// `<MODE>_FLAGS`: options for one mode, for the modes that run.
    pub per_mode: Vec<(Mode, Vec<Setting>)>,
    /// Lines and words that could not be read, with the reason.
    pub notes: Vec<String>,
}

/// The init script's modes, in its start order, with their variables.
const MODES: [(Mode, &str); 5] = [
    (Mode::Pop3, "POP3"),
    (Mode::Pop3s, "POP3S"),
    (Mode::Imap4, "IMAP4"),
    (Mode::Imap4s, "IMAP4S"),
    (Mode::ManageSieve, "MANAGESIEVE"),
];

/// Reads the defaults file `text`.
pub fn read(text: &str) -> Defaults {
    let mut notes = Vec::new();
    let mut vars: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match assignment(trimmed) {
            Some((name, value)) => {
                vars.insert(name, (line, value));
            }
            None => notes.push(format!(
                "defaults line {line}: `{trimmed}` (not a plain assignment; mailgate reads only those)"
            )),
        }
    }
    let yes = |name: &str, default: bool| {
        vars.get(name)
            .map_or(default, |(_, value)| value.trim() == "yes")
    };
    let mut flags = |name: &str| match vars.get(name) {
        Some((line, value)) => options(value, name, *line, &mut notes),
        None => Vec::new(),
    };
    let common = flags("FLAGS");
    let mut modes = Vec::new();
    let mut per_mode = Vec::new();
    for (mode, var) in MODES {
        if yes(var, true) {
            modes.push(mode);
            per_mode.push((mode, flags(&format!("{var}_FLAGS"))));
        }
    }
    Defaults {
        run: yes("RUN_PERDITION", false),
        modes,
        common,
        per_mode,
        notes,
    }
}

/// `NAME=value` (optionally after `export `), the value unquoted as the
/// shell would; `None` for anything else.
fn assignment(line: &str) -> Option<(String, String)> {
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (name, value) = line.split_once('=')?;
    let valid_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return None;
    }
    // One shell word: an unquoted space would start a command.
    let words = words(value)?;
    match words.as_slice() {
        [] => Some((name.to_owned(), String::new())),
        [one] => Some((name.to_owned(), one.clone())),
        _ => None,
    }
}

/// Splits `text` into words as the shell does: whitespace separates,
/// single quotes keep everything, double quotes everything but `\`-escapes,
/// `\x` outside quotes is `x`, `#` at a word's start begins a comment.
/// `None` for an unterminated quote, or `$`/`` ` `` (expansions are not
/// read).
fn words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(current.take()),
            '#' if current.is_none() => break,
            '$' | '`' => return None,
            '\\' => current.get_or_insert_with(String::new).extend(chars.next()),
            '\'' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' => return None,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(current);
    Some(words)
}

/// The options of a flags variable, as Perdition's command line reads them.
fn options(value: &str, var: &str, line: usize, notes: &mut Vec<String>) -> Vec<Setting> {
    let at = |key: &str, value: &str| Setting {
        line,
        key: key.to_owned(),
        value: value.to_owned(),
        from: Some(var.to_owned()),
    };
    let mut settings = Vec::new();
    // The init script expands `$FLAGS $IMAP4_FLAGS` unquoted: split at
    // whitespace, no quote removal.
    let mut words = value.split_whitespace().map(str::to_owned);
    while let Some(word) = words.next() {
        if let Some(long) = word.strip_prefix("--") {
            if let Some((key, value)) = long.split_once('=') {
                settings.push(at(key, value));
                continue;
            }
            match canonical(long) {
                Some((_, Flag::No)) => {
                    let value = words.next().unwrap_or_default();
                    settings.push(at(long, &value));
                }
                // A flag, or an unknown option (listed by the translation).
                _ => settings.push(at(long, "")),
            }
        } else if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (i, letter) in short.char_indices() {
                let key = letter.to_string();
                match canonical(&key) {
                    Some((_, Flag::No)) => {
                        let rest = &short[i + letter.len_utf8()..];
                        let value = if rest.is_empty() {
                            words.next().unwrap_or_default()
                        } else {
                            rest.to_owned()
                        };
                        settings.push(at(&key, &value));
                        break;
                    }
                    _ => settings.push(at(&key, "")),
                }
            }
        } else {
            notes.push(format!(
                "defaults line {line}: {var} word `{word}` (not an option)"
            ));
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(settings: &[Setting]) -> Vec<(&str, &str)> {
        settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect()
    }

    #[test]
    fn unset_variables_take_the_init_scripts_defaults() {
        let d = read("# nothing set\n");
        assert!(!d.run);
        assert_eq!(
            d.modes,
            vec![
                Mode::Pop3,
                Mode::Pop3s,
                Mode::Imap4,
                Mode::Imap4s,
                Mode::ManageSieve
            ]
        );
        assert!(d.common.is_empty() && d.notes.is_empty());
    }

    #[test]
    fn modes_and_flags_are_read() {
        let d = read(
            "RUN_PERDITION=yes\n\
             FLAGS=\"-t 55 --lower_case=all\"\n\
             POP3=no\nPOP3S='no'\n\
             export IMAP4_FLAGS='--listen_port 1143 -b 10.0.0.1'\n\
             IMAP4S_FLAGS=-dCp993\n\
             MANAGESIEVE=no\n",
        );
        assert!(d.run);
        assert_eq!(d.modes, vec![Mode::Imap4, Mode::Imap4s], "MANAGESIEVE=no");
        assert_eq!(pairs(&d.common), [("t", "55"), ("lower_case", "all")]);
        assert_eq!(d.common[0].from.as_deref(), Some("FLAGS"));
        assert_eq!(d.common[0].line, 2);
        assert_eq!(d.per_mode[0].0, Mode::Imap4);
        assert_eq!(
            pairs(&d.per_mode[0].1),
            [("listen_port", "1143"), ("b", "10.0.0.1")]
        );
        assert_eq!(
            pairs(&d.per_mode[1].1),
            [("d", ""), ("C", ""), ("p", "993")]
        );
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn debians_shipped_file_starts_every_mode_without_flags() {
        let d = read(
            "RUN_PERDITION=yes\n#FLAGS=\nPOP3=yes\nPOP3_FLAGS=\nPOP3S=yes\nPOP3S_FLAGS=\n\
             IMAP4=yes\nIMAP4_FLAGS=\nIMAP4S=yes\nIMAP4S_FLAGS=\nMANAGESIEVE=yes\nMANAGESIEVE_FLAGS=\n",
        );
        assert!(d.run);
        assert_eq!(d.modes.len(), 5);
        assert_eq!(d.modes[4], Mode::ManageSieve);
        assert!(d.per_mode.iter().all(|(_, s)| s.is_empty()));
        assert!(d.notes.is_empty());
    }

    #[test]
    fn what_is_not_a_plain_assignment_is_listed() {
        let d = read(
            "if [ -f /x ]; then\nFLAGS=\"$EXTRA -d\"\nIMAP4_FLAGS='-b 1.2.3.4\nIMAP4=yes now\nPOP3_FLAGS=stray\n",
        );
        assert_eq!(d.notes.len(), 5, "{:?}", d.notes);
        assert!(d.notes[0].contains("line 1"));
        assert!(d.notes[2].contains("line 3"));
        assert!(d.notes.iter().any(|n| n.contains("word `stray`")));
        assert!(d.common.is_empty());
    }

    #[test]
    fn shell_words_follow_the_shells_quoting() {
        assert_eq!(
            words(r#"a "b c" 'd "e"' f\ g "h\"i" # comment"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g", "h\"i"]
        );
        assert_eq!(words("a#b").unwrap(), ["a#b"]);
        assert_eq!(words("'open"), None);
        assert_eq!(words("$HOME"), None);
    }
}
