//! Versioned schema migrations, one SQL file per version and backend.
//!
//! Applied versions are recorded in `mailctl_schema_migrations`. Version 1 creates postfixadmin's tables with
//! `IF NOT EXISTS`, so pointed at an existing postfixadmin database it adds only mailctl's own tables and never
//! alters or drops postfixadmin's. After migrating, the columns mailctl uses are checked to exist, so an old
//! postfixadmin schema is reported plainly instead of failing later in some query.

use sqlx::{Connection, Executor};

use super::{Pool, Store, on_conn};
use crate::error::{Error, Result};

/// One schema version.
pub struct Migration {
    /// Monotonic version number.
    pub version: i64,
    /// What it does, shown by `db status`.
    pub description: &'static str,
    sqlite: &'static str,
    mysql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "postfixadmin tables (domain, mailbox, alias, alias_domain)",
        sqlite: include_str!("migrations/sqlite/0001_postfixadmin.sql"),
        mysql: include_str!("migrations/mysql/0001_postfixadmin.sql"),
    },
    Migration {
        version: 2,
        description: "DKIM keys (mailctl_dkim_keys)",
        sqlite: include_str!("migrations/sqlite/0002_dkim_keys.sql"),
        mysql: include_str!("migrations/mysql/0002_dkim_keys.sql"),
    },
    Migration {
        version: 3,
        description: "outbound queue (mailctl_queue, mailctl_queue_bodies)",
        sqlite: include_str!("migrations/sqlite/0003_queue.sql"),
        mysql: include_str!("migrations/mysql/0003_queue.sql"),
    },
    Migration {
        version: 4,
        description: "relay routes per sender domain (mailctl_relay_routes)",
        sqlite: include_str!("migrations/sqlite/0004_relay_routes.sql"),
        mysql: include_str!("migrations/mysql/0004_relay_routes.sql"),
    },
    Migration {
        version: 5,
        description: "SRS secrets for forwarded mail (mailctl_srs_secrets)",
        sqlite: include_str!("migrations/sqlite/0005_srs_secrets.sql"),
        mysql: include_str!("migrations/mysql/0005_srs_secrets.sql"),
    },
    Migration {
        version: 6,
        description: "DMARC and TLS reports received (mailctl_reports, mailctl_report_dmarc, mailctl_report_tls)",
        sqlite: include_str!("migrations/sqlite/0006_reports.sql"),
        mysql: include_str!("migrations/mysql/0006_reports.sql"),
    },
    Migration {
        version: 7,
        description: "reports to send (mailctl_report_events, mailctl_reports_sent)",
        sqlite: include_str!("migrations/sqlite/0007_reports_out.sql"),
        mysql: include_str!("migrations/mysql/0007_reports_out.sql"),
    },
    Migration {
        version: 8,
        description: "sending limits (mailctl_send_limits, mailctl_send_usage, mailctl_send_recipients)",
        sqlite: include_str!("migrations/sqlite/0008_send_limits.sql"),
        mysql: include_str!("migrations/mysql/0008_send_limits.sql"),
    },
    Migration {
        version: 9,
        description: "greylisting (mailctl_greylist, mailctl_greylist_networks)",
        sqlite: include_str!("migrations/sqlite/0009_greylist.sql"),
        mysql: include_str!("migrations/mysql/0009_greylist.sql"),
    },
    Migration {
        version: 10,
        description: "app passwords and the TOTP rule (postfixadmin's mailbox_app_password, totp_exception_address, \
                      mailbox.totp_secret)",
        sqlite: include_str!("migrations/sqlite/0010_app_passwords.sql"),
        mysql: include_str!("migrations/mysql/0010_app_passwords.sql"),
    },
    Migration {
        version: 11,
        description: "vacation auto-replies (postfixadmin's vacation, vacation_notification)",
        sqlite: include_str!("migrations/sqlite/0011_vacation.sql"),
        mysql: include_str!("migrations/mysql/0011_vacation.sql"),
    },
];

/// Columns a migration adds to postfixadmin's tables when they are missing (neither SQLite nor MySQL has
/// `ADD COLUMN IF NOT EXISTS`): the version that adds it, the table, the column and its definition.
const ADD_COLUMNS: &[(i64, &str, &str, &str)] =
    &[(10, "mailbox", "totp_secret", "varchar(255) DEFAULT NULL")];

/// The probe failed because the column is not there (SQLite's "no such column", MySQL's 1054 / SQLSTATE
/// 42S22), not for some other reason (a lock, a permission), which must stop the migration instead.
fn missing_column(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42S22") || db.message().contains("no such column")
        }
        _ => false,
    }
}

/// `ADD_COLUMNS` of `version`: the probe that fails when the column is missing, and the `ALTER TABLE` that
/// adds it.
fn added_columns(version: i64) -> impl Iterator<Item = (String, String)> {
    ADD_COLUMNS
        .iter()
        .filter(move |c| c.0 == version)
        .map(|(_, table, column, definition)| {
            (
                format!("SELECT {column} FROM {table} WHERE 1 = 0"),
                format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"),
            )
        })
}

