//! Test certificates made with `rcgen`: a CA and server certificates it
//! signs (ECDSA P-256, valid for two days), written as PEM files in a
//! temporary folder that lives as long as the [`TestCa`].

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A CA and the files of the certificates it issued.
pub struct TestCa {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `text` to `path`, readable by daemons that drop privileges
/// (Dovecot's login processes run as `dovenull`).
fn write_readable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write a certificate file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .expect("make a certificate file readable");
}

impl TestCa {
    /// A new CA; its certificate is [`TestCa::ca`].
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mailgate-ca-")
            .tempdir()
            .expect("a temporary folder");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "mailgate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a P-256 key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        write_readable(&dir.path().join("ca.pem"), &cert.pem());
        Self { dir, cert, key }
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues `name.pem` (leaf + CA chain) and `name.key` for the DNS names
    /// and IP addresses given; their paths.
    pub fn issue(&self, name: &str, dns: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
                .expect("valid DNS names");
        for ip in ips {
            let ip: IpAddr = ip.parse().expect("an IP address");
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        let common_name = dns.first().or(ips.first()).copied().unwrap_or(name);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("a P-256 key");
        let leaf = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a certificate signed by the CA");
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        write_readable(&cert_path, &format!("{}{}", leaf.pem(), self.cert.pem()));
        write_readable(&key_path, &key.serialize_pem());
        (cert_path, key_path)
    }

    /// A self-signed certificate for `localhost` (no CA), in the CA's
    /// folder: for clients that skip verification.
    pub fn self_signed_localhost(&self) -> (PathBuf, PathBuf) {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .expect("a self-signed certificate");
        let cert_path = self.dir.path().join("localhost.pem");
        let key_path = self.dir.path().join("localhost.key");
        write_readable(&cert_path, &cert.pem());
        write_readable(&key_path, &key_pair.serialize_pem());
        (cert_path, key_path)
    }
}
