//! Perdition's options as mailgate TOML.
//!
//! Perdition runs one process per mode (IMAP4, IMAP4S, POP3, POP3S), often
//! all from one file; mailgate runs every listener in one process. The
//! modes come from `protocol` (or the caller), else the four that Debian's
//! init script starts from one file. Per mode, the effective `ssl_mode` is
//! the file's, or for IMAP4S/POP3S Perdition's default of SSL both ways
//! (its log shows `outgoing_port="imaps"` for IMAP4S); the back-end port is
//! `outgoing_port`, else the mode's own port.

use super::defaults::{self, Defaults};
use super::file::{self, Setting};
use super::options::{canonical, Flag};
use super::popmap;
use crate::directory::sql::query::Dialect;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

/// One Perdition mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// IMAP, port 143.
    Imap4,
    /// IMAP over SSL, port 993.
    Imap4s,
    /// POP3, port 110.
    Pop3,
    /// POP3 over SSL, port 995.
    Pop3s,
    /// ManageSieve, port 4190 (STARTTLS; no implicit-TLS mode).
    ManageSieve,
}

impl Mode {
    /// Parses a Perdition protocol name (`IMAP4`, `imaps`, `POP3S`,
    /// `MANAGESIEVE` …) or program name (`perdition.managesieve`: the
    /// program Perdition runs as chooses its mode).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_uppercase();
        let name = name.strip_prefix("PERDITION.").unwrap_or(&name);
        match name {
            "IMAP4" | "IMAP" => Some(Mode::Imap4),
            "IMAP4S" | "IMAPS" => Some(Mode::Imap4s),
            "POP3" | "POP" => Some(Mode::Pop3),
            "POP3S" | "POPS" => Some(Mode::Pop3s),
            "MANAGESIEVE" | "SIEVE" => Some(Mode::ManageSieve),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Imap4 => "IMAP4",
            Mode::Imap4s => "IMAP4S",
            Mode::Pop3 => "POP3",
            Mode::Pop3s => "POP3S",
            Mode::ManageSieve => "MANAGESIEVE",
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Mode::Imap4 | Mode::Imap4s => "imap",
            Mode::Pop3 | Mode::Pop3s => "pop3",
            Mode::ManageSieve => "managesieve",
        }
    }

    fn secure(self) -> bool {
        matches!(self, Mode::Imap4s | Mode::Pop3s)
    }

    /// Perdition's default listen (and outgoing) port.
    fn port(self) -> u16 {
        match self {
            Mode::Imap4 => 143,
            Mode::Imap4s => 993,
            Mode::Pop3 => 110,
            Mode::Pop3s => 995,
            Mode::ManageSieve => 4190,
        }
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// How the source file is named in the output's header.
    pub source: &'a str,
    /// The Perdition configuration text.
    pub config: &'a str,
    /// The popmap text (flat, or `popmap.re` with the regex library).
    pub popmap: Option<&'a str>,
    /// The name the TOML gives the static map file.
    pub map_out: &'a str,
    /// The name the TOML gives the SQL map's password file.
    pub password_out: &'a str,
    /// Modes to import; `None`: the defaults file's, else `protocol`, else
    /// Debian's four.
    pub modes: Option<Vec<Mode>>,
    /// `/etc/default/perdition`: the modes the init script starts and the
    /// command-line flags it gives them.
    pub defaults: Option<&'a str>,
}

/// The result: the TOML, and the static map file when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The mailgate configuration.
    pub toml: String,
    /// The static map file's content, to be written at `map_out`.
    pub map: Option<String>,
    /// Said on stderr: what the command line asked for that this
    /// configuration does not use (a `--popmap` whose map is not the
    /// popmap).
    pub warnings: Vec<String>,
    /// The SQL map's database password, to be written at `password_out`
    /// (never into the TOML).
    pub password: Option<crate::auth::Secret>,
}

/// Perdition's default LDAP URL (perditiondb(5)).
const DEFAULT_LDAP_URL: &str =
    "ldap://localhost/ou=mailbox,dc=nodomain?username,mailhost,port?one?(uid=%s)";
const DEFAULT_CERT: &str = "/etc/perdition/perdition.crt.pem";
const DEFAULT_KEY: &str = "/etc/perdition/perdition.key.pem";
const DEFAULT_REGEX_MAP: &str = "/etc/perdition/popmap.re";

