//! How a typed login name becomes the directory's lookup key (Perdition's
//! `query_key`, `strip_domain`, `lower_case` and a default domain). The
//! key is also the user's canonical name: invalidations, sessions and
//! parked sessions are matched by it, whatever the kind of directory.

use std::borrow::Cow;

/// How a login name becomes the lookup key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFormat {
    /// Perdition-style template: `\U` full name, `\u` local part, `\d` domain;
    /// `None` means `\U`.
    pub template: Option<String>,
    /// Drop `@domain` before lookup.
    pub strip_domain: bool,
    /// Lower-case the key.
    pub lower_case: bool,
    /// Domain appended to names without one.
    pub default_domain: Option<String>,
}

impl KeyFormat {
    /// The lookup key for `user`.
    pub fn key(&self, user: &str) -> String {
        let full: Cow<str> = match (&self.default_domain, user.contains('@')) {
            (Some(domain), false) => Cow::Owned(format!("{user}@{domain}")),
            _ => Cow::Borrowed(user),
        };
        let (local, domain) = full.rsplit_once('@').unwrap_or((&full, ""));
        let mut key = match &self.template {
            None => full.to_string(),
            Some(t) => expand(t, &full, local, domain),
        };
        if self.strip_domain {
            if let Some((l, _)) = key.rsplit_once('@') {
                key = l.to_owned();
            }
        }
        if self.lower_case {
            key = key.to_lowercase();
        }
        key
    }
}

/// `\\U`, `\\u` and `\\d` in `template` replaced in one pass: text taken
/// from the user name is never expanded again (a user named `a\\d@x` stays
/// `a\\d@x`).
fn expand(template: &str, full: &str, local: &str, domain: &str) -> String {
    let mut out = String::with_capacity(template.len() + full.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('U') => out.push_str(full),
            Some('u') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_template_expands_once() {
        let format = KeyFormat {
            template: Some("\\u+\\d|\\U\\x".into()),
            ..KeyFormat::default()
        };
        assert_eq!(format.key("a\\d@x.org"), "a\\d+x.org|a\\d@x.org\\x");
        assert_eq!(format.key("bob@\\u"), "bob+\\u|bob@\\u\\x");
    }

    #[test]
    fn key_formats() {
        let plain = KeyFormat::default();
        assert_eq!(plain.key("Alice@Example.org"), "Alice@Example.org");
        let k = KeyFormat {
            template: Some("\\u+\\d".into()),
            ..Default::default()
        };
        assert_eq!(k.key("alice@example.org"), "alice+example.org");
        let k = KeyFormat {
            strip_domain: true,
            lower_case: true,
            ..Default::default()
        };
        assert_eq!(k.key("Alice@Example.org"), "alice");
        let k = KeyFormat {
            default_domain: Some("example.org".into()),
            ..Default::default()
        };
        assert_eq!(k.key("bob"), "bob@example.org");
        assert_eq!(k.key("bob@other.net"), "bob@other.net");
    }
}
