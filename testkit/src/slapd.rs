//! A real OpenLDAP `slapd` with the deployment's tree
//! (`ou=People,dc=infra,dc=org,o=Anarchy`, entries with `mail`, `host`,
//! `status`), loaded with `slapadd`, content synchronization (`syncprov`)
//! on unless asked otherwise, logging every operation so callers can count
//! searches. Changes go through `ldapmodify` as the root DN, as an operator
//! makes them. Stopped when dropped.
//!
//! Needs `slapd` and `ldap-utils` (Debian: `apt-get install slapd
//! ldap-utils`); the schema and the base tree are built in (`testkit/ldap/`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The suffix of the test tree.
pub const SUFFIX: &str = "dc=infra,dc=org,o=Anarchy";
/// Where people live.
pub const PEOPLE: &str = "ou=People,dc=infra,dc=org,o=Anarchy";
/// A bind DN with read access, and its password.
pub const PROXY_DN: &str = "cn=proxy,dc=infra,dc=org,o=Anarchy";
/// Its password.
pub const PROXY_PW: &str = "proxy-secret";
const ROOT_DN: &str = "cn=admin,dc=infra,dc=org,o=Anarchy";
const ROOT_PW: &str = "admin-secret";
/// The `status` attribute and its class (not in the standard schemas).
const SCHEMA: &str = include_str!("../ldap/mailgate.schema");
/// The suffix, `ou=People` and the proxy account.
const BASE_LDIF: &str = include_str!("../ldap/base.ldif");
/// How long slapd may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// What went wrong with slapd.
#[derive(Debug, thiserror::Error)]
pub enum SlapdError {
    /// Writing its files, or starting a program.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// `slapadd` or `ldapmodify` said no.
    #[error("{program} failed: {stderr}")]
    Tool {
        /// The program.
        program: &'static str,
        /// What it said.
        stderr: String,
    },
    /// slapd did not listen in time.
    #[error("slapd did not listen on {0} within 30 s (its log: {1})")]
    NotListening(SocketAddr, PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SlapdError {
    let what = what.into();
    move |source| SlapdError::Io { what, source }
}

/// One person entry.
pub struct Person<'a> {
    /// `mail`.
    pub mail: &'a str,
    /// `host`.
    pub host: &'a str,
    /// `status`.
    pub status: &'a str,
}

impl<'a> Person<'a> {
    /// An active person per address in `mails`, each on `host`.
    pub fn active_on(mails: &'a [String], host: &'a str) -> Vec<Self> {
        mails
            .iter()
            .map(|mail| Person {
                mail,
                host,
                status: "active",
            })
            .collect()
    }
}

/// How to start slapd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Anonymous may not read: lookups must bind (as [`PROXY_DN`]).
    pub require_bind: bool,
    /// Without the `syncprov` overlay (no content synchronization).
    pub without_sync: bool,
    /// A certificate and key: slapd also offers StartTLS and `ldaps://`.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Entries a search may return (slapd's own default is 500); `None`:
    /// unlimited, as a deployment sets it for mailgate's bind DN.
    pub size_limit: Option<u32>,
}

/// A running slapd.
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its `ldaps://` port, when started with TLS.
    pub tls_port: Option<u16>,
}

