//! `mailgate import-perdition`: golden files for the classic LDAP front end,
//! Debian's shipped perdition.conf and popmap, and a file using every
//! option; each import passes `check-config` (with test certificates in
//! place of the named ones), and the classic one serves logins through a
//! real slapd to a real Dovecot.
//!
//! `MAILGATE_BLESS=1 cargo test --test import_perdition` rewrites the
//! golden outputs; review the diff before committing it.

mod support;

use mailgate_testkit::certs::TestCa;
use mailgate_testkit::slapd::{Options, Person, Slapd};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::stack::*;
use support::{Dovecot, Mailgate};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/perdition")
}

/// Where tests/setup.sh unpacks Debian's perdition package.
fn debian_etc() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/perdition-deb/etc/perdition")
}

struct Import {
    toml: String,
    map: Option<String>,
    /// What the command said on stderr.
    stderr: String,
    dir: tempfile::TempDir,
}

/// Runs `mailgate import-perdition` in a fresh folder (the map goes to
/// `users.map` there).
fn import(conf: &Path, popmap: Option<&Path>, extra: &[&str]) -> Import {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(Mailgate::binary());
    cmd.current_dir(dir.path())
        .arg("import-perdition")
        .arg(conf)
        .args(extra);
    if let Some(p) = popmap {
        cmd.arg("--popmap").arg(p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = std::fs::read_to_string(dir.path().join("users.map")).ok();
    Import {
        toml: String::from_utf8(out.stdout).unwrap(),
        map,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        dir,
    }
}

/// Compares `actual` with the golden file `name` (or rewrites it).
fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("MAILGATE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (MAILGATE_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
            .collect();
        panic!(
            "{name} differs from the golden file ({} vs {} lines)\n{}",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// `check-config` on the imported TOML, with `paths` (certificate and key
/// files the Perdition config names) replaced by test files.
fn check_config(import: &Import, paths: &[(&str, &Path)]) -> String {
    let mut toml = import.toml.clone();
    for (from, to) in paths {
        toml = toml.replace(&format!("\"{from}\""), &format!("\"{}\"", to.display()));
    }
    if toml.contains("bind_password_file = \"ldap.pw\"") {
        std::fs::write(import.dir.path().join("ldap.pw"), "secret\n").unwrap();
    }
    let path = import.dir.path().join("mailgate.toml");
    std::fs::write(&path, &toml).unwrap();
    let out = Command::new(Mailgate::binary())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused the import: {}\n{toml}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_classic_config_imports_to_its_golden_file_and_checks() {
    let import = import(&golden_dir().join("classic.conf"), None, &[]);
    golden("classic.toml", &import.toml);
    assert!(import.map.is_none(), "an LDAP import writes no map");
    let ca = TestCa::new();
    let (cert, key) = ca.issue("mail", &["mail.infra.org"], &[]);
    let summary = check_config(
        &import,
        &[
            ("/etc/perdition/mail.infra.org.crt", &cert),
            ("/etc/perdition/mail.infra.org.key", &key),
        ],
    );
    assert!(summary.contains("ok (4 listener(s)"), "{summary}");
}

#[test]
fn every_option_is_carried_or_listed_in_its_golden_file() {
    let dir = golden_dir();
    let import = import(
        &dir.join("every-option.conf"),
        Some(&dir.join("every-option.popmap.re")),
        &[],
    );
    golden("every-option.toml", &import.toml);
    golden("every-option.map", import.map.as_deref().unwrap());
    // Every option line of the input is either a setting or a listed note.
    let input = std::fs::read_to_string(dir.join("every-option.conf")).unwrap();
    let settings = mailgate::import::perdition::file::parse(&input);
    assert!(settings.len() >= 68, "{} options", settings.len());
    let carried = [
        "b",
        "D",
        "explicit_domain",
        "A",
        "L",
        "-l",
        "authenticate_timeout",
        "--map_library",
        "P",
        "p",
        "t",
        "ssl_mode",
        "ssl_cert_file",
        "ssl_key_file",
        "ssl_ca_file",
        "ssl_ca_chain_file",
        "u",
        "g",
    ];
    for s in &settings {
        let listed = import.toml.contains(&format!("line {}:", s.line))
            || import.toml.contains(&format!("(line {})", s.line));
        assert!(
            listed
                || carried.contains(&s.key.as_str())
                || carried.contains(&format!("-{}", s.key).as_str())
                || carried.contains(&format!("--{}", s.key).as_str()),
            "line {} `{}` is neither carried over nor listed",
            s.line,
            s.key
        );
    }
    let ca = TestCa::new();
    let (cert, key) = ca.issue("mail", &["mail.example.org"], &[]);
    let map_path = import.dir.path().join("users.map");
    check_config(
        &import,
        &[
            ("/etc/ssl/mail.pem", &cert),
            ("/etc/ssl/mail.key", &key),
            ("/etc/ssl/backends-ca.pem", &ca.ca()),
            ("users.map", &map_path),
        ],
    );
}

/// `check-config` on an import of Debian's shipped files: Perdition's
/// default certificate paths replaced by a test certificate.
fn check_debian_import(import: &Import) -> String {
    let ca = TestCa::new();
    let (cert, key) = ca.issue("localhost", &["localhost"], &[]);
    let map_path = import.dir.path().join("users.map");
    check_config(
        import,
        &[
            ("/etc/perdition/perdition.crt.pem", &cert),
            ("/etc/perdition/perdition.key.pem", &key),
            ("users.map", &map_path),
        ],
    )
}

#[test]
fn debians_shipped_perdition_conf_and_popmap_import_and_check() {
    let etc = debian_etc();
    assert!(
        etc.join("perdition.conf").exists(),
        "{} is missing: tests/setup.sh unpacks Debian's perdition package there",
        etc.display()
    );
    let import = import(&etc.join("perdition.conf"), Some(&etc.join("popmap")), &[]);
    golden("debian.toml", &import.toml);
    golden("debian.map", import.map.as_deref().unwrap());
    let summary = check_debian_import(&import);
    assert!(summary.contains("2 static map entries"), "{summary}");
}

#[test]
fn debians_shipped_defaults_file_gives_the_modes_its_init_script_starts() {
    let etc = debian_etc();
    let defaults = etc.parent().unwrap().join("default/perdition");
    assert!(
        defaults.exists(),
        "{} is missing: tests/setup.sh unpacks Debian's perdition package",
        defaults.display()
    );
    let import = import(
        &etc.join("perdition.conf"),
        Some(&etc.join("popmap")),
        &["--defaults", defaults.to_str().unwrap()],
    );
    golden("debian-defaults.toml", &import.toml);
    // The shipped file starts POP3, POP3S, IMAP4, IMAP4S and ManageSieve,
    // without flags.
    assert!(
        import
            .toml
            .contains("# Modes: POP3, POP3S, IMAP4, IMAP4S, MANAGESIEVE."),
        "{}",
        import.toml
    );
    assert!(import
        .toml
        .contains("protocol = \"managesieve\"\naddress = \"0.0.0.0:4190\""));
    assert!(!import.toml.contains("MANAGESIEVE=yes"));
    let summary = check_debian_import(&import);
    assert!(summary.contains("5 listener(s)"), "{summary}");
}

const PYTHON_LOGIN: &str = r#"
import imaplib, ssl, sys
host, port, tls, ca, user, password = sys.argv[1:7]
if tls == "implicit":
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    c = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
else:
    c = imaplib.IMAP4(host, int(port))
c.login(user, password)
typ, data = c.select("INBOX")
assert typ == "OK", typ
print("ok", int(data[0]))
c.logout()
"#;

#[test]
fn the_imported_classic_config_serves_logins_through_slapd_to_dovecot() {
    let dovecot = Dovecot::start(&directory_users());
    let slapd = Slapd::start(
        &[Person {
            mail: ALICE,
            host: "127.0.0.1",
            status: "active",
        }],
        Options::default(),
    )
    .unwrap();
    // The classic file, pointed at this slapd and this Dovecot.
    let classic = std::fs::read_to_string(golden_dir().join("classic.conf"))
        .unwrap()
        .replace("ldap://ldap1.infra.org ldap2.infra.org", &slapd.url())
        .replace(
            "outgoing_port 10143",
            &format!("outgoing_port {}", dovecot.imap.port()),
        );
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("perdition.conf");
    std::fs::write(&conf, classic).unwrap();
    let import = import(&conf, None, &["--modes", "imap4,imap4s"]);
    let ca = TestCa::new();
    let (cert, key) = ca.issue("mail", &["mail.infra.org"], &["127.0.0.1"]);
    // Ports aside (the test binds free loopback ports), the import as is.
    let config = import
        .toml
        .replace("0.0.0.0:143", "127.0.0.1:0")
        .replace("0.0.0.0:993", "127.0.0.1:0")
        .replace("/etc/perdition/mail.infra.org.crt", cert.to_str().unwrap())
        .replace("/etc/perdition/mail.infra.org.key", key.to_str().unwrap());
    let mailgate = Mailgate::start(&config, "");
    for (listener, tls) in [(0, "none"), (1, "implicit")] {
        let out = Command::new("python3")
            .args([
                "-c",
                PYTHON_LOGIN,
                "127.0.0.1",
                &mailgate.addr(listener).port().to_string(),
                tls,
                ca.ca().to_str().unwrap(),
                ALICE,
                ALICE_PW,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tls}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            mailgate.log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("ok {}", alice_messages().len())
        );
    }
    assert!(dovecot.log().contains(&format!("Login: user=<{ALICE}>")));
}

#[test]
fn an_imported_managesieve_config_serves_sieve_connect_through_slapd_to_dovecot() {
    let conf = golden_dir().join("managesieve.conf");
    let import = import(&conf, None, &[]);
    golden("managesieve.toml", &import.toml);
    assert!(
        import
            .toml
            .contains("# not carried over: line 11: `managesieve_capability"),
        "{}",
        import.toml
    );
    let (dovecot, sieve) = support::sieve::dovecot_with_sieve(&directory_users(), "");
    let slapd = Slapd::start(
        &[Person {
            mail: ALICE,
            host: "127.0.0.1",
            status: "active",
        }],
        Options::default(),
    )
    .unwrap();
    let ca = TestCa::new();
    let (cert, key) = ca.issue("mail", &["localhost"], &["127.0.0.1"]);
    // Ports aside (the test binds free loopback ports), the import as is.
    let config = import
        .toml
        .replace("ldap://ldap1.infra.org", &slapd.url())
        .replace("0.0.0.0:4190", "127.0.0.1:0")
        .replace(
            "managesieve_port = 4190",
            &format!("managesieve_port = {}", sieve.port()),
        )
        .replace("/etc/perdition/mail.infra.org.crt", cert.to_str().unwrap())
        .replace("/etc/perdition/mail.infra.org.key", key.to_str().unwrap());
    let mailgate = Mailgate::start(&config, "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("v.sieve"),
        "require \"vacation\";\r\nvacation \"away\";\r\n",
    )
    .unwrap();
    let port = mailgate.addr(0).port();
    let run = |args: &[&str]| {
        support::sieve::sieve_connect(port, &ca.ca(), (ALICE, ALICE_PW), dir.path(), args)
            .unwrap_or_else(|e| panic!("{e}\n{}", mailgate.log()))
    };
    run(&[
        "--upload",
        "--localsieve",
        "v.sieve",
        "--remotesieve",
        "away",
    ]);
    assert!(run(&["--list"]).contains("away"));
    assert!(dovecot
        .log()
        .contains(&format!("managesieve-login: Info: Login: user=<{ALICE}>")));
}

#[test]
fn a_popmap_the_configuration_does_not_read_is_said_on_stderr() {
    let work = tempfile::tempdir().unwrap();
    let popmap = work.path().join("popmap");
    std::fs::write(&popmap, "alice@example.org:box1\n").unwrap();
    // The classic file maps with LDAP: the popmap is not read.
    let ldap = import(&golden_dir().join("classic.conf"), Some(&popmap), &[]);
    assert!(
        ldap.stderr
            .contains("--popmap was given but not read: its map is LDAP"),
        "{}",
        ldap.stderr
    );
    // A file map: the popmap becomes the static map, nothing said.
    let conf = work.path().join("perdition.conf");
    std::fs::write(&conf, "map_library /usr/lib/libperditiondb_gdbm.so.0\n").unwrap();
    let file = import(&conf, Some(&popmap), &[]);
    assert!(!file.stderr.contains("--popmap"), "{}", file.stderr);
    assert!(file.map.unwrap().contains("alice@example.org box1"));
}

#[test]
fn perditions_sql_maps_import_to_their_golden_files_with_the_password_in_a_file() {
    let mysql = import(&golden_dir().join("mysql.conf"), None, &[]);
    golden("mysql.toml", &mysql.toml);
    assert!(
        !mysql.toml.contains("s3cret-db-pw"),
        "no password in the TOML"
    );
    let password = mysql.dir.path().join("sql.pw");
    assert_eq!(
        std::fs::read_to_string(&password).unwrap(),
        "s3cret-db-pw\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&password).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(mysql.map.is_none(), "an SQL import writes no map");
    if cfg!(feature = "sql") {
        let summary = check_config(&mysql, &[]);
        assert!(summary.contains("sql (MySQL), 2 server(s)"), "{summary}");
    }
    let pg = import(&golden_dir().join("postgresql.conf"), None, &[]);
    golden("postgresql.toml", &pg.toml);
    if cfg!(feature = "sql") {
        check_config(&pg, &[]);
    }
    // A popmap is not what an SQL map reads.
    let work = tempfile::tempdir().unwrap();
    let popmap = work.path().join("popmap");
    std::fs::write(&popmap, "alice@example.org:box1\n").unwrap();
    let with_popmap = import(&golden_dir().join("mysql.conf"), Some(&popmap), &[]);
    assert!(
        with_popmap
            .stderr
            .contains("--popmap was given but not read: its map is MySQL"),
        "{}",
        with_popmap.stderr
    );
}

/// An imported MySQL-map configuration, pointed at a real MariaDB holding
/// Perdition's table, serves a login end to end.
#[cfg(feature = "sql")]
#[test]
fn an_imported_mysql_map_config_serves_a_login_through_mariadb_to_dovecot() {
    use support::sql::{Database, Engine, DB_PASSWORD};
    let dovecot = Dovecot::start(&directory_users());
    let db = Database::start(Engine::Mariadb, &[(ALICE, "127.0.0.1", None)]);
    let conf = std::fs::read_to_string(golden_dir().join("mysql.conf"))
        .unwrap()
        .replace(
            "db1.infra.org,db2.infra.org:3306",
            &format!("127.0.0.1:{}", db.port),
        )
        .replace("s3cret-db-pw", DB_PASSWORD)
        .replace(
            "outgoing_port 10143",
            &format!("outgoing_port {}", dovecot.imap.port()),
        );
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("perdition.conf");
    std::fs::write(&path, conf).unwrap();
    let imported = import(&path, None, &[]);
    // The listener on a free loopback port, the password file where the
    // import wrote it; the rest as imported.
    let config = imported.toml.replace("0.0.0.0:143", "127.0.0.1:0").replace(
        "\"sql.pw\"",
        &format!("\"{}\"", imported.dir.path().join("sql.pw").display()),
    );
    let mailgate = Mailgate::start(&config, "");
    let mut c = mailgate::check_client::ImapClient::connect(mailgate.addr(0)).unwrap();
    assert!(
        c.login(ALICE, ALICE_PW).unwrap().is_ok(),
        "{}\n{config}",
        mailgate.log()
    );
    assert!(c.command("SELECT INBOX").unwrap().is_ok());
    assert_eq!(c.fetch_message(1).unwrap(), alice_messages()[0]);
}
