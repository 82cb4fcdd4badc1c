//! Test certificates made with the `openssl` command: a CA and server
//! certificates it signs, in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and the files of the certificates it issued.
pub struct TestCa {
    dir: tempfile::TempDir,
}

fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA (`ca.pem`, `ca.key`).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-ca-")
            .tempdir()
            .unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=mailgate test CA",
            ],
            dir.path(),
        );
        Self { dir }
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues `name.pem` (leaf + CA chain) and `name.key` for the DNS names and IPs given.
    pub fn issue(&self, name: &str, dns: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        let dir = self.dir.path();
        let san: Vec<String> = dns
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(ips.iter().map(|i| format!("IP:{i}")))
            .collect();
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName={}\n", san.join(",")),
        )
        .unwrap();
        let subject = format!("/CN={}", dns.first().or(ips.first()).unwrap());
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &subject,
            ],
            dir,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.leaf.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
            dir,
        );
        let chain = [
            std::fs::read(dir.join(format!("{name}.leaf.pem"))).unwrap(),
            std::fs::read(self.ca()).unwrap(),
        ]
        .concat();
        std::fs::write(dir.join(format!("{name}.pem")), chain).unwrap();
        // Readable by daemons that drop privileges (slapd runs as root here, Dovecot's login as dovenull).
        for f in [format!("{name}.pem"), format!("{name}.key")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(&f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}
