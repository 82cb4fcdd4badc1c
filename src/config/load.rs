//! Reading a config file, then validating what serde cannot.

use super::{Config, ConfigError, Loaded, Origin, Protocol, TlsMode};
use crate::relay::{RelaySettings, MIN_PIPE_SIZE};
use crate::tls::{CertificateFiles, NamedCertificate, ServerTlsSettings};
use std::collections::HashMap;
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
    let mut at = Locator {
        text,
        path,
        lines: HashMap::new(),
    };
    if config.listen.is_empty() {
        return Err(at.invalid(
            None,
            "listen",
            "no [[listen]] table: add at least one listener".into(),
        ));
    }
    check_positive(&config, &at)?;
    check_connection_cache(&config, &at)?;
    check_proxy_protocol(&config, &at)?;
    super::oauth::check_listeners(&config, &at)?;
    if !(1..=9).contains(&config.backend.compress_level) {
        return Err(at.invalid(
            None,
            "backend.compress_level",
            "must be 1 (fastest) to 9 (smallest)".into(),
        ));
    }
    if let Some(admin) = &config.admin {
        if !admin.address.ip().is_loopback() && admin.token_file.is_none() {
            return Err(at.invalid(
                None,
                "admin.token_file",
                format!(
                    "the admin listener on {} is reachable from other hosts: set a token_file (its actions need the token)",
                    admin.address
                ),
            ));
        }
    }
    let listener_tls = listener_tls(&config, &mut at, base_dir)?;
    let (directory, cache) = super::directory::build(&config.directory, text, &mut at, base_dir)?;
    let backend_ca = match (config.backend.tls.get_ref(), &config.backend.ca_file) {
        (TlsMode::None, _) => None,
        (_, Some(ca)) => Some(base_dir.join(ca)),
        (_, None) => {
            return Err(at.invalid(
                Some(config.backend.tls.span()),
                "backend.tls",
                "TLS to back ends needs `ca_file` (the CA their certificates chain to)".into(),
            ))
        }
    };
    at.locate("backend.ca_file", Some(config.backend.tls.span()));
    let oauth = match &config.oauth {
        Some(table) => Some(super::oauth::build(
            table.get_ref(),
            table.span(),
            &mut at,
            base_dir,
        )?),
        None => None,
    };
    let relay = RelaySettings {
        buffer_size: config.relay.buffer_size,
        idle_timeout: config.relay.idle_timeout,
        splice: config.relay.splice,
        pipe_size: config.relay.pipe_size,
        max_pipes: config.relay.max_pipes,
    };
    Ok(Loaded {
        directory,
        cache,
        listener_tls,
        backend_ca,
        relay,
        oauth,
        base_dir: base_dir.to_owned(),
        origin: Origin {
            path: path.to_owned(),
            lines: at.lines,
        },
        config,
    })
}

/// `proxy_protocol` listeners: only balancers in `trusted_networks` may
/// say whom a connection is from (anyone else could choose their address,
/// and with it their rate limits and logs).
fn check_proxy_protocol(config: &Config, at: &Locator) -> Result<(), ConfigError> {
    for (index, listen) in config.listen.iter().enumerate() {
        if listen.proxy_protocol && listen.trusted_networks.is_empty() {
            return Err(at.invalid(
                None,
                &format!("listen[{index}].proxy_protocol"),
                "needs trusted_networks: the balancers' addresses (a PROXY header from anyone else would let them choose their address)".to_owned(),
            ));
        }
    }
    Ok(())
}

/// `connection_cache` listeners: protocols the cache knows (IMAP), and reachable only from
/// webmail servers (loopback, or `trusted_networks`): a parked session is
/// handed to whoever next logs in with the user's password.
fn check_connection_cache(config: &Config, at: &Locator) -> Result<(), ConfigError> {
    for (index, listen) in config.listen.iter().enumerate() {
        if !listen.connection_cache {
            continue;
        }
        let key = format!("listen[{index}].connection_cache");
        if !listen.protocol.spec().connection_cache {
            let reason = format!(
                "the connection cache is for IMAP listeners, not {}",
                listen.protocol
            );
            return Err(at.invalid(None, &key, reason));
        }
        if listen.proxy_protocol {
            // trusted_networks would vouch for the balancer, not for the
            // clients it names: everyone behind it would reach parked
            // sessions.
            return Err(at.invalid(
                None,
                &key,
                "the connection cache needs webmail servers connecting directly, not through a PROXY-protocol balancer (trusted_networks would admit everyone the balancer serves): give webmail its own listener without proxy_protocol".into(),
            ));
        }
        if !listen.address.ip().is_loopback() && listen.trusted_networks.is_empty() {
            return Err(at.invalid(
                None,
                &key,
                format!(
                    "the connection cache on {} is reachable from other hosts: set trusted_networks to the webmail servers' addresses",
                    listen.address
                ),
            ));
        }
    }
    let c = &config.connection_cache;
    if c.max == 0 || c.max_per_user == 0 || c.ttl.is_zero() || c.max_age.is_zero() {
        return Err(at.invalid(
            None,
            "connection_cache",
            "ttl, max_age, max and max_per_user must be above 0 (turn the cache off on the listener instead)".into(),
        ));
    }
    Ok(())
}