/// A port number or one of the mail service names.
pub fn port_number(text: &str) -> Option<u16> {
    match text.trim() {
        "imap" | "imap2" | "imap4" => Some(143),
        "imaps" => Some(993),
        "pop3" | "pop-3" => Some(110),
        "pop3s" => Some(995),
        n => n.parse().ok().filter(|&p| p != 0),
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// `s` made safe for a comment line: control characters (a newline would
/// end the comment and let a Perdition value write TOML) escaped.
pub(super) fn commented(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The options in effect: the last occurrence of each.
struct Options {
    values: BTreeMap<&'static str, Setting>,
    notes: Vec<String>,
}

impl Options {
    fn read(text: &str) -> Self {
        let mut options = Options {
            values: BTreeMap::new(),
            notes: Vec::new(),
        };
        options.add(file::parse(text));
        options
    }

    /// Adds `settings`, each overriding an earlier one of the same option
    /// (as Perdition's command line overrides its file).
    fn add(&mut self, settings: impl IntoIterator<Item = Setting>) {
        for setting in settings {
            let Some((name, flag)) = canonical(&setting.key) else {
                self.notes.push(format!(
                    "{}: `{}` (Perdition 2.2 has no such option)",
                    setting.place(),
                    setting.key
                ));
                continue;
            };
            if flag == Flag::Yes && !setting.value.is_empty() {
                self.notes.push(format!(
                    "{}: the value `{}` of flag `{name}` (a flag takes none)",
                    setting.place(),
                    setting.value
                ));
            }
            let place = setting.place();
            if let Some(earlier) = self.values.insert(name, setting) {
                self.notes.push(format!(
                    "{}: `{name} {}` ({place} sets it again)",
                    earlier.place(),
                    earlier.value
                ));
            }
        }
    }

    /// The value of `name`, marked as used; `None` if absent.
    fn take(&mut self, name: &str) -> Option<Setting> {
        self.values.remove(name)
    }

    /// Records that `name` does not carry over, and why.
    fn reject(&mut self, name: &str, why: &str) {
        if let Some(s) = self.take(name) {
            self.note(&s, name, why);
        }
    }

    fn note(&mut self, s: &Setting, name: &str, why: &str) {
        let shown = if s.value.is_empty() {
            format!("`{name}`")
        } else {
            format!("`{name} {}`", s.value)
        };
        self.notes.push(format!("{}: {shown} ({why})", s.place()));
    }
}

/// What Perdition's `ssl_mode` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SslMode {
    ssl_listen: bool,
    ssl_outgoing: bool,
    tls_listen: bool,
    tls_listen_force: bool,
    tls_outgoing: bool,
    tls_outgoing_force: bool,
}

impl SslMode {
    fn parse(value: &str, unknown: &mut Vec<String>) -> Self {
        let mut m = SslMode::default();
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            match token.to_ascii_lowercase().as_str() {
                "none" => {}
                "ssl_listen" => m.ssl_listen = true,
                "ssl_outgoing" => m.ssl_outgoing = true,
                "ssl_all" => (m.ssl_listen, m.ssl_outgoing) = (true, true),
                "tls_listen" => m.tls_listen = true,
                "tls_outgoing" => m.tls_outgoing = true,
                "tls_all" => (m.tls_listen, m.tls_outgoing) = (true, true),
                "tls_listen_force" => (m.tls_listen, m.tls_listen_force) = (true, true),
                "tls_outgoing_force" => (m.tls_outgoing, m.tls_outgoing_force) = (true, true),
                "tls_all_force" => {
                    m.tls_listen = true;
                    m.tls_listen_force = true;
                    m.tls_outgoing = true;
                    m.tls_outgoing_force = true;
                }
                other => unknown.push(other.to_owned()),
            }
        }
        m
    }

    /// The back-end side as mailgate's `[backend] tls`.
    fn outgoing(self) -> &'static str {
        if self.ssl_outgoing {
            "implicit"
        } else if self.tls_outgoing {
            "starttls"
        } else {
            "none"
        }
    }
}

/// Builds the output.
#[derive(Default)]
struct Out {
    toml: String,
    notes: Vec<String>,
    /// The `--popmap` text became the static map.
    popmap_read: bool,
    /// The map is not a file: `LDAP`, `MySQL`, `PostgreSQL`.
    map_kind: Option<&'static str>,
    /// The SQL map's password.
    password: Option<crate::auth::Secret>,
}

/// Imports `input`; infallible: what cannot be carried over is listed in
/// the output.
pub fn import(input: &Input<'_>) -> Imported {
    let mut opts = Options::read(input.config);
    let defaults = input.defaults.map(defaults::read);
    let mut out = Out::default();
    let mut header = Out::default();
    let modes = modes(input, defaults.as_ref(), &mut opts, &mut header);
    out.notes.append(&mut header.notes);
    let own = match defaults {
        Some(d) => flags(d, &modes, &mut opts),
        None => OwnFlags::new(),
    };
    let ssl = ssl_mode(&mut opts);
    let per_mode: Vec<(Mode, SslMode)> = modes
        .iter()
        .map(|&m| {
            let mine = own
                .get(&(m, "ssl_mode"))
                .map(|s| parse_ssl_mode(s, &mut opts.notes));
            (
                m,
                mine.or(ssl).unwrap_or(if m.secure() {
                    SSL_BOTH
                } else {
                    SslMode::default()
                }),
            )
        })
        .collect();
    let _ = writeln!(
        out.toml,
        "# Imported from the Perdition configuration `{}` by `mailgate import-perdition`.\n\
         # Modes: {}.\n\
         # Read every `# not carried over` line at the end, then run\n\
         # `mailgate check-config` on this file.",
        commented(input.source),
        modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out.toml, "{}", header.toml);
    listeners(&per_mode, &own, &mut opts, &mut out);
    tls(&per_mode, &mut opts, &mut out);
    let map = directory(input, &mut opts, &mut out);
    let warnings = unused_popmap(input, out.popmap_read, out.map_kind);
    backend(&per_mode, &mut opts, &mut out);
    limits(&modes, &mut opts, &mut out);
    runtime(&mut opts, &mut out);
    leftovers(&mut opts);
    out.notes.append(&mut opts.notes);
    // Notes without a line number first, then by line.
    out.notes.sort_by_key(|n| line_of(n).unwrap_or(0));
    let trimmed = out.toml.trim_end().len();
    out.toml.truncate(trimmed);
    out.toml.push('\n');
    if !out.notes.is_empty() {
        out.toml
            .push_str("\n# Perdition settings that did not carry over:\n");
        for note in &out.notes {
            let _ = writeln!(out.toml, "# not carried over: {}", commented(note));
        }
    }
    Imported {
        toml: out.toml,
        map,
        warnings,
        password: out.password,
    }
}

const SSL_BOTH: SslMode = SslMode {
    ssl_listen: true,
    ssl_outgoing: true,
    tls_listen: false,
    tls_listen_force: false,
    tls_outgoing: false,
    tls_outgoing_force: false,
};

fn modes(
    input: &Input<'_>,
    defaults: Option<&Defaults>,
    opts: &mut Options,
    out: &mut Out,
) -> Vec<Mode> {
    let protocol = opts.take("protocol");
    if let Some(modes) = &input.modes {
        if let Some(p) = protocol {
            opts.note(&p, "protocol", "replaced by --modes");
        }
        return modes.clone();
    }
    if let Some(d) = defaults {
        if let Some(p) = protocol {
            opts.note(&p, "protocol", "the defaults file says which modes run");
        }
        if !d.run {
            out.toml.push_str(
                "# The defaults file does not set RUN_PERDITION=yes: its init script starts\n\
                 # no Perdition at all. These are the modes it would start.\n",
            );
        }
        return d.modes.clone();
    }
    let Some(p) = protocol else {
        out.toml.push_str(
            "# `protocol` is not set: the modes are the four that Debian's init script\n\
             # starts from one perdition.conf (see /etc/default/perdition); remove the\n\
             # listeners you do not run, or import again with --modes.\n",
        );
        return vec![Mode::Imap4, Mode::Imap4s, Mode::Pop3, Mode::Pop3s];
    };
    let mut modes = Vec::new();
    for name in p.value.split(',') {
        match Mode::parse(name) {
            Some(m) if !modes.contains(&m) => modes.push(m),
            Some(_) => {}
            None => out.notes.push(format!(
                "{}: protocol `{}` (not a Perdition protocol)",
                p.place(),
                name.trim()
            )),
        }
    }
    modes
}

