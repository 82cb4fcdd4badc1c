//! Modules depend one way: each top-level module of `src/` may use only the
//! modules listed before it in [`ORDER`] (protocols at the bottom, runtime
//! and admin at the top). A `crate::x` path that points the other way — or a
//! module missing from the list — fails this test, so a dependency cycle
//! cannot creep in unnoticed. Test code (`*_tests.rs`, `#[cfg(test)]`
//! modules) is not counted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The allowed order, bottom first.
const ORDER: &[&str] = &[
    "auth",
    "login",
    "log_batch",
    "netaddr",
    "proxy_header",
    "imap",
    "managesieve",
    "pop3",
    "protocols",
    "directory",
    "metrics",
    "registry",
    "transport",
    "relay",
    "tls",
    "oauth",
    "compress",
    "config",
    "session",
    "runtime",
    "admin",
    "check_client",
    "simulated_backend",
    "demo",
    "import",
    "fuzzing",
];

/// The protocol core: these may use nothing of the crate but each other's
/// bottom layer (`auth`, `login`).
const PROTOCOL_CORE: &[&str] = &["auth", "login", "imap", "managesieve", "pop3"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::x` names used by the non-test part of `text`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

/// (module, file, used module) for every `crate::` path in `src/`.
fn edges() -> Vec<(String, PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let name = file.file_name().expect("a name").to_string_lossy();
        if top == "lib" || top == "main" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for used in crate_uses(&text) {
            if used != top {
                edges.push((top.clone(), relative.to_owned(), used));
            }
        }
    }
    edges
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut wrong = Vec::new();
    for (module, file, used) in edges() {
        match (rank(&module), rank(&used)) {
            (None, _) => wrong.push(format!(
                "{}: module `{module}` is not in ORDER",
                file.display()
            )),
            (_, None) => wrong.push(format!(
                "{}: uses `crate::{used}`, not in ORDER",
                file.display()
            )),
            (Some(a), Some(b)) if b > a => wrong.push(format!(
                "{}: `{module}` uses `crate::{used}`, which comes after it",
                file.display()
            )),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_protocol_core_imports_only_auth_and_login() {
    let wrong: Vec<String> = edges()
        .into_iter()
        .filter(|(module, _, used)| {
            PROTOCOL_CORE.contains(&module.as_str()) && !["auth", "login"].contains(&used.as_str())
        })
        .map(|(module, file, used)| format!("{}: `{module}` uses `crate::{used}`", file.display()))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Protocols: what the relay must not know (it defines the inspector trait
/// it needs; the session layer adapts a protocol's tracker to it).
const PROTOCOLS: &[&str] = &["imap", "managesieve", "pop3"];

#[test]
fn the_relay_knows_no_protocol() {
    let wrong: Vec<String> = edges()
        .into_iter()
        .filter(|(module, _, used)| module == "relay" && PROTOCOLS.contains(&used.as_str()))
        .map(|(module, file, used)| format!("{}: `{module}` uses `crate::{used}`", file.display()))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_paths() {
    let uses =
        crate_uses("use crate::{a, b::c};\nlet x = crate::d::e;\n#[cfg(test)]\nuse crate::f;");
    assert_eq!(uses.into_iter().collect::<Vec<_>>(), ["a", "b", "d"]);
}

/// The layers above the protocol registry up to the admin listener (the
/// demo, the importer and the tools above it speak protocols on purpose):
/// they ask a listener's `ProtocolSpec` and never name a protocol, so a new
/// protocol is its own folder plus its registration, not an edit here.
fn above_the_registry() -> &'static [&'static str] {
    let at = |m: &str| ORDER.iter().position(|o| *o == m).expect("in ORDER");
    &ORDER[at("protocols") + 1..=at("admin")]
}

/// Where naming a protocol is the point: its config keys (`imap_port`,
/// `pop3_auth` …), and the webmail cache, which follows IMAP commands
/// (`connection_cache` listeners are IMAP's; the spec says so).
const NAMES_A_PROTOCOL_ON_PURPOSE: &[&str] = &[
    "config/schema.rs",
    "session/tracking.rs",
    "session/relay.rs",
];

/// `Protocol::Variant` paths (not `Protocol::ALL`) and `crate::imap` /
/// `crate::pop3` uses in the non-test part of `text`.
fn protocol_names(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("Protocol::") {
        rest = &rest[at + "Protocol::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let variant = name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && name.chars().any(|c| c.is_ascii_lowercase());
        if variant {
            found.push(format!("Protocol::{name}"));
        }
    }
    for used in crate_uses(code) {
        if PROTOCOLS.contains(&used.as_str()) {
            found.push(format!("crate::{used}"));
        }
    }
    found
}

#[test]
fn no_layer_above_the_registry_names_a_protocol() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for module in above_the_registry() {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src");
            let shown = relative.to_string_lossy().replace('\\', "/");
            let name = file.file_name().expect("a name").to_string_lossy();
            if name.ends_with("_tests.rs") || NAMES_A_PROTOCOL_ON_PURPOSE.contains(&shown.as_str())
            {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read source");
            for found in protocol_names(&text) {
                wrong.push(format!("{shown}: {found}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "protocols named above the registry (ask the listener's ProtocolSpec):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_protocol_check_sees_variants_and_modules() {
    let text = "match p { Protocol::Imap => 1, _ => 2 }\nlet all = Protocol::ALL;\nuse crate::pop3::X;\nuse crate::login::Y;";
    assert_eq!(protocol_names(text), ["Protocol::Imap", "crate::pop3"]);
}

/// Directory kinds are registered in one place (`directory::kind::KINDS`):
/// outside `directory/`, only these may name one — the Perdition importer
/// (it writes LDAP and static configurations) and the fuzz entry points.
const NAMES_A_KIND_ON_PURPOSE: &[&str] = &["import", "fuzzing.rs"];

/// The crate paths naming a directory kind's module in `text`'s non-test
/// code: `directory::ldap`, `directory::static_map`, …
fn kind_names(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let kinds = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/directory");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(kinds).expect("read src/directory") {
        let path = entry.expect("dir entry").path();
        if !path.is_dir() {
            continue;
        }
        let kind = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        for prefix in ["crate::directory::", "directory::"] {
            let named = format!("{prefix}{kind}");
            if code.contains(&named) && !found.iter().any(|f: &String| f.ends_with(&named)) {
                found.push(named);
            }
        }
    }
    found
}

#[test]
fn no_module_outside_the_directory_names_a_kind() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let shown = relative.to_string_lossy().replace('\\', "/");
        let top = shown.split('/').next().unwrap_or("");
        if top == "directory"
            || NAMES_A_KIND_ON_PURPOSE.contains(&top)
            || shown.ends_with("_tests.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for found in kind_names(&text) {
            wrong.push(format!("{shown}: {found}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "directory kinds named outside directory/ (build through directory::kind):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_kind_check_sees_kind_modules() {
    let text = "use crate::directory::ldap::watch::Change;\nuse crate::directory::kind::KINDS;\n";
    assert_eq!(kind_names(text), ["crate::directory::ldap"]);
}
