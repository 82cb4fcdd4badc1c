//! Config templates the tests share.

/// A config with an IMAP and a POP3 listener on free loopback ports
/// (listener 0 is IMAP, 1 is POP3) and a static map `users.map`; `backend`
/// is added to `[backend]`, `extra` appended.
pub fn two_listeners(imap_port: u16, pop3_port: u16, backend: &str, extra: &str) -> String {
    format!(
        r#"[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "pop3"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = {imap_port}
pop3_port = {pop3_port}
connect_timeout = "2s"
login_timeout = "5s"
{backend}

[runtime]
workers = 2
shutdown_grace = "2s"
{extra}
"#
    )
}

/// What the test kit adds to every config it starts mailgate with, unless
/// the config sets the key itself: failed logins answered at once (the
/// production default waits 2 s; tests that check the delay set their own),
/// and root allowed (the suite may run as root; tests of the switch to
/// another user set `user` or `allow_root` themselves).
pub const TEST_DEFAULTS: &[(&str, &str, &str)] = &[
    ("limits", "failure_delay", "\"0s\""),
    ("runtime", "allow_root", "true"),
];

/// The environment variable that picks the reactor of every mailgate a test
/// starts (`uring`, `epoll` or `auto`): the suite runs once per mode.
pub const IO_VARIABLE: &str = "MAILGATE_TEST_IO";

/// `config` with [`TEST_DEFAULTS`] (and `[runtime] io` from [`IO_VARIABLE`]
/// when it is set) added where it does not set them: into the table when the
/// config has it, else in a table of its own at the end.
pub fn with_test_defaults(config: &str) -> String {
    with_defaults(config, std::env::var(IO_VARIABLE).ok().as_deref())
}

fn with_defaults(config: &str, io: Option<&str>) -> String {
    let mut defaults: Vec<(&str, &str, String)> = TEST_DEFAULTS
        .iter()
        .map(|(t, k, v)| (*t, *k, (*v).to_owned()))
        .collect();
    if let Some(io) = io {
        defaults.push(("runtime", "io", format!("{io:?}")));
    }
    let mut out = config.to_owned();
    for (table, key, value) in &defaults {
        let set = out.lines().any(|l| {
            l.trim_start().starts_with(&format!("{key} "))
                || l.trim_start().starts_with(&format!("{key}="))
        });
        if set {
            continue;
        }
        let header = format!("[{table}]\n");
        match out.find(&header) {
            Some(at) => out.insert_str(at + header.len(), &format!("{key} = {value}\n")),
            None => out.push_str(&format!("\n{header}{key} = {value}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_defaults_go_into_an_existing_table_or_a_new_one() {
        let merged = with_defaults("[limits]\nmax_line = 10\n", None);
        assert_eq!(
            merged,
            "[limits]\nfailure_delay = \"0s\"\nmax_line = 10\n\n[runtime]\nallow_root = true\n"
        );
        let added = with_defaults("[runtime]\nworkers = 1\n", None);
        assert!(
            added.starts_with("[runtime]\nallow_root = true\nworkers = 1\n")
                && added.ends_with("\n[limits]\nfailure_delay = \"0s\"\n"),
            "{added}"
        );
        let own = "[limits]\nfailure_delay = \"2s\"\n[runtime]\nallow_root = false\n";
        assert_eq!(with_defaults(own, None), own);
        let epoll = with_defaults("[runtime]\nworkers = 1\n", Some("epoll"));
        assert!(epoll.starts_with("[runtime]\nio = \"epoll\"\n"), "{epoll}");
    }
}
