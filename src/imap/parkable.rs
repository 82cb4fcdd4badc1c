//! Which client commands leave no state on an IMAP connection that a next
//! user of the same back-end session could inherit: the allowlist the
//! connection cache parks by.
//!
//! A command is judged by its name (after `UID`, by the sub-command) and by
//! the atoms of its parameters outside quoted strings and literals. Only
//! commands on [`STATELESS`] pass; anything else — `ENABLE`, `COMPRESS`,
//! `NOTIFY`, `STARTTLS`, a second login, an extension this list does not
//! know, a command that cannot be read — makes the session unparkable. Of
//! the commands that pass, some can switch on connection-wide state through
//! a parameter: RFC 7162 §3.1 makes `SELECT … (CONDSTORE)`, `FETCH …
//! (MODSEQ)`, `FETCH … (CHANGEDSINCE …)`, `STORE … (UNCHANGEDSINCE …)`,
//! `SEARCH MODSEQ` and `STATUS … (HIGHESTMODSEQ)` "CONDSTORE enabling
//! commands" whose effect lasts for the connection, and `QRESYNC`/`VANISHED`
//! likewise; RFC 5267's `SEARCH RETURN (UPDATE)` keeps sending updates. Any
//! of the atoms in [`STATEFUL_ATOMS`] anywhere in a command's text (outside
//! quoted strings) therefore makes the session unparkable, and `SELECT` /
//! `EXAMINE` must have no parameter list at all.
//!
//! Being conservative costs a parked session, never a user's privacy: a
//! mailbox name containing `(` or a header field named `MODSEQ` merely
//! sends that session's `LOGOUT` to the back end.
//!
//! This module never performs I/O; it judges text it is handed.

/// Commands (upper case) that leave no connection state once answered:
/// mailbox and message operations whose effect lives in the mailbox store,
/// selection (undone by `UNSELECT` before parking), `IDLE` (ended by
/// `DONE`), and queries. `ID` is here: its parameters only reach the back
/// end's log.
pub const STATELESS: &[&str] = &[
    "APPEND",
    "CAPABILITY",
    "CHECK",
    "CLOSE",
    "COPY",
    "CREATE",
    "DELETE",
    "DELETEACL",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "GETACL",
    "GETMETADATA",
    "GETQUOTA",
    "GETQUOTAROOT",
    "ID",
    "IDLE",
    "LIST",
    "LISTRIGHTS",
    "LSUB",
    "MOVE",
    "MYRIGHTS",
    "NAMESPACE",
    "NOOP",
    "RENAME",
    "SEARCH",
    "SELECT",
    "SETACL",
    "SETMETADATA",
    "SORT",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "THREAD",
    "UNSELECT",
    "UNSUBSCRIBE",
];

/// `UID` sub-commands that leave no connection state (with the same
/// parameter rule as their plain forms).
pub const STATELESS_UID: &[&str] = &[
    "COPY", "EXPUNGE", "FETCH", "MOVE", "SEARCH", "SORT", "STORE", "THREAD",
];

/// Parameter atoms that switch on state lasting for the connection.
pub const STATEFUL_ATOMS: &[&str] = &[
    "CHANGEDSINCE",
    "CONDSTORE",
    "HIGHESTMODSEQ",
    "MODSEQ",
    "QRESYNC",
    "UNCHANGEDSINCE",
    "UPDATE",
    "VANISHED",
];

/// What a command line says about parking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On the allowlist, nothing stateful seen so far.
    Stateless {
        /// `SELECT`/`EXAMINE`: no parameter list allowed in any later line
        /// of the command either.
        selection: bool,
    },
    /// Leaves (or may leave) state a next user would inherit; why.
    Stateful(&'static str),
}

/// Why a session's state taints it, in words for logs and metrics.
pub const NOT_ALLOWED: &str = "a command not known to leave no state";
/// A parameter that switches on connection-wide state.
pub const STATEFUL_PARAMETER: &str = "a CONDSTORE, QRESYNC or UPDATE parameter";
/// `SELECT`/`EXAMINE` with parameters.
pub const SELECT_PARAMETERS: &str = "SELECT or EXAMINE with parameters";

/// Judges a command named `name` (as the client spelt it) whose first line
/// after the name is `rest` (without the line end and without a trailing
/// literal announcement's contents).
pub fn judge(name: &str, rest: &[u8]) -> Verdict {
    let listed =
        |list: &[&str], word: &[u8]| list.iter().any(|c| word.eq_ignore_ascii_case(c.as_bytes()));
    let (known, rest) = if name.eq_ignore_ascii_case("UID") {
        let (sub, rest) = first_atom(rest);
        (listed(STATELESS_UID, sub), rest)
    } else {
        (listed(STATELESS, name.as_bytes()), rest)
    };
    if !known {
        return Verdict::Stateful(NOT_ALLOWED);
    }
    let selection = name.eq_ignore_ascii_case("SELECT") || name.eq_ignore_ascii_case("EXAMINE");
    continued(Verdict::Stateless { selection }, rest)
}

