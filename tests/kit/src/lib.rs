//! The test kit of mailctl's integration tests (`tests/it`) and benches (`benches/`): everything they share,
//! compiled once.
//!
//! - [`TestDb`]: a throw-away database per test (a SQLite file, or a uniquely named MariaDB database created
//!   and dropped around the test) and the real `mailctl` binary run against it ([`Run`]).
//! - [`daemon::Daemon`]: the one launcher of `mailctl serve` (spawn, wait for `ready`, read the `listening NAME
//!   ADDR` lines, signal, kill, restart, the daemon's log captured in a file and quoted when a test fails);
//!   [`serve::TestServer`] is the standard single-node daemon built on it.
//! - [`dns::TestDns`]: an authoritative DNS server on loopback; [`smtp_client::SmtpClient`]: a raw SMTP client;
//!   [`http::get`]: a GET for the metrics endpoint;
//!   [`smtp`]: scripted SMTP and HTTPS peers and a throw-away CA for the audit and outbound tests.
//! - [`exclusive`]: the lock that keeps heavy or timing-sensitive tests from running alongside each other.
//!
//! MariaDB tests use the server of `MAILCTL_TEST_MYSQL_URL` (a URL without database, default
//! `mysql://root@127.0.0.1:3306`); when it cannot be reached they fail, naming it: a test that cannot run
//! never reports `ok`.

pub mod daemon;
pub mod dns;
pub mod http;
pub mod os;
pub mod serve;
pub mod smtp;
pub mod smtp_client;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// The MariaDB/MySQL server of the MariaDB tests when `MAILCTL_TEST_MYSQL_URL` is not set.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// The `mailctl` binary cargo built for this test or bench run: `target/PROFILE/mailctl`, beside the
/// `deps/` directory that holds the running test binary (cargo builds a package's binaries before its
/// integration tests and benches).
pub fn mailctl() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of the test binary");
        let profile_dir = exe
            .parent()
            .filter(|d| d.ends_with("deps"))
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("{} is not in a cargo deps directory", exe.display()));
        let bin = profile_dir.join("mailctl");
        assert!(
            bin.is_file(),
            "{} does not exist: run the tests with cargo, which builds it first",
            bin.display()
        );
        bin
    })
}

/// The server URL of the MariaDB tests: `MAILCTL_TEST_MYSQL_URL`, else [`DEFAULT_MYSQL_URL`].
pub fn mysql_server() -> String {
    std::env::var("MAILCTL_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MYSQL_URL.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Held by the tests that must not run alongside each other: kill loops, thousands of connections, memory and
/// timing measurements. Every such test takes it first thing (`let _heavy = kit::exclusive();`); a test that
/// panicked while holding it does not poison it for the others.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Which backend a test database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Mariadb,
}

/// A database that exists for one test, plus a private HOME and config file.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    pub dir: tempfile::TempDir,
    mysql: Option<(String, String)>,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code, that stderr is exactly one `error: ...` line, and that it contains `needle`.
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "wrong exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, got: {}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("error: "),
            "not an error line: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "error does not mention {needle:?}: {}",
            self.stderr
        );
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl TestDb {
    /// A fresh SQLite database file in a temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("mail.db").display());
        TestDb::finish(Kind::Sqlite, url, dir, None)
    }

    /// A fresh database on the MariaDB server of [`mysql_server`]; fails the test, naming the server, when
    /// it cannot be reached.
    pub fn mariadb() -> TestDb {
        let server = mysql_server();
        let name = format!(
            "mailctl_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        runtime().block_on(async {
            let mut conn = sqlx::MySqlConnection::connect(&server)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "MariaDB test: cannot connect to {server} ({e}); set MAILCTL_TEST_MYSQL_URL to a \
                         MariaDB/MySQL server URL without database"
                    )
                });
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
                .execute(&mut conn)
                .await
                .expect("create database");
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("{server}/{name}");
        TestDb::finish(Kind::Mariadb, url, dir, Some((server, name)))
    }

    fn finish(
        kind: Kind,
        url: String,
        dir: tempfile::TempDir,
        mysql: Option<(String, String)>,
    ) -> TestDb {
        std::fs::write(dir.path().join("mailctl.toml"), "").expect("config file");
        TestDb {
            kind,
            url,
            dir,
            mysql,
        }
    }

    /// Path inside the test's private directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `mailctl` command with this database and a private HOME/config, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(mailctl());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("MAILCTL_CONFIG", self.path("mailctl.toml"))
            .env("MAILCTL_DATABASE_URL", &self.url)
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs mailctl with empty stdin.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, "")
    }

    /// Runs mailctl with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        run_command(self.command(args), input)
    }

    /// Every row mailctl manages, as the JSON export; used to prove a failed command changed nothing.
    pub fn snapshot(&self) -> String {
        self.run(&["export", "--format", "json"]).ok().stdout
    }

    /// Runs raw SQL against the test database and returns every row's columns as strings.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::{Row, ValueRef};
        let url = self.url.clone();
        let sql = sql.to_string();
        runtime().block_on(async move {
            fn cell<R: Row>(row: &R, i: usize) -> Option<String>
            where
                usize: sqlx::ColumnIndex<R>,
                for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
                for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            {
                if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
                    return None;
                }
                row.try_get::<String, _>(i)
                    .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                    .or_else(|_| {
                        row.try_get::<Vec<u8>, _>(i)
                            .map(|v| String::from_utf8_lossy(&v).into_owned())
                    })
                    .ok()
            }
            match self.kind {
                Kind::Sqlite => {
                    use std::str::FromStr;
                    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                        .expect("sqlite url")
                        .create_if_missing(true);
                    let mut c = sqlx::SqliteConnection::connect_with(&opts)
                        .await
                        .expect("connect");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut c)
                        .await
                        .expect("query");
                    rows.iter()
                        .map(|r| (0..r.columns().len()).map(|i| cell(r, i)).collect())
                        .collect()
                }
                Kind::Mariadb => {
                    let mut c = sqlx::MySqlConnection::connect(&url).await.expect("connect");
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&mut c)
                        .await
                        .expect("query");
                    rows.iter()
                        .map(|r| (0..r.columns().len()).map(|i| cell(r, i)).collect())
                        .collect()
                }
            }
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.mysql.take() {
            runtime().block_on(async move {
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(&server).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS `{name}`"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        }
    }
}

/// Runs `cmd` with empty stdin, failing the test (after killing it) if it runs longer than `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{shown} {:?} still running after {timeout:?}; stderr so far:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs a prepared command, feeding `input` on stdin.
pub fn run_command(mut cmd: Command, input: &str) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn mailctl");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for mailctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the `openssl` command line (keys made by a second, independent implementation) and asserts success.
pub fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (installed by .ci/run)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// The repository root (for generated files): two levels above this crate's `tests/kit`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Defines each listed scenario `fn name(db: &TestDb)` as two tests: `sqlite::name` and `mariadb::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::TestDb::sqlite());
                }
            )*
        }
        mod mariadb {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::TestDb::mariadb());
                }
            )*
        }
    };
}