impl Slapd {
    /// Starts slapd holding `people`.
    pub fn start(people: &[Person], options: Options) -> Result<Self, SlapdError> {
        // MAILGATE_KEEP_SLAPD=1 keeps the folder (configuration, data, log)
        // for a look after the run.
        let dir = tempfile::Builder::new()
            .prefix("mailgate-slapd-")
            .disable_cleanup(std::env::var_os("MAILGATE_KEEP_SLAPD").is_some())
            .tempdir()
            .map_err(io("creating slapd's folder"))?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).map_err(io("creating slapd's data folder"))?;
        std::fs::write(root.join("mailgate.schema"), SCHEMA).map_err(io("writing the schema"))?;
        let acl = if options.require_bind {
            "access to attrs=userPassword by anonymous auth by * none\naccess to * by users read by * none\n"
        } else {
            "access to attrs=userPassword by anonymous auth by * none\naccess to * by * read\n"
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude {root}/mailgate.schema\n\
             pidfile {root}/slapd.pid\nargsfile {root}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload syncprov\n\
             sizelimit {size_limit}\ndatabase mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
             directory {root}/data\nmaxsize 104857600\nindex mail eq\n{acl}{sync}",
            root = root.display(),
            size_limit = options
                .size_limit
                .map_or("unlimited".to_owned(), |n| n.to_string()),
            sync = if options.without_sync {
                ""
            } else {
                "index entryCSN,entryUUID eq\noverlay syncprov\n"
            },
        );
        let conf = match options.tls {
            Some((cert, key)) => format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n{conf}",
                cert.display(),
                key.display()
            ),
            None => conf,
        };
        std::fs::write(root.join("slapd.conf"), conf).map_err(io("writing slapd.conf"))?;
        let mut ldif = BASE_LDIF.to_owned();
        for p in people {
            ldif.push_str(&person_ldif(p));
        }
        std::fs::write(root.join("data.ldif"), ldif).map_err(io("writing the entries"))?;
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("data.ldif"))
            .output()
            .map_err(io("running slapadd (apt-get install slapd)"))?;
        if !out.status.success() {
            return Err(SlapdError::Tool {
                program: "slapadd",
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let mut slapd = Self {
            child: None,
            dir,
            port: free_port()?,
            tls_port: match options.tls {
                Some(_) => Some(free_port()?),
                None => None,
            },
        };
        slapd.run()?;
        Ok(slapd)
    }

    fn run(&mut self) -> Result<(), SlapdError> {
        let root = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("slapd.log"))
            .map_err(io("opening slapd's log"))?;
        let child = Command::new("slapd")
            .arg("-d")
            .arg("256") // stats: one line per operation
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-h")
            .arg(match self.tls_port {
                Some(tls) => format!("ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{tls}/", self.port),
                None => format!("ldap://127.0.0.1:{}/", self.port),
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io("starting slapd"))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while start.elapsed() < START_DEADLINE {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(SlapdError::NotListening(addr, root.join("slapd.log")))
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Stops slapd (an outage); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal_child(&child, libc::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes slapd (SIGSTOP): it keeps its sockets, the kernel still
    /// accepts connections, but nothing answers — a hung server.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            self.signal_child(child, libc::SIGSTOP);
        }
    }

    /// Thaws slapd after `pause`.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            self.signal_child(child, libc::SIGCONT);
        }
    }

    fn signal_child(&self, child: &Child, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped (we hold it).
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }

    /// Starts slapd again after `stop` (a no-op while it runs).
    pub fn restart(&mut self) -> Result<(), SlapdError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.run()
    }

    /// Applies an LDIF change with `ldapmodify` as the root DN.
    pub fn modify(&self, ldif: &str) -> Result<(), SlapdError> {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("running ldapmodify (apt-get install ldap-utils)"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(ldif.as_bytes())
                .map_err(io("writing to ldapmodify"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io("waiting for ldapmodify"))?;
        if !out.status.success() {
            return Err(SlapdError::Tool {
                program: "ldapmodify",
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Sets `mail`'s `host`.
    pub fn set_host(&self, mail: &str, host: &str) -> Result<(), SlapdError> {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: host\nhost: {host}\n"
        ))
    }

    /// Sets `status` of the person with `mail`.
    pub fn set_status(&self, mail: &str, status: &str) -> Result<(), SlapdError> {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: status\nstatus: {status}\n"
        ))
    }

    /// Sets `host` and `status` of the person with `mail` in one change.
    pub fn set_host_and_status(
        &self,
        mail: &str,
        host: &str,
        status: &str,
    ) -> Result<(), SlapdError> {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: host\nhost: {host}\n-\nreplace: status\nstatus: {status}\n"
        ))
    }

    /// Search filters slapd received, in order.
    pub fn searches(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("slapd.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(" SRCH base=").map(|(_, rest)| rest.to_owned()))
            .filter(|l| l.contains("filter="))
            .collect()
    }

    /// Searches whose filter mentions `needle`.
    pub fn searches_for(&self, needle: &str) -> usize {
        self.searches()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago (slapd cannot bind port 0 and say
/// which it got).
fn free_port() -> Result<u16, SlapdError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

fn person_ldif(p: &Person) -> String {
    let local = p.mail.split('@').next().unwrap_or(p.mail);
    format!(
        "\ndn: mail={mail},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: mailRoutingAccount\n\
         cn: {local}\nsn: {local}\nmail: {mail}\nhost: {host}\nstatus: {status}\n",
        mail = p.mail,
        host = p.host,
        status = p.status
    )
}