/// What each TLS listener serves: its own certificate or `[tls]`'s, and the
/// SNI certificates of `[[tls.certificates]]`.
fn listener_tls(
    config: &Config,
    at: &mut Locator,
    base_dir: &Path,
) -> Result<Vec<Option<ServerTlsSettings>>, ConfigError> {
    let global = config.tls.as_ref();
    let files = |cert: &PathBuf, key: &PathBuf| CertificateFiles {
        cert: base_dir.join(cert),
        key: base_dir.join(key),
    };
    let named: Vec<NamedCertificate> = global
        .map(|t| t.certificates.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|n| NamedCertificate {
            names: n.names.clone(),
            files: files(&n.cert, &n.key),
        })
        .collect();
    let mut out = Vec::with_capacity(config.listen.len());
    for (index, listen) in config.listen.iter().enumerate() {
        let key_name = format!("listen[{index}].tls");
        at.locate(&key_name, listen.tls.as_ref().map(|t| t.span()));
        if listen.tls_mode() == TlsMode::None {
            out.push(None);
            continue;
        }
        let cert = listen
            .cert
            .as_ref()
            .or(global.and_then(|t| t.cert.as_ref()));
        let key = listen.key.as_ref().or(global.and_then(|t| t.key.as_ref()));
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err(at.invalid(
                listen.tls.as_ref().map(|t| t.span()),
                &key_name,
                "a TLS listener needs a certificate: `cert` and `key` in [tls] or in this [[listen]]"
                    .into(),
            ));
        };
        out.push(Some(ServerTlsSettings {
            protocol: listen.protocol,
            default: files(cert, key),
            named: named.clone(),
        }));
    }
    Ok(out)
}

/// Builds errors that point at a line of the config text, and remembers the
/// line of keys that the runtime may report on later.
pub(super) struct Locator<'a> {
    pub text: &'a str,
    pub path: &'a Path,
    pub lines: HashMap<String, usize>,
}

