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
