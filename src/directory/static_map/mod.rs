//! The static map: a file of `user host[:port]` lines, held in memory.
//!
//! Precedence is exact user, then `*@domain`, then `*`. Domains compare
//! case-insensitively; local parts do unless `local_part_case_sensitive`.
//! Parsing reports the file and line of the first bad entry.

mod config;

pub use config::KIND;

use super::{Directory, LookupFuture, LookupRequest, Route};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A malformed line in a map file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct StaticMapError {
    /// The map file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// An in-memory user → back-end map.
#[derive(Debug, Clone, Default)]
pub struct StaticMap {
    exact: HashMap<String, Route>,
    domains: HashMap<String, Route>,
    fallback: Option<Route>,
    local_part_case_sensitive: bool,
}

impl StaticMap {
    /// Parses map text; `path` is only used in error messages.
    pub fn parse(
        text: &str,
        path: &Path,
        local_part_case_sensitive: bool,
    ) -> Result<Self, StaticMapError> {
        let mut map = StaticMap {
            local_part_case_sensitive,
            ..Default::default()
        };
        for (index, raw) in text.lines().enumerate() {
            let err = |reason: String| StaticMapError {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(key), Some(target), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(err(format!(
                    "expected `<user|*@domain|*> <host[:port]>`, found `{line}`"
                )));
            };
            let route = parse_target(target).map_err(err)?;
            let duplicate = if key == "*" {
                map.fallback.replace(route).is_some()
            } else if let Some(domain) = key.strip_prefix("*@") {
                if domain.is_empty() {
                    return Err(err("`*@` needs a domain".into()));
                }
                map.domains
                    .insert(domain.to_ascii_lowercase(), route)
                    .is_some()
            } else {
                if key.contains('*') {
                    return Err(err(format!(
                        "`{key}`: wildcards are only `*@domain` or `*`"
                    )));
                }
                let normal = map.normalize(key);
                map.exact.insert(normal, route).is_some()
            };
            if duplicate {
                return Err(err(format!("`{key}` is listed twice")));
            }
        }
        Ok(map)
    }

    /// The ports the entries name.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.exact
            .values()
            .chain(self.domains.values())
            .chain(self.fallback.iter())
            .filter_map(|r| r.port)
    }

    /// Number of entries (wildcards included).
    pub fn len(&self) -> usize {
        self.exact.len() + self.domains.len() + usize::from(self.fallback.is_some())
    }

    /// True when the map has no entry at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The route for `user`, by precedence exact > domain > `*`.
    pub fn route(&self, user: &str) -> Option<&Route> {
        if let Some(route) = self.exact.get(&self.normalize(user)) {
            return Some(route);
        }
        if let Some((_, domain)) = user.rsplit_once('@') {
            if let Some(route) = self.domains.get(&domain.to_ascii_lowercase()) {
                return Some(route);
            }
        }
        self.fallback.as_ref()
    }

    fn normalize(&self, user: &str) -> String {
        match user.rsplit_once('@') {
            Some((local, domain)) if self.local_part_case_sensitive => {
                format!("{local}@{}", domain.to_ascii_lowercase())
            }
            _ => user.to_lowercase(),
        }
    }
}

impl Directory for StaticMap {
    fn lookup_for<'a>(&'a self, request: LookupRequest<'a>) -> LookupFuture<'a> {
        let route = self.route(request.user).cloned();
        Box::pin(std::future::ready(Ok(super::Lookup::direct(route))))
    }
}

/// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
pub(crate) fn parse_target(target: &str) -> Result<Route, String> {
    let bad_port = |p: &str| format!("`{target}`: bad port `{p}`");
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{target}`: missing `]`"))?;
        match after {
            "" => (host, None),
            _ => {
                let p = after.strip_prefix(':').ok_or_else(|| bad_port(after))?;
                (host, Some(p.parse::<u16>().map_err(|_| bad_port(p))?))
            }
        }
    } else {
        match target.matches(':').count() {
            0 => (target, None),
            1 => {
                let (h, p) = target.split_once(':').expect("one colon counted");
                (h, Some(p.parse::<u16>().map_err(|_| bad_port(p))?))
            }
            _ => (target, None), // bare IPv6 literal
        }
    };
    if host.is_empty() {
        return Err(format!("`{target}`: empty host"));
    }
    if port == Some(0) {
        return Err(bad_port("0"));
    }
    Ok(Route::to(host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
# users
alice@example.org   10.8.0.2
*@example.org       box2.vpn:10143   # domain default
*                   127.0.0.1
bob@Other.ORG       [::1]:10143
";

    fn map(case_sensitive: bool) -> StaticMap {
        StaticMap::parse(MAP, Path::new("users.map"), case_sensitive).unwrap()
    }

    fn host(m: &StaticMap, user: &str) -> String {
        let r = m.route(user).unwrap();
        format!("{}:{:?}", r.host, r.port)
    }

    #[test]
    fn exact_user_beats_domain_beats_star() {
        let m = map(false);
        assert_eq!(host(&m, "alice@example.org"), "10.8.0.2:None");
        assert_eq!(host(&m, "carol@example.org"), "box2.vpn:Some(10143)");
        assert_eq!(host(&m, "dave@elsewhere.net"), "127.0.0.1:None");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn domain_is_case_insensitive_always() {
        let m = map(true);
        assert_eq!(host(&m, "alice@EXAMPLE.org"), "10.8.0.2:None");
        assert_eq!(host(&m, "bob@other.org"), "::1:Some(10143)");
    }

    #[test]
    fn local_part_case_is_configurable() {
        assert_eq!(host(&map(false), "ALICE@example.org"), "10.8.0.2:None");
        // Case-sensitive: ALICE is not alice, so the domain rule applies.
        assert_eq!(
            host(&map(true), "ALICE@example.org"),
            "box2.vpn:Some(10143)"
        );
    }

    #[test]
    fn no_star_means_unknown_user() {
        let m = StaticMap::parse("a@b 1.2.3.4", Path::new("m"), false).unwrap();
        assert!(m.route("x@y").is_none());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("a@b\n", "expected"),
            ("\n\na@b 1.2.3.4 extra", "expected"),
            ("a@b host:99999", "bad port"),
            ("a@b host:0", "bad port"),
            ("a*@b host", "wildcards"),
            ("*@ host", "needs a domain"),
            ("a@b x\nA@B y", "listed twice"),
            ("a@b [::1", "missing"),
        ] {
            let err = StaticMap::parse(text, Path::new("m.map"), false)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("m.map:"), "{err}");
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let err = StaticMap::parse("\n\na@b", Path::new("m.map"), false).unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn bare_ipv6_without_port() {
        let r = parse_target("fd00::2").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("fd00::2", None));
    }
}
