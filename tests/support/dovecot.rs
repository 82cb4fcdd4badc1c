//! A real Dovecot (imap + pop3, plaintext) with Maildirs of known content.

use super::{free_port, terminate, START_DEADLINE};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A user with a password and the messages in their INBOX.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// Login name.
    pub name: String,
    /// Password (no `:` or newline: passwd-file format).
    pub password: String,
    /// Messages, in INBOX order.
    pub messages: Vec<Vec<u8>>,
}

impl TestUser {
    /// A user per name in `names`, each with `password` and an empty INBOX.
    pub fn all_with_password(names: &[String], password: &str) -> Vec<Self> {
        names
            .iter()
            .map(|name| TestUser {
                name: name.clone(),
                password: password.into(),
                messages: vec![],
            })
            .collect()
    }
}

/// A running Dovecot.
pub struct Dovecot {
    child: Child,
    dir: tempfile::TempDir,
    /// IMAP listener.
    pub imap: SocketAddr,
    /// POP3 listener.
    pub pop3: SocketAddr,
}

const MAIL_UID: u32 = 8; // Debian's `mail` user
/// Starts tried before a test gives up on Dovecot.
const START_ATTEMPTS: u32 = 3;

/// Whether `child` listens on `addr` before [`START_DEADLINE`]; false as
/// soon as it has exited (it could not bind).
fn listening(child: &mut Child, addr: SocketAddr) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < START_DEADLINE {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether the server on `addr` greets with a line holding `token`, this
/// Dovecot's own `login_greeting`: a port that accepts could belong to
/// another process that took it between `free_port` and Dovecot's bind
/// (another test's mailgate or Dovecot), which `listening` cannot tell.
fn greets_with(addr: SocketAddr, token: &str) -> bool {
    use std::io::{BufRead, Read};
    let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let _ = std::io::BufReader::new(stream.take(1024)).read_line(&mut line);
    line.contains(token)
}
const MAIL_GID: u32 = 8;

impl Dovecot {
    /// Starts Dovecot with these users; panics with its log if it fails.
    pub fn start(users: &[TestUser]) -> Self {
        Self::start_with(users, "")
    }

    /// Like `start`, with `extra` appended to dovecot.conf.
    pub fn start_with(users: &[TestUser], extra: &str) -> Self {
        Self::start_with_ports(users, 0, |_| extra.to_owned()).0
    }

    /// Like `start_with`, with `extra(ports)` appended, `ports` being
    /// `more` free ports of its own (listeners it adds), returned too.
    ///
    /// A free port can be taken between the test picking it and Dovecot
    /// binding it (another test's outgoing connection may land on it):
    /// Dovecot then exits at once, and the start is tried again with new
    /// ports, up to [`START_ATTEMPTS`] times.
    pub fn start_with_ports(
        users: &[TestUser],
        more: usize,
        extra: impl Fn(&[u16]) -> String,
    ) -> (Self, Vec<u16>) {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-dovecot-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut passwd = String::new();
        for user in users {
            passwd.push_str(&format!("{}:{{PLAIN}}{}::::::\n", user.name, user.password));
            write_maildir(&root.join("home").join(&user.name), &user.messages);
        }
        std::fs::write(root.join("passwd"), passwd).unwrap();
        for sub in ["run", "state"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let conf = root.join("dovecot.conf");
        for attempt in 1..=START_ATTEMPTS {
            let (imap_port, pop3_port) = (free_port(), free_port());
            let ports: Vec<u16> = (0..more).map(|_| free_port()).collect();
            // Dovecot's master binds every listener before it starts a
            // login process: a greeting of its own on both ports, with the
            // master still running, means all its ports are its own.
            let greeting = format!(
                "mailgate-test-{}-{attempt}",
                root.file_name().unwrap_or_default().to_string_lossy()
            );
            std::fs::write(
                &conf,
                config(root, imap_port, pop3_port, &greeting) + &extra(&ports),
            )
            .unwrap();
            let mut child = Command::new("dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start dovecot (apt-get install dovecot-imapd dovecot-pop3d)");
            let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
            let listening = [imap_port, pop3_port]
                .iter()
                .chain(&ports)
                .all(|port| listening(&mut child, at(*port)))
                && [imap_port, pop3_port]
                    .iter()
                    .all(|port| greets_with(at(*port), &greeting))
                && child.try_wait().ok().flatten().is_none();
            if listening {
                let dovecot = Self {
                    child,
                    imap: SocketAddr::from(([127, 0, 0, 1], imap_port)),
                    pop3: SocketAddr::from(([127, 0, 0, 1], pop3_port)),
                    dir,
                };
                return (dovecot, ports);
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "dovecot did not listen on its ports (attempt {attempt}): {}",
                std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
            );
        }
        panic!("dovecot did not start in {START_ATTEMPTS} attempts");
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// How many `Login: user=<USER>` lines the log holds once it has
    /// `count` of them, or after 10 s (Dovecot writes its log a moment
    /// after it answers the login).
    pub fn logins_of(&self, user: &str, count: usize) -> usize {
        let needle = format!("Login: user=<{user}>");
        let start = std::time::Instant::now();
        loop {
            let found = self.log().matches(&needle).count();
            if found >= count || start.elapsed() > std::time::Duration::from_secs(10) {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The log's `Login:` lines of `service` (`imap`, `pop3`) once there
    /// are `count` of them, or all there are after 10 s.
    pub fn login_lines(&self, service: &str, count: usize) -> Vec<String> {
        let needle = format!("{service}-login: Info: Login:");
        let start = std::time::Instant::now();
        loop {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| l.contains(&needle))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count || start.elapsed() > std::time::Duration::from_secs(10) {
                return lines;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs `doveadm ARGS` against this Dovecot; its output, or what it
    /// said when it failed.
    pub fn doveadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Path of message `index` (0-based) of `user` on disk.
    pub fn message_path(&self, user: &str, index: usize) -> PathBuf {
        self.dir
            .path()
            .join("home")
            .join(user)
            .join("Maildir/cur")
            .join(message_file_name(index))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

fn message_file_name(index: usize) -> String {
    format!("{}.M{index}P1.mailgate-test:2,S", 1_700_000_000 + index)
}

fn write_maildir(home: &Path, messages: &[Vec<u8>]) {
    let maildir = home.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (i, message) in messages.iter().enumerate() {
        std::fs::write(maildir.join("cur").join(message_file_name(i)), message).unwrap();
    }
    chown_tree(home);
}

fn chown_tree(path: &Path) {
    std::os::unix::fs::chown(path, Some(MAIL_UID), Some(MAIL_GID)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

fn config(root: &Path, imap_port: u16, pop3_port: u16, greeting: &str) -> String {
    let root = root.display();
    format!(
        r#"base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_greeting = {greeting}
mail_location = maildir:~/Maildir
first_valid_uid = {MAIL_UID}
mail_max_userip_connections = 10000
default_client_limit = 10000
default_process_limit = 1000
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_GID} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
}}
# Every test login comes from 127.0.0.1: no per-IP auth penalty.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 10000
}}
protocol pop3 {{
  mail_max_userip_connections = 10000
}}
"#
    )
}
