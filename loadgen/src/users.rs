//! Who logs in and from where: users from a `{i}` template over a range or
//! from a file, passwords from the command line or a file, source addresses
//! spread over 127.0.0.0/8.

use anyhow::{bail, Context};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The user list: operation or client `i` logs in as user `i mod len`.
#[derive(Debug, Clone)]
pub struct Users {
    entries: Vec<(String, String)>,
}

impl Users {
    /// `count` users from `template` (`{i}` → `first + k`), all with `password`.
    pub fn range(template: &str, first: u64, count: u64, password: &str) -> anyhow::Result<Self> {
        if count == 0 || count > 10_000_000 {
            bail!("--users must be between 1 and 10 000 000, not {count}");
        }
        let entries = (first..first + count)
            .map(|k| (template.replace("{i}", &k.to_string()), password.to_owned()))
            .collect();
        Ok(Self { entries })
    }

    /// One user per line: `name` or `name password` (whitespace separated);
    /// lines without a password get `default_password`. `#` starts a comment.
    pub fn from_file(path: &Path, default_password: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading users from {}", path.display()))?;
        Self::parse(&text, default_password)
            .with_context(|| format!("users file {}", path.display()))
    }

    fn parse(text: &str, default_password: &str) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap_or_default().to_owned();
            let password = parts.next().unwrap_or(default_password).to_owned();
            entries.push((name, password));
        }
        if entries.is_empty() {
            bail!("no users");
        }
        Ok(Self { entries })
    }

    /// User and password for operation or client `i`.
    pub fn get(&self, i: u64) -> (&str, &str) {
        let (u, p) = &self.entries[(i % self.entries.len() as u64) as usize];
        (u, p)
    }
}

/// Reads a password from the first line of `path`.
pub fn password_from_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password from {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Source addresses: none (the kernel picks), or `count` loopback addresses
/// from 127.0.0.2 on, connection `i` using address `i mod count`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources {
    count: u32,
}

impl Sources {
    /// `count` addresses (0: let the kernel choose).
    pub fn spread(count: u32) -> anyhow::Result<Self> {
        if count > 16_000_000 {
            bail!("--source-addresses: at most 16 000 000 addresses fit in 127.0.0.0/8");
        }
        Ok(Self { count })
    }

    /// Address for connection `i`.
    pub fn get(&self, i: u64) -> Option<IpAddr> {
        (self.count > 0).then(|| {
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 2));
            IpAddr::V4(Ipv4Addr::from(base + (i % self.count as u64) as u32))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_file() {
        let u = Users::range("user{i}@x", 5, 3, "pw").unwrap();
        assert_eq!(u.get(0), ("user5@x", "pw"));
        assert_eq!(u.get(4), ("user6@x", "pw"));
        let f = Users::parse("# users\na@x secret\nb@x\n\n", "dflt").unwrap();
        assert_eq!(f.get(0), ("a@x", "secret"));
        assert_eq!(f.get(1), ("b@x", "dflt"));
        assert!(Users::parse("# nobody\n", "p").is_err());
    }

    #[test]
    fn sources_walk_over_loopback() {
        let s = Sources::spread(300).unwrap();
        assert_eq!(s.get(0), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(s.get(254), Some("127.0.1.0".parse().unwrap()));
        assert_eq!(s.get(300), s.get(0));
        assert_eq!(Sources::default().get(7), None);
    }
}
