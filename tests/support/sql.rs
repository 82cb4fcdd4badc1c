//! Real database servers on loopback for the SQL directory tests:
//! PostgreSQL (`initdb` + `postgres`, run as the `postgres` user when the
//! suite runs as root) and MariaDB (`mariadb-install-db` + `mariadbd`),
//! each in its own temporary folder on an ephemeral port, holding
//! Perdition's table (`tblPerdition`: `user | servername | port`) in the
//! database `dbPerdition`, readable by the user `perdition` with a
//! password. Stopped when dropped (also when a test panics).

use super::{free_port, terminate, START_DEADLINE};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of the `perdition` database user.
pub const DB_PASSWORD: &str = "perdition-db-pw";

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MariaDB.
    Mariadb,
}

/// A running database server.
pub struct Database {
    /// Which server.
    pub engine: Engine,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    start: Vec<String>,
    run_as: Option<(u32, u32)>,
}

/// Perdition's table, as its makedb scripts create it.
const TABLE: &str = "CREATE TABLE tblPerdition (\"user\" VARCHAR(128) NOT NULL PRIMARY KEY, \
                     servername VARCHAR(255) NOT NULL, port VARCHAR(8))";

/// The `postgres` user's uid and gid, when the suite runs as root
/// (PostgreSQL refuses to run as root).
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the postgres user (Debian's postgresql package creates it)")
    };
    Some((id("-u"), id("-g")))
}