/// The verdict after one more line of the same command (the text after a
/// literal), starting from `before`.
pub fn continued(before: Verdict, text: &[u8]) -> Verdict {
    let Verdict::Stateless { selection } = before else {
        return before;
    };
    let mut verdict = before;
    let mut atom_start = None;
    let check = |atom: &[u8], verdict: &mut Verdict| {
        if *verdict == before
            && STATEFUL_ATOMS
                .iter()
                .any(|s| atom.eq_ignore_ascii_case(s.as_bytes()))
        {
            *verdict = Verdict::Stateful(STATEFUL_PARAMETER);
        }
    };
    for_each_unquoted(text, |at, b| {
        if selection && b == b'(' {
            verdict = Verdict::Stateful(SELECT_PARAMETERS);
        }
        let boundary = matches!(b, b' ' | b'(' | b')' | b'[' | b']' | b'<' | b'>' | b'"');
        match (atom_start, boundary) {
            (None, false) => atom_start = Some(at),
            (Some(start), true) => {
                check(&text[start..at], &mut verdict);
                atom_start = None;
            }
            _ => {}
        }
    });
    if let Some(start) = atom_start {
        check(&text[start..], &mut verdict);
    }
    verdict
}

/// The first space-separated word of `text` and what follows it.
fn first_atom(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    (&text[..end], text.get(end + 1..).unwrap_or_default())
}

/// Calls `f` with the offset of every byte of `text` and the byte, a quoted
/// string (quotes included) standing as one `"` (an atom boundary).
fn for_each_unquoted(text: &[u8], mut f: impl FnMut(usize, u8)) {
    let mut quoted = false;
    let mut escaped = false;
    for (at, &b) in text.iter().enumerate() {
        if quoted {
            match (escaped, b) {
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => escaped = false,
            }
        } else if b == b'"' {
            quoted = true;
            f(at, b);
        } else {
            f(at, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stateless(name: &str, rest: &str) -> bool {
        matches!(judge(name, rest.as_bytes()), Verdict::Stateless { .. })
    }

    #[test]
    fn webmail_commands_pass() {
        for (name, rest) in [
            ("SELECT", "INBOX"),
            ("examine", "\"Sent (old)\""),
            (
                "FETCH",
                "1:* (FLAGS UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
            ),
            ("UID", "FETCH 1:* (FLAGS)"),
            ("uid", "store 4 +FLAGS (\\Seen)"),
            ("SEARCH", "SUBJECT \"modseq update\""),
            ("STATUS", "INBOX (MESSAGES UNSEEN)"),
            ("LIST", "\"\" *"),
            ("APPEND", "Sent (\\Seen) {310}"),
            ("ID", "(\"name\" \"webmail\")"),
            ("IDLE", ""),
            ("UNSELECT", ""),
        ] {
            assert!(stateless(name, rest), "{name} {rest}");
        }
    }

    #[test]
    fn unknown_and_state_changing_commands_do_not() {
        for name in [
            "ENABLE",
            "COMPRESS",
            "NOTIFY",
            "STARTTLS",
            "LOGIN",
            "AUTHENTICATE",
            "XYZZY",
            "UNAUTHENTICATE",
            "ESEARCH",
            "X-ANYTHING",
        ] {
            assert_eq!(judge(name, b"x"), Verdict::Stateful(NOT_ALLOWED), "{name}");
        }
        assert_eq!(judge("UID", b"XFOO 1"), Verdict::Stateful(NOT_ALLOWED));
        assert_eq!(judge("UID", b""), Verdict::Stateful(NOT_ALLOWED));
    }

    #[test]
    fn condstore_and_qresync_parameters_do_not() {
        for (name, rest) in [
            ("FETCH", "1:* (FLAGS MODSEQ)"),
            ("UID", "FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"),
            ("UID", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"),
            ("STORE", "1 (UNCHANGEDSINCE 9) +FLAGS (\\Seen)"),
            ("SEARCH", "MODSEQ 620162338"),
            ("uid", "search modseq 1"),
            ("STATUS", "INBOX (HIGHESTMODSEQ)"),
            ("SEARCH", "RETURN (UPDATE) UNSEEN"),
            ("LIST", "\"\" * RETURN (STATUS (HIGHESTMODSEQ))"),
        ] {
            assert_eq!(
                judge(name, rest.as_bytes()),
                Verdict::Stateful(STATEFUL_PARAMETER),
                "{name} {rest}"
            );
        }
    }

    #[test]
    fn select_with_any_parameter_list_does_not() {
        for rest in [
            "INBOX (CONDSTORE)",
            "INBOX (QRESYNC (67890007 20050715194045000))",
        ] {
            assert_eq!(
                judge("SELECT", rest.as_bytes()),
                Verdict::Stateful(SELECT_PARAMETERS)
            );
        }
        // A mailbox name sent as a literal, the parameters after it.
        let before = judge("EXAMINE", b"{5}");
        assert_eq!(before, Verdict::Stateless { selection: true });
        assert_eq!(
            continued(before, b" (CONDSTORE)"),
            Verdict::Stateful(SELECT_PARAMETERS)
        );
        assert_eq!(continued(before, b""), before);
    }

    #[test]
    fn quoted_strings_are_data() {
        assert!(stateless(
            "SEARCH",
            "HEADER X-Note \"(MODSEQ) \\\" VANISHED\""
        ));
        assert!(stateless("SELECT", "\"Archive (2019)\""));
    }
}