fn ssl_mode(opts: &mut Options) -> Option<SslMode> {
    let s = opts.take("ssl_mode")?;
    Some(parse_ssl_mode(&s, &mut opts.notes))
}

fn parse_ssl_mode(s: &Setting, notes: &mut Vec<String>) -> SslMode {
    let mut unknown = Vec::new();
    let mode = SslMode::parse(&s.value, &mut unknown);
    let place = s.place();
    for u in unknown {
        notes.push(format!(
            "{place}: `ssl_mode {}` (`{u}` is not a Perdition ssl_mode)",
            s.value
        ));
    }
    if mode.ssl_listen && mode.tls_listen {
        notes.push(format!(
            "{place}: `ssl_mode {}` (ssl_listen and tls_listen together: the listeners use implicit TLS)",
            s.value
        ));
    }
    mode
}

/// Options that mailgate sets per listener, so one mode's flags may set
/// them for that mode alone.
const PER_LISTENER: [&str; 3] = ["listen_port", "bind_address", "ssl_mode"];

/// Per-listener options that one mode's flags set: (mode, option) → setting.
type OwnFlags = BTreeMap<(Mode, &'static str), Setting>;

/// An option's identity: its long name, or the key as written for one
/// Perdition does not have (which `Options::add` lists).
fn option_id(s: &Setting) -> String {
    canonical(&s.key).map_or_else(|| s.key.clone(), |(name, _)| name.to_owned())
}

/// Applies the defaults file's flags: `FLAGS`, and options every imported
/// mode's own flags give the same value, override the file; the
/// per-listener options one mode gives itself are returned; any other
/// option that differs between modes is listed (mailgate has one such
/// setting for every listener).
fn flags(defaults: Defaults, modes: &[Mode], opts: &mut Options) -> OwnFlags {
    opts.notes.extend(defaults.notes);
    opts.add(defaults.common);
    let mine: Vec<(Mode, Vec<Setting>)> = defaults
        .per_mode
        .into_iter()
        .filter(|(m, _)| modes.contains(m))
        .collect();
    let mut ids: Vec<String> = Vec::new();
    for s in mine.iter().flat_map(|(_, settings)| settings) {
        let id = option_id(s);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut own = OwnFlags::new();
    for id in ids {
        // The last value each mode gives the option.
        let values: Vec<(Mode, Option<&Setting>)> = mine
            .iter()
            .map(|(m, settings)| (*m, settings.iter().rev().find(|s| option_id(s) == id)))
            .collect();
        let first = values[0].1;
        let same = values
            .iter()
            .all(|(_, v)| v.map(|s| &s.value) == first.map(|s| &s.value));
        let per_listener = PER_LISTENER.iter().find(|&&name| name == id);
        match (first, per_listener) {
            (Some(s), _) if same => opts.add([s.clone()]),
            (_, Some(&name)) => {
                for (m, v) in values {
                    if let Some(s) = v {
                        own.insert((m, name), s.clone());
                    }
                }
            }
            (_, None) => {
                for (m, s) in values.into_iter().filter_map(|(m, v)| Some((m, v?))) {
                    opts.notes.push(format!(
                        "{}: `{} {}` only for {} (mailgate has one `{id}` for every listener: set it by hand)",
                        s.place(),
                        s.key,
                        s.value,
                        m.name(),
                    ));
                }
            }
        }
    }
    own
}

fn listeners(per_mode: &[(Mode, SslMode)], own: &OwnFlags, opts: &mut Options, out: &mut Out) {
    let listen_port = opts.take("listen_port");
    let bind = opts.take("bind_address");
    let mut port_override = None;
    if let Some(p) = &listen_port {
        match (port_number(&p.value), per_mode.len()) {
            (Some(n), 1) => port_override = Some(n),
            (Some(_), _) => opts.note(
                p,
                "listen_port",
                "with several modes from one file each would bind it; import once per mode with --modes",
            ),
            (None, _) => opts.note(p, "listen_port", "not a port number or mail service name"),
        }
    }
    let addresses = bind_addresses(bind.as_ref(), &mut out.notes);
    for &(mode, ssl) in per_mode {
        let mode_port = match own.get(&(mode, "listen_port")) {
            Some(p) => port_number(&p.value).or_else(|| {
                out.notes.push(format!(
                    "{}: `listen_port {}` (not a port number or mail service name)",
                    p.place(),
                    p.value
                ));
                port_override
            }),
            None => port_override,
        };
        let mode_addresses = match own.get(&(mode, "bind_address")) {
            Some(b) => bind_addresses(Some(b), &mut out.notes),
            None => addresses.clone(),
        };
        for &(ip, port) in &mode_addresses {
            let port = port.or(mode_port).unwrap_or(mode.port());
            let address = std::net::SocketAddr::new(ip, port);
            let _ = writeln!(
                out.toml,
                "[[listen]]                              # Perdition {}\nprotocol = {}\naddress = {}",
                mode.name(),
                quote(mode.protocol()),
                quote(&address.to_string())
            );
            if ssl.ssl_listen {
                out.toml.push_str("tls = \"implicit\"\n");
            } else if ssl.tls_listen {
                let _ = writeln!(
                    out.toml,
                    "tls = \"starttls\"\nrequire_tls = {}",
                    ssl.tls_listen_force
                );
            }
            out.toml.push('\n');
        }
    }
}

/// The (address, explicit port) pairs of `bind_address` (a missing port
/// is the mode's); all addresses when there is none.
fn bind_addresses(bind: Option<&Setting>, notes: &mut Vec<String>) -> Vec<(IpAddr, Option<u16>)> {
    let mut addresses = Vec::new();
    if let Some(b) = bind {
        for entry in b.value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match bind_entry(entry) {
                Ok(a) => addresses.push(a),
                Err(why) => notes.push(format!("{}: bind_address `{entry}` ({why})", b.place())),
            }
        }
    }
    if addresses.is_empty() {
        addresses.push((IpAddr::from([0, 0, 0, 0]), None));
    }
    addresses
}

/// `ip[:port]` of `bind_address`; mailgate binds addresses, not names.
fn bind_entry(entry: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    let (host, port) = entry.rsplit_once(':').unwrap_or((entry, ""));
    match (host.parse::<IpAddr>(), port_number(port)) {
        (Ok(ip), Some(p)) => Ok((ip, Some(p))),
        (Ok(_), None) => Err(format!("`{port}` is not a port")),
        (Err(_), _) => Err("mailgate binds IP addresses: resolve the name and list them".into()),
    }
}

fn tls(per_mode: &[(Mode, SslMode)], opts: &mut Options, out: &mut Out) {
    let cert = opts.take("ssl_cert_file");
    let key = opts.take("ssl_key_file");
    let listens = per_mode.iter().any(|(_, s)| s.ssl_listen || s.tls_listen);
    if !listens {
        for (name, s) in [("ssl_cert_file", cert), ("ssl_key_file", key)] {
            if let Some(s) = s {
                opts.note(&s, name, "no listener uses TLS");
            }
        }
        return;
    }
    let cert = cert.map_or(DEFAULT_CERT.to_owned(), |s| s.value);
    let key = key.map_or(DEFAULT_KEY.to_owned(), |s| s.value);
    let _ = writeln!(
        out.toml,
        "[tls]\ncert = {}\nkey = {}",
        quote(&cert),
        quote(&key)
    );
    if let Some(chain) = opts.take("ssl_ca_chain_file") {
        let _ = writeln!(
            out.toml,
            "# ssl_ca_chain_file {} ({}): mailgate reads the chain from `cert`\n\
             # (leaf first): cat {} {} > fullchain.pem and point `cert` at it.",
            commented(&chain.value),
            commented(&chain.place()),
            commented(&cert),
            commented(&chain.value)
        );
    }
    out.toml.push('\n');
}

/// A `--popmap` the imported map does not come from: the map is LDAP or
/// SQL (no map file), or a file that does not hold the popmap's lines
/// (everyone to `outgoing_server`, another library's exported table).
fn unused_popmap(input: &Input<'_>, read: bool, kind: Option<&str>) -> Vec<String> {
    if input.popmap.is_none() || read {
        return Vec::new();
    }
    let why = match kind {
        Some(kind) => format!("its map is {kind} (map_library, map_library_opt)"),
        None => "its map is not the popmap (no map_library, or another map library)".to_owned(),
    };
    vec![format!(
        "--popmap was given but not read: {why}; the imported configuration does not use it"
    )]
}

fn directory(input: &Input<'_>, opts: &mut Options, out: &mut Out) -> Option<String> {
    let library = opts.take("map_library");
    let library_opt = opts.take("map_library_opt");
    let server = opts.take("outgoing_server");
    let delimiter = opts
        .take("domain_delimiter")
        .map_or_else(|| "@".to_owned(), |d| d.value);
    let lib = library
        .as_ref()
        .map_or("libperditiondb_gdbm.so.0", |l| l.value.as_str());
    let lib_lower = lib.to_ascii_lowercase();
    if lib.is_empty() {
        // No map: everyone goes to outgoing_server.
        let converted = match &server {
            Some(s) => {
                let servers: Vec<&str> = s.value.split(',').map(str::trim).collect();
                if servers.len() > 1 {
                    out.notes.push(format!(
                        "{}: outgoing_server's round robin over {} servers (the map sends everyone to the first)",
                        s.place(),
                        servers.len()
                    ));
                }
                let mut c = popmap::Converted::default();
                match popmap::target(servers[0], &delimiter) {
                    Ok(target) => c.lines.push(format!("* {target}")),
                    Err(why) => c.left_out.push(format!(
                        "{}: outgoing_server `{}` ({why})",
                        s.place(),
                        servers[0]
                    )),
                }
                c
            }
            None => {
                out.notes.push(
                    "no map_library and no outgoing_server: Perdition could route nobody".into(),
                );
                popmap::Converted::default()
            }
        };
        static_section(
            input,
            out,
            "no map_library: everyone goes to outgoing_server",
        );
        key_options_for_static_map(opts);
        return Some(map_file(converted.lines, &converted.left_out));
    }
    if let Some(s) = &server {
        opts.note(
            s,
            "outgoing_server",
            "a server for users the map does not know: mailgate refuses them like a wrong password",
        );
    }
    if lib_lower.contains("ldap") {
        out.map_kind = Some("LDAP");
        ldap(library_opt, &delimiter, opts, out);
        return None;
    }
    let dialect = if lib_lower.contains("mysql") {
        Some(Dialect::Mysql)
    } else if lib_lower.contains("postgresql") || lib_lower.contains("pgsql") {
        Some(Dialect::Postgres)
    } else {
        None
    };
    if let Some(dialect) = dialect {
        out.map_kind = Some(dialect.name());
        sql(dialect, library_opt, input.password_out, out);
        if delimiter != "@" {
            out.notes.push(format!(
                "domain_delimiter `{delimiter}` (servername's user part is split at the last `@`)"
            ));
        }
        states(opts, out, "strip_domain");
        states(opts, out, "lower_case");
        query_key(&delimiter, opts, out);
        add_domain(opts, out);
        out.toml.push('\n');
        return None;
    }
    let regex = lib_lower.contains("posix_regex");
    let flat = ["gdbm", "bdb", "cdb"].iter().any(|k| lib_lower.contains(k));
    if !regex && !flat {
        if let Some(l) = &library {
            opts.note(
                l,
                "map_library",
                "mailgate reads LDAP or a static map; export the table as `user host[:port]` lines into the map file",
            );
        }
        if let Some(o) = &library_opt {
            opts.note(
                o,
                "map_library_opt",
                "options of a map library mailgate does not have",
            );
        }
        static_section(input, out, "the map library's table, exported");
        key_options_for_static_map(opts);
        return Some(map_file(Vec::new(), &[]));
    }
    if delimiter != "@" {
        out.notes.push(format!(
            "domain_delimiter `{delimiter}` (mailgate splits user and domain at `@`)"
        ));
    }
    out.popmap_read = input.popmap.is_some();
    let converted = match (input.popmap, regex) {
        (Some(text), true) => popmap::regex(text, &delimiter),
        (Some(text), false) => popmap::flat(text, &delimiter),
        (None, _) => {
            let wanted = if regex {
                library_opt
                    .as_ref()
                    .map_or(DEFAULT_REGEX_MAP, |o| o.value.as_str())
            } else {
                "the popmap that popmap.gdbm.db is built from"
            };
            out.notes.push(format!(
                "the user map: import again with --popmap FILE ({wanted})"
            ));
            popmap::Converted::default()
        }
    };
    if let (Some(o), false) = (&library_opt, regex) {
        opts.note(
            o,
            "map_library_opt",
            "the database file; the text popmap is read with --popmap",
        );
    } else if let (Some(o), true, true) = (&library_opt, regex, input.popmap.is_some()) {
        opts.note(o, "map_library_opt", "the regex file is read with --popmap");
    }
    let what = if regex { "popmap.re" } else { "popmap" };
    static_section(input, out, &format!("converted from the {what}"));
    key_options_for_static_map(opts);
    Some(map_file(converted.lines, &converted.left_out))
}

fn static_section(input: &Input<'_>, out: &mut Out, source: &str) {
    let _ = writeln!(
        out.toml,
        "[directory]\nkind = \"static\"\nmap = {}                 # {source}\n",
        quote(input.map_out)
    );
}

fn map_file(lines: Vec<String>, left_out: &[String]) -> String {
    let mut text = String::from(
        "# mailgate static map (imported from Perdition): `user host[:port]`,\n\
         # `*@domain host`, `* host`; exact beats domain beats `*`.\n",
    );
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    if !left_out.is_empty() {
        text.push_str(
            "\n# Entries that did not carry over. The users they matched in Perdition\n\
             # now get the entries above (or none): give them lines of their own.\n",
        );
        for l in left_out {
            let _ = writeln!(text, "# not carried over: {}", commented(l));
        }
    }
    text
}

/// Key transformations have no meaning for a static map.
fn key_options_for_static_map(opts: &mut Options) {
    opts.reject(
        "lower_case",
        "not needed: static map keys match whatever the case, unless local_part_case_sensitive",
    );
    for name in ["strip_domain", "query_key", "add_domain", "explicit_domain"] {
        opts.reject(
            name,
            "a static map matches the login as typed: list `user@domain` or `*@domain` keys",
        );
    }
}

/// Perdition's MySQL and PostgreSQL map option string,
/// `dbhost:dbport:dbname:dbtable:dbuser:dbpwd:dbservercol:dbusercol:dbportcol`
/// (perditiondb(5)), as `kind = "sql"`; fields left out or empty take
/// Perdition's defaults, several comma-separated hosts become `servers`
/// in failover order, the password goes to its own file.
fn sql(dialect: Dialect, library_opt: Option<Setting>, password_out: &str, out: &mut Out) {
    let fields: Vec<String> = library_opt
        .as_ref()
        .map(|o| o.value.split(':').map(|f| f.trim().to_owned()).collect())
        .unwrap_or_default();
    let at = library_opt
        .as_ref()
        .map_or_else(|| "Perdition's defaults".to_owned(), |o| o.place());
    if fields.len() > SQL_DEFAULTS.len() {
        out.notes.push(format!(
            "{at}: {} fields after the ninth (perditiondb(5) has nine)",
            fields.len() - SQL_DEFAULTS.len()
        ));
    }
    let mut empty = Vec::new();
    let field = |i: usize, empty: &mut Vec<&'static str>| -> String {
        match fields.get(i).filter(|f| !f.is_empty()) {
            Some(f) => f.clone(),
            None => {
                if i < fields.len() {
                    empty.push(SQL_DEFAULTS[i].0);
                }
                SQL_DEFAULTS[i].1.to_owned()
            }
        }
    };
    let hosts = field(0, &mut empty);
    let port = field(1, &mut empty);
    let name = field(2, &mut empty);
    let table = field(3, &mut empty);
    let user = field(4, &mut empty);
    let password = match fields.get(5) {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
        None => Some(SQL_DEFAULTS[5].1.to_owned()),
    };
    let server_column = field(6, &mut empty);
    let user_column = field(7, &mut empty);
    let port_column = field(8, &mut empty);
    if !empty.is_empty() {
        out.notes.push(format!(
            "{at}: {} empty (Perdition passes NULL for an empty field; imported as Perdition's defaults)",
            empty.join(", ")
        ));
    }
    let scheme = match dialect {
        Dialect::Mysql => "mysql",
        Dialect::Postgres => "postgresql",
    };
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let urls: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let port = if port.is_empty() {
                String::new()
            } else {
                format!(":{port}")
            };
            format!(
                "{scheme}://{}@{host}{port}/{}",
                encode(&user),
                encode(&name)
            )
        })
        .collect();
    let _ = writeln!(out.toml, "[directory]\nkind = \"sql\"");
    match urls.as_slice() {
        [one] => {
            let _ = writeln!(out.toml, "url = {}", quote(one));
        }
        many => {
            let list: Vec<String> = many.iter().map(|u| quote(u)).collect();
            let _ = writeln!(
                out.toml,
                "servers = [{}]               # in failover order, as Perdition tries them",
                list.join(", ")
            );
        }
    }
    if let Some(password) = password {
        let _ = writeln!(
            out.toml,
            "password_file = {}             # the map's password, written there by import-perdition (mode 0600)",
            quote(password_out)
        );
        out.password = Some(crate::auth::Secret::new(password.into_bytes()));
    }
    for (key, value, default) in [
        ("table", &table, SQL_DEFAULTS[3].1),
        ("server_column", &server_column, SQL_DEFAULTS[6].1),
        ("user_column", &user_column, SQL_DEFAULTS[7].1),
        ("port_column", &port_column, SQL_DEFAULTS[8].1),
    ] {
        if value != default {
            let _ = writeln!(out.toml, "{key} = {}", quote(value));
        }
    }
}

