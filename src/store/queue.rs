//! `mailctl_queue` and `mailctl_queue_bodies`: the outbound queue when `[server.queue] backend = "database"`
//! (the rules live in `crate::smtp::queue::database`; this file only speaks SQL).
//!
//! Every change to a row runs in a transaction from [`Store::begin_queue`] that first locks the row
//! ([`Tx::queue_lock`], `SELECT ... FOR UPDATE` on MySQL; SQLite's `BEGIN IMMEDIATE` locks the whole file), so
//! a read-modify-write of the record never loses an update and a lease check is still true when the write
//! lands. MySQL transactions here run at READ COMMITTED: the due scan then takes no gap locks, which would
//! otherwise block enqueues and make two claiming nodes deadlock on each other's index gaps.
//!
//! Times are bound as `YYYY-MM-DD HH:MM:SS.ffffff` UTC text: MySQL converts it for its `datetime(6)` columns,
//! and in SQLite the fixed-width text compares in time order.

use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::{Executor, Transaction};

use super::{Pool, Store, Tx, TxInner, on_conn};
use crate::error::{Error, Result};

/// Bytes per row of `mailctl_queue_bodies`: far below any MySQL `max_allowed_packet` default, so a message
/// of any accepted size can be stored and read back.
const CHUNK: usize = 512 * 1024;
/// Timestamp format of the queue's time columns.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
/// Read format (MySQL returns `datetime(6)` with six digits; accept any).
const TIME_PARSE: &str = "%Y-%m-%d %H:%M:%S%.f";

/// The lease columns of a queue row: which node delivers the message, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLeaseRow {
    /// The holder (queue handle) that claimed the row.
    pub holder: String,
    /// Which claim of that holder.
    pub claim: i64,
    /// The holder's process id, for `queue list`.
    pub pid: i64,
    /// When the lease runs out.
    pub expires: DateTime<Utc>,
}

/// A queue row as the backend reads it: the id, the record (the entry as JSON) and the lease if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    /// The queue id (24 hex digits).
    pub id: String,
    /// The entry as JSON.
    pub record: String,
    /// The lease columns, when set (they may name an expired lease).
    pub lease: Option<QueueLeaseRow>,
}

/// A new queue row.
#[derive(Debug, Clone, Copy)]
pub struct NewQueueRow<'a> {
    /// The queue id.
    pub id: &'a str,
    /// The envelope sender (copied from the record for people reading the table).
    pub sender: &'a str,
    /// When the message was queued.
    pub created: DateTime<Utc>,
    /// Message size in bytes.
    pub size: u64,
    /// The entry as JSON.
    pub record: &'a str,
    /// When a delivery run has work on it (see the migration).
    pub next_attempt: DateTime<Utc>,
}

/// The changeable columns of a locked row, written back by [`Tx::queue_update`].
#[derive(Debug, Clone, Copy)]
pub struct QueueUpdate<'a> {
    /// The entry as JSON.
    pub record: &'a str,
    /// Held by an admin.
    pub hold: bool,
    /// When a delivery run looks at the row next.
    pub next_attempt: DateTime<Utc>,
    /// The lease, or `None` to clear it.
    pub lease: Option<&'a QueueLeaseRow>,
}

/// How [`Tx::queue_lock_due`] treats rows another transaction has locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueLocking {
    /// `FOR UPDATE SKIP LOCKED` (MariaDB 10.6+, MySQL 8.0+): passes over rows another node is claiming.
    SkipLocked,
    /// Plain `FOR UPDATE` (older servers): waits for them instead; still correct, only slower under load.
    Wait,
}

macro_rules! select_row {
    () => {
        "SELECT id, record, lease_holder, lease_claim, lease_pid, CAST(lease_expires AS CHAR) AS lease_expires \
         FROM mailctl_queue"
    };
}

macro_rules! due {
    () => {
        " WHERE hold = 0 AND next_attempt <= ? AND (lease_expires IS NULL OR lease_expires <= ?) \
         ORDER BY next_attempt, id LIMIT ?"
    };
}