impl Locator<'_> {
    /// Remembers the line of `key` (at `span`) for [`Loaded::invalid`].
    pub fn locate(&mut self, key: &str, span: Option<std::ops::Range<usize>>) {
        if let Some(span) = span {
            self.lines
                .insert(key.to_owned(), line_of(self.text, span.start));
        }
    }

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
        (
            "directory.cache.capacity",
            config
                .directory
                .cache
                .as_ref()
                .is_some_and(|c| c.capacity == 0),
        ),
        ("runtime.ring_entries", config.runtime.ring_entries == 0),
    ];
    for (key, is_zero) in must_be_positive {
        if is_zero {
            return Err(at.invalid(None, key, "must be greater than 0".into()));
        }
    }
    for protocol in Protocol::ALL {
        if config.backend.port(protocol) == 0 {
            let key = format!("backend.{protocol}_port");
            return Err(at.invalid(None, &key, "must be greater than 0".into()));
        }
    }
    if config.relay.pipe_size < MIN_PIPE_SIZE {
        return Err(at.invalid(
            None,
            "relay.pipe_size",
            format!("must be at least {MIN_PIPE_SIZE} (one page)"),
        ));
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
    fn the_connection_cache_is_for_imap_listeners_that_only_webmail_reaches() {
        let cached = MINIMAL.replace(
            "tls = \"none\"\n",
            "tls = \"none\"\nconnection_cache = true\n",
        );
        assert!(parse(&cached).is_ok());
        let public = cached.replace("127.0.0.1:1143", "0.0.0.0:1143");
        let err = parse(&public).unwrap_err().to_string();
        assert!(
            err.contains("listen[0].connection_cache") && err.contains("trusted_networks"),
            "{err}"
        );
        let trusted = public.replace(
            "connection_cache = true\n",
            "connection_cache = true\ntrusted_networks = [\"10.0.0.0/24\"]\n",
        );
        assert!(parse(&trusted).is_ok());
        let pop3 = cached.replace("protocol = \"imap\"", "protocol = \"pop3\"");
        let err = parse(&pop3).unwrap_err().to_string();
        assert!(err.contains("for IMAP listeners"), "{err}");
        let zero = format!("{cached}\n[connection_cache]\nmax = 0\n");
        assert!(parse(&zero).is_err());
        let zero = format!("{cached}\n[connection_cache]\nmax_age = \"0s\"\n");
        assert!(parse(&zero).is_err());
        let proxied = trusted.replace(
            "connection_cache = true\n",
            "connection_cache = true\nproxy_protocol = true\n",
        );
        let err = parse(&proxied).unwrap_err().to_string();
        assert!(
            err.contains("listen[0].connection_cache") && err.contains("PROXY-protocol balancer"),
            "{err}"
        );
    }

    #[test]
    fn proxy_protocol_listeners_name_their_balancers() {
        let proxied = MINIMAL.replace(
            "tls = \"none\"\n",
            "tls = \"none\"\nproxy_protocol = true\n",
        );
        let err = parse(&proxied).unwrap_err().to_string();
        assert!(
            err.contains("listen[0].proxy_protocol") && err.contains("trusted_networks"),
            "{err}"
        );
        let trusted = proxied.replace(
            "proxy_protocol = true\n",
            "proxy_protocol = true\ntrusted_networks = [\"10.0.0.5/32\"]\n",
        );
        assert!(parse(&trusted).is_ok());
    }

    #[test]
    fn minimal_public_schema_loads() {
        let loaded = parse(MINIMAL).expect("minimal config loads");
        assert_eq!(loaded.config.listen.len(), 1);
        assert_eq!(loaded.config.backend.imap_port, 10143);
        assert_eq!(loaded.directory.kind(), "static");
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
    fn back_end_compression_is_per_listener_never_cached_and_its_level_bounded() {
        let with = |extra: &str| {
            parse(&MINIMAL.replace("pop3_port = 10110", &format!("pop3_port = 10110\n{extra}")))
        };
        assert_eq!(
            parse(MINIMAL).unwrap().compress_level(0),
            None,
            "off by default"
        );
        assert_eq!(
            with("compress = \"deflate\"").unwrap().compress_level(0),
            Some(1)
        );
        for level in [1, 9] {
            let loaded =
                with(&format!("compress = \"deflate\"\ncompress_level = {level}")).unwrap();
            assert_eq!(loaded.compress_level(0), Some(level));
        }
        for level in [0, 10] {
            let err = with(&format!("compress_level = {level}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("backend.compress_level"), "{err}");
        }
        let off_here = MINIMAL
            .replace("tls = \"none\"\n", "tls = \"none\"\ncompress = \"off\"\n")
            .replace(
                "pop3_port = 10110",
                "pop3_port = 10110\ncompress = \"deflate\"",
            );
        assert_eq!(parse(&off_here).unwrap().compress_level(0), None);
        let pop3 = MINIMAL
            .replace("protocol = \"imap\"", "protocol = \"pop3\"")
            .replace(
                "pop3_port = 10110",
                "pop3_port = 10110\ncompress = \"deflate\"",
            );
        assert_eq!(
            parse(&pop3).unwrap().compress_level(0),
            None,
            "POP3 has no COMPRESS"
        );
        let cached = MINIMAL
            .replace(
                "tls = \"none\"\n",
                "tls = \"none\"\nconnection_cache = true\n",
            )
            .replace(
                "pop3_port = 10110",
                "pop3_port = 10110\ncompress = \"deflate\"",
            );
        assert_eq!(
            parse(&cached).unwrap().compress_level(0),
            None,
            "parked sessions are sockets"
        );
    }

    #[test]
    fn pipe_size_below_one_page_is_refused_at_the_boundary() {
        let at = |size: usize| parse(&format!("{MINIMAL}\n[relay]\npipe_size = {size}\n"));
        let err = at(MIN_PIPE_SIZE - 1).unwrap_err().to_string();
        assert!(err.contains("relay.pipe_size"), "{err}");
        assert_eq!(at(MIN_PIPE_SIZE).unwrap().relay.pipe_size, MIN_PIPE_SIZE);
        assert!(at(MIN_PIPE_SIZE + 1).is_ok());
    }

    #[test]
    fn a_non_loopback_admin_listener_needs_a_token() {
        let at = |admin: &str| parse(&format!("{MINIMAL}\n[admin]\n{admin}"));
        let err = at("address = \"0.0.0.0:9143\"\n").unwrap_err().to_string();
        assert!(err.contains("admin.token_file"), "{err}");
        assert!(at("address = \"127.0.0.1:9143\"\n").is_ok());
        assert!(at("address = \"0.0.0.0:9143\"\ntoken_file = \"t\"\n").is_ok());
    }

    #[test]
    fn a_zero_cache_capacity_or_pool_is_refused() {
        let err = parse(&format!("{MINIMAL}\n[directory.cache]\ncapacity = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory.cache.capacity"), "{err}");
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
