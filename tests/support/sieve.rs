//! ManageSieve test parts: a Dovecot with Pigeonhole's managesieve on a
//! port of its own, and `sieve-connect` run against any ManageSieve port.

use super::{Dovecot, TestUser};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// Dovecot with `users` and ManageSieve (`protocols = … sieve`) on its
/// own port, scripts in each home's `sieve/`, and `extra` in dovecot.conf;
/// that ManageSieve address.
pub fn dovecot_with_sieve(users: &[TestUser], extra: &str) -> (Dovecot, SocketAddr) {
    let (dovecot, ports) = Dovecot::start_with_ports(users, 1, |ports| {
        format!(
            "{extra}protocols = imap pop3 sieve\n\
             service managesieve-login {{\n  inet_listener sieve {{\n    port = {}\n  }}\n  service_count = 0\n}}\n\
             plugin {{\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  \
             sieve_extensions = fileinto vacation envelope\n}}\n",
            ports[0]
        )
    });
    (dovecot, SocketAddr::from(([127, 0, 0, 1], ports[0])))
}

/// Runs `sieve-connect` against 127.0.0.1:`port` over STARTTLS (the
/// server's certificate checked against `ca` for `localhost`), logging in
/// with PLAIN, in `dir`; its output, or its output and the failure.
pub fn sieve_connect(
    port: u16,
    ca: &Path,
    (user, password): (&str, &str),
    dir: &Path,
    args: &[&str],
) -> Result<String, String> {
    let mut child = Command::new("sieve-connect")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--user", user, "--passwordfd", "0", "--authmech", "PLAIN"])
        .args(["--tlscafile", &ca.display().to_string()])
        .args(["--tlshostname", "localhost"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sieve-connect (tests/setup.sh installs it): {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("sieve-connect {args:?}: {}: {text}", out.status))
    }
}