type RawRow = (
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// A time as the queue columns store it; clamped to what a MySQL `datetime` holds.
fn db_time(t: DateTime<Utc>) -> String {
    let max = NaiveDateTime::parse_from_str("9999-12-31 23:59:59", "%Y-%m-%d %H:%M:%S")
        .map(|n| n.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    t.clamp(DateTime::UNIX_EPOCH, max)
        .format(TIME_FORMAT)
        .to_string()
}

/// A stored time; an unreadable one (outside damage) reads as long past, so a lease carrying it has expired.
fn parse_time(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s.trim(), TIME_PARSE)
        .map(|n| n.and_utc())
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn to_row((id, record, holder, claim, pid, expires): RawRow) -> QueueRow {
    let lease = match (holder, claim, pid, expires) {
        (Some(holder), Some(claim), Some(pid), Some(expires)) => Some(QueueLeaseRow {
            holder,
            claim,
            pid,
            expires: parse_time(&expires),
        }),
        _ => None,
    };
    QueueRow { id, record, lease }
}

/// True when a queue statement failed only because of lock contention (a deadlock, a lock wait timeout, a
/// Galera certification conflict, SQLite busy): the transaction was rolled back and may simply be run again.
pub fn queue_retryable(err: &Error) -> bool {
    let Error::Database { source, .. } = err else {
        return false;
    };
    let Some(db) = source.as_database_error() else {
        return false;
    };
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 1213 deadlock (also Galera's certification failure), 1205 lock wait timeout.
        return matches!(my.number(), 1213 | 1205);
    }
    // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6), with or without extended codes.
    db.code()
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

impl Store {
    /// Starts a queue transaction: READ COMMITTED on MySQL (row locks, no gap locks), `BEGIN IMMEDIATE` on
    /// SQLite (the write lock up front).
    pub async fn begin_queue(&self) -> Result<Tx> {
        let err = |e| Error::db("starting a queue transaction", e);
        match &self.pool {
            Pool::Sqlite(_) => self.begin_write().await,
            Pool::Mysql(p) => {
                let mut conn = p.acquire().await.map_err(err)?;
                // Applies to the next transaction on this connection only.
                conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map_err(err)?;
                let tx = Transaction::begin(conn, None).await.map_err(err)?;
                Ok(Tx {
                    inner: TxInner::Mysql(tx),
                    backend: super::Backend::Mysql,
                })
            }
        }
    }

    /// How the due scan can lock on this server: `SKIP LOCKED` needs MariaDB 10.6 or MySQL 8.0; SQLite
    /// (one writer at a time) needs neither and reports [`DueLocking::Wait`].
    pub async fn queue_due_locking(&self) -> Result<DueLocking> {
        let Pool::Mysql(pool) = &self.pool else {
            return Ok(DueLocking::Wait);
        };
        let (version,): (String,) = sqlx::query_as("SELECT VERSION()")
            .fetch_one(pool)
            .await
            .map_err(|e| Error::db("reading the server version", e))?;
        Ok(if skip_locked_supported(&version) {
            DueLocking::SkipLocked
        } else {
            DueLocking::Wait
        })
    }
}

/// True for `VERSION()` strings of servers that know `SKIP LOCKED`.
fn skip_locked_supported(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if version.to_ascii_lowercase().contains("mariadb") {
        (major, minor) >= (10, 6)
    } else {
        major >= 8
    }
}

impl Tx {
    /// Inserts a new row and its body. Returns false (and writes nothing) when the id is taken.
    pub async fn queue_insert(&mut self, row: &NewQueueRow<'_>, body: &[u8]) -> Result<bool> {
        let sql = "INSERT INTO mailctl_queue (id, sender, created, size, hold, next_attempt, record) \
                   VALUES (?, ?, ?, ?, 0, ?, ?)";
        let size = i64::try_from(row.size).unwrap_or(i64::MAX);
        let inserted = on_conn!(self, |c| sqlx::query(sql)
            .bind(row.id)
            .bind(row.sender)
            .bind(db_time(row.created))
            .bind(size)
            .bind(db_time(row.next_attempt))
            .bind(row.record)
            .execute(&mut *c)
            .await
            .map(|_| ()));
        match inserted {
            Ok(()) => {}
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(Error::db(format!("queueing message {}", row.id), e)),
        }
        let sql = "INSERT INTO mailctl_queue_bodies (id, seq, chunk) VALUES (?, ?, ?)";
        // At least one chunk, so "no chunk" always means "no such message".
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![body]
        } else {
            body.chunks(CHUNK).collect()
        };
        for (seq, chunk) in (0i64..).zip(chunks) {
            on_conn!(self, |c| sqlx::query(sql)
                .bind(row.id)
                .bind(seq)
                .bind(chunk)
                .execute(&mut *c)
                .await
                .map(|_| ()))
            .map_err(|e| Error::db(format!("storing the body of queued message {}", row.id), e))?;
        }
        Ok(true)
    }

    /// Locks and returns up to `limit` due rows: not held, `next_attempt <= now`, no live lease; most overdue
    /// first. Rows stay locked until the transaction ends.
    pub async fn queue_lock_due(
        &mut self,
        now: DateTime<Utc>,
        limit: usize,
        locking: DueLocking,
    ) -> Result<Vec<QueueRow>> {
        let sql = match (self.backend, locking) {
            (super::Backend::Sqlite, _) => concat!(select_row!(), due!()),
            (super::Backend::Mysql, DueLocking::SkipLocked) => {
                concat!(select_row!(), due!(), " FOR UPDATE SKIP LOCKED")
            }
            (super::Backend::Mysql, DueLocking::Wait) => {
                concat!(select_row!(), due!(), " FOR UPDATE")
            }
        };
        let now = db_time(now);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<RawRow> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(&now)
            .bind(&now)
            .bind(limit)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("claiming due queue entries", e))?;
        Ok(rows.into_iter().map(to_row).collect())
    }

    /// Locks one row for a read-modify-write; `None` when it does not exist.
    pub async fn queue_lock(&mut self, id: &str) -> Result<Option<QueueRow>> {
        let sql = match self.backend {
            super::Backend::Sqlite => concat!(select_row!(), " WHERE id = ?"),
            super::Backend::Mysql => concat!(select_row!(), " WHERE id = ? FOR UPDATE"),
        };
        let row: Option<RawRow> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("locking queue entry {id}"), e))?;
        Ok(row.map(to_row))
    }

    /// Reads one row without locking it (`queue show`).
    pub async fn queue_row(&mut self, id: &str) -> Result<Option<QueueRow>> {
        let sql = concat!(select_row!(), " WHERE id = ?");
        let row: Option<RawRow> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading queue entry {id}"), e))?;
        Ok(row.map(to_row))
    }

    /// Every row, oldest first (ids sort by queue time).
    pub async fn queue_rows(&mut self) -> Result<Vec<QueueRow>> {
        let sql = concat!(select_row!(), " ORDER BY id");
        let rows: Vec<RawRow> = on_conn!(self, |c| sqlx::query_as(sql).fetch_all(&mut *c).await)
            .map_err(|e| Error::db("listing the queue", e))?;
        Ok(rows.into_iter().map(to_row).collect())
    }

    /// Every queue id, oldest first.
    pub async fn queue_ids(&mut self) -> Result<Vec<String>> {
        let sql = "SELECT id FROM mailctl_queue ORDER BY id";
        let rows: Vec<(String,)> = on_conn!(self, |c| sqlx::query_as(sql).fetch_all(&mut *c).await)
            .map_err(|e| Error::db("listing the queue", e))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Writes back a row locked by [`Tx::queue_lock`] or [`Tx::queue_lock_due`].
    pub async fn queue_update(&mut self, id: &str, update: &QueueUpdate<'_>) -> Result<()> {
        let sql = "UPDATE mailctl_queue SET record = ?, hold = ?, next_attempt = ?, lease_holder = ?, \
                   lease_claim = ?, lease_pid = ?, lease_expires = ? WHERE id = ?";
        let lease = update.lease;
        on_conn!(self, |c| sqlx::query(sql)
            .bind(update.record)
            .bind(i64::from(update.hold))
            .bind(db_time(update.next_attempt))
            .bind(lease.map(|l| l.holder.as_str()))
            .bind(lease.map(|l| l.claim))
            .bind(lease.map(|l| l.pid))
            .bind(lease.map(|l| db_time(l.expires)))
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ()))
        .map_err(|e| Error::db(format!("updating queue entry {id}"), e))
    }

    /// Removes a row and its body; false when it did not exist.
    pub async fn queue_delete(&mut self, id: &str) -> Result<bool> {
        let err = |e| Error::db(format!("removing queue entry {id}"), e);
        let sql = "DELETE FROM mailctl_queue_bodies WHERE id = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ()))
        .map_err(err)?;
        let sql = "DELETE FROM mailctl_queue WHERE id = ?";
        let removed = on_conn!(self, |c| sqlx::query(sql)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(err)?;
        Ok(removed > 0)
    }

    /// The message bytes of a row, reassembled; `None` when there are none.
    pub async fn queue_body(&mut self, id: &str) -> Result<Option<Vec<u8>>> {
        let sql = "SELECT chunk FROM mailctl_queue_bodies WHERE id = ? ORDER BY seq";
        let chunks: Vec<(Vec<u8>,)> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(id)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading the body of queued message {id}"), e))?;
        if chunks.is_empty() {
            return Ok(None);
        }
        Ok(Some(chunks.into_iter().flat_map(|c| c.0).collect()))
    }
}

#[cfg(test)]
mod tests;