/// perditiondb(5)'s defaults for the MySQL and PostgreSQL libraries, by
/// field: host, port (the client's default), database, table, user,
/// password, server column, user column, port column.
const SQL_DEFAULTS: [(&str, &str); 9] = [
    ("dbhost", "localhost"),
    ("dbport", ""),
    ("dbname", "dbPerdition"),
    ("dbtable", "tblPerdition"),
    ("dbuser", "perdition"),
    ("dbpwd", "perdition"),
    ("dbservercol", "servername"),
    ("dbusercol", "user"),
    ("dbportcol", "port"),
];

fn ldap(library_opt: Option<Setting>, delimiter: &str, opts: &mut Options, out: &mut Out) {
    let (at, raw) = library_opt.as_ref().map_or(
        ("Perdition's default URL".to_owned(), DEFAULT_LDAP_URL),
        |o| (o.place(), o.value.as_str()),
    );
    let mut url = raw.trim().to_owned();
    if let Some(rest) = url.strip_prefix("2:") {
        out.notes.push(format!(
            "{at}: LDAP version 2 (mailgate speaks LDAPv3; the URL is kept with `3:`)"
        ));
        url = format!("3:{rest}");
    }
    // The fifth `?` part holds extensions: `!bindname=…,X-BINDPW=…`.
    let mut bind_dn = None;
    let mut password = false;
    let parts: Vec<&str> = url.splitn(5, '?').collect();
    if parts.len() == 5 {
        for ext in parts[4].split(',').filter(|e| !e.is_empty()) {
            let ext = ext.trim_start_matches('!');
            let (name, value) = ext.split_once('=').unwrap_or((ext, ""));
            match name.to_ascii_lowercase().as_str() {
                "bindname" => {
                    bind_dn = Some(
                        percent_encoding::percent_decode_str(value)
                            .decode_utf8_lossy()
                            .into_owned(),
                    )
                }
                "x-bindpw" => password = true,
                other => out.notes.push(format!(
                    "{at}: LDAP URL extension `{other}` (mailgate knows bindname and X-BINDPW)"
                )),
            }
        }
        url = parts[..4].join("?");
    }
    let padded = url.contains('%')
        && url.split('%').skip(1).any(|s| {
            s.starts_with(|c: char| c.is_ascii_digit())
                && s.trim_start_matches(|c: char| c.is_ascii_digit())
                    .starts_with('s')
        });
    if padded {
        out.notes.push(format!(
            "{at}: the key's padding width in `%Ns` (mailgate puts the key in as it is)"
        ));
        url = strip_padding(&url);
    }
    let _ = writeln!(
        out.toml,
        "[directory]\nkind = \"ldap\"\nurl = {}",
        quote(&url)
    );
    if let Err(e) = crate::directory::ldap::query::parse_url(&url) {
        let _ = writeln!(
            out.toml,
            "# check: mailgate cannot use this URL: {}",
            commented(&e)
        );
    }
    if let Some(dn) = bind_dn {
        let _ = writeln!(out.toml, "bind_dn = {}", quote(&dn));
    }
    if password {
        out.toml.push_str(
            "bind_password_file = \"ldap.pw\"              # put the X-BINDPW password here (mode 0600);\n\
             # it is not copied into this file: mailgate never takes a password inline\n",
        );
    }
    if delimiter != "@" {
        out.notes.push(format!(
            "domain_delimiter `{delimiter}` (mailgate splits user and domain at `@`)"
        ));
    }
    states(opts, out, "strip_domain");
    states(opts, out, "lower_case");
    query_key(delimiter, opts, out);
    add_domain(opts, out);
    out.toml.push('\n');
}

