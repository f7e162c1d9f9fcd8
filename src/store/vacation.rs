//! postfixadmin's vacation tables: a mailbox's auto-reply (`vacation`) and whom it has answered when
//! (`vacation_notification`), as its `vacation.pl` reads and writes them, so `serve` and a postfixadmin sharing
//! the database agree on who is away and who was told.

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// A `vacation` row. Times are `YYYY-MM-DD HH:MM:SS` UTC.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct VacationRow {
    /// The mailbox that is away.
    pub email: String,
    /// The reply's subject.
    pub subject: String,
    /// The reply's text.
    pub body: String,
    /// Replies start at this time.
    pub activefrom: String,
    /// And end at this one.
    pub activeuntil: String,
    /// Seconds before the same sender hears it again; 0: once per vacation.
    pub interval_time: i64,
    /// Switched on.
    pub active: bool,
}

const SELECT: &str = "SELECT email, subject, body, CAST(activefrom AS CHAR) AS activefrom, \
                      CAST(activeuntil AS CHAR) AS activeuntil, interval_time, active FROM vacation";

impl Tx {
    /// The vacation row of `email`, on or off.
    pub async fn vacation(&mut self, email: &str) -> Result<Option<VacationRow>> {
        let sql = format!("{SELECT} WHERE email = ?");
        on_conn!(self, |c| sqlx::query_as::<_, VacationRow>(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(email)
        .fetch_optional(&mut *c)
        .await)
        .map_err(|e| Error::db(format!("reading the vacation of {email}"), e))
    }

    /// The vacation of `email` that is on at `now` (a db time), if any.
    pub async fn vacation_now(&mut self, email: &str, now: &str) -> Result<Option<VacationRow>> {
        let sql = format!(
            "{SELECT} WHERE email = ? AND active = 1 AND activefrom <= ? AND activeuntil >= ?"
        );
        on_conn!(self, |c| sqlx::query_as::<_, VacationRow>(
            sqlx::AssertSqlSafe(sql.as_str())
        )
        .bind(email)
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *c)
        .await)
        .map_err(|e| Error::db(format!("reading the vacation of {email}"), e))
    }

    /// Every mailbox whose vacation is on and has not ended at `now` (a db time); one that has not begun yet
    /// is included (the reply itself checks the start).
    pub async fn away_mailboxes(&mut self, now: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT email FROM vacation WHERE active = 1 AND activeuntil >= ?"
        )
        .bind(now)
        .fetch_all(&mut *c)
        .await)
        .map_err(|e| Error::db("reading who is on vacation", e))?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Stores `row` (replacing an earlier one) and forgets whom the earlier vacation answered, as
    /// postfixadmin does when a vacation is set: the new one answers everybody once again.
    pub async fn set_vacation(&mut self, row: &VacationRow, domain: &str) -> Result<()> {
        let err = |e| Error::db(format!("setting the vacation of {}", row.email), e);
        let now = crate::time::now_db();
        for sql in [
            "DELETE FROM vacation_notification WHERE on_vacation = ?",
            "DELETE FROM vacation WHERE email = ?",
        ] {
            on_conn!(self, |c| sqlx::query(sql)
                .bind(&row.email)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(err)?;
        }
        let sql = "INSERT INTO vacation (email, subject, body, activefrom, activeuntil, cache, domain, \
                   interval_time, created, modified, active) VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&row.email)
            .bind(&row.subject)
            .bind(&row.body)
            .bind(&row.activefrom)
            .bind(&row.activeuntil)
            .bind(domain)
            .bind(row.interval_time)
            .bind(&now)
            .bind(&now)
            .bind(row.active)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(err)?;
        Ok(())
    }

    /// Switches `email`'s vacation off and forgets whom it answered; false when it had none.
    pub async fn vacation_off(&mut self, email: &str) -> Result<bool> {
        let err = |e| Error::db(format!("switching off the vacation of {email}"), e);
        on_conn!(self, |c| sqlx::query(
            "DELETE FROM vacation_notification WHERE on_vacation = ?"
        )
        .bind(email)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err)?;
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE vacation SET active = 0, modified = ? WHERE email = ?"
        )
        .bind(crate::time::now_db())
        .bind(email)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err)?;
        Ok(n > 0)
    }

    /// Whether `on_vacation` would answer `sender` at `now` (a read: the caller then claims it with
    /// [`Tx::vacation_notify`]).
    pub async fn vacation_due(
        &mut self,
        on_vacation: &str,
        sender: &str,
        interval: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        let last: Option<(String,)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT CAST(notified_at AS CHAR) FROM vacation_notification WHERE on_vacation = ? AND notified = ?"
        )
        .bind(on_vacation)
        .bind(sender)
        .fetch_optional(&mut *c)
        .await)
        .map_err(|e| Error::db(format!("reading the vacation replies of {on_vacation}"), e))?;
        Ok(match last {
            None => true,
            Some(_) if interval <= 0 => false,
            Some((at,)) => {
                crate::time::parse_db(&at).is_none_or(|at| (now - at).num_seconds() >= interval)
            }
        })
    }

    /// Claims the reply of `on_vacation` to `sender` at `now`: records it unless it was sent too recently
    /// (with `interval` 0 once per vacation, else once per `interval` seconds). True when this caller is to
    /// send it; of two nodes or sessions claiming at once, exactly one gets true.
    pub async fn vacation_notify(
        &mut self,
        on_vacation: &str,
        sender: &str,
        interval: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool> {
        let err = |e| Error::db(format!("recording the vacation reply of {on_vacation}"), e);
        let stamp = crate::time::to_db(now);
        let insert = match self.backend() {
            super::Backend::Sqlite => {
                "INSERT OR IGNORE INTO vacation_notification (notified_at, on_vacation, notified) VALUES (?, ?, ?)"
            }
            super::Backend::Mysql => {
                "INSERT IGNORE INTO vacation_notification (notified_at, on_vacation, notified) VALUES (?, ?, ?)"
            }
        };
        let inserted = on_conn!(self, |c| sqlx::query(insert)
            .bind(&stamp)
            .bind(on_vacation)
            .bind(sender)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(err)?;
        if inserted > 0 {
            return Ok(true);
        }
        if interval <= 0 {
            return Ok(false);
        }
        // Told before: again only once the interval has passed, and only by the one whose update lands.
        let due_before = crate::time::to_db(now - chrono::TimeDelta::seconds(interval));
        let updated = on_conn!(self, |c| sqlx::query(
            "UPDATE vacation_notification SET notified_at = ? WHERE on_vacation = ? AND notified = ? \
             AND notified_at <= ?"
        )
        .bind(&stamp)
        .bind(on_vacation)
        .bind(sender)
        .bind(&due_before)
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err)?;
        Ok(updated > 0)
    }
}