fn postgres_bin(name: &str) -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .last()
        .map(|v| v.join("bin").join(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Database {
    /// Starts `engine` with Perdition's table holding `rows` (user,
    /// servername, port).
    pub fn start(engine: Engine, rows: &[(&str, &str, Option<&str>)]) -> Self {
        Self::start_with(engine, rows, None)
    }

    /// PostgreSQL that takes TCP connections over TLS only (`hostssl` in
    /// pg_hba.conf), with the certificate and key given.
    pub fn start_tls_only(rows: &[(&str, &str, Option<&str>)], cert: &Path, key: &Path) -> Self {
        Self::start_with(Engine::Postgres, rows, Some((cert, key)))
    }

    fn start_with(
        engine: Engine,
        rows: &[(&str, &str, Option<&str>)],
        tls: Option<(&Path, &Path)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = match engine {
            Engine::Postgres => Self::init_postgres(dir),
            Engine::Mariadb => Self::init_mariadb(dir, rows),
        };
        if let Some((cert, key)) = tls {
            db.postgres_tls_only(cert, key);
        }
        db.launch();
        if engine == Engine::Postgres {
            db.fill_postgres(rows);
        }
        db
    }

    fn init_postgres(dir: tempfile::TempDir) -> Self {
        let run_as = postgres_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let superuser_pw = dir.path().join("superuser.pw");
        std::fs::write(&superuser_pw, "unused-superuser-pw\n").unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&superuser_pw, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(postgres_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", superuser_pw.display()))
            .args(["-E", "UTF8", "--no-sync"])
            .current_dir(dir.path());
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        run(&mut initdb, "initdb");
        let start = vec![
            postgres_bin("postgres").display().to_string(),
            "-D".into(),
            data.display().to_string(),
            "-k".into(),
            dir.path().display().to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            "fsync=off".into(),
        ];
        Self {
            engine: Engine::Postgres,
            port: 0,
            child: None,
            dir,
            start,
            run_as,
        }
    }

    /// The server's certificate and key (owned by the server's user, mode
    /// 0600 as PostgreSQL demands), TLS on, TCP logins over TLS only.
    fn postgres_tls_only(&mut self, cert: &Path, key: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let (server_cert, server_key) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::copy(cert, &server_cert).unwrap();
        std::fs::copy(key, &server_key).unwrap();
        std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = self.run_as {
            for file in [&server_cert, &server_key] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
        let hba = self.dir.path().join("data/pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        let tls_only: String = rules
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).unwrap();
        for setting in [
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", server_cert.display()),
            format!("ssl_key_file={}", server_key.display()),
        ] {
            self.start.push("-c".into());
            self.start.push(setting);
        }
    }

    fn fill_postgres(&self, rows: &[(&str, &str, Option<&str>)]) {
        self.psql(
            "postgres",
            &format!("CREATE ROLE perdition LOGIN PASSWORD '{DB_PASSWORD}'"),
        );
        self.psql(
            "postgres",
            "CREATE DATABASE \"dbPerdition\" OWNER perdition",
        );
        // Unquoted, as Perdition's makedb script writes it: PostgreSQL
        // folds the name to `tblperdition`.
        let mut sql = format!("SET ROLE perdition;\n{TABLE};\n");
        for (user, server, port) in rows {
            sql.push_str(&format!(
                "INSERT INTO tblPerdition VALUES ({}, {}, {});\n",
                literal(user),
                literal(server),
                port.map_or("NULL".into(), literal)
            ));
        }
        self.psql("dbPerdition", &sql);
    }

    fn psql(&self, database: &str, sql: &str) {
        let mut psql = Command::new(postgres_bin("psql"));
        psql.arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql]);
        run(&mut psql, "psql");
    }

    fn init_mariadb(dir: tempfile::TempDir, rows: &[(&str, &str, Option<&str>)]) -> Self {
        let data = dir.path().join("data");
        // A temporary folder of its own: MariaDB deletes the `#sql*` files
        // it finds in its tmpdir at start, another instance's included.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdout(Stdio::null());
        if root {
            install.arg("--user=root");
        }
        run(&mut install, "mariadb-install-db");
        let mut init = format!(
            "CREATE DATABASE dbPerdition;\nUSE dbPerdition;\n{};\n\
             CREATE USER 'perdition'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';\n\
             CREATE USER 'perdition'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';\n\
             GRANT SELECT ON dbPerdition.* TO 'perdition'@'127.0.0.1';\n\
             GRANT SELECT ON dbPerdition.* TO 'perdition'@'localhost';\n",
            TABLE.replace('"', "`")
        );
        for (user, server, port) in rows {
            init.push_str(&format!(
                "INSERT INTO tblPerdition VALUES ({}, {}, {});\n",
                literal(user),
                literal(server),
                port.map_or("NULL".into(), literal)
            ));
        }
        // Run by the server as it starts.
        let init_file = dir.path().join("init.sql");
        std::fs::write(&init_file, init).unwrap();
        let mut start = vec![
            "mariadbd".into(),
            "--no-defaults".into(),
            format!("--datadir={}", data.display()),
            format!("--tmpdir={}", tmp.display()),
            format!("--socket={}", dir.path().join("mysql.sock").display()),
            format!("--pid-file={}", dir.path().join("mysql.pid").display()),
            "--bind-address=127.0.0.1".into(),
            "--skip-log-bin".into(),
            "--innodb-buffer-pool-size=16M".into(),
            format!("--init-file={}", init_file.display()),
        ];
        if root {
            start.push("--user=root".into());
        }
        Self {
            engine: Engine::Mariadb,
            port: 0,
            child: None,
            dir,
            start,
            run_as: None,
        }
    }

    /// Starts the server process (on a fresh port if the last was taken).
    fn launch(&mut self) {
        for _attempt in 0..3 {
            let port = free_port();
            let mut command = Command::new(&self.start[0]);
            command.args(&self.start[1..]);
            match self.engine {
                Engine::Postgres => command.args(["-p", &port.to_string()]),
                Engine::Mariadb => command.arg(format!("--port={port}")),
            };
            command
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.path().join("server.log")).unwrap());
            if let Some((uid, gid)) = self.run_as {
                command.uid(uid).gid(gid);
            }
            let mut child = command.spawn().expect("start the database server");
            let started = Instant::now();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            while started.elapsed() < START_DEADLINE {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.port = port;
                    self.child = Some(child);
                    // Let the server finish its start-up statements.
                    std::thread::sleep(Duration::from_millis(300));
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{:?} did not start: {}", self.engine, self.log());
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// mailgate's `url` for this server (user `perdition`, no password).
    pub fn url(&self) -> String {
        match self.engine {
            Engine::Postgres => {
                format!("postgresql://perdition@127.0.0.1:{}/dbPerdition", self.port)
            }
            Engine::Mariadb => format!("mysql://perdition@127.0.0.1:{}/dbPerdition", self.port),
        }
    }

    /// Stops the server (the tests of a database that went away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stop();
    }
}
