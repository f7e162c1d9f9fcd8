//! The `mailbox` table (postfixadmin): one row per mailbox, read by Postfix and Dovecot.

use sqlx::FromRow;

use super::{Tx, on_conn};
use crate::error::{Error, Result};

/// A `mailbox` row. `quota` is in bytes (0 = unlimited); `maildir` is relative, like `example.com/alice/`.
#[derive(Clone, PartialEq, FromRow)]
pub struct MailboxRow {
    /// The full address, lower-case.
    pub username: String,
    /// Dovecot-style `{SCHEME}hash`.
    pub password: String,
    /// Display name.
    pub name: String,
    /// Maildir path relative to the vmail root.
    pub maildir: String,
    /// Quota in bytes, 0 for unlimited.
    pub quota: i64,
    /// Part before the `@`.
    pub local_part: String,
    /// Part after the `@`.
    pub domain: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub created: String,
    /// `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
    /// Mail is delivered and IMAP login allowed.
    pub active: bool,
    /// SMTP AUTH allowed.
    pub smtp_active: bool,
}

impl std::fmt::Debug for MailboxRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password hash by accident (a `{:?}` in a log line or a panic message).
        f.debug_struct("MailboxRow")
            .field("username", &self.username)
            .field("name", &self.name)
            .field("maildir", &self.maildir)
            .field("quota", &self.quota)
            .field("active", &self.active)
            .field("smtp_active", &self.smtp_active)
            .finish_non_exhaustive()
    }
}

macro_rules! select {
    () => {
        "SELECT username, password, name, maildir, quota, local_part, domain, \
     CAST(created AS CHAR) AS created, CAST(modified AS CHAR) AS modified, active, smtp_active FROM mailbox"
    };
}

impl Tx {
    /// One mailbox by address.
    pub async fn mailbox(&mut self, username: &str) -> Result<Option<MailboxRow>> {
        let sql = concat!(select!(), " WHERE username = ?");
        on_conn!(self, |c| sqlx::query_as::<_, MailboxRow>(sql)
            .bind(username)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db(format!("reading mailbox {username}"), e))
    }

    /// All mailboxes, or those of one domain, sorted by address.
    pub async fn mailboxes(&mut self, domain: Option<&str>) -> Result<Vec<MailboxRow>> {
        let err = |e| Error::db("listing mailboxes", e);
        match domain {
            Some(d) => {
                let sql = concat!(select!(), " WHERE domain = ? ORDER BY domain, local_part");
                on_conn!(self, |c| sqlx::query_as::<_, MailboxRow>(sql)
                    .bind(d)
                    .fetch_all(&mut *c)
                    .await)
                .map_err(err)
            }
            None => {
                let sql = concat!(select!(), " ORDER BY domain, local_part");
                on_conn!(self, |c| sqlx::query_as::<_, MailboxRow>(sql)
                    .fetch_all(&mut *c)
                    .await)
                .map_err(err)
            }
        }
    }

    /// Inserts a new mailbox row (its self-alias is a separate row, see [`Tx::insert_alias`]).
    pub async fn insert_mailbox(&mut self, m: &MailboxRow) -> Result<()> {
        self.insert_mailboxes(std::slice::from_ref(m)).await
    }

    /// Inserts mailbox rows, up to [`super::MAX_ROWS`] per statement.
    pub async fn insert_mailboxes(&mut self, rows: &[MailboxRow]) -> Result<()> {
        for chunk in rows.chunks(super::MAX_ROWS) {
            let sql = super::insert_values(
                "INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, created, \
                 modified, active, smtp_active) VALUES ",
                11,
                chunk.len(),
            );
            on_conn!(self, |c| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for m in chunk {
                    q = q
                        .bind(&m.username)
                        .bind(&m.password)
                        .bind(&m.name)
                        .bind(&m.maildir)
                        .bind(m.quota)
                        .bind(&m.local_part)
                        .bind(&m.domain)
                        .bind(&m.created)
                        .bind(&m.modified)
                        .bind(m.active)
                        .bind(m.smtp_active);
                }
                q.execute(&mut *c).await.map(|r| r.rows_affected())
            })
            .map_err(|e| {
                Error::db(
                    super::adding("mailbox", "mailboxes", chunk.iter().map(|m| &m.username)),
                    e,
                )
            })?;
        }
        Ok(())
    }

    /// Which of `usernames` (lower-case) are mailboxes already, lower-cased.
    pub async fn existing_mailboxes(
        &mut self,
        usernames: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        self.existing(
            "SELECT username FROM mailbox WHERE username IN ",
            usernames,
            "mailboxes",
        )
        .await
    }

    /// Writes every mutable column of an existing mailbox row.
    pub async fn update_mailbox(&mut self, m: &MailboxRow) -> Result<()> {
        let sql = "UPDATE mailbox SET password = ?, name = ?, quota = ?, modified = ?, active = ?, \
                   smtp_active = ? WHERE username = ?";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(&m.password)
            .bind(&m.name)
            .bind(m.quota)
            .bind(&m.modified)
            .bind(m.active)
            .bind(m.smtp_active)
            .bind(&m.username)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db(format!("updating mailbox {}", m.username), e))?;
        Ok(())
    }

    /// Deletes a mailbox row and its self-alias row.
    pub async fn delete_mailbox(&mut self, username: &str) -> Result<()> {
        for sql in [
            "DELETE FROM alias WHERE address = ?",
            "DELETE FROM mailctl_send_limits WHERE scope = ?",
            "DELETE FROM mailctl_send_usage WHERE address = ?",
            "DELETE FROM mailctl_send_recipients WHERE address = ?",
            "DELETE FROM mailbox_app_password WHERE username = ?",
            "DELETE FROM totp_exception_address WHERE username = ?",
            "DELETE FROM vacation_notification WHERE on_vacation = ?",
            "DELETE FROM vacation WHERE email = ?",
            "DELETE FROM mailbox WHERE username = ?",
        ] {
            on_conn!(self, |c| sqlx::query(sql)
                .bind(username)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| Error::db(format!("deleting mailbox {username}"), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MailboxRow;

    #[test]
    fn debug_output_leaves_out_the_password_hash() {
        let row = MailboxRow {
            username: "alice@example.org".into(),
            password: "{BLF-CRYPT}$2y$05$secrethashsecrethash".into(),
            name: "Alice".into(),
            maildir: "example.org/alice/".into(),
            quota: 0,
            local_part: "alice".into(),
            domain: "example.org".into(),
            created: String::new(),
            modified: String::new(),
            active: true,
            smtp_active: true,
        };
        let shown = format!("{row:?}");
        assert!(shown.contains("alice@example.org"), "{shown}");
        assert!(!shown.contains("secrethash"), "{shown}");
    }
}