/// A migration that has been applied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// Its version.
    pub version: i64,
    /// Its description.
    pub description: String,
    /// When (RFC 3339 UTC).
    pub applied_at: String,
}

/// What `db status` reports about the schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Highest applied version (0 for a database mailctl has never touched).
    pub current_version: i64,
    /// Highest version this build knows.
    pub latest_version: i64,
    /// Applied migrations.
    pub applied: Vec<Applied>,
    /// Versions not yet applied.
    pub pending: Vec<i64>,
}

const VERSION_TABLE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS mailctl_schema_migrations (\
     version bigint NOT NULL PRIMARY KEY, description varchar(255) NOT NULL, applied_at datetime NOT NULL)";
const VERSION_TABLE_MYSQL: &str = "CREATE TABLE IF NOT EXISTS mailctl_schema_migrations (\
     version bigint NOT NULL PRIMARY KEY, description varchar(255) NOT NULL, applied_at datetime NOT NULL) \
     ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
const READ_VERSIONS: &str = "SELECT version, description, CAST(applied_at AS CHAR) FROM mailctl_schema_migrations \
     ORDER BY version";
const RECORD_VERSION: &str =
    "INSERT INTO mailctl_schema_migrations (version, description, applied_at) VALUES (?, ?, ?)";

/// The columns mailctl reads and writes, per postfixadmin table.
const REQUIRED_COLUMNS: &[(&str, &str)] = &[
    (
        "domain",
        "domain, description, aliases, mailboxes, maxquota, quota, transport, backupmx, created, modified, active",
    ),
    (
        "mailbox",
        "username, password, name, maildir, quota, local_part, domain, created, modified, active, smtp_active",
    ),
    ("alias", "address, goto, domain, created, modified, active"),
    (
        "alias_domain",
        "alias_domain, target_domain, created, modified, active",
    ),
];

fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    sql.split(";\n").filter_map(|s| {
        let body: String = s
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let body = body.trim().trim_end_matches(';').trim().to_string();
        (!body.is_empty()).then_some(body)
    })
}

/// SQLite cannot declare indexes inside CREATE TABLE, so migrations add them separately; on a table that existed
/// before mailctl (an adopted postfixadmin database) that would alter postfixadmin's schema, so it is skipped.
fn indexes_foreign_table(stmt: &str, existing: &[String]) -> bool {
    if !stmt.starts_with("CREATE INDEX") {
        return false;
    }
    let table = stmt
        .split_once(" ON ")
        .map(|(_, rest)| rest.split(['(', ' ']).next().unwrap_or("").trim());
    table.is_some_and(|t| !t.starts_with("mailctl_") && existing.iter().any(|e| e == t))
}

fn to_applied(rows: Vec<(i64, String, String)>) -> Vec<Applied> {
    rows.into_iter()
        .map(|(version, description, at)| Applied {
            version,
            description,
            applied_at: crate::time::db_to_rfc3339(&at),
        })
        .collect()
}

