//! The store: the only module that speaks SQL.
//!
//! Two concrete sqlx pools sit behind one [`Store`] (MySQL/MariaDB and SQLite) rather than sqlx's `Any` driver,
//! which cannot decode MySQL DATETIME. Almost every statement is written once in the SQL both dialects accept
//! (`?` placeholders, `CAST(x AS CHAR)` for timestamps) and run through [`on_conn!`], which expands the body for
//! each backend. Where the dialects differ, the statement is chosen per [`Backend`].
//!
//! All work happens in a [`Tx`]: a command that writes several rows commits once or not at all. The tables are
//! postfixadmin's (`domain`, `mailbox`, `alias`, `alias_domain`); mailctl's own tables carry a `mailctl_` prefix.

mod aliases;
mod app_passwords;
mod dkim_keys;
mod domains;
mod greylist;
mod mailboxes;
pub mod migrate;
mod queue;
mod relay_routes;
mod report_events;
mod reports;
mod send_limits;
mod srs_secrets;
mod vacation;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, MySql, Sqlite, Transaction};

pub use aliases::{AliasDomainRow, AliasRow};
pub use app_passwords::{AppPasswordRow, TotpExceptionRow};
pub use dkim_keys::DkimKeyRow;
pub use domains::{DomainRow, DomainUsage};
pub use mailboxes::MailboxRow;
pub use queue::{DueLocking, NewQueueRow, QueueLeaseRow, QueueRow, QueueUpdate, queue_retryable};
pub use relay_routes::RelayRouteRow;
pub use report_events::{ReportEventRow, SentReportRow};
pub use reports::{
    DmarcRecordRow, ReportRow, ReporterTotals, SourceTotals, TlsResultRow, TlsTotals,
};
pub use send_limits::{SendLimitRow, SendUsageRow};
pub use srs_secrets::SrsSecretRow;
pub use vacation::VacationRow;

use crate::error::{Error, Result};

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// MySQL or MariaDB, as used by postfixadmin.
    Mysql,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Mysql(MySqlPool),
}

/// A connection pool to the mail database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    url: String,
}

/// Facts about opening the store that the user should hear about.
#[derive(Debug, Default)]
pub struct Opened {
    /// The SQLite file that this run created.
    pub created_file: Option<PathBuf>,
    /// Migrations applied on this open.
    pub migrated: Vec<migrate::Applied>,
}

/// One database transaction. Dropping it without [`Tx::commit`] rolls everything back.
pub struct Tx {
    inner: TxInner,
    backend: Backend,
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Mysql(Transaction<'static, MySql>),
}

/// Runs `$body` with `$c` bound to the transaction's connection, once per backend.
macro_rules! on_conn {
    ($tx:expr, |$c:ident| $body:expr) => {
        match &mut $tx.inner {
            $crate::store::TxInner::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::store::TxInner::Mysql(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(crate) use on_conn;

/// Rows per multi-row statement: 500 rows of 11 columns stay far below SQLite's 32,766 and MySQL's 65,535
/// placeholders.
pub const MAX_ROWS: usize = 500;

/// `head` followed by `rows` groups of `columns` placeholders: `(?, ?), (?, ?)`.
fn insert_values(head: &str, columns: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let mut sql = String::with_capacity(head.len() + rows * (group.len() + 2));
    sql.push_str(head);
    sql.push_str(&vec![group.as_str(); rows].join(", "));
    sql
}

/// `head` followed by `(?, ?, ...)` with `n` placeholders.
fn select_in(head: &str, n: usize) -> String {
    format!("{head}({})", vec!["?"; n].join(", "))
}

impl Tx {
    /// Which of `values` (lower-case) `head` (`SELECT column FROM table WHERE column IN `) finds, lower-cased;
    /// asked [`MAX_ROWS`] at a time. `what` names the rows in errors.
    async fn existing(
        &mut self,
        head: &'static str,
        values: &[String],
        what: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for chunk in values.chunks(MAX_ROWS) {
            let sql = select_in(head, chunk.len());
            let rows: Vec<(String,)> = on_conn!(self, |c| {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
                for v in chunk {
                    q = q.bind(v);
                }
                q.fetch_all(&mut *c).await
            })
            .map_err(|e| Error::db(format!("reading {what}"), e))?;
            found.extend(rows.into_iter().map(|(v,)| v.to_lowercase()));
        }
        Ok(found)
    }
}

/// The context of a failed insert: `adding mailbox a@x` for one row, `adding 500 mailboxes (a@x, ...)` for more.
fn adding<'a>(
    one: &str,
    many: &str,
    mut names: impl ExactSizeIterator<Item = &'a String>,
) -> String {
    let n = names.len();
    let first = names.next().map_or("", |n| n.as_str());
    match n {
        1 => format!("adding {one} {first}"),
        n => format!("adding {n} {many} ({first}, ...)"),
    }
}

/// Hides the password in a database URL so it can appear in messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparseable: mask whatever stands between "user:" and "@" by hand.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(start), Some(at)) if at > start => {
                let userinfo = &url[start + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
                    None => url.to_string(),
                }
            }
            _ => url.to_string(),
        },
    }
}

