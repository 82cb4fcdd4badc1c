//! A real OpenLDAP `slapd` with the deployment's tree
//! (`ou=People,dc=infra,dc=org,o=Anarchy`, entries with `mail`, `host`,
//! `status`), loaded with `slapadd`, logging every search so tests can count
//! queries. Stopped when dropped.

use super::{free_port, terminate, wait_for_port, START_DEADLINE};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The suffix of the test tree.
pub const SUFFIX: &str = "dc=infra,dc=org,o=Anarchy";
/// Where people live.
pub const PEOPLE: &str = "ou=People,dc=infra,dc=org,o=Anarchy";
/// The bind DN that the bind test uses, and its password.
pub const PROXY_DN: &str = "cn=proxy,dc=infra,dc=org,o=Anarchy";
/// Its password.
pub const PROXY_PW: &str = "proxy-secret";
const ROOT_DN: &str = "cn=admin,dc=infra,dc=org,o=Anarchy";
const ROOT_PW: &str = "admin-secret";

/// One person entry.
pub struct Person<'a> {
    /// `mail`.
    pub mail: &'a str,
    /// `host`.
    pub host: &'a str,
    /// `status`.
    pub status: &'a str,
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
    /// Starts slapd with `people`; anonymous may read unless `require_bind`.
    /// Content synchronization (`syncprov`) is on.
    pub fn start(people: &[Person], require_bind: bool) -> Self {
        Self::start_with_tls(people, require_bind, None)
    }

    /// Like `start`, without the `syncprov` overlay (no content sync).
    pub fn start_without_sync(people: &[Person]) -> Self {
        Self::start_full(people, false, None, false)
    }

    /// Like `start`; with `tls = Some((cert, key))` slapd also offers StartTLS
    /// and listens for `ldaps://` on `tls_port`.
    pub fn start_with_tls(
        people: &[Person],
        require_bind: bool,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Self {
        Self::start_full(people, require_bind, tls, true)
    }

    fn start_full(
        people: &[Person],
        require_bind: bool,
        tls: Option<(&std::path::Path, &std::path::Path)>,
        sync: bool,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-slapd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).unwrap();
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ldap");
        let acl = if require_bind {
            "access to attrs=userPassword by anonymous auth by * none\naccess to * by users read by * none\n"
        } else {
            "access to attrs=userPassword by anonymous auth by * none\naccess to * by * read\n"
        };
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude {schema}\n\
             pidfile {root}/slapd.pid\nargsfile {root}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload syncprov\n\
             database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ROOT_DN}\"\nrootpw {ROOT_PW}\n\
             directory {root}/data\nmaxsize 10485760\nindex mail eq\n{acl}{sync}",
            schema = manifest.join("mailgate.schema").display(),
            root = root.display(),
            sync = if sync {
                "index entryCSN,entryUUID eq\noverlay syncprov\n"
            } else {
                ""
            },
        );
        let conf = match tls {
            Some((cert, key)) => format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n{conf}",
                cert.display(),
                key.display()
            ),
            None => conf,
        };
        std::fs::write(root.join("slapd.conf"), conf).unwrap();
        let mut ldif = std::fs::read_to_string(manifest.join("base.ldif")).unwrap();
        for p in people {
            ldif.push_str(&person_ldif(p));
        }
        std::fs::write(root.join("data.ldif"), ldif).unwrap();
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("data.ldif"))
            .output()
            .expect("slapadd (apt-get install slapd)");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Self {
            child: None,
            dir,
            port: free_port(),
            tls_port: tls.map(|_| free_port()),
        };
        slapd.run();
        slapd
    }

    fn run(&mut self) {
        let root = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("slapd.log"))
            .unwrap();
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
            .expect("start slapd");
        self.child = Some(child);
        wait_for_port(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            START_DEADLINE,
        );
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Stops slapd (an outage); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Freezes slapd (SIGSTOP): it keeps its sockets, the kernel still
    /// accepts connections, but nothing answers — a hung server.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws slapd after `pause`.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own, not yet reaped child.
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }

    /// Starts slapd again after `stop`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "running");
        self.run();
    }

    /// Applies an LDIF change with `ldapmodify` as the root DN.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(&path)
            .output()
            .expect("ldapmodify (apt-get install ldap-utils)");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets `mail`'s `host`.
    pub fn set_host(&self, mail: &str, host: &str) {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: host\nhost: {host}\n"
        ));
    }

    /// Sets `status` of the person with `mail`.
    pub fn set_status(&self, mail: &str, status: &str) {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: status\nstatus: {status}\n"
        ));
    }

    /// Sets `host` and `status` of the person with `mail` in one change.
    pub fn set_host_and_status(&self, mail: &str, host: &str, status: &str) {
        self.modify(&format!(
            "dn: mail={mail},{PEOPLE}\nchangetype: modify\nreplace: host\nhost: {host}\n-\nreplace: status\nstatus: {status}\n"
        ));
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
