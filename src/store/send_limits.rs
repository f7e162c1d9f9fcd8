//! `mailctl_send_limits`, `mailctl_send_usage`, `mailctl_send_recipients`: the sending limits of logged-in
//! users and what they sent, shared by every node on the database ([`crate::provision::limits`]).

use sqlx::FromRow;

use super::{Backend, Tx, on_conn};
use crate::error::{Error, Result};

/// The limits of one scope: `default`, a domain or an address; `None`: no limit of that kind here.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SendLimitRow {
    /// `default`, `example.org` or `alice@example.org`.
    pub scope: String,
    /// Messages a sender may send per hour.
    pub messages_per_hour: Option<i64>,
    /// Recipients a sender may address per day.
    pub recipients_per_day: Option<i64>,
    /// Recipients a sender never wrote to before that it may address per day.
    pub new_recipients_per_day: Option<i64>,
    /// Recipients other servers may refuse as unknown per day before the breaker trips.
    pub unknown_recipients_per_day: Option<i64>,
    /// When the row was last set.
    pub modified: String,
}

/// What one sender sent in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct SendUsageRow {
    /// The sender (the login).
    pub address: String,
    /// `H` + YYYYMMDDHH or `D` + YYYYMMDD (UTC).
    pub period: String,
    /// Messages accepted.
    pub messages: i64,
    /// Recipients accepted.
    pub recipients: i64,
    /// Of those, recipients the sender never wrote to before.
    pub new_recipients: i64,
    /// Attempts refused over a limit.
    pub refused: i64,
    /// Recipients other servers refused as unknown.
    pub unknown: i64,
}