/// `%20s` → `%s`.
fn strip_padding(url: &str) -> String {
    let mut out = String::new();
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..=at]);
        let after = &rest[at + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && after[digits..].starts_with('s') {
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `strip_domain`/`lower_case` with Perdition's states: the lookup state
/// carries over; the others are listed.
fn states(opts: &mut Options, out: &mut Out, name: &str) {
    let Some(s) = opts.take(name) else { return };
    let mut lookup = false;
    for state in s.value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
        match state.as_str() {
            "all" => {
                lookup = true;
                opts.note(
                    &s,
                    name,
                    "its remote_login part: the back end gets the login as the client typed it (or the LDAP user attribute)",
                );
            }
            "servername_lookup" | "server_lookup" => lookup = true,
            "" => {}
            "remote_login" => opts.note(
                &s,
                name,
                "remote_login: the back end gets the login as the client typed it (or the LDAP user attribute)",
            ),
            "local_authentication" | "local_auth" => {
                opts.note(&s, name, "local_authentication: mailgate has no PAM step")
            }
            other => opts.note(&s, name, &format!("`{other}` is not a Perdition state")),
        }
    }
    if lookup {
        let _ = writeln!(out.toml, "{name} = true");
    }
}

fn query_key(delimiter: &str, opts: &mut Options, out: &mut Out) {
    let Some(s) = opts.take("query_key") else {
        return;
    };
    let mut formats = s.value.split(',');
    let first = formats.next().unwrap_or("");
    let rest: Vec<&str> = formats.collect();
    if !rest.is_empty() {
        opts.note(
            &s,
            "query_key",
            &format!(
                "the fallback formats {} (mailgate looks up one key)",
                rest.join(",")
            ),
        );
    }
    let mut template = String::new();
    let mut chars = first.chars();
    let mut ok = true;
    while let Some(c) = chars.next() {
        if c != '\\' {
            template.push(c);
            continue;
        }
        match chars.next() {
            Some(code @ ('U' | 'u' | 'd')) => {
                template.push('\\');
                template.push(code);
            }
            Some('D') => template.push_str(delimiter),
            Some('\\') => template.push_str("\\\\"),
            Some(code) => {
                ok = false;
                opts.note(
                    &s,
                    "query_key",
                    &format!(
                        "`\\{code}`: mailgate's key is made of the login only (\\U, \\u, \\d)"
                    ),
                );
            }
            None => template.push('\\'),
        }
    }
    if ok {
        let _ = writeln!(out.toml, "query_key = {}", quote(&template));
        if !first.contains('\\') {
            let _ = writeln!(
                out.toml,
                "# check: this key has no \\U, \\u or \\d: Perdition read `\\U` in its file as `U`;\n\
                 # write `\\\\U` there (or `\\U` here) for the login"
            );
        }
    }
}

fn add_domain(opts: &mut Options, out: &mut Out) {
    let explicit = opts.take("explicit_domain");
    let Some(a) = opts.take("add_domain") else {
        if let Some(e) = explicit {
            opts.note(&e, "explicit_domain", "used only with add_domain");
        }
        return;
    };
    let lookup = a
        .value
        .split(',')
        .any(|t| matches!(t.trim(), "all" | "servername_lookup" | "server_lookup"));
    match (&explicit, lookup) {
        (Some(e), true) => {
            let _ = writeln!(out.toml, "default_domain = {}", quote(&e.value));
            if a.value
                .split(',')
                .any(|t| matches!(t.trim(), "all" | "remote_login"))
            {
                opts.note(
                    &a,
                    "add_domain",
                    "its remote_login part: the back end gets the login as the client typed it",
                );
            }
        }
        (None, _) => opts.note(
            &a,
            "add_domain",
            "the domain from a reverse lookup of the address connected to; set `default_domain`",
        ),
        (Some(e), false) => {
            opts.note(&a, "add_domain", "only servername_lookup carries over");
            opts.note(
                e,
                "explicit_domain",
                "used only with add_domain servername_lookup",
            );
        }
    }
}

fn backend(per_mode: &[(Mode, SslMode)], opts: &mut Options, out: &mut Out) {
    let outgoing = opts.take("outgoing_port");
    let port = outgoing.as_ref().and_then(|p| {
        let n = port_number(&p.value);
        if n.is_none() {
            out.notes.push(format!(
                "{}: outgoing_port `{}` (not a port number or mail service name)",
                p.place(),
                p.value
            ));
        }
        n
    });
    // Per protocol family: (tls, port) of each mode; plain modes win when
    // the family's modes disagree, as mailgate has one setting per family.
    let mut chosen: Vec<(Mode, &'static str, u16)> = Vec::new();
    for &(mode, ssl) in per_mode {
        let choice = (mode, ssl.outgoing(), port.unwrap_or(mode.port()));
        match chosen
            .iter()
            .position(|(m, _, _)| m.protocol() == mode.protocol())
        {
            None => chosen.push(choice),
            Some(i) => {
                let (other, tls, p) = chosen[i];
                if (tls, p) != (choice.1, choice.2) {
                    let (keep, lose) = if other.secure() {
                        (choice, chosen[i])
                    } else {
                        (chosen[i], choice)
                    };
                    out.notes.push(format!(
                        "{}'s back-end side (tls {}, port {}): mailgate has one back-end setting per protocol, taken from {} (tls {}, port {})",
                        lose.0.name(), lose.1, lose.2, keep.0.name(), keep.1, keep.2
                    ));
                    chosen[i] = keep;
                }
            }
        }
    }
    let tls: Vec<&str> = chosen.iter().map(|c| c.1).collect();
    let backend_tls = tls.first().copied().unwrap_or("none");
    if tls.iter().any(|t| *t != backend_tls) {
        out.notes.push(format!(
            "the back-end TLS settings differ between protocols ({}): mailgate's `[backend] tls` covers every protocol, taken from {} ({backend_tls})",
            chosen
                .iter()
                .map(|c| format!("{} {}", c.0.name(), c.1))
                .collect::<Vec<_>>()
                .join(", "),
            chosen.first().map_or("IMAP", |c| c.0.name())
        ));
    }
    out.toml.push_str("[backend]\n");
    for (mode, _, port) in &chosen {
        let _ = writeln!(out.toml, "{}_port = {port}", mode.protocol());
    }
    if chosen.len() >= 2 && outgoing.is_some() {
        let all: Vec<&str> = chosen.iter().map(|c| c.0.protocol()).collect();
        let _ = writeln!(
            out.toml,
            "# outgoing_port applies to every mode of the file, as in Perdition; check\n\
             # that the {} back ends really listen there.",
            all.join(", ")
        );
    }
    if backend_tls != "none" {
        let _ = writeln!(out.toml, "tls = {}", quote(backend_tls));
        let ca = opts.take("ssl_ca_file");
        let path = opts.take("ssl_ca_path");
        match (&ca, &path) {
            (Some(ca), _) => {
                let _ = writeln!(out.toml, "ca_file = {}", quote(&ca.value));
            }
            (None, p) => {
                let dir = commented(
                    p.as_ref()
                        .map_or("/etc/perdition/perdition.ca/", |p| p.value.as_str()),
                );
                let _ = writeln!(
                    out.toml,
                    "ca_file = \"/etc/mailgate/backend-ca.pem\"   # Perdition read the directory {dir}:\n\
                     # mailgate takes one PEM file (cat {dir}*.pem > /etc/mailgate/backend-ca.pem)"
                );
            }
        }
        if let (Some(_), Some(p)) = (&ca, &path) {
            opts.note(
                p,
                "ssl_ca_path",
                "mailgate reads ssl_ca_file only; append the directory's certificates to it",
            );
        }
        let force = per_mode.iter().any(|(_, s)| s.tls_outgoing_force);
        if backend_tls == "starttls" && !force {
            out.toml.push_str(
                "# Perdition's tls_outgoing fell back to plaintext when a back end did not\n\
                 # offer STARTTLS; mailgate never does (tls_outgoing_force behaviour).\n",
            );
        }
    } else {
        for name in ["ssl_ca_file", "ssl_ca_path"] {
            opts.reject(name, "no TLS to the back ends");
        }
    }
    for name in [
        "ssl_no_cert_verify",
        "ssl_no_cn_verify",
        "ssl_cert_accept_self_signed",
        "ssl_cert_accept_expired",
        "ssl_cert_accept_not_yet_valid",
        "ssl_ca_accept_self_signed",
        "ssl_cert_verify_depth",
    ] {
        opts.reject(
            name,
            "mailgate always verifies back-end certificates: chain, validity and name",
        );
    }
    out.toml.push('\n');
}

fn limits(modes: &[Mode], opts: &mut Options, out: &mut Out) {
    let mut limits = String::new();
    if let Some(l) = opts.take("connection_limit") {
        match l.value.trim().parse::<usize>() {
            Ok(0) => {}
            Ok(n) => {
                let modes = modes.len().max(1);
                let why = if modes == 1 {
                    "Perdition's connection_limit".to_owned()
                } else {
                    format!("Perdition's {n} per mode × {modes} modes")
                };
                let _ = writeln!(
                    limits,
                    "max_connections = {}                  # {why}",
                    n * modes
                );
            }
            Err(_) => opts.note(&l, "connection_limit", "not a number"),
        }
    }
    if let Some(t) = opts.take("authenticate_timeout") {
        match t.value.trim().parse::<u64>() {
            Ok(0) => opts.note(
                &t,
                "authenticate_timeout",
                "no deadline: mailgate always bounds the time before login (preauth_timeout, 60 s by default)",
            ),
            Ok(n) => {
                let _ = writeln!(
                    limits,
                    "preauth_timeout = \"{n}s\"                # Perdition's was an idle timeout; this is a deadline for the whole login"
                );
            }
            Err(_) => opts.note(&t, "authenticate_timeout", "not a number of seconds"),
        }
    }
    if !limits.is_empty() {
        let _ = writeln!(out.toml, "[limits]\n{limits}");
    }
    if let Some(t) = opts.take("timeout") {
        match t.value.trim().parse::<u64>() {
            Ok(0) => opts.note(
                &t,
                "timeout",
                "no idle timeout: mailgate closes sessions idle for [relay] idle_timeout (30 min by default)",
            ),
            Ok(n) => {
                let _ = writeln!(out.toml, "[relay]\nidle_timeout = \"{n}s\"\n");
            }
            Err(_) => opts.note(&t, "timeout", "not a number of seconds"),
        }
    }
}

/// Perdition switches to `username` (default `nobody`) after binding; so
/// does mailgate with `[runtime] user`.
fn runtime(opts: &mut Options, out: &mut Out) {
    let user = opts.take("username");
    let group = opts.take("group");
    let _ = writeln!(out.toml, "[runtime]");
    match &user {
        Some(u) => {
            let _ = writeln!(out.toml, "user = {}", quote(&u.value));
        }
        None => out.toml.push_str(
            "user = \"nobody\"                          # Perdition's default username\n",
        ),
    }
    if let Some(g) = &group {
        let _ = writeln!(out.toml, "group = {}", quote(&g.value));
    }
    out.toml.push('\n');
}

/// Everything not used above, with the reason it has no mailgate setting.
fn leftovers(opts: &mut Options) {
    const WHY: &[(&str, &str)] = &[
        (
            "pid_file",
            "a command-line option: `mailgate run --pid-file PATH`",
        ),
        ("no_daemon", "mailgate always runs in the foreground"),
        ("inetd_mode", "mailgate runs its own listeners"),
        (
            "log_facility",
            "mailgate logs to stderr, the journal under systemd",
        ),
        ("debug", "set MAILGATE_LOG=debug"),
        ("quiet", "set MAILGATE_LOG=warn"),
        (
            "connection_logging",
            "mailgate never logs the login exchange: it holds the password",
        ),
        ("log_passwd", "mailgate never logs passwords"),
        (
            "connect_relog",
            "mailgate logs each session once, at its end",
        ),
        (
            "capability",
            "capabilities come from the back end after login; before it mailgate announces its own",
        ),
        (
            "imap_capability",
            "capabilities come from the back end after login; before it mailgate announces its own",
        ),
        (
            "pop_capability",
            "capabilities come from the back end after login; before it mailgate announces its own",
        ),
        (
            "managesieve_capability",
            "mailgate's ManageSieve greeting announces the Sieve capabilities of the back ends it logs in to (IMPLEMENTATION, SIEVE, NOTIFY), Pigeonhole's defaults until the first login",
        ),
        ("ok_line", "the client gets the back end's own login answer"),
        (
            "server_ok_line",
            "the client gets the back end's own login answer",
        ),
        (
            "server_resp_line",
            "the client always gets the back end's own login answer",
        ),
        (
            "no_bind_banner",
            "the greeting is the listener's `greeting`",
        ),
        (
            "no_lookup",
            "mailgate never resolves client addresses; back-end names are resolved at login",
        ),
        (
            "login_disabled",
            "mailgate has no switch to refuse every login",
        ),
        (
            "client_server_specification",
            "letting users name their server is not offered: the directory decides",
        ),
        (
            "username_from_database",
            "with LDAP the user attribute is the back-end login; a static map has none",
        ),
        (
            "authenticate_in",
            "mailgate has no PAM step: the back end checks the password",
        ),
        (
            "tcp_keepalive",
            "mailgate sets keepalive on both legs by default: [relay] keepalive",
        ),
        (
            "ssl_listen_ciphers",
            "rustls' default suites: TLS 1.2 and 1.3, no legacy ciphers",
        ),
        (
            "ssl_outgoing_ciphers",
            "rustls' default suites: TLS 1.2 and 1.3, no legacy ciphers",
        ),
        ("ssl_listen_min_proto_version", "TLS 1.2 is the minimum"),
        ("ssl_outgoing_min_proto_version", "TLS 1.2 is the minimum"),
        (
            "ssl_listen_max_proto_version",
            "TLS 1.3 is offered whenever the peer has it",
        ),
        (
            "ssl_outgoing_max_proto_version",
            "TLS 1.3 is offered whenever the peer has it",
        ),
        (
            "ssl_listen_compression",
            "TLS compression is never used: CRIME",
        ),
        (
            "ssl_outgoing_compression",
            "TLS compression is never used: CRIME",
        ),
        (
            "ssl_no_cipher_server_preference",
            "rustls chooses suites its own way",
        ),
        ("ssl_dh_params_file", "rustls uses ECDHE only"),
        (
            "ssl_passphrase_fd",
            "mailgate reads unencrypted keys: decrypt it with `openssl pkey`",
        ),
        (
            "ssl_passphrase_file",
            "mailgate reads unencrypted keys: decrypt it with `openssl pkey`",
        ),
        (
            "ssl_no_client_cert_verify",
            "mailgate asks clients for no certificate",
        ),
        ("ssl_ca_chain_file", "no listener uses TLS"),
        ("config_file", "the file being imported"),
        ("help", "not a setting"),
        ("domain_delimiter", "mailgate splits user and domain at `@`"),
    ];
    let left: Vec<&'static str> = opts.values.keys().copied().collect();
    for name in left {
        let why = WHY
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("no mailgate equivalent", |(_, w)| w);
        opts.reject(name, why);
    }
}

/// The line number a note starts with (`line 12: …`).
fn line_of(note: &str) -> Option<usize> {
    note.strip_prefix("line ")?.split(':').next()?.parse().ok()
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