impl Store {
    /// Applies every pending migration and returns what was applied.
    pub async fn migrate(&self) -> Result<Vec<Applied>> {
        let err = |e| Error::db("migrating the schema", e);
        let now = crate::time::now_db();
        let mut done = Vec::new();
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await.map_err(err)?;
                conn.execute(VERSION_TABLE_SQLITE).await.map_err(err)?;
                // DDL is transactional in SQLite: each version applies completely or not at all.
                let mut tx = conn.begin().await.map_err(err)?;
                let have: Vec<(i64, String, String)> = sqlx::query_as(READ_VERSIONS)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
                let existing: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(err)?;
                let existing: Vec<String> = existing.into_iter().map(|t| t.0).collect();
                for m in MIGRATIONS
                    .iter()
                    .filter(|m| have.iter().all(|h| h.0 != m.version))
                {
                    for stmt in
                        statements(m.sqlite).filter(|s| !indexes_foreign_table(s, &existing))
                    {
                        tx.execute(sqlx::AssertSqlSafe(stmt)).await.map_err(err)?;
                    }
                    for (probe, alter) in added_columns(m.version) {
                        match sqlx::query(sqlx::AssertSqlSafe(probe))
                            .fetch_optional(&mut *tx)
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if missing_column(&e) => {
                                tx.execute(sqlx::AssertSqlSafe(alter)).await.map_err(err)?;
                            }
                            Err(e) => return Err(err(e)),
                        }
                    }
                    sqlx::query(RECORD_VERSION)
                        .bind(m.version)
                        .bind(m.description)
                        .bind(&now)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                    done.push(m);
                }
                tx.commit().await.map_err(err)?;
            }
            Pool::Mysql(pool) => {
                let mut conn = pool.acquire().await.map_err(err)?;
                conn.execute(VERSION_TABLE_MYSQL).await.map_err(err)?;
                // MySQL DDL commits implicitly; a named lock keeps two processes from migrating at once.
                let (locked,): (Option<i64>,) =
                    sqlx::query_as("SELECT GET_LOCK('mailctl_migrate', 30)")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(err)?;
                if locked != Some(1) {
                    return Err(Error::refused(
                        "another mailctl is migrating this database; try again in a minute",
                    ));
                }
                let result: Result<()> = async {
                    let have: Vec<(i64, String, String)> = sqlx::query_as(READ_VERSIONS)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(err)?;
                    for m in MIGRATIONS
                        .iter()
                        .filter(|m| have.iter().all(|h| h.0 != m.version))
                    {
                        for stmt in statements(m.mysql) {
                            conn.execute(sqlx::AssertSqlSafe(stmt)).await.map_err(err)?;
                        }
                        for (probe, alter) in added_columns(m.version) {
                            match sqlx::query(sqlx::AssertSqlSafe(probe))
                                .fetch_optional(&mut *conn)
                                .await
                            {
                                Ok(_) => {}
                                Err(e) if missing_column(&e) => {
                                    conn.execute(sqlx::AssertSqlSafe(alter))
                                        .await
                                        .map_err(err)?;
                                }
                                Err(e) => return Err(err(e)),
                            }
                        }
                        sqlx::query(RECORD_VERSION)
                            .bind(m.version)
                            .bind(m.description)
                            .bind(&now)
                            .execute(&mut *conn)
                            .await
                            .map_err(err)?;
                        done.push(m);
                    }
                    Ok(())
                }
                .await;
                let _ = sqlx::query("SELECT RELEASE_LOCK('mailctl_migrate')")
                    .execute(&mut *conn)
                    .await;
                result?;
            }
        }
        self.check_postfixadmin_columns().await?;
        Ok(done
            .into_iter()
            .map(|m| Applied {
                version: m.version,
                description: m.description.to_string(),
                applied_at: crate::time::db_to_rfc3339(&now),
            })
            .collect())
    }

    /// Reports applied and pending versions without changing anything.
    pub async fn migration_status(&self) -> Result<Status> {
        let mut tx = self.begin().await?;
        let exists_sql = match tx.backend() {
            super::Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'mailctl_schema_migrations'"
            }
            super::Backend::Mysql => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() \
                 AND table_name = 'mailctl_schema_migrations'"
            }
        };
        let err = |e| Error::db("reading the schema version", e);
        let (exists,): (i64,) =
            on_conn!(tx, |c| sqlx::query_as(exists_sql).fetch_one(&mut *c).await).map_err(err)?;
        let rows: Vec<(i64, String, String)> = if exists > 0 {
            on_conn!(tx, |c| sqlx::query_as(READ_VERSIONS)
                .fetch_all(&mut *c)
                .await)
            .map_err(err)?
        } else {
            Vec::new()
        };
        let applied = to_applied(rows);
        let pending = MIGRATIONS
            .iter()
            .map(|m| m.version)
            .filter(|v| applied.iter().all(|a| a.version != *v))
            .collect();
        Ok(Status {
            current_version: applied.iter().map(|a| a.version).max().unwrap_or(0),
            latest_version: MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0),
            applied,
            pending,
        })
    }

    async fn check_postfixadmin_columns(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        for (table, columns) in REQUIRED_COLUMNS {
            let sql = format!("SELECT {columns} FROM {table} WHERE 1 = 0");
            let probe = on_conn!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .fetch_optional(&mut *c)
                .await
                .map(|_| ()));
            if let Err(e) = probe {
                if crate::error::is_connection_error(&e) {
                    return Err(Error::db(format!("checking table {table}"), e));
                }
                return Err(Error::refused(format!(
                    "table {table} lacks columns mailctl needs ({columns}); is this an older postfixadmin \
                     schema? upgrade it with postfixadmin's setup.php first"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_on_adopted_tables_are_skipped() {
        let existing = vec!["mailbox".to_string()];
        assert!(indexes_foreign_table(
            "CREATE INDEX IF NOT EXISTS m ON mailbox (domain)",
            &existing
        ));
        assert!(!indexes_foreign_table(
            "CREATE INDEX IF NOT EXISTS a ON alias (domain)",
            &existing
        ));
        assert!(!indexes_foreign_table(
            "CREATE TABLE IF NOT EXISTS mailbox (x int)",
            &existing
        ));
    }

    #[test]
    fn migration_files_split_into_statements() {
        for m in MIGRATIONS {
            let s: Vec<_> = statements(m.sqlite).collect();
            assert!(s.iter().all(|st| st.starts_with("CREATE")), "{s:?}");
            assert!(statements(m.mysql).all(|st| st.starts_with("CREATE")));
        }
    }
}
