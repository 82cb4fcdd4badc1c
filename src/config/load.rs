//! Reading a config file, then validating what serde cannot.

use super::{Config, ConfigError, Loaded};
use std::path::{Path, PathBuf};

/// Reads, parses and validates `path`, loading the static map it names.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_str(&text, path, &base_dir)
}

/// Parses and validates config text; `path` is only used in messages.
pub fn parse_str(text: &str, path: &Path, base_dir: &Path) -> Result<Loaded, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let at = Locator { text, path };
    if config.listen.is_empty() {
        return Err(at.invalid(
            None,
            "listen",
            "no [[listen]] table: add at least one listener".into(),
        ));
    }
    check_positive(&config, &at)?;
    let tls = crate::tls::server_configs(&config, base_dir).map_err(|(index, reason)| {
        let span = config.listen[index].tls.as_ref().map(|t| t.span());
        at.invalid(span, &format!("listen[{index}].tls"), reason)
    })?;
    let directory = super::directory::build(&config.directory, &at, base_dir)?;
    let backend_tls = match (config.backend.tls.get_ref(), &config.backend.ca_file) {
        (super::TlsMode::None, _) => None,
        (_, Some(ca)) => Some(
            crate::tls::client_config(&base_dir.join(ca))
                .map_err(|e| at.invalid(None, "backend.ca_file", e))?,
        ),
        (_, None) => {
            return Err(at.invalid(
                Some(config.backend.tls.span()),
                "backend.tls",
                "TLS to back ends needs `ca_file` (the CA their certificates chain to)".into(),
            ))
        }
    };
    Ok(Loaded {
        config,
        static_map: directory.static_map,
        ldap: directory.ldap,
        cache: directory.cache,
        tls,
        backend_tls,
        base_dir: base_dir.to_owned(),
    })
}

/// Builds errors that point at a line of the config text.
pub(super) struct Locator<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Locator<'_> {
    /// An `Invalid` error for `key`, at the line of `span` if given.
    pub fn invalid(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: &str,
        reason: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: span.map_or(0, |s| line_of(self.text, s.start)),
            key: key.to_owned(),
            reason,
        }
    }
}

fn check_positive(config: &Config, at: &Locator) -> Result<(), ConfigError> {
    let must_be_positive = [
        ("limits.max_line", config.limits.max_line == 0),
        (
            "limits.max_auth_failures",
            config.limits.max_auth_failures == 0,
        ),
        ("relay.buffer_size", config.relay.buffer_size == 0),
        ("runtime.ring_entries", config.runtime.ring_entries == 0),
        ("backend.imap_port", config.backend.imap_port == 0),
        ("backend.pop3_port", config.backend.pop3_port == 0),
    ];
    for (key, is_zero) in must_be_positive {
        if is_zero {
            return Err(at.invalid(None, key, "must be greater than 0".into()));
        }
    }
    Ok(())
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.map"), "* 127.0.0.1\n").unwrap();
        parse_str(text, Path::new("test.toml"), dir.path())
    }

    const MINIMAL: &str = r#"
[[listen]]
protocol = "imap"
address = "127.0.0.1:1143"
tls = "none"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = 10143
pop3_port = 10110
"#;

    #[test]
    fn minimal_public_schema_loads() {
        let loaded = parse(MINIMAL).expect("minimal config loads");
        assert_eq!(loaded.config.listen.len(), 1);
        assert_eq!(loaded.config.backend.imap_port, 10143);
        assert!(loaded.static_map.is_some());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("pop3_port = 10110", "pop3_port = 10110\nimap_prot = 1");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 14"), "{err}");
        assert!(err.contains("imap_prot"), "{err}");
    }

    #[test]
    fn tls_listener_without_certificate_is_rejected_with_line() {
        let text = MINIMAL.replace("tls = \"none\"", "tls = \"implicit\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:5: `listen[0].tls`"), "{err}");
        assert!(err.contains("cert"), "{err}");
    }

    #[test]
    fn ldap_directory_without_url_is_rejected_with_line() {
        let text = MINIMAL.replace("kind = \"static\"", "kind = \"ldap\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:8: `directory.url`"), "{err}");
    }

    #[test]
    fn bad_address_is_a_parse_error_with_line() {
        let text = MINIMAL.replace("127.0.0.1:1143", "localhost");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn missing_map_file_names_the_path() {
        let text = MINIMAL.replace("users.map", "nope.map");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("nope.map"), "{err}");
        assert!(err.contains("directory.map"), "{err}");
    }

    #[test]
    fn ipv6_listener_parses() {
        let text = MINIMAL.replace("127.0.0.1:1143", "[::1]:1143");
        assert!(parse(&text).unwrap().config.listen[0].address.is_ipv6());
    }

    #[test]
    fn durations_accept_human_units() {
        let text = format!("{MINIMAL}\n[relay]\nidle_timeout = \"29m\"\n");
        let loaded = parse(&text).unwrap();
        assert_eq!(loaded.config.relay.idle_timeout.as_secs(), 29 * 60);
    }

    #[test]
    fn zero_limit_is_rejected() {
        let text = format!("{MINIMAL}\n[limits]\nmax_line = 0\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("limits.max_line"), "{err}");
    }
}