impl Tx {
    /// The limit rows of these scopes (those that exist), in one query.
    pub async fn send_limits_of(&mut self, scopes: &[&str]) -> Result<Vec<SendLimitRow>> {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT scope, messages_per_hour, recipients_per_day, new_recipients_per_day, \
             unknown_recipients_per_day, CAST(modified AS CHAR) AS modified FROM mailctl_send_limits \
             WHERE scope IN ({})",
            vec!["?"; scopes.len()].join(", ")
        );
        on_conn!(self, |c| {
            // Only placeholders are added to the fixed statement: no value ever enters the text.
            let mut q = sqlx::query_as::<_, SendLimitRow>(sqlx::AssertSqlSafe(sql.as_str()));
            for scope in scopes {
                q = q.bind(*scope);
            }
            q.fetch_all(&mut *c).await
        })
        .map_err(|e| Error::db("reading the sending limits", e))
    }

    /// Every limit row, by scope.
    pub async fn send_limits(&mut self) -> Result<Vec<SendLimitRow>> {
        let sql = "SELECT scope, messages_per_hour, recipients_per_day, new_recipients_per_day, \
                   unknown_recipients_per_day, CAST(modified AS CHAR) AS modified FROM mailctl_send_limits \
                   ORDER BY scope";
        on_conn!(self, |c| sqlx::query_as::<_, SendLimitRow>(sql)
            .fetch_all(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the sending limits", e))
    }

    /// Sets the limits of `row.scope`, replacing what was there.
    pub async fn set_send_limit(&mut self, row: &SendLimitRow) -> Result<()> {
        self.delete_send_limit(&row.scope).await?;
        let sql = "INSERT INTO mailctl_send_limits (scope, messages_per_hour, recipients_per_day, \
                   new_recipients_per_day, unknown_recipients_per_day, modified) VALUES (?, ?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&row.scope)
            .bind(row.messages_per_hour)
            .bind(row.recipients_per_day)
            .bind(row.new_recipients_per_day)
            .bind(row.unknown_recipients_per_day)
            .bind(&row.modified)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("setting the sending limits of {}", row.scope), e))?;
        Ok(())
    }

    /// Removes the limits of `scope`; false when it had none.
    pub async fn delete_send_limit(&mut self, scope: &str) -> Result<bool> {
        let sql = "DELETE FROM mailctl_send_limits WHERE scope = ?";
        let n = on_conn!(self, |c| sqlx::query(sql)
            .bind(scope)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("removing the sending limits of {scope}"), e))?;
        Ok(n > 0)
    }

    /// What `address` sent in these periods (those with any usage), in one query.
    pub async fn send_usage(
        &mut self,
        address: &str,
        periods: &[&str],
    ) -> Result<Vec<SendUsageRow>> {
        if periods.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT address, period, messages, recipients, new_recipients, refused, unknown \
             FROM mailctl_send_usage WHERE address = ? AND period IN ({})",
            vec!["?"; periods.len()].join(", ")
        );
        on_conn!(self, |c| {
            // Only placeholders are added to the fixed statement: no value ever enters the text.
            let mut q =
                sqlx::query_as::<_, SendUsageRow>(sqlx::AssertSqlSafe(sql.as_str())).bind(address);
            for period in periods {
                q = q.bind(*period);
            }
            q.fetch_all(&mut *c).await
        })
        .map_err(|e| Error::db(format!("reading what {address} sent"), e))
    }

    /// Adds `usage` to the counters of its address and period (atomically, whatever other nodes add).
    pub async fn add_send_usage(&mut self, usage: &SendUsageRow) -> Result<()> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "INSERT INTO mailctl_send_usage (address, period, messages, recipients, new_recipients, refused, \
                 unknown) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (address, period) DO UPDATE SET \
                 messages = messages + excluded.messages, recipients = recipients + excluded.recipients, \
                 new_recipients = new_recipients + excluded.new_recipients, refused = refused + excluded.refused, \
                 unknown = unknown + excluded.unknown"
            }
            Backend::Mysql => {
                "INSERT INTO mailctl_send_usage (address, period, messages, recipients, new_recipients, refused, \
                 unknown) VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                 messages = messages + VALUES(messages), recipients = recipients + VALUES(recipients), \
                 new_recipients = new_recipients + VALUES(new_recipients), refused = refused + VALUES(refused), \
                 unknown = unknown + VALUES(unknown)"
            }
        };
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&usage.address)
            .bind(&usage.period)
            .bind(usage.messages)
            .bind(usage.recipients)
            .bind(usage.new_recipients)
            .bind(usage.refused)
            .bind(usage.unknown)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("counting what {} sent", usage.address), e))?;
        Ok(())
    }

    /// Removes the usage rows of `address` older than `before` (a period string of the same kind compares in
    /// time order: `D20261201` removes every day before December 1st and every hour before it too).
    pub async fn prune_send_usage(
        &mut self,
        address: &str,
        hour_before: &str,
        day_before: &str,
    ) -> Result<()> {
        let sql = "DELETE FROM mailctl_send_usage WHERE address = ? AND \
                   ((period LIKE 'H%' AND period < ?) OR (period LIKE 'D%' AND period < ?))";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(address)
            .bind(hour_before)
            .bind(day_before)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("pruning what {address} sent"), e))?;
        Ok(())
    }

    /// Of `recipients`, those `address` has written to before.
    pub async fn known_recipients(
        &mut self,
        address: &str,
        recipients: &[String],
    ) -> Result<Vec<String>> {
        let mut known = Vec::new();
        for recipient in recipients {
            let sql =
                "SELECT recipient FROM mailctl_send_recipients WHERE address = ? AND recipient = ?";
            let found: Option<(String,)> = on_conn!(self, |c| sqlx::query_as(sql)
                .bind(address)
                .bind(recipient)
                .fetch_optional(&mut *c)
                .await)
            .map_err(|e| Error::db(format!("reading whom {address} wrote to"), e))?;
            known.extend(found.map(|(r,)| r));
        }
        Ok(known)
    }

    /// Remembers that `address` wrote to `recipients` (those known already stay as they are).
    pub async fn add_send_recipients(
        &mut self,
        address: &str,
        recipients: &[String],
        now: &str,
    ) -> Result<()> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "INSERT OR IGNORE INTO mailctl_send_recipients (address, recipient, first_sent) VALUES (?, ?, ?)"
            }
            Backend::Mysql => {
                "INSERT IGNORE INTO mailctl_send_recipients (address, recipient, first_sent) VALUES (?, ?, ?)"
            }
        };
        for recipient in recipients {
            on_conn!(self, |c| sqlx::query(sql)
                .bind(address)
                .bind(recipient)
                .bind(now)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| Error::db(format!("remembering whom {address} wrote to"), e))?;
        }
        Ok(())
    }

    /// Turns SMTP off for the mailbox `address` (the breaker); false when it was off already or is no mailbox.
    pub async fn disable_smtp(&mut self, address: &str, now: &str) -> Result<bool> {
        let sql = "UPDATE mailbox SET smtp_active = 0, modified = ? WHERE username = ? AND smtp_active = 1";
        let n = on_conn!(self, |c| sqlx::query(sql)
            .bind(now)
            .bind(address)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("turning SMTP off for {address}"), e))?;
        Ok(n > 0)
    }
}