/// The SQLite file a `sqlite:` URL points at, if it is a file.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let raw = rest.split('?').next().unwrap_or("");
    // sqlx percent-decodes the path; so must we, or we would create and report another file.
    let path = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

impl Store {
    /// Connects, and on first use creates the schema (pending migrations run automatically).
    pub async fn open(url: &str) -> Result<(Store, Opened)> {
        let (store, created_file) = Store::connect(url).await?;
        let migrated = store.migrate().await?;
        Ok((
            store,
            Opened {
                created_file,
                migrated,
            },
        ))
    }

    /// Connects without migrating (for `db status`). Returns the SQLite file created by this call, if any.
    pub async fn connect(url: &str) -> Result<(Store, Option<PathBuf>)> {
        let shown = redact_url(url);
        let unreachable = |e: sqlx::Error| Error::Unreachable {
            url: shown.clone(),
            reason: one_line(&e.to_string()),
        };
        let invalid = |why: String| {
            Error::usage(format!(
                "invalid database URL '{shown}': {}",
                one_line(&why)
            ))
        };
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| invalid(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            let path = sqlite_path(url);
            let created = match &path {
                Some(p) if !p.exists() => {
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|source| Error::File {
                            action: "cannot create database directory",
                            path: dir.to_path_buf(),
                            source,
                        })?;
                    }
                    // The database holds password hashes and DKIM private keys: owner-only from the start
                    // (SQLite gives its -wal and -shm files the same mode).
                    create_private(p).map_err(|source| Error::File {
                        action: "cannot create database file",
                        path: p.clone(),
                        source,
                    })?;
                    Some(p.clone())
                }
                _ => None,
            };
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            Ok((
                Store {
                    pool: Pool::Sqlite(pool),
                    url: url.to_string(),
                },
                created,
            ))
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let normalized = url.replacen("mariadb:", "mysql:", 1);
            let opts =
                MySqlConnectOptions::from_str(&normalized).map_err(|e| invalid(e.to_string()))?;
            if url::Url::parse(&normalized)
                .map(|u| u.path().trim_matches('/').is_empty())
                .unwrap_or(true)
            {
                return Err(invalid(
                    "no database name (expected mysql://user:pass@host:port/NAME)".into(),
                ));
            }
            // One direct attempt first: the pool would hide "connection refused" behind a generic timeout.
            match tokio::time::timeout(Duration::from_secs(10), opts.connect()).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(unreachable(e)),
                Err(_) => return Err(unreachable(sqlx::Error::PoolTimedOut)),
            }
            let pool = MySqlPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(unreachable)?;
            Ok((
                Store {
                    pool: Pool::Mysql(pool),
                    url: normalized,
                },
                None,
            ))
        } else {
            Err(invalid(
                "unsupported scheme (expected sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB)"
                    .into(),
            ))
        }
    }

    /// The dialect of this store.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Mysql(_) => Backend::Mysql,
        }
    }

    /// The URL this store was opened with (may contain a password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let err = |e| Error::db("starting a transaction", e);
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx {
                inner: TxInner::Sqlite(p.begin().await.map_err(err)?),
                backend: Backend::Sqlite,
            },
            Pool::Mysql(p) => Tx {
                inner: TxInner::Mysql(p.begin().await.map_err(err)?),
                backend: Backend::Mysql,
            },
        })
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// a concurrent writer makes it wait (busy timeout) instead of failing halfway with a stale snapshot.
    pub async fn begin_write(&self) -> Result<Tx> {
        let err = |e| Error::db("starting a transaction", e);
        match &self.pool {
            Pool::Sqlite(p) => Ok(Tx {
                inner: TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await.map_err(err)?),
                backend: Backend::Sqlite,
            }),
            Pool::Mysql(_) => self.begin().await,
        }
    }

    /// Closes the pool, waiting for connections to finish (keeps SQLite's WAL tidy).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
        }
    }
}

impl Tx {
    /// Makes every change of this transaction permanent.
    pub async fn commit(self) -> Result<()> {
        let err = |e| Error::db("committing", e);
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await.map_err(err),
            TxInner::Mysql(t) => t.commit().await.map_err(err),
        }
    }

    /// Discards every change of this transaction.
    pub async fn rollback(self) -> Result<()> {
        let err = |e| Error::db("rolling back", e);
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await.map_err(err),
            TxInner::Mysql(t) => t.rollback().await.map_err(err),
        }
    }

    /// The dialect of this transaction.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
